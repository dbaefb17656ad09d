package apply

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// basePlan is a small control-plane Plan: etcd, and kube-apiserver after it reading a config.
func basePlan(e *env) *plan.Plan {
	etcdBin := []byte("etcd binary v3.6")
	apiBin := []byte("kube-apiserver binary v1.37.2")
	return &plan.Plan{
		Host: "cp-1",
		Files: []plan.File{
			{Path: "/etc/basalt/kube-apiserver/config.yaml", Mode: 0o644, Content: []byte("kind: Config\n")},
			{Path: "/etc/basalt/pki/apiserver.key", Mode: 0o600, Content: []byte("KEY")},
		},
		Artifacts: []plan.Artifact{
			{Name: "etcd", SHA256: e.fetcher.add(etcdBin), Size: int64(len(etcdBin)), Path: "/opt/basalt/bin/etcd", Mode: 0o755},
			{Name: "kube-apiserver", SHA256: e.fetcher.add(apiBin), Size: int64(len(apiBin)), Path: "/opt/basalt/bin/kube-apiserver", Mode: 0o755},
		},
		Services: []plan.Service{
			{Name: "etcd", Argv: []string{"/opt/basalt/bin/etcd", "--name=cp-1"}, Reads: []string{"/opt/basalt/bin/etcd"},
				Probe: &plan.Probe{HTTP: &plan.HTTPProbe{URL: "http://127.0.0.1:2381/health"}}},
			{Name: "kube-apiserver", Argv: []string{"/opt/basalt/bin/kube-apiserver", "--config=/etc/basalt/kube-apiserver/config.yaml"},
				After: []string{"etcd"}, Reads: []string{"/opt/basalt/bin/kube-apiserver", "/etc/basalt/kube-apiserver/config.yaml", "/etc/basalt/pki/apiserver.key"}},
		},
	}
}

func inodeOf(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestApplyIsIdempotent(t *testing.T) {
	e := newEnv(t)
	p := basePlan(e)
	steps := e.mustApply(t, p)
	if len(steps) != 6 {
		t.Errorf("steps: %+v", steps)
	}
	for _, s := range steps {
		if !s.OK {
			t.Errorf("step %+v", s)
		}
	}
	if got := e.read(t, "/opt/basalt/bin/etcd"); got != "etcd binary v3.6" {
		t.Errorf("etcd: %q", got)
	}
	key := filepath.Join(e.root, "/etc/basalt/pki/apiserver.key")
	if fi, _ := os.Stat(key); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", fi.Mode())
	}
	if fi, _ := os.Stat(filepath.Join(e.root, "/opt/basalt/bin/etcd")); fi.Mode().Perm() != 0o755 {
		t.Errorf("binary mode %v", fi.Mode())
	}
	if d := cmp.Diff([]string{"start etcd", "start kube-apiserver"}, e.rt.takeLog()); d != "" {
		t.Errorf("starts (-want +got):\n%s", d)
	}

	// Again: nothing rewritten, downloaded or restarted. A mode changed behind the agent's back
	// is corrected in place.
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	before := map[string]uint64{}
	for _, f := range []string{"/etc/basalt/pki/apiserver.key", "/etc/basalt/kube-apiserver/config.yaml", "/opt/basalt/bin/etcd"} {
		before[f] = inodeOf(t, filepath.Join(e.root, f))
	}
	e.mustApply(t, p)
	for f, ino := range before {
		if inodeOf(t, filepath.Join(e.root, f)) != ino {
			t.Errorf("%s was rewritten", f)
		}
	}
	if fi, _ := os.Stat(key); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode not corrected: %v", fi.Mode())
	}
	for s, n := range e.fetcher.fetches {
		if n != 1 {
			t.Errorf("artifact %s fetched %d times", s[:8], n)
		}
	}
	if l := e.rt.takeLog(); len(l) != 0 {
		t.Errorf("restarted: %v", l)
	}
	if tmp := tempFiles(t, e.root); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

