//go:build linux

// Package hack_test checks that the build scripts of hack/ stop early on bad input with a message
// naming the step and how to retry (issue 3, "Bad input"). Only failure paths that need no
// network, no Docker engine and no real build are run, so these tests take well under a second.
package hack_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// result is one run of a script.
type result struct {
	code   int
	stderr string
	took   time.Duration
}

// runScript runs hack/<script> with args. path is the PATH it gets; env adds to an environment
// from which every BASALT_* and GOPROXY variable is removed. BASALT_CACHE is a fresh folder
// (returned), GOPROXY is off: nothing is ever fetched.
func runScript(t *testing.T, script, path string, env []string, args ...string) (result, string) {
	t.Helper()
	cache := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{script}, args...)...)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "BASALT_") || k == "GOPROXY" || k == "PATH" {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, "PATH="+path, "BASALT_CACHE="+cache, "GOPROXY=off")
	cmd.Env = append(cmd.Env, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	res := result{stderr: stderr.String(), took: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	default:
		t.Fatalf("running %s: %v", script, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %v did not stop within a minute; stderr:\n%s", script, args, res.stderr)
	}
	return res, cache
}

// wantFailure checks that res is a quick exit 1 whose message has every part of want.
func wantFailure(t *testing.T, res result, want ...string) {
	t.Helper()
	if res.code != 1 {
		t.Errorf("exit status %d, want 1", res.code)
	}
	for _, w := range want {
		if !strings.Contains(res.stderr, w) {
			t.Errorf("message lacks %q", w)
		}
	}
	if res.took > 20*time.Second {
		t.Errorf("took %s to fail; a bad input must stop at once", res.took)
	}
	if t.Failed() {
		t.Logf("stderr:\n%s", res.stderr)
	}
}

// fakeBin writes executable scripts (name → body) into a new folder and returns it.
func fakeBin(t *testing.T, scripts map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/bash\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// toolsOnly returns a folder with links to just the named commands: a PATH without docker, even
// on a machine that has it in /usr/bin.
func toolsOnly(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			t.Skipf("%s is not installed: %v", n, err)
		}
		if err := os.Symlink(p, filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// smallDisk is a df that reports 100 MiB free on /, wherever it is asked.
const smallDisk = `echo "Filesystem 1024-blocks Used Available Capacity Mounted on"
echo "fake 1048576 946176 102400 91% /"
`

// nodeImageTools are the commands hack/node-image.sh runs before it needs Docker or the disk.
var nodeImageTools = []string{"bash", "dirname", "sha256sum", "find", "sort", "stat", "readlink", "cut",
	"timeout", "mkdir", "flock", "awk", "cat", "id"}

func TestBuildArtifactsRefusesMalformedVersions(t *testing.T) {
	for _, v := range []string{"1.37.2", "v1.37", "v2.0.0", "v1.37.2.1", "latest", "v1.37.x"} {
		t.Run(v, func(t *testing.T) {
			res, cache := runScript(t, "build-artifacts.sh", os.Getenv("PATH"), nil, v)
			wantFailure(t, res,
				"build-artifacts: FAILED: '"+v+"' is not a Kubernetes version: expected v1.MINOR.PATCH, e.g. v1.37.2",
				"step:      check the version",
				"retry:     fix the cause above, then rerun the same command; finished steps are reused.")
			// Refused before anything is written.
			if entries, _ := os.ReadDir(cache); len(entries) != 0 {
				t.Errorf("the cache was written to: %v", entries)
			}
		})
	}
}

func TestBuildArtifactsRefusesUnknownArtifact(t *testing.T) {
	res, _ := runScript(t, "build-artifacts.sh", os.Getenv("PATH"), nil, "--only", "kube-apiserver,etcd3", "v1.37.2")
	wantFailure(t, res, "FAILED: --only: unknown artifact 'etcd3'", "step:      check the arguments", "retry:")
}

// TestBuildArtifactsUnknownVersion: a well-formed version that is not served as a Go module
// stops at the download with the releases that are served (none here: GOPROXY=off).
func TestBuildArtifactsUnknownVersion(t *testing.T) {
	res, _ := runScript(t, "build-artifacts.sh", os.Getenv("PATH"), []string{"BASALT_MIN_FREE_MB=0"}, "v1.99.0")
	wantFailure(t, res,
		"FAILED: Kubernetes v1.99.0 is not available as the Go module k8s.io/kubernetes (GOPROXY=off)",
		"served v1.99 releases: none",
		"step:      download k8s.io/kubernetes v1.99.0",
		"retry:     fix the cause above, then rerun the same command")
}

// TestBuildArtifactsChecksDiskSpaceFirst: with too little free space the build stops before it
// downloads or builds anything, naming the space needed and how to go on.
func TestBuildArtifactsChecksDiskSpaceFirst(t *testing.T) {
	path := fakeBin(t, map[string]string{"df": smallDisk}) + ":" + os.Getenv("PATH")
	res, cache := runScript(t, "build-artifacts.sh", path, nil, "v1.37.2")
	wantFailure(t, res,
		"FAILED: only 100 MiB free on / (which holds "+cache,
		"building this set needs about 8192 MiB there",
		"BASALT_MIN_FREE_MB",
		"step:      check free disk space",
		"retry:     fix the cause above, then rerun the same command; finished steps are reused.")
	if strings.Contains(res.stderr, "download k8s.io/kubernetes") {
		t.Error("the download was attempted before the disk check")
	}

	res, _ = runScript(t, "build-artifacts.sh", path, []string{"BASALT_MIN_FREE_MB=lots"}, "v1.37.2")
	wantFailure(t, res, "BASALT_MIN_FREE_MB='lots' must be a number of MiB (0 skips the check)", "step:      check free disk space")
}

// TestBuildArtifactsFailedModuleBuild: a module that fails to resolve stops the build with the
// step, the component, the tail of its log and how to retry, and is not marked done.
func TestBuildArtifactsFailedModuleBuild(t *testing.T) {
	realGo, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	kube := t.TempDir() // stands for the downloaded k8s.io/kubernetes module
	if err := os.WriteFile(filepath.Join(kube, "go.mod"), []byte("module k8s.io/kubernetes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fakeGo := `case "$1 $2" in
"mod download") printf '{\n\t"Dir": "%s",\n}\n' "$FAKE_KUBE_DIR" ;;
"mod tidy") echo "go: simulated failure: github.com/example/gone@v1.0.0: 410 Gone" >&2; exit 1 ;;
*) exec "$REAL_GO" "$@" ;;
esac
`
	path := fakeBin(t, map[string]string{"go": fakeGo}) + ":" + os.Getenv("PATH")
	res, cache := runScript(t, "build-artifacts.sh", path,
		[]string{"REAL_GO=" + realGo, "FAKE_KUBE_DIR=" + kube, "BASALT_MIN_FREE_MB=0"}, "--only", "etcd", "v1.37.2")
	moddir := filepath.Join(cache, "build", "etcd-v3.7.3")
	wantFailure(t, res,
		"FAILED: exit status 1 from: env -C "+moddir+" go mod tidy",
		"step:      resolve the build module "+moddir+" (go mod tidy)",
		"component: etcd v3.7.3",
		"| go: simulated failure: github.com/example/gone@v1.0.0: 410 Gone",
		"retry:     fix the cause above, then rerun the same command; finished steps are reused.")
	if _, err := os.Stat(filepath.Join(moddir, ".ready")); err == nil {
		t.Error("the module that failed to resolve is marked ready: a rerun would not resolve it again")
	}
}

func TestNodeImageWithoutDocker(t *testing.T) {
	res, _ := runScript(t, "node-image.sh", toolsOnly(t, nodeImageTools...), nil)
	wantFailure(t, res,
		`node-image: step "check docker" failed: the docker CLI is not installed (apt-get install docker.io)`,
		"node-image: fix the cause and rerun hack/node-image.sh; finished steps are reused")
}

func TestNodeImageDockerNotAnswering(t *testing.T) {
	docker := `echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2; exit 1`
	path := fakeBin(t, map[string]string{"docker": docker}) + ":" + toolsOnly(t, nodeImageTools...)
	res, _ := runScript(t, "node-image.sh", path, nil)
	wantFailure(t, res,
		`node-image: step "check docker" failed: the Docker engine does not answer (Cannot connect to the Docker daemon`,
		"start it (systemctl start docker, or dockerd &)",
		"rerun hack/node-image.sh; finished steps are reused")
}

func TestNodeImageWithoutDiskSpace(t *testing.T) {
	// A Docker engine that answers and has no image yet; a disk with 100 MiB free.
	docker := `case "$1" in
info) echo 27.0.0 ;;
*) echo "Error: No such image" >&2; exit 1 ;;
esac
`
	path := fakeBin(t, map[string]string{"docker": docker, "df": smallDisk}) + ":" + toolsOnly(t, nodeImageTools...)
	res, cache := runScript(t, "node-image.sh", path, nil)
	wantFailure(t, res,
		`node-image: step "check disk space" failed: only 100 MiB free in `+filepath.Join(cache, "node-image")+", need 3072 MiB",
		"rerun hack/node-image.sh; finished steps are reused")
}

func TestOSImageRefusesBadInput(t *testing.T) {
	res, cache := runScript(t, "os-image.sh", os.Getenv("PATH"), nil, "--no-such-flag")
	if res.code != 2 || !strings.Contains(res.stderr, "os-image: unknown argument --no-such-flag (see --help)") {
		t.Errorf("unknown flag: exit %d, stderr %q; want exit 2 naming the flag", res.code, res.stderr)
	}
	res, _ = runScript(t, "os-image.sh", os.Getenv("PATH"), []string{"ROOT_EXTRA_MIB=lots"})
	wantFailure(t, res, `os-image: step "start" failed: ROOT_EXTRA_MIB=lots is not a number of MiB`,
		"fix the cause and rerun hack/os-image.sh")
	if entries, _ := os.ReadDir(cache); len(entries) != 0 {
		t.Errorf("the cache was written to: %v", entries)
	}
}

func TestOSImageBootRefusesBadInput(t *testing.T) {
	res, _ := runScript(t, "os-image-boot.sh", os.Getenv("PATH"), nil, "pxe", "/nonexistent.raw")
	if res.code != 2 || !strings.Contains(res.stderr, "unknown mode pxe: want uefi or bios") {
		t.Errorf("unknown mode: exit %d, stderr %q", res.code, res.stderr)
	}
	res, _ = runScript(t, "os-image-boot.sh", os.Getenv("PATH"), nil, "uefi", "/nonexistent.raw")
	if res.code != 2 || !strings.Contains(res.stderr, "no disk image at /nonexistent.raw: build it with make os-image") {
		t.Errorf("missing image: exit %d, stderr %q", res.code, res.stderr)
	}
}
