package bed

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// ArtifactsInput names the artifacts of one Kubernetes version a test needs.
type ArtifactsInput struct {
	// Version is the Kubernetes version of the artifact set, e.g. "v1.37.2".
	Version string
	// Names are artifact names as hack/build-artifacts.sh --only takes them, e.g. "etcd".
	Names []string
	// Logf, if set, receives the build script's progress lines.
	Logf func(format string, args ...any)
}

var artifactsMu sync.Mutex

// Artifacts returns the artifact set directory $BASALT_CACHE/artifacts/<Version>, after making
// sure the file of every name in Names exists (bin/<name>, bin/cni/<plugin> for cni-<plugin>,
// images/<image>.tar for image-<image>, tools/<tool> for tool-<tool>): when one is missing it runs
// `hack/build-artifacts.sh --only <names> <Version>` (seconds when cached, minutes cold). It
// fails when the script is missing or fails; it never skips.
func Artifacts(ctx context.Context, in ArtifactsInput) (string, error) {
	if in.Version == "" || len(in.Names) == 0 {
		return "", errors.New("artifacts: need a Version and at least one name")
	}
	artifactsMu.Lock()
	defer artifactsMu.Unlock()
	dir := filepath.Join(CacheDir(), "artifacts", in.Version)
	if missing := missingArtifacts(dir, in.Names); len(missing) == 0 {
		return dir, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("artifacts: %w", err)
	}
	script := filepath.Join(root, "hack", "build-artifacts.sh")
	if _, err := os.Stat(script); err != nil {
		return "", fmt.Errorf("artifacts: %s is needed to build %v for %s: %w", script, in.Names, in.Version, err)
	}
	cmd := exec.CommandContext(ctx, script, "--only", strings.Join(in.Names, ","), in.Version)
	cmd.Dir = root
	tail := &tailWriter{max: 40, logf: in.Logf}
	cmd.Stdout = tail
	cmd.Stderr = tail
	if err := cmd.Run(); err != nil {
		tail.flush()
		return "", fmt.Errorf("artifacts: %s --only %s %s failed (%w); its last lines:\n%s",
			script, strings.Join(in.Names, ","), in.Version, err, tail.String())
	}
	if missing := missingArtifacts(dir, in.Names); len(missing) > 0 {
		return "", fmt.Errorf("artifacts: %s succeeded but %s lacks %s", script, dir, strings.Join(missing, ", "))
	}
	return dir, nil
}

// artifactPath is where hack/build-artifacts.sh puts an artifact, relative to the set.
func artifactPath(name string) string {
	switch {
	case strings.HasPrefix(name, "cni-"):
		return filepath.Join("bin", "cni", strings.TrimPrefix(name, "cni-"))
	case strings.HasPrefix(name, "image-"):
		return filepath.Join("images", strings.TrimPrefix(name, "image-")+".tar")
	case strings.HasPrefix(name, "tool-"):
		return filepath.Join("tools", strings.TrimPrefix(name, "tool-"))
	}
	return filepath.Join("bin", name)
}

// missingArtifacts lists the names whose file is not in the set at dir (binaries must be
// executable).
func missingArtifacts(dir string, names []string) []string {
	var missing []string
	for _, n := range names {
		p := artifactPath(n)
		st, err := os.Stat(filepath.Join(dir, p))
		switch {
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			missing = append(missing, p+" ("+err.Error()+")")
		case err != nil, !st.Mode().IsRegular(),
			strings.HasPrefix(p, "bin") && st.Mode().Perm()&0o111 == 0:
			missing = append(missing, p)
		}
	}
	return missing
}