func TestChangeRestartsOnlyWhatReadsIt(t *testing.T) {
	e := newEnv(t)
	p := basePlan(e)
	e.mustApply(t, p)
	e.rt.takeLog()

	// A config file only kube-apiserver reads.
	p.Files[0].Content = []byte("kind: Config\nfeature: on\n")
	p.Files[0].SHA256 = ""
	e.mustApply(t, p)
	if d := cmp.Diff([]string{"start kube-apiserver"}, e.rt.takeLog()); d != "" {
		t.Errorf("after a config change (-want +got):\n%s", d)
	}
	// A flag of etcd: only etcd, kube-apiserver's definition did not change.
	p.Services[0].Argv = append(p.Services[0].Argv, "--snapshot-count=10000")
	e.mustApply(t, p)
	if d := cmp.Diff([]string{"start etcd"}, e.rt.takeLog()); d != "" {
		t.Errorf("after an etcd flag change (-want +got):\n%s", d)
	}
	// A file no service reads: nothing restarts.
	p.Files = append(p.Files, plan.File{Path: "/etc/motd", Mode: 0o644, Content: []byte("hi")})
	e.mustApply(t, p)
	if l := e.rt.takeLog(); len(l) != 0 {
		t.Errorf("restarted: %v", l)
	}
}

// TestBeforeDisruptIsCalled: the agent hears of a running service's restart or stop before it
// happens (its virtual IP moves away first), and not of a first start.
func TestBeforeDisruptIsCalled(t *testing.T) {
	e := newEnv(t)
	var told []string
	e.a.BeforeDisrupt = func(_ context.Context, name string) {
		told = append(told, name+" ("+strings.Join(e.rt.takeLog(), ",")+")")
	}
	p := basePlan(e)
	e.mustApply(t, p)
	if len(told) != 0 {
		t.Fatalf("told of %v on the first start", told)
	}
	e.rt.takeLog()
	p.Services[0].Argv = append(p.Services[0].Argv, "--snapshot-count=10000")
	e.mustApply(t, p)
	// Told before the restart: nothing had happened to the service yet.
	if d := cmp.Diff([]string{"etcd ()"}, told); d != "" {
		t.Errorf("after an etcd flag change (-want +got):\n%s", d)
	}
	told = nil
	e.rt.takeLog()
	p.Services = p.Services[:1] // kube-apiserver leaves the Plan
	e.mustApply(t, p)
	if d := cmp.Diff([]string{"kube-apiserver ()"}, told); d != "" {
		t.Errorf("after kube-apiserver left the Plan (-want +got):\n%s", d)
	}
}

// TestAfterStartIsCalled: the agent hears of every (re)start once it happened (its health
// monitor forgets the old process), and of nothing that did not restart.
func TestAfterStartIsCalled(t *testing.T) {
	e := newEnv(t)
	var told []string
	e.a.AfterStart = func(_ context.Context, name string) {
		told = append(told, name+" ("+strings.Join(e.rt.takeLog(), ",")+")")
	}
	p := basePlan(e)
	e.mustApply(t, p)
	if len(told) != len(p.Services) {
		t.Fatalf("after the first start told %v, want each of the %d services once", told, len(p.Services))
	}
	told = nil
	e.mustApply(t, p)
	if len(told) != 0 {
		t.Fatalf("told of %v although nothing changed", told)
	}
	e.rt.takeLog()
	p.Services[0].Argv = append(p.Services[0].Argv, "--snapshot-count=10000")
	e.mustApply(t, p)
	if len(told) != 1 || !strings.HasPrefix(told[0], "etcd (") || told[0] == "etcd ()" {
		t.Errorf("after an etcd flag change told %v, want etcd once, after the runtime restarted it", told)
	}
}

