package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/agents/service"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// TestMain lets the test binary play the processes of the end-to-end test:
//
//	serve  a service: listens on $ADDR, appends "<name> <pid> <args>" to $MARK, exits on SIGTERM
//	agent  a whole agent (Run) with the Options in $AGENT_OPTIONS, for kill -9
func TestMain(m *testing.M) {
	switch os.Getenv("BASALT_TEST_HELPER") {
	case "":
		os.Exit(m.Run())
	case "serve":
		ln, err := net.Listen("tcp", os.Getenv("ADDR"))
		if err != nil {
			fmt.Println("cannot listen:", err)
			os.Exit(2)
		}
		defer func() { _ = ln.Close() }()
		f, _ := os.OpenFile(os.Getenv("MARK"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		_, _ = fmt.Fprintf(f, "%s %d %s\n", os.Getenv("NAME"), os.Getpid(), strings.Join(os.Args[1:], ","))
		f.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.Close()
			}
		}()
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		<-sigs
		os.Exit(0)
	case "agent":
		var o testOptions
		if err := json.Unmarshal([]byte(os.Getenv("AGENT_OPTIONS")), &o); err != nil {
			os.Exit(5)
		}
		_ = Run(context.Background(), o.options(os.Stderr))
		os.Exit(0)
	}
	os.Exit(99)
}

// testOptions are the serialisable parts of Options used by the test agents.
type testOptions struct {
	StateDir, BootstrapPath, Root, LogDir, CallLog string
}

