package bed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// ModulePath is the Go module whose checkout holds hack/node-image.sh.
const ModulePath = "github.com/basalt-dev/basalt"

// RepoRoot returns the root of the Basalt checkout: the nearest directory above the working
// directory (or, failing that, above this source file) whose go.mod declares ModulePath.
func RepoRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, dir := range starts {
		for d := dir; ; d = filepath.Dir(d) {
			if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
				bytes.Contains(b, []byte("module "+ModulePath+"\n")) {
				return d, nil
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", fmt.Errorf("no checkout of %s above %v", ModulePath, starts)
}

var image struct {
	sync.Mutex
	ref string
}

// EnsureImage returns the node image reference (basalt-node:<content hash>) for the current
// hack/node-image.sh and hack/node-image/, building it when it is missing: a few minutes the
// first time, about a second when the image exists. logf, if not nil, gets the script's
// progress lines. Once it succeeded, later calls in the process return at once.
func EnsureImage(ctx context.Context, logf func(format string, args ...any)) (string, error) {
	image.Lock()
	defer image.Unlock()
	if image.ref != "" {
		return image.ref, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("node image: %w", err)
	}
	script := filepath.Join(root, "hack", "node-image.sh")
	cmd := exec.CommandContext(ctx, script)
	cmd.Dir = root
	var stdout bytes.Buffer
	tail := &tailWriter{max: 40, logf: logf}
	cmd.Stdout = &stdout
	cmd.Stderr = tail
	if err := cmd.Run(); err != nil {
		tail.flush()
		return "", fmt.Errorf("node image: %s failed (%w); its last lines:\n%s", script, err, tail.String())
	}
	out := lines(stdout.String())
	if len(out) == 0 || !strings.HasPrefix(out[len(out)-1], "basalt-node:") {
		return "", errors.New("node image: hack/node-image.sh printed no image reference")
	}
	image.ref = out[len(out)-1]
	return image.ref, nil
}

// tailWriter passes whole lines to logf and keeps the last max of them.
type tailWriter struct {
	max     int
	logf    func(format string, args ...any)
	partial []byte
	kept    []string
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.line(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
}

func (w *tailWriter) line(l string) {
	if w.logf != nil {
		w.logf("%s", l)
	}
	w.kept = append(w.kept, l)
	if len(w.kept) > w.max {
		w.kept = w.kept[len(w.kept)-w.max:]
	}
}

func (w *tailWriter) flush() {
	if len(w.partial) > 0 {
		w.line(string(w.partial))
		w.partial = nil
	}
}

func (w *tailWriter) String() string { return strings.Join(w.kept, "\n") }

var _ io.Writer = (*tailWriter)(nil)
