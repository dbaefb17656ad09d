package service

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

func newSupervisor(t *testing.T, state string) *Supervisor {
	t.Helper()
	s := &Supervisor{
		StateDir: state, LogDir: filepath.Join(filepath.Dir(state), "logs"),
		BackoffInitial: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		StopGrace: 2 * time.Second, PollInterval: 20 * time.Millisecond,
	}
	ctx := context.Background()
	if err := s.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.StopAll(context.Background())
		s.Close()
	})
	return s
}

func markStarts(t *testing.T, mark string) []string {
	var out []string
	for _, m := range readMarks(t, mark) {
		if strings.HasPrefix(m, "start_") {
			out = append(out, strings.TrimPrefix(m, "start_"))
		}
	}
	return out
}

func TestEnsureIsIdempotentAndReplacesChangedDefinitions(t *testing.T) {
	dir := t.TempDir()
	s := newSupervisor(t, filepath.Join(dir, "state"))
	ctx := context.Background()
	addr, mark := freeAddr(t), filepath.Join(dir, "mark")
	svc := helperService(t, "etcd", "serve", map[string]string{"ADDR": addr, "MARK": mark})

	changed, err := s.Ensure(ctx, svc, "h1")
	if err != nil || !changed {
		t.Fatalf("first Ensure: %v %v", changed, err)
	}
	eventually(t, "etcd started", 5*time.Second, func() bool { return len(markStarts(t, mark)) == 1 })
	st, _ := s.Status(ctx, "etcd")
	if !st.Active || st.Hash != "h1" || st.PID == 0 {
		t.Fatalf("status: %+v", st)
	}
	first := st.PID
	if changed, err := s.Ensure(ctx, svc, "h1"); err != nil || changed {
		t.Fatalf("same hash: changed=%v err=%v", changed, err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(markStarts(t, mark)); n != 1 {
		t.Fatalf("the same hash started the service again (%d starts)", n)
	}

	// A changed definition replaces the process: the old one is stopped before the new one
	// binds the same address (a duplicate would exit 2 and be restarted forever).
	svc.Env["FLAG"] = "changed"
	if changed, err := s.Ensure(ctx, svc, "h2"); err != nil || !changed {
		t.Fatalf("new hash: changed=%v err=%v", changed, err)
	}
	eventually(t, "etcd restarted", 5*time.Second, func() bool { return len(markStarts(t, mark)) == 2 })
	st, _ = s.Status(ctx, "etcd")
	if st.PID == first || processAlive(first) || st.Hash != "h2" {
		t.Fatalf("after replace: %+v (old pid %d alive=%v)", st, first, processAlive(first))
	}
	if got := readMarks(t, mark); !cmp.Equal(got[1], "stop_etcd") {
		t.Errorf("marks: %q", got)
	}
	logs, _ := os.ReadFile(filepath.Join(dir, "logs", "etcd.log"))
	if !strings.Contains(string(logs), "serving on "+addr) || strings.Count(string(logs), "basalt-agent: starting etcd") != 2 {
		t.Errorf("log:\n%s", logs)
	}
}

func TestRestartWithCappedBackoff(t *testing.T) {
	dir := t.TempDir()
	s := newSupervisor(t, filepath.Join(dir, "state"))
	mark := filepath.Join(dir, "mark")
	if _, err := s.Ensure(context.Background(), helperService(t, "flaky", "crash", map[string]string{"MARK": mark}), "h"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "7 starts", 10*time.Second, func() bool { return len(markStarts(t, mark)) >= 7 })
	var times []time.Time
	for _, s := range markStarts(t, mark) {
		n, _ := strconv.ParseInt(s, 10, 64)
		times = append(times, time.Unix(0, n))
	}
	// Delays 50ms, 100ms, 200ms, then capped at 200ms. Lower bounds are exact; the upper bound
	// shows the cap (uncapped, the 6th delay would be 1.6s).
	for i, min := range []time.Duration{50, 100, 200, 200, 200, 200} {
		gap := times[i+1].Sub(times[i])
		if gap < min*time.Millisecond {
			t.Errorf("restart %d came after %s, want at least %dms", i+1, gap, min)
		}
	}
	if gap := times[6].Sub(times[5]); gap > time.Second {
		t.Errorf("the delay is not capped: %s", gap)
	}
	st, _ := s.Status(context.Background(), "flaky")
	if !strings.Contains(st.Message, "exit status 1") && !strings.Contains(st.Message, "running") {
		t.Errorf("status message: %q", st.Message)
	}
}

func TestStopAllInReverseOrderAndKillAfterGrace(t *testing.T) {
	dir := t.TempDir()
	s := newSupervisor(t, filepath.Join(dir, "state"))
	s.StopGrace = 300 * time.Millisecond
	ctx := context.Background()
	mark := filepath.Join(dir, "mark")
	a := helperService(t, "a", "serve", map[string]string{"ADDR": freeAddr(t), "MARK": mark})
	b := helperService(t, "b", "serve", map[string]string{"ADDR": freeAddr(t), "MARK": mark})
	b.After = []string{"a"}
	c := helperService(t, "c", "serve", map[string]string{"ADDR": freeAddr(t), "MARK": mark})
	c.After = []string{"b"}
	stubborn := helperService(t, "stubborn", "serve", map[string]string{"ADDR": freeAddr(t), "MARK": mark, "IGNORE_TERM": "1"})
	for _, svc := range []plan.Service{a, b, c, stubborn} {
		if _, err := s.Ensure(ctx, svc, "h"); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "4 services up", 5*time.Second, func() bool { return len(markStarts(t, mark)) == 4 })
	st, _ := s.Status(ctx, "stubborn")
	start := time.Now()
	if err := s.Stop(ctx, "stubborn"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || processAlive(st.PID) {
		t.Errorf("stubborn stopped after %s (grace 300ms), alive=%v", d, processAlive(st.PID))
	}
	if err := s.StopAll(ctx); err != nil {
		t.Fatal(err)
	}
	var stops []string
	for _, m := range readMarks(t, mark) {
		if strings.HasPrefix(m, "stop_") {
			stops = append(stops, m)
		}
	}
	if d := cmp.Diff([]string{"stop_c", "stop_b", "stop_a"}, stops); d != "" {
		t.Errorf("stop order (-want +got):\n%s", d)
	}
	if in, _ := s.Installed(ctx); len(in) != 0 {
		t.Errorf("still installed: %+v", in)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "state")); len(entries) != 0 {
		t.Errorf("records left: %v", entries)
	}
}

func TestLogRotation(t *testing.T) {
	dir := t.TempDir()
	s := newSupervisor(t, filepath.Join(dir, "state"))
	s.LogMaxBytes, s.LogKeep = 4000, 2
	if _, err := s.Ensure(context.Background(), helperService(t, "chatty", "chatty", nil), "h"); err != nil {
		t.Fatal(err)
	}
	logs := filepath.Join(dir, "logs")
	eventually(t, "two rotations", 10*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(logs, "chatty.log.2"))
		return err == nil
	})
	time.Sleep(200 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(logs, "chatty.log.3")); err == nil {
		t.Error("more rotated logs than LogKeep")
	}
	for _, f := range []string{"chatty.log.1", "chatty.log.2"} {
		b, err := os.ReadFile(filepath.Join(logs, f))
		if err != nil || len(b) < 4000 || !strings.Contains(string(b), strings.Repeat("x", 99)) {
			t.Errorf("%s: %d bytes, %v", f, len(b), err)
		}
	}
	// The process writes on after the truncation (append mode): the live log grows again.
	eventually(t, "live log written after rotation", 5*time.Second, func() bool {
		fi, err := os.Stat(filepath.Join(logs, "chatty.log"))
		return err == nil && fi.Size() > 0
	})
}