func TestArtifactChecksumMismatchIsRefused(t *testing.T) {
	e := newEnv(t)
	p := basePlan(e)
	want := p.Artifacts[1].SHA256
	e.fetcher.blobs[want] = []byte("kube-apiserver binary v1.37.2 (tampered)")
	p.Artifacts[1].Size = 0
	steps, err := e.apply(t, p)
	if err == nil {
		t.Fatal("apply succeeded with a tampered artifact")
	}
	s, _ := stepErr(steps, "artifact:kube-apiserver")
	got := sum([]byte("kube-apiserver binary v1.37.2 (tampered)"))
	if s.OK || !strings.Contains(s.Error, "expected "+want) || !strings.Contains(s.Error, "got "+got) {
		t.Errorf("artifact step: %+v", s)
	}
	if e.exists("/opt/basalt/bin/kube-apiserver") {
		t.Error("the tampered artifact was put in place")
	}
	if tmp := tempFiles(t, e.root); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
	s, _ = stepErr(steps, "service:kube-apiserver")
	if s.OK || !strings.Contains(s.Error, "/opt/basalt/bin/kube-apiserver was not written") {
		t.Errorf("the service reading the artifact: %+v", s)
	}
	if s, _ := stepErr(steps, "service:etcd"); !s.OK {
		t.Errorf("etcd does not depend on it: %+v", s)
	}
	// The cache is repaired: the next apply converges.
	e.fetcher.blobs[want] = []byte("kube-apiserver binary v1.37.2")
	e.mustApply(t, p)
}

