package service

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// The test binary doubles as the processes the tests supervise: TestMain runs a helper instead of
// the tests when BASALT_TEST_HELPER is set.
//
//	serve      listens on $ADDR (exits 2 if it cannot: a duplicate), appends "start <pid>" to $MARK,
//	           appends "stop <name>" on SIGTERM and exits 0 (or ignores SIGTERM with IGNORE_TERM=1)
//	crash      appends "start <unix nanos>" to $MARK and exits 1
//	chatty     writes 100-byte lines to stdout as fast as it can
//	supervise  a stand-in agent: a Supervisor on $STATE/$LOGS that ensures $SERVICE (JSON) with
//	           $HASH, prints "ready", then waits to be killed
func TestMain(m *testing.M) {
	switch os.Getenv("BASALT_TEST_HELPER") {
	case "":
		os.Exit(m.Run())
	case "serve":
		helperServe()
	case "crash":
		appendMark(fmt.Sprintf("start %d", time.Now().UnixNano()))
		os.Exit(1)
	case "chatty":
		line := strings.Repeat("x", 99) + "\n"
		for {
			if _, err := os.Stdout.WriteString(line); err != nil {
				os.Exit(3)
			}
			time.Sleep(100 * time.Microsecond)
		}
	case "supervise":
		helperSupervise()
	}
	os.Exit(99)
}

func appendMark(line string) {
	f, err := os.OpenFile(os.Getenv("MARK"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		os.Exit(4)
	}
	_, _ = fmt.Fprintln(f, line)
	f.Close()
}

func helperServe() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	ln, err := net.Listen("tcp", os.Getenv("ADDR"))
	if err != nil {
		fmt.Println("cannot listen:", err)
		os.Exit(2)
	}
	defer func() { _ = ln.Close() }()
	appendMark(fmt.Sprintf("start %d", os.Getpid()))
	fmt.Println("serving on", ln.Addr())
	for range sigs {
		if os.Getenv("IGNORE_TERM") == "1" {
			continue
		}
		appendMark("stop " + os.Getenv("NAME"))
		os.Exit(0)
	}
}

func helperSupervise() {
	var svc plan.Service
	if err := json.Unmarshal([]byte(os.Getenv("SERVICE")), &svc); err != nil {
		os.Exit(5)
	}
	s := &Supervisor{StateDir: os.Getenv("STATE"), LogDir: os.Getenv("LOGS")}
	ctx := context.Background()
	if err := s.Init(ctx); err != nil {
		fmt.Println(err)
		os.Exit(6)
	}
	if err := s.Start(ctx); err != nil {
		os.Exit(7)
	}
	if _, err := s.Ensure(ctx, svc, os.Getenv("HASH")); err != nil {
		fmt.Println(err)
		os.Exit(8)
	}
	fmt.Println("ready")
	select {}
}

// helperService is a Service that runs the test binary as helper mode with env.
func helperService(t *testing.T, name, mode string, env map[string]string) plan.Service {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e := map[string]string{"BASALT_TEST_HELPER": mode, "NAME": name}
	for k, v := range env {
		e[k] = v
	}
	return plan.Service{Name: name, Argv: []string{exe, "-test.run=^$"}, Env: e, Restart: plan.RestartAlways}
}

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

func readMarks(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(strings.ReplaceAll(string(b), " ", "_"))
}

func eventually(t *testing.T, what string, timeout time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processAlive says whether pid runs (and is not a zombie).
func processAlive(pid int) bool { return alive(pid, 0) }