// TestAdoptAfterAgentCrash kills -9 a stand-in agent process that started a service, then starts
// a new Supervisor on the same state: it adopts the running process instead of starting a
// duplicate, replaces it only when the hash changes, and restarts it when it dies.
func TestAdoptAfterAgentCrash(t *testing.T) {
	dir := t.TempDir()
	state, logs, mark, addr := filepath.Join(dir, "state"), filepath.Join(dir, "logs"), filepath.Join(dir, "mark"), freeAddr(t)
	svc := helperService(t, "etcd", "serve", map[string]string{"ADDR": addr, "MARK": mark})
	svcJSON, _ := json.Marshal(svc)
	exe, _ := os.Executable()
	agent := exec.Command(exe, "-test.run=^$")
	agent.Env = append(os.Environ(), "BASALT_TEST_HELPER=supervise", "STATE="+state, "LOGS="+logs, "SERVICE="+string(svcJSON), "HASH=h1")
	agent.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, _ := agent.StdoutPipe()
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("stand-in agent: %q", line)
	}
	var rec record
	b, _ := os.ReadFile(filepath.Join(state, "etcd.json"))
	if err := json.Unmarshal(b, &rec); err != nil || rec.PID == 0 || rec.StartTime == 0 {
		t.Fatalf("record: %s %v", b, err)
	}
	if err := agent.Process.Kill(); err != nil { // kill -9
		t.Fatal(err)
	}
	_ = agent.Wait()
	t.Cleanup(func() { _ = syscall.Kill(-rec.PID, syscall.SIGKILL) })
	if !processAlive(rec.PID) {
		t.Fatal("the service died with the agent")
	}

	s := newSupervisor(t, state)
	ctx := context.Background()
	st, _ := s.Status(ctx, "etcd")
	if !st.Active || st.PID != rec.PID || st.Hash != "h1" {
		t.Fatalf("not adopted: %+v (recorded pid %d)", st, rec.PID)
	}
	if changed, err := s.Ensure(ctx, svc, "h1"); err != nil || changed {
		t.Fatalf("Ensure of the adopted hash: changed=%v err=%v", changed, err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(markStarts(t, mark)); n != 1 {
		t.Fatalf("%d starts: a duplicate was started", n)
	}

	// The adopted process dies: it is not a child, yet the supervisor notices and restarts it.
	if err := syscall.Kill(rec.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "restart of the adopted service", 5*time.Second, func() bool {
		st, _ := s.Status(ctx, "etcd")
		return st.Active && st.PID != rec.PID && len(markStarts(t, mark)) == 2
	})

	// A stale process (another hash) is replaced.
	st, _ = s.Status(ctx, "etcd")
	if changed, err := s.Ensure(ctx, svc, "h2"); err != nil || !changed {
		t.Fatalf("Ensure of a new hash: changed=%v err=%v", changed, err)
	}
	eventually(t, "replacement", 5*time.Second, func() bool { return len(markStarts(t, mark)) == 3 })
	if processAlive(st.PID) {
		t.Error("the stale process still runs")
	}
}

// TestAdoptByNonce covers a crash between starting a process and recording its pid: the record
// has pid 0 and the process is found by the nonce in its environment.
func TestAdoptByNonce(t *testing.T) {
	dir := t.TempDir()
	state, mark := filepath.Join(dir, "state"), filepath.Join(dir, "mark")
	svc := helperService(t, "kubelet", "serve", map[string]string{"ADDR": freeAddr(t), "MARK": mark})
	rec := record{Service: svc, Hash: "h1", Nonce: "feedface"}
	b, _ := json.Marshal(rec)
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "kubelet.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(svc.Argv[0], svc.Argv[1:]...)
	cmd.Env = append(Environ(svc), NonceEnv+"=feedface")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	eventually(t, "helper up", 5*time.Second, func() bool { return len(markStarts(t, mark)) == 1 })

	s := newSupervisor(t, state)
	st, _ := s.Status(context.Background(), "kubelet")
	if !st.Active || st.PID != cmd.Process.Pid {
		t.Fatalf("not adopted by nonce: %+v, want pid %d", st, cmd.Process.Pid)
	}
	if changed, _ := s.Ensure(context.Background(), svc, "h1"); changed {
		t.Error("adopted process restarted")
	}
}

// TestReusedPidIsNotAdopted: a record whose pid now belongs to another process (different start
// time) is treated as gone.
func TestReusedPidIsNotAdopted(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	svc := helperService(t, "etcd", "serve", map[string]string{"ADDR": freeAddr(t), "MARK": filepath.Join(dir, "mark")})
	_, _, myStart, err := procInfo(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	rec := record{Service: svc, Hash: "h1", Nonce: "n", PID: os.Getpid(), StartTime: myStart + 1}
	b, _ := json.Marshal(rec)
	_ = os.MkdirAll(state, 0o700)
	if err := os.WriteFile(filepath.Join(state, "etcd.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	s := newSupervisor(t, state)
	st, _ := s.Status(context.Background(), "etcd")
	if st.Active || st.Hash != "h1" {
		t.Fatalf("a reused pid was adopted: %+v", st)
	}
	// Ensure with the recorded hash starts it, since it does not run.
	if changed, err := s.Ensure(context.Background(), svc, "h1"); err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	if !processAlive(os.Getpid()) {
		t.Fatal("unreachable")
	}
}

func TestStartFailureIsReportedAndNotRecorded(t *testing.T) {
	dir := t.TempDir()
	s := newSupervisor(t, filepath.Join(dir, "state"))
	svc := plan.Service{Name: "ghost", Argv: []string{"/nonexistent/ghost"}}
	if _, err := s.Ensure(context.Background(), svc, "h"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("err = %v", err)
	}
	if in, _ := s.Installed(context.Background()); len(in) != 0 {
		t.Errorf("installed: %+v", in)
	}
	for _, bad := range []plan.Service{{Name: "agent", Argv: []string{"/bin/true"}}, {Name: "x", Argv: []string{"true"}}, {Name: "x", Argv: []string{"/bin/true"}, Env: map[string]string{"A=B": "c"}}} {
		if _, err := s.Ensure(context.Background(), bad, "h"); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestParseStat(t *testing.T) {
	state, pgrp, start, err := parseStat("4242 (kube (api) server) S 1 4242 4242 0 -1 4194560 1 0 0 0 3 4 0 0 20 0 12 0 987654 1000 200\n")
	if err != nil || state != 'S' || pgrp != 4242 || start != 987654 {
		t.Errorf("got %c %d %d %v", state, pgrp, start, err)
	}
	if _, _, _, err := parseStat("garbage"); err == nil {
		t.Error("garbage parsed")
	}
}