func (o testOptions) options(logTo io.Writer) Options {
	return Options{
		StateDir: o.StateDir, BootstrapPath: o.BootstrapPath, Root: o.Root, LogDir: o.LogDir, Version: "v-test",
		Runtime: RuntimeSupervisor, LBConfig: "-", VIPConfig: "-", PlanWait: time.Second, StatusInterval: 100 * time.Millisecond,
		DependencyTimeout: 20 * time.Second, BackoffMax: 300 * time.Millisecond, StopGrace: 5 * time.Second,
		Run:       &fileRunner{path: o.CallLog},
		Inspector: fixedHardware{},
		Logger:    slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// fileRunner records commands (ip, ctr) in a file, so an agent in another process can be
// checked too.
type fileRunner struct {
	mu   sync.Mutex
	path string
}

func (r *fileRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	_, err = fmt.Fprintln(f, filepath.Base(name)+" "+strings.Join(args, " "))
	return nil, err
}

type fixedHardware struct{}

func (fixedHardware) Inspect(ctx context.Context) (*protocol.Hardware, error) {
	return &protocol.Hardware{CPUs: 4, MemoryBytes: 8 << 30, System: protocol.SystemInfo{Vendor: "QEMU"},
		OS: &protocol.OSFacts{Container: true, SystemdPID1: true, CgroupVersion: 1}}, nil
}

// e2e is one end-to-end scenario: a fake manager, a host root and a state folder.
type e2e struct {
	t      *testing.T
	m      *fakeManager
	dir    string
	opts   testOptions
	exe    string
	mark   string
	addrs  map[string]string
	cancel context.CancelFunc
	done   chan error
}

func newE2E(t *testing.T) *e2e {
	dir := t.TempDir()
	exe, _ := os.Executable()
	e := &e2e{
		t: t, m: newFakeManager(t), dir: dir, exe: exe, mark: filepath.Join(dir, "marks"),
		opts: testOptions{StateDir: filepath.Join(dir, "state"), BootstrapPath: filepath.Join(dir, "bootstrap.json"),
			Root: filepath.Join(dir, "root"), LogDir: filepath.Join(dir, "logs"), CallLog: filepath.Join(dir, "calls")},
		addrs: map[string]string{"etcd": freeAddr(t), "kube-apiserver": freeAddr(t)},
	}
	writeBootstrap(t, e.opts.BootstrapPath, e.m.bootstrap())
	t.Cleanup(e.cleanup)
	return e
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

// startInProcess runs the agent in this process until stop.
func (e *e2e) startInProcess() {
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan error, 1)
	go func() { e.done <- Run(ctx, e.opts.options(testWriter{e.t})) }()
}

func (e *e2e) stop() {
	if e.cancel != nil {
		e.cancel()
		if err := <-e.done; err != nil && !errors.Is(err, context.Canceled) {
			e.t.Errorf("Run: %v", err)
		}
		e.cancel = nil
	}
}

// cleanup stops the agent and, through a Supervisor on the same state (which adopts them), every
// service process.
func (e *e2e) cleanup() {
	e.stop()
	s := &service.Supervisor{StateDir: filepath.Join(e.opts.StateDir, "services"), LogDir: e.opts.LogDir, StopGrace: 2 * time.Second}
	if err := s.Init(context.Background()); err == nil && s.Start(context.Background()) == nil {
		_ = s.StopAll(context.Background())
		s.Close()
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (e *e2e) svc(name string, extra ...string) plan.Service {
	return plan.Service{
		Name: name, Argv: append([]string{e.exe, "-test.run=^$"}, extra...),
		Env:   map[string]string{"BASALT_TEST_HELPER": "serve", "ADDR": e.addrs[name], "MARK": e.mark, "NAME": name},
		Probe: &plan.Probe{TCP: &plan.TCPProbe{Address: e.addrs[name]}, PeriodSeconds: 1},
	}
}

// basePlan: etcd reads its config; kube-apiserver starts after etcd and reads its config and a
// binary artifact.
func (e *e2e) basePlan() *plan.Plan {
	tool := []byte(strings.Repeat("kube-apiserver v1.37.2 ", 4096))
	etcd := e.svc("etcd")
	etcd.Reads = []string{"/etc/basalt/etcd.conf"}
	api := e.svc("kube-apiserver", "--secure-port=6443")
	api.After = []string{"etcd"}
	api.Reads = []string{"/etc/basalt/kube-apiserver.conf", "/opt/basalt/bin/kube-apiserver"}
	return &plan.Plan{
		Host: "host-1",
		Files: []plan.File{
			{Path: "/etc/basalt/etcd.conf", Mode: 0o644, Content: []byte("etcd v1\n")},
			{Path: "/etc/basalt/kube-apiserver.conf", Mode: 0o600, Content: []byte("api v1\n")},
		},
		Artifacts: []plan.Artifact{{Name: "kube-apiserver", SHA256: e.m.addBlob(tool), Size: int64(len(tool)), Path: "/opt/basalt/bin/kube-apiserver", Mode: 0o755}},
		Services:  []plan.Service{etcd, api},
		Routes:    []plan.Route{{Destination: "10.244.2.0/24", Gateway: "172.28.0.12"}},
	}
}

// waitStatus waits for a status matching f.
func (e *e2e) waitStatus(what string, f func(protocol.Status) bool) protocol.Status {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if st, ok := e.m.findStatus(f); ok {
			return st
		}
		if time.Now().After(deadline) {
			last, _ := e.m.findStatus(func(protocol.Status) bool { return true })
			e.t.Fatalf("timed out waiting for %s; last status: %+v", what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *e2e) waitApplied(hash string) protocol.Status {
	e.t.Helper()
	st := e.waitStatus("plan "+hash[:12]+" applied", func(s protocol.Status) bool { return s.PlanHash == hash && s.ApplyingHash == "" })
	if failed := stepsFailed(st); len(failed) > 0 {
		e.t.Fatalf("failed steps: %v", failed)
	}
	return st
}

// starts returns the start lines of each service ("<pid> <args>").
func (e *e2e) starts() map[string][]string {
	b, _ := os.ReadFile(e.mark)
	out := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if name, rest, ok := strings.Cut(line, " "); ok {
			out[name] = append(out[name], rest)
		}
	}
	return out
}

// expectStarts waits until each service has been started the given number of times (a process
// records its start a moment after the agent started it) and fails on more.
func (e *e2e) expectStarts(etcd, api int) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := e.starts()
		ne, na := len(st["etcd"]), len(st["kube-apiserver"])
		if ne > etcd || na > api || (time.Now().After(deadline) && (ne != etcd || na != api)) {
			e.t.Fatalf("starts: etcd %d (want %d), kube-apiserver %d (want %d): %v", ne, etcd, na, api, st)
		}
		if ne == etcd && na == api {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAgentEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and a TLS server; skipped with -short")
	}
	e := newE2E(t)
	p := e.basePlan()
	h1 := e.m.setPlan(p)
	e.startInProcess()

	// 1. Registration, first apply, heartbeat with health and hardware.
	e.waitApplied(h1)
	e.expectStarts(1, 1)
	e.waitStatus("both components healthy", func(s protocol.Status) bool {
		return len(s.Components) == 2 && s.Components[0].Healthy && s.Components[1].Healthy && s.Hardware != nil && s.Hardware.CPUs == 4 &&
			s.Hardware.OS != nil && reflect.DeepEqual(*s.Hardware.OS, protocol.OSFacts{Container: true, SystemdPID1: true, CgroupVersion: 1})
	})
	e.waitStatus("the first apply reported while it ran", func(s protocol.Status) bool { return s.ApplyingHash == h1 && s.PlanHash == "" })
	if b, err := os.ReadFile(filepath.Join(e.opts.Root, "/opt/basalt/bin/kube-apiserver")); err != nil || len(b) != int(p.Artifacts[0].Size) {
		t.Fatalf("artifact: %d bytes, %v", len(b), err)
	}
	if calls, _ := os.ReadFile(e.opts.CallLog); !strings.Contains(string(calls), "ip -4 route replace 10.244.2.0/24 via 172.28.0.12") {
		t.Errorf("route not programmed: %s", calls)
	}

	// 2. A flag change restarts that service only.
	p.Services[1].Argv = append(p.Services[1].Argv, "--v=2")
	h2 := e.m.setPlan(p)
	e.waitApplied(h2)
	e.expectStarts(1, 2)
	if got := e.starts()["kube-apiserver"][1]; !strings.HasSuffix(got, "--v=2") {
		t.Errorf("restarted with %q", got)
	}

	// 3. A tampered artifact: refused, reported with both digests, nothing restarted, the
	// applied hash stays.
	good := []byte(strings.Repeat("kube-apiserver v1.37.3 ", 4096))
	goodSum := e.m.addBlob(good)
	bad := []byte(strings.Repeat("kube-apiserver v1.37.3-evil ", 4096))
	e.m.mu.Lock()
	e.m.blobs[goodSum] = bad
	e.m.mu.Unlock()
	p3 := p.DeepCopy()
	p3.Artifacts[0].SHA256, p3.Artifacts[0].Size = goodSum, 0
	h3 := e.m.setPlan(p3)
	st := e.waitStatus("the tampered Plan reported", func(s protocol.Status) bool {
		_, ok := hasStep(s, "artifact:kube-apiserver")
		return ok && len(stepsFailed(s)) > 0
	})
	step, _ := hasStep(st, "artifact:kube-apiserver")
	if step.OK || !strings.Contains(step.Error, "expected "+goodSum) || !strings.Contains(step.Error, "got "+sha(bad)) {
		t.Errorf("artifact step: %+v", step)
	}
	if st.PlanHash != h2 {
		t.Errorf("applied hash moved to %s with a failed step (h3 %s)", st.PlanHash, h3)
	}
	e.waitStatus("the tampered Plan reported while it was applied", func(s protocol.Status) bool { return s.ApplyingHash == h3 && s.PlanHash == h2 })
	if s, _ := hasStep(st, "service:kube-apiserver"); s.OK {
		t.Errorf("kube-apiserver step: %+v", s)
	}
	e.expectStarts(1, 2)
	e.stop()

	// 4. kill -9 of the agent in the middle of an apply: a subprocess agent gets a Plan whose
	// download the manager holds halfway, and is killed there.
	p4 := p.DeepCopy()
	p4.Files[0].Content, p4.Files[0].SHA256 = []byte("etcd v2\n"), ""
	kubelet := []byte(strings.Repeat("kubelet ", 1<<16))
	ksum := e.m.addBlob(kubelet)
	p4.Artifacts = append(p4.Artifacts, plan.Artifact{Name: "kubelet", SHA256: ksum, Size: int64(len(kubelet)), Path: "/opt/basalt/bin/kubelet", Mode: 0o755})
	p4.Services[1].Reads = append(p4.Services[1].Reads, "/opt/basalt/bin/kubelet")
	release := make(chan struct{})
	e.m.mu.Lock()
	e.m.hold[ksum] = release
	e.m.mu.Unlock()
	h4 := e.m.setPlan(p4)
	optsJSON, _ := json.Marshal(e.opts)
	agent := exec.Command(e.exe, "-test.run=^$")
	agent.Env = append(os.Environ(), "BASALT_TEST_HELPER=agent", "AGENT_OPTIONS="+string(optsJSON))
	agent.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	agentLog, _ := agent.StderrPipe()
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(agentLog)
		for sc.Scan() {
			t.Log("subprocess agent: " + sc.Text())
		}
	}()
	select {
	case <-e.m.holding:
	case <-time.After(30 * time.Second):
		t.Fatal("the subprocess agent never started the download")
	}
	if err := agent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = agent.Wait()
	if _, err := os.Stat(filepath.Join(e.opts.Root, "/opt/basalt/bin/kubelet")); err == nil {
		t.Fatal("a half download is in place")
	}
	if b, _ := os.ReadFile(filepath.Join(e.opts.Root, "/etc/basalt/etcd.conf")); string(b) != "etcd v2\n" {
		t.Fatalf("the killed agent should have written the new etcd config first, got %q", b)
	}
	e.expectStarts(1, 2) // the new config is there, but nothing was restarted yet

	// 5. A new agent process converges: it adopts the running services (no duplicates: a second
	// copy could not bind the same address), downloads again, restarts each service once.
	e.m.mu.Lock()
	delete(e.m.hold, ksum)
	e.m.mu.Unlock()
	close(release)
	e.startInProcess()
	e.waitApplied(h4)
	e.expectStarts(2, 3)
	e.waitStatus("healthy after convergence", func(s protocol.Status) bool {
		return s.PlanHash == h4 && len(s.Components) == 2 && s.Components[0].Healthy && s.Components[1].Healthy
	})
	if b, _ := os.ReadFile(filepath.Join(e.opts.Root, "/opt/basalt/bin/kubelet")); len(b) != len(kubelet) {
		t.Errorf("kubelet: %d bytes", len(b))
	}
	applied, err := loadPlanRecord(e.opts.StateDir, AppliedFile)
	if err != nil || applied.Hash != h4 {
		t.Errorf("applied record: %+v %v", applied, err)
	}

	// 6. Restarting the agent with nothing new changes nothing.
	e.stop()
	e.startInProcess()
	time.Sleep(1500 * time.Millisecond)
	e.waitApplied(h4)
	e.expectStarts(2, 3)
	if n := e.m.fetchCount(ksum); n != 2 {
		t.Errorf("kubelet fetched %d times (one cut, one complete)", n)
	}
	if n := e.m.registerCount(); n != 1 {
		t.Errorf("registered %d times", n)
	}
}

// TestPlanForAnotherHostIsRefused: the manager's Plan names another host.
func TestPlanForAnotherHostIsRefused(t *testing.T) {
	e := newE2E(t)
	e.m.setPlan(&plan.Plan{Host: "host-2", Files: []plan.File{{Path: "/etc/x", Mode: 0o644, Content: []byte("x")}}})
	e.startInProcess()
	st := e.waitStatus("refusal", func(s protocol.Status) bool { _, ok := hasStep(s, "plan"); return ok })
	if s, _ := hasStep(st, "plan"); s.OK || !strings.Contains(s.Error, `for host "host-2", this agent is "host-1"`) {
		t.Errorf("%+v", s)
	}
	if _, err := os.Stat(filepath.Join(e.opts.Root, "/etc/x")); err == nil {
		t.Error("a Plan for another host was applied")
	}
}

// TestPlanOfAnotherClusterWipesFirst: a host that ran a node of Cluster A is given a Plan of
// Cluster B (a Host released unwiped and vouched for, or two managers): the agent applies the empty
// Plan first, so B's etcd starts on an empty data dir, not on A's. A new Plan of the same Cluster,
// or the same Plan after a restart, keeps the state; the empty Plan forgets the Cluster.
func TestPlanOfAnotherClusterWipesFirst(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and a TLS server; skipped with -short")
	}
	e := newE2E(t)
	clusterA := &plan.ClusterRef{Namespace: "team-a", Name: "prod", UID: "uid-a"}
	clusterB := &plan.ClusterRef{Namespace: "team-b", Name: "prod", UID: "uid-b"}
	p := e.basePlan()
	p.Services[0].StateDirs = []string{"/var/lib/etcd"}
	p.Cluster = clusterA
	e.startInProcess()
	e.waitApplied(e.m.setPlan(p))
	e.expectStarts(1, 1)
	data := filepath.Join(e.opts.Root, "/var/lib/etcd/member/snap/db")
	if err := os.MkdirAll(filepath.Dir(data), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, []byte("cluster A's keys and Secrets"), 0o600); err != nil {
		t.Fatal(err)
	}
	record := func() *plan.ClusterRef {
		t.Helper()
		c, err := loadClusterRecord(e.opts.StateDir)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if got := record(); got == nil || *got != *clusterA {
		t.Fatalf("cluster record %v, want %v", got, clusterA)
	}

	// Same Cluster, a changed file: applied in place, the data stays.
	p.Files[1].Content = []byte("api v2\n")
	e.waitApplied(e.m.setPlan(p))
	e.expectStarts(1, 2)
	if _, err := os.Stat(data); err != nil {
		t.Fatalf("a Plan of the same Cluster removed its etcd data: %v", err)
	}

	// Another Cluster, the very same node otherwise: A's state is wiped before B's Plan runs.
	p.Cluster = clusterB
	hB := e.m.setPlan(p)
	st := e.waitApplied(hB)
	if s, ok := hasStep(st, "wipe-cluster"); !ok || !s.OK {
		t.Fatalf("no successful wipe-cluster step in %+v", st.Steps)
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Cluster A's etcd data survived a Plan of Cluster B: %v", err)
	}
	e.expectStarts(2, 3) // stopped by the wipe, started by B's Plan
	if got := record(); got == nil || *got != *clusterB {
		t.Fatalf("cluster record %v, want %v", got, clusterB)
	}

	// A restart with B's Plan still current wipes nothing.
	if err := os.MkdirAll(filepath.Dir(data), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, []byte("cluster B's data"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.stop()
	e.startInProcess()
	time.Sleep(2 * time.Second) // a wipe would happen at once: the first poll answers
	if _, err := os.Stat(data); err != nil {
		t.Fatalf("a restart wiped the state of the current Cluster: %v", err)
	}

	// The empty Plan: everything goes, and the host belongs to no Cluster any more.
	e.waitApplied(e.m.setPlan(plan.Empty("host-1")))
	if got := record(); got != nil {
		t.Fatalf("cluster record %v after the empty Plan, want none", got)
	}
}

// TestCorruptClusterRecordRefusesThePlan: when the agent cannot tell whose state the host holds, it
// applies no Cluster's Plan and says how to get out.
func TestCorruptClusterRecordRefusesThePlan(t *testing.T) {
	e := newE2E(t)
	if err := os.MkdirAll(e.opts.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.opts.StateDir, ClusterFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &plan.Plan{Host: "host-1", Cluster: &plan.ClusterRef{Namespace: "a", Name: "b", UID: "c"},
		Files: []plan.File{{Path: "/etc/x", Mode: 0o644, Content: []byte("x")}}}
	e.m.setPlan(p)
	e.startInProcess()
	st := e.waitStatus("refusal", func(s protocol.Status) bool { _, ok := hasStep(s, "cluster"); return ok })
	if s, _ := hasStep(st, "cluster"); s.OK || !strings.Contains(s.Error, "is corrupt") || !strings.Contains(s.Error, "reprovision") {
		t.Errorf("%+v", s)
	}
	if _, err := os.Stat(filepath.Join(e.opts.Root, "/etc/x")); err == nil {
		t.Error("a Plan was applied over state of an unknown Cluster")
	}
}
