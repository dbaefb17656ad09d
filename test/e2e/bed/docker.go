package bed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// DockerBin is the docker CLI the bed runs.
var DockerBin = "docker"

// DockerError is a docker command that failed.
type DockerError struct {
	Args   []string
	Stderr string
	Err    error
}

func (e *DockerError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		msg = e.Err.Error()
	}
	return fmt.Sprintf("docker %s: %s", strings.Join(e.Args, " "), msg)
}

func (e *DockerError) Unwrap() error { return e.Err }

// isNotFound reports whether a docker command failed because its object does not exist.
func isNotFound(err error) bool {
	var de *DockerError
	if !errors.As(err, &de) {
		return false
	}
	s := strings.ToLower(de.Stderr)
	return strings.Contains(s, "no such") || strings.Contains(s, "not found")
}

// docker runs the docker CLI and returns its standard output without surrounding space.
func docker(ctx context.Context, args ...string) (string, error) {
	return dockerIn(ctx, nil, args...)
}

// dockerIn is docker with stdin connected to in.
func dockerIn(ctx context.Context, in io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, DockerBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin = in
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return "", &DockerError{Args: args, Stderr: stderr.String(), Err: err}
	}
	return strings.TrimSpace(stdout.String()), nil
}

// lines splits docker output into its non-empty lines.
func lines(s string) []string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// CheckDocker returns an error that says what to do when the Docker engine cannot be used.
func CheckDocker(ctx context.Context) error {
	if _, err := exec.LookPath(DockerBin); err != nil {
		return fmt.Errorf("test bed: the docker CLI is not installed (apt-get install docker.io): %w", err)
	}
	if _, err := docker(ctx, "version", "--format", "{{.Server.Version}}"); err != nil {
		return fmt.Errorf("test bed: the Docker engine does not answer; start it (systemctl start docker): %w", err)
	}
	return nil
}
