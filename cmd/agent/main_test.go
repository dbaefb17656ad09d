package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/basalt-dev/basalt/agents/protocol"
)

// TestMain runs main itself when BASALT_AGENT_ARGS is set, so the tests exercise the real flag
// handling in a child process.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("BASALT_AGENT_ARGS"); ok {
		os.Args = append([]string{"basalt-agent"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runMain(t *testing.T, args string) (string, int) {
	t.Helper()
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "BASALT_AGENT_ARGS="+args)
	out, err := cmd.Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func TestVersion(t *testing.T) {
	if out, code := runMain(t, "--version"); code != 0 || strings.TrimSpace(out) != "dev" {
		t.Errorf("--version: %q, exit %d", out, code)
	}
}

func TestInspect(t *testing.T) {
	out, code := runMain(t, "--inspect")
	var hw protocol.Hardware
	if err := json.Unmarshal([]byte(out), &hw); err != nil || code != 0 || hw.CPUs < 1 {
		t.Errorf("--inspect: %v, exit %d:\n%s", err, code, out)
	}
}

func TestBadLogLevel(t *testing.T) {
	if _, code := runMain(t, "--log-level=loud"); code != 2 {
		t.Errorf("exit %d", code)
	}
}