func TestDependencyMustBeHealthy(t *testing.T) {
	e := newEnv(t)
	p := basePlan(e)
	e.health.unready["etcd"] = true
	steps, err := e.apply(t, p)
	if err == nil {
		t.Fatal("apply succeeded with etcd unhealthy")
	}
	s, _ := stepErr(steps, "service:kube-apiserver")
	if s.OK || !strings.Contains(s.Error, "dependency etcd: not healthy after 300ms") {
		t.Errorf("kube-apiserver: %+v", s)
	}
	if d := cmp.Diff([]string{"start etcd"}, e.rt.takeLog()); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	// etcd becomes healthy while the agent waits.
	go func() {
		time.Sleep(100 * time.Millisecond)
		e.health.mu.Lock()
		e.health.unready["etcd"] = false
		e.health.mu.Unlock()
	}()
	e.mustApply(t, p)
	if d := cmp.Diff([]string{"start kube-apiserver"}, e.rt.takeLog()); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestFailedServiceBlocksDependents(t *testing.T) {
	e := newEnv(t)
	e.rt.failing["etcd"] = true
	steps, err := e.apply(t, basePlan(e))
	if err == nil {
		t.Fatal("no error")
	}
	if s, _ := stepErr(steps, "service:kube-apiserver"); s.OK || !strings.Contains(s.Error, "dependency etcd failed") {
		t.Errorf("kube-apiserver: %+v", s)
	}
}

func TestRemovedServicesAreStoppedDependentsFirst(t *testing.T) {
	e := newEnv(t)
	p := basePlan(e)
	p.Services = append(p.Services, plan.Service{Name: "kube-scheduler", Argv: []string{"/opt/basalt/bin/kube-apiserver"}, After: []string{"kube-apiserver"}})
	e.mustApply(t, p)
	e.rt.takeLog()
	p.Services = p.Services[:1]
	e.mustApply(t, p)
	if d := cmp.Diff([]string{"stop kube-scheduler", "stop kube-apiserver"}, e.rt.takeLog()); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestStaleFilesAndRoutesAreRemoved(t *testing.T) {
	e := newEnv(t)
	p := basePlan(e)
	p.Routes = []plan.Route{{Destination: "10.244.1.0/24", Gateway: "172.28.0.12"}, {Destination: "10.244.2.0/24", Gateway: "172.28.0.13"}}
	e.mustApply(t, p)
	if d := cmp.Diff([]string{"ip -4 route replace 10.244.1.0/24 via 172.28.0.12", "ip -4 route replace 10.244.2.0/24 via 172.28.0.13"}, e.run.take()); d != "" {
		t.Errorf("routes (-want +got):\n%s", d)
	}
	// The next Plan drops a route, the scheduler config and a service.
	p.Routes = p.Routes[:1]
	p.Services = p.Services[:1]
	p.Files = p.Files[:0]
	p.Artifacts = p.Artifacts[:1]
	steps := e.mustApply(t, p)
	if d := cmp.Diff([]string{"ip -4 route replace 10.244.1.0/24 via 172.28.0.12", "ip -4 route del 10.244.2.0/24 via 172.28.0.13"}, e.run.take()); d != "" {
		t.Errorf("routes (-want +got):\n%s", d)
	}
	for _, gone := range []string{"/etc/basalt/kube-apiserver/config.yaml", "/etc/basalt/pki/apiserver.key", "/opt/basalt/bin/kube-apiserver"} {
		if e.exists(gone) {
			t.Errorf("%s not removed", gone)
		}
		if s, ok := stepErr(steps, "remove:"+gone); !ok || !s.OK {
			t.Errorf("no removal step for %s: %+v", gone, steps)
		}
	}
	if !e.exists("/opt/basalt/bin/etcd") {
		t.Error("etcd removed")
	}
}

// TestLinksGoWithTheirService: the CNI bridge containerd's pods hang off is deleted once
// containerd leaves the Plan (a wipe), and only then; a bridge that is already gone is no error.
func TestLinksGoWithTheirService(t *testing.T) {
	e := newEnv(t)
	p := basePlan(e)
	p.Services[0].Links = []string{"cni0"}
	e.mustApply(t, p)
	e.mustApply(t, p)
	if got := e.run.take(); len(got) != 0 {
		t.Errorf("a link deleted while its service stays: %q", got)
	}
	steps := e.mustApply(t, &plan.Plan{Host: p.Host})
	if d := cmp.Diff([]string{"ip link delete cni0"}, e.run.take()); d != "" {
		t.Errorf("commands (-want +got):\n%s", d)
	}
	if s, ok := stepErr(steps, "link:cni0 (removed)"); !ok || !s.OK {
		t.Errorf("no link removal step: %+v", steps)
	}
	// Applied again: nothing left to delete.
	e.mustApply(t, &plan.Plan{Host: p.Host})
	if got := e.run.take(); len(got) != 0 {
		t.Errorf("the link is deleted again: %q", got)
	}
}

// TestInterruptedApplyConverges cancels an apply in the middle of a download, then applies a
// newer Plan that no longer has that artifact: the half-written download leaves nothing behind,
// and what the interrupted Plan did write is removed because it was recorded first.
func TestInterruptedApplyConverges(t *testing.T) {
	e := newEnv(t)
	p := basePlan(e)
	big := []byte(strings.Repeat("kubelet ", 1<<16))
	p.Artifacts = append(p.Artifacts, plan.Artifact{Name: "kubelet", SHA256: e.fetcher.add(big), Path: "/opt/basalt/bin/kubelet", Mode: 0o755})
	e.fetcher.block = sum(big)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for !e.exists("/opt/basalt/bin/kube-apiserver") {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
		cancel()
	}()
	steps, err := e.a.Apply(ctx, p)
	if err == nil {
		t.Fatalf("interrupted apply returned no error: %+v", steps)
	}
	if e.exists("/opt/basalt/bin/kubelet") {
		t.Error("a half download was put in place")
	}
	if l := e.rt.takeLog(); len(l) != 0 {
		t.Errorf("services started by an interrupted apply before their inputs: %v", l)
	}

	// Re-run the same Plan: converges, and artifacts already in place are not fetched again.
	e.fetcher.block = ""
	e.mustApply(t, p)
	if got := e.read(t, "/opt/basalt/bin/kubelet"); got != string(big) {
		t.Error("kubelet content")
	}
	if n := e.fetcher.fetches[p.Artifacts[0].SHA256]; n != 1 {
		t.Errorf("etcd fetched %d times", n)
	}
	if tmp := tempFiles(t, e.root); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

func TestInterruptedPlanIsCleanedUpByTheNext(t *testing.T) {
	e := newEnv(t)
	p := basePlan(e)
	e.mustApply(t, p)
	// Plan B adds a file and a route; its apply is cut short by a failing service.
	b := basePlan(e)
	b.Files = append(b.Files, plan.File{Path: "/etc/basalt/extra.conf", Mode: 0o644, Content: []byte("x")})
	b.Routes = []plan.Route{{Destination: "10.244.9.0/24", Gateway: "172.28.0.19"}}
	b.Services = append(b.Services, plan.Service{Name: "broken", Argv: []string{"/bin/false"}})
	e.rt.failing["broken"] = true
	if _, err := e.apply(t, b); err == nil {
		t.Fatal("no error")
	}
	e.run.take()
	// Plan C is A again: B's file and route go, although B never completed.
	e.mustApply(t, p)
	if e.exists("/etc/basalt/extra.conf") {
		t.Error("file of the interrupted Plan left behind")
	}
	if d := cmp.Diff([]string{"ip -4 route del 10.244.9.0/24 via 172.28.0.19"}, e.run.take()); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestImagesImportedOnceAfterRuntimeIsHealthy(t *testing.T) {
	e := newEnv(t)
	pause := []byte("oci layout of pause")
	ctr := []byte("ctr binary")
	p := &plan.Plan{
		Host: "w-1",
		Artifacts: []plan.Artifact{
			{Name: "ctr", SHA256: e.fetcher.add(ctr), Path: "/opt/basalt/bin/ctr", Mode: 0o755},
			{Name: "image-pause", SHA256: e.fetcher.add(pause), Path: "/var/lib/basalt/images/pause.tar", Mode: 0o644},
		},
		Services:     []plan.Service{{Name: "containerd", Argv: []string{"/opt/basalt/bin/containerd"}}},
		Images:       []string{"image-pause"},
		ImageRuntime: "containerd",
	}
	steps := e.mustApply(t, p)
	want := []string{e.root + "/opt/basalt/bin/ctr -n k8s.io images import " + e.root + "/var/lib/basalt/images/pause.tar"}
	if d := cmp.Diff(want, e.run.take()); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if s, _ := stepErr(steps, "image:image-pause"); !s.OK {
		t.Errorf("%+v", s)
	}
	e.mustApply(t, p)
	if c := e.run.take(); len(c) != 0 {
		t.Errorf("imported again: %v", c)
	}
	// No ctr anywhere: a clear failure.
	e2 := newEnv(t)
	p.Artifacts = p.Artifacts[1:]
	e2.fetcher.add(pause)
	steps, err := e2.apply(t, p)
	if s, _ := stepErr(steps, "image:image-pause"); err == nil || s.OK || !strings.Contains(s.Error, `no artifact named "ctr"`) {
		t.Errorf("%v %+v", err, s)
	}
	// With --ctr it works.
	e2.a.Ctr = "/usr/bin/ctr"
	e2.mustApply(t, p)
	if c := e2.run.take(); len(c) != 1 || !strings.HasPrefix(c[0], "/usr/bin/ctr -n k8s.io images import ") {
		t.Errorf("%v", c)
	}
}

func TestInvalidPlanIsRefused(t *testing.T) {
	e := newEnv(t)
	steps, err := e.apply(t, &plan.Plan{Host: "x", Files: []plan.File{{Path: "relative/path"}}})
	if err == nil || len(steps) != 1 || steps[0].Step != "plan" || steps[0].OK {
		t.Errorf("%v %+v", err, steps)
	}
	if e.exists("relative/path") {
		t.Error("written")
	}
}

func TestWriteFileReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a", "b", "f")
	// A temporary file a crash left behind is cleaned up.
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(p), ".f.basalt-tmp-123"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("one"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if string(b) != "two" || fi.Mode().Perm() != 0o600 {
		t.Errorf("%q %v", b, fi.Mode())
	}
	if st := fi.Sys().(*syscall.Stat_t); os.Geteuid() == 0 && (st.Uid != 0 || st.Gid != 0) {
		t.Errorf("owner %d:%d", st.Uid, st.Gid)
	}
	if tmp := tempFiles(t, dir); len(tmp) != 0 {
		t.Errorf("left: %v", tmp)
	}
}
