package etcdcluster_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/basalt-dev/basalt/bootstrap/components"
	"github.com/basalt-dev/basalt/bootstrap/pki"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
	"github.com/basalt-dev/basalt/test/ports"
)

// etcdArtifacts is the Kubernetes version whose artifact set provides etcd; override with
// BASALT_ETCD_ARTIFACTS (e.g. v1.36.3 for etcd 3.6).
const etcdArtifacts = "v1.37.2"

// quorumBound is the longest the quorum watcher may go without a successful linearizable write
// and read through the voters that remain.
const quorumBound = 2 * time.Second

// etcdBinary returns the etcd of the artifact set, or fails with the command that builds it.
func etcdBinary(t *testing.T) (bin, version string) {
	t.Helper()
	version = cmpOr(os.Getenv("BASALT_ETCD_ARTIFACTS"), etcdArtifacts)
	cache := os.Getenv("BASALT_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatalf("BASALT_CACHE is unset and there is no home directory: %v", err)
		}
		cache = filepath.Join(home, ".cache", "basalt")
	}
	bin = filepath.Join(cache, "artifacts", version, "bin", "etcd")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("etcd is missing at %s (%v): build it with `hack/build-artifacts.sh --only etcd %s`, then rerun", bin, err, version)
	}
	return bin, version
}

// host is one simulated control-plane machine at 127.0.0.1 with its own ports and root.
type host struct {
	name  string
	ports components.Ports
	root  string
	cert  struct{ server, peer *pki.KeyPair }
	cmd   *exec.Cmd
	done  chan struct{}
	log   string
	// args is the argv of the last start.
	args []string
	// extraArgs are appended to the argv components.Etcd renders.
	extraArgs []string
	// epoch is the restore the host's member belongs to (components.EtcdParams.Epoch).
	epoch string
}

func (h *host) desired() etcdcluster.DesiredMember {
	return etcdcluster.DesiredMember{Name: h.name, PeerURL: h.peerURL(), Ready: true}
}
func (h *host) peerURL() string   { return components.EtcdPeerURL("127.0.0.1", h.ports.EtcdPeer) }
func (h *host) clientURL() string { return components.EtcdClientURL("127.0.0.1", h.ports.EtcdClient) }

func (h *host) running() bool {
	if h.cmd == nil {
		return false
	}
	select {
	case <-h.done:
		return false
	default:
		return true
	}
}

// testbed issues the etcd PKI with bootstrap/pki and runs members the way the node agent will:
// the argv rendered by components.Etcd, the certificates at the Paths the argv names.
type testbed struct {
	t       *testing.T
	bin     string
	version string
	ca      *pki.KeyPair
	client  *pki.KeyPair
	hosts   map[string]*host
}

func newTestbed(t *testing.T, names ...string) *testbed {
	t.Helper()
	bin, version := etcdBinary(t)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v: %s", bin, err, out)
	}
	t.Logf("Using %s (%s)", bin, strings.Fields(string(out))[2])
	now := time.Now()
	ca, _, err := pki.EnsureCA(nil, pki.EtcdCARequest(), now)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(req pki.CertRequest, err error) *pki.KeyPair {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		kp, _, err := pki.EnsureCertificate(nil, ca, req, now)
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	tb := &testbed{t: t, bin: bin, version: version, ca: ca, client: issue(pki.EtcdHealthcheckClientCert(), nil), hosts: map[string]*host{}}
	ports := ports.FreeLoopback(t, 3*len(names))
	for i, n := range names {
		h := &host{name: n, root: t.TempDir(),
			ports: components.Ports{EtcdClient: ports[3*i], EtcdPeer: ports[3*i+1], EtcdMetrics: ports[3*i+2]}}
		h.cert.server = issue(pki.EtcdServerCert(n, net.IPv4(127, 0, 0, 1)))
		h.cert.peer = issue(pki.EtcdPeerCert(n, net.IPv4(127, 0, 0, 1)))
		tb.hosts[n] = h
	}
	t.Cleanup(func() {
		for _, n := range names {
			h := tb.hosts[n]
			if h.running() {
				_ = h.cmd.Process.Kill()
				<-h.done
			}
			if t.Failed() && h.log != "" {
				b, _ := os.ReadFile(h.log)
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Logf("Last lines of %s:\n%s", h.log, strings.Join(lines[max(0, len(lines)-15):], "\n"))
			}
		}
	})
	return tb
}

// start writes the host's certificates and starts etcd with the argv components.Etcd renders
// for it: members and join as a Plan would carry them.
func (tb *testbed) start(h *host, members []components.EtcdMember, join bool) {
	t := tb.t
	t.Helper()
	paths := components.Paths{}.UnderRoot(h.root)
	paths.BinDir = filepath.Dir(tb.bin)
	comp, err := components.Etcd(components.ClusterParams{
		ClusterName: "etcd-it", Version: tb.version,
		PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12", Endpoint: "127.0.0.1:6443",
		Node:  components.NodeParams{Name: h.name, IP: "127.0.0.1", PodCIDR: "10.244.0.0/24"},
		Etcd:  components.EtcdParams{Members: members, Join: join, Epoch: h.epoch},
		Ports: h.ports, Paths: paths,
	})
	if err != nil {
		t.Fatalf("Render etcd for %s: %v", h.name, err)
	}
	for _, f := range []struct {
		path string
		data []byte
	}{
		{paths.EtcdCACert(), tb.ca.Cert},
		{paths.EtcdServer().Cert, h.cert.server.Cert}, {paths.EtcdServer().Key, h.cert.server.Key},
		{paths.EtcdPeer().Cert, h.cert.peer.Cert}, {paths.EtcdPeer().Key, h.cert.peer.Key},
	} {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tb.exec(h, append(comp.Args, h.extraArgs...))
}

// exec runs argv as the host's etcd, appending its output to the host's log.
func (tb *testbed) exec(h *host, argv []string) {
	t := tb.t
	t.Helper()
	h.log = filepath.Join(h.root, "etcd.log")
	logFile, err := os.OpenFile(h.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	h.args = argv
	h.cmd = exec.Command(argv[0], argv[1:]...)
	h.cmd.Stdout, h.cmd.Stderr = logFile, logFile
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("Start etcd for %s: %v", h.name, err)
	}
	h.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(done)
	}(h.cmd, h.done)
	var flags []string
	for _, a := range argv {
		if strings.HasPrefix(a, "--initial-cluster") {
			flags = append(flags, a)
		}
	}
	t.Logf("Started %s (pid %d): %s", h.name, h.cmd.Process.Pid, strings.Join(flags, " "))
}

// stop stops a host's etcd (SIGTERM, then SIGKILL after 10s) and reports whether it had already
// exited by itself.
func (tb *testbed) stop(h *host, sig syscall.Signal) (exitedAlone bool) {
	select {
	case <-h.done:
		return true
	default:
	}
	_ = h.cmd.Process.Signal(sig)
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.done
	}
	return false
}

func (tb *testbed) tls() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(tb.ca.Cert)
	pair, err := tls.X509KeyPair(tb.client.Cert, tb.client.Key)
	if err != nil {
		tb.t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

// quorumWatcher writes and reads back (linearizably) one key every 50ms through the endpoints
// of the voters that remain, and records the longest time without a successful round.
type quorumWatcher struct {
	cli    *clientv3.Client
	stopc  chan struct{}
	donec  chan struct{}
	mu     sync.Mutex
	lastOK time.Time
	maxGap time.Duration
	rounds int
	errs   int
	broken []string
}

func watchQuorum(t *testing.T, tlsCfg *tls.Config, endpoints ...string) *quorumWatcher {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: tlsCfg, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	w := &quorumWatcher{cli: cli, stopc: make(chan struct{}), donec: make(chan struct{}), lastOK: time.Now()}
	go w.run(t)
	return w
}

func (w *quorumWatcher) setEndpoints(t *testing.T, eps ...string) {
	t.Logf("Quorum watcher now uses %v", eps)
	w.cli.SetEndpoints(eps...)
}

func (w *quorumWatcher) run(t *testing.T) {
	defer close(w.donec)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-w.stopc:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		val := strconv.Itoa(i)
		_, err := w.cli.Put(ctx, "/basalt-it/quorum", val)
		if err == nil {
			var resp *clientv3.GetResponse
			resp, err = w.cli.Get(ctx, "/basalt-it/quorum") // linearizable: needs the leader and a quorum
			if err == nil && (len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != val) {
				err = fmt.Errorf("read %v after writing %s", resp.Kvs, val)
			}
		}
		cancel()
		now := time.Now()
		w.mu.Lock()
		if err == nil {
			w.maxGap = max(w.maxGap, now.Sub(w.lastOK))
			w.lastOK = now
			w.rounds++
		} else {
			w.errs++
			if gap := now.Sub(w.lastOK); gap > quorumBound {
				w.broken = append(w.broken, fmt.Sprintf("%s: no successful round for %s: %v", now.Format(time.TimeOnly), gap.Round(time.Millisecond), err))
			}
		}
		w.mu.Unlock()
	}
}

// stop stops the watcher and fails the test if quorum was ever unavailable longer than the bound.
func (w *quorumWatcher) stop(t *testing.T) {
	t.Helper()
	close(w.stopc)
	<-w.donec
	_ = w.cli.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("MEASURE quorum watcher: %d successful write+linearizable-read rounds, %d failed attempts, longest gap %s (bound %s)",
		w.rounds, w.errs, w.maxGap.Round(time.Millisecond), quorumBound)
	if len(w.broken) > 0 {
		t.Errorf("Quorum was unavailable for longer than %s:\n%s", quorumBound, strings.Join(w.broken, "\n"))
	}
	if w.maxGap > quorumBound {
		t.Errorf("Longest gap between successful rounds %s exceeds %s", w.maxGap, quorumBound)
	}
}

// reconcileUntil calls Reconcile until stop says so, sleeping between calls, and fails on any
// error other than the transient ones. It returns the last action.
func reconcileUntil(ctx context.Context, t *testing.T, c etcdcluster.Client, desired func() []etcdcluster.DesiredMember,
	stop func(a etcdcluster.Action) bool) etcdcluster.Action {
	t.Helper()
	for {
		if ctx.Err() != nil {
			t.Fatalf("Timed out: %v", ctx.Err())
		}
		a, err := etcdcluster.Reconcile(ctx, c, desired())
		switch {
		case errors.Is(err, etcdcluster.ErrLearnerNotReady), errors.Is(err, etcdcluster.ErrUnhealthy):
			// etcd refuses a reconfiguration until every voter has been connected for its
			// HealthInterval (5s), e.g. right after a promotion or a restart.
			t.Logf("Transient, retrying in a second: %s: %v", a, err)
			time.Sleep(time.Second)
		case err != nil:
			t.Fatalf("Reconcile: %s: %v", a, err)
		default:
			learners := 0
			for _, m := range a.Members {
				if m.IsLearner {
					learners++
				}
			}
			if learners > 1 {
				t.Fatalf("%s: %d learners in %+v", a, learners, a.Members)
			}
			if stop(a) {
				return a
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func memberNames(ms []etcdcluster.Member) []string {
	var out []string
	for _, m := range ms {
		s := cmpOr(m.Name, "unstarted "+etcdcluster.HexID(m.ID))
		if m.IsLearner {
			s += " (learner)"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// TestEtcdMembershipIntegration runs real etcd members on 127.0.0.1 with TLS and drives them
// with Reconcile: scale 1→3 (with a simulated crash after the second AddLearner), a killed
// member that blocks the removal of a healthy one, scale 3→1 (removing the leader last, after a
// leadership transfer), and the clean-up of learners whose machines never joined. A watcher
// checks all along that a linearizable write and read keep succeeding through the voters that
// remain.
func TestEtcdMembershipIntegration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ctx = logr.NewContext(ctx, funcr.New(func(prefix, args string) { t.Log(prefix, args) }, funcr.Options{}))
	tb := newTestbed(t, "m1", "m2", "m3", "ghost")
	m1, m2, m3, ghost := tb.hosts["m1"], tb.hosts["m2"], tb.hosts["m3"], tb.hosts["ghost"]

	// m1 initialises the cluster alone.
	begin := time.Now()
	tb.start(m1, []components.EtcdMember{{Name: "m1", PeerURL: m1.peerURL()}}, false)
	c, err := etcdcluster.NewClient(etcdcluster.Config{Endpoints: []string{m1.clientURL()}, CA: tb.ca.Cert, Cert: tb.client.Cert, Key: tb.client.Key})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	one := func() []etcdcluster.DesiredMember { return []etcdcluster.DesiredMember{m1.desired()} }
	reconcileUntil(ctx, t, c, one, func(a etcdcluster.Action) bool {
		if a.Kind != etcdcluster.None && a.Kind != etcdcluster.Wait {
			t.Fatalf("Bootstrap: %s", a)
		}
		return a.Kind == etcdcluster.None
	})
	t.Logf("MEASURE bootstrap: m1 started and healthy in %s", time.Since(begin).Round(time.Millisecond))
	// The ID a restore predicts for a member started with a token is the one etcd gives it.
	if ms, err := c.Members(ctx); err != nil || len(ms) != 1 || ms[0].ID != etcdcluster.MemberIDOf([]string{m1.peerURL()}, "etcd-it") {
		t.Errorf("members %+v (%v): want the one member with ID %x", ms, err, etcdcluster.MemberIDOf([]string{m1.peerURL()}, "etcd-it"))
	}
	watcher := watchQuorum(t, tb.tls(), m1.clientURL())
	watching := true
	defer func() {
		if watching {
			watcher.stop(t)
		}
	}()

	// Scale up 1 → 3. After the AddLearner for m3 the test plays a controller that crashed
	// before recording the answer: m3 is started only from a later Reconcile's member list.
	three := func() []etcdcluster.DesiredMember {
		return []etcdcluster.DesiredMember{m1.desired(), m2.desired(), m3.desired()}
	}
	var changes []string
	var m3FromAdd []components.EtcdMember
	waitsForM3 := 0
	begin = time.Now()
	reconcileUntil(ctx, t, c, three, func(a etcdcluster.Action) bool {
		h := tb.hosts[a.Machine]
		if a.Changes() {
			changes = append(changes, fmt.Sprintf("%s %s", a.Kind, a.Machine))
			t.Logf("%s; members now %v", a, memberNames(a.Members))
		}
		switch {
		case a.Kind == etcdcluster.AddLearner && h == m3:
			var err error
			if m3FromAdd, err = etcdcluster.InitialCluster(a.Members, h.desired()); err != nil {
				t.Fatal(err)
			}
			t.Log("Simulating a controller crash: the AddLearner answer for m3 is dropped")
		case a.Kind == etcdcluster.AddLearner:
			initial, err := etcdcluster.InitialCluster(a.Members, h.desired())
			if err != nil {
				t.Fatal(err)
			}
			tb.start(h, initial, true)
		case a.Kind == etcdcluster.Wait && a.Reason == etcdcluster.ReasonWaitingForJoin && !h.running():
			waitsForM3++
			initial, err := etcdcluster.InitialCluster(a.Members, h.desired())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(m3FromAdd, initial); diff != "" {
				t.Errorf("Member list after the crash differs from AddLearner's (-add +later):\n%s", diff)
			}
			tb.start(h, initial, true)
		case a.Kind == etcdcluster.Promote:
			var eps []string
			for _, m := range a.Members {
				if !m.IsLearner {
					eps = append(eps, m.ClientURLs...)
				}
			}
			watcher.setEndpoints(t, eps...)
		case a.Kind == etcdcluster.Wait:
			t.Logf("%s: %s", a, a.Message)
		case a.Kind == etcdcluster.Remove:
			t.Fatalf("Scale-up removed a member: %s", a)
		}
		return a.Kind == etcdcluster.None
	})
	t.Logf("MEASURE scale-up 1→3: %s", time.Since(begin).Round(time.Millisecond))
	if want := []string{"AddLearner m2", "Promote m2", "AddLearner m3", "Promote m3"}; !slices.Equal(changes, want) {
		t.Errorf("Scale-up changes %v, want %v", changes, want)
	}
	if waitsForM3 != 1 {
		t.Errorf("m3 was started from %d WaitingForJoin answers, want 1", waitsForM3)
	}
	ms, err := c.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := memberNames(ms), []string{"m1", "m2", "m3"}; !slices.Equal(got, want) {
		t.Fatalf("Members after scale-up %v, want %v", got, want)
	}
	id := map[string]uint64{}
	for _, m := range ms {
		id[m.Name] = m.ID
	}

	// Kill m3 (a follower: the leader is moved to m1 first so the watcher measures membership
	// changes, not an election). With m3 dead, removing healthy m2 would leave one healthy voter
	// of two: refused while the dead member remains.
	if err := c.MoveLeader(ctx, id["m1"]); err != nil {
		t.Fatal(err)
	}
	watcher.setEndpoints(t, m1.clientURL(), m2.clientURL())
	tb.stop(m3, syscall.SIGKILL)
	t.Log("Killed m3")
	withoutM2 := func() []etcdcluster.DesiredMember { return []etcdcluster.DesiredMember{m1.desired(), m3.desired()} }
	a := reconcileUntil(ctx, t, c, withoutM2, func(a etcdcluster.Action) bool {
		if a.Changes() {
			t.Fatalf("With m3 dead, Reconcile changed the membership: %s (%s)", a, a.Message)
		}
		return a.Reason == etcdcluster.ReasonQuorumAtRisk
	})
	t.Logf("Refused as expected: %s: %s", a, a.Message)
	if !strings.Contains(a.Message, "removing m2") {
		t.Errorf("Message %q does not name m2", a.Message)
	}
	a, err = etcdcluster.Reconcile(ctx, c, three())
	if err != nil || a.Kind != etcdcluster.Wait || a.Reason != etcdcluster.ReasonMemberUnhealthy {
		t.Errorf("With m3 dead and every machine desired: %s (%v), want Wait MemberUnhealthy", a, err)
	}
	if ms, err := c.Members(ctx); err != nil || len(ms) != 3 {
		t.Fatalf("Members after the refusals: %v, %v; want all three", memberNames(ms), err)
	}
	// m3 comes back with the same argv (etcd ignores the initial-* flags on a data directory).
	tb.exec(m3, m3.args)
	reconcileUntil(ctx, t, c, three, func(a etcdcluster.Action) bool {
		if a.Changes() {
			t.Fatalf("While m3 restarts: %s", a)
		}
		return a.Kind == etcdcluster.None
	})
	t.Log("m3 is back and healthy")

	// Scale down 3 → 1. m2 leads, so m3 (a follower) goes first and m2 last, after Reconcile
	// hands leadership to m1. Each process is stopped after its removal.
	if err := c.MoveLeader(ctx, id["m2"]); err != nil {
		t.Fatal(err)
	}
	watcher.setEndpoints(t, m1.clientURL())
	changes = nil
	begin = time.Now()
	reconcileUntil(ctx, t, c, one, func(a etcdcluster.Action) bool {
		switch a.Kind {
		case etcdcluster.Remove:
			changes = append(changes, fmt.Sprintf("%s %s", a.Kind, a.Machine))
			alone := tb.stop(tb.hosts[a.Machine], syscall.SIGTERM)
			t.Logf("%s; members now %v; its etcd had exited by itself: %v", a, memberNames(a.Members), alone)
		case etcdcluster.AddLearner, etcdcluster.Promote:
			t.Fatalf("Scale-down: %s", a)
		case etcdcluster.Wait:
			t.Logf("%s: %s", a, a.Message)
		}
		return a.Kind == etcdcluster.None
	})
	t.Logf("MEASURE scale-down 3→1: %s", time.Since(begin).Round(time.Millisecond))
	if want := []string{"Remove m3", "Remove m2"}; !slices.Equal(changes, want) {
		t.Errorf("Scale-down changes %v, want %v", changes, want)
	}

	// A learner whose machine vanished before starting, and one that never started within the
	// join timeout, are removed.
	withGhost := func() []etcdcluster.DesiredMember { return []etcdcluster.DesiredMember{m1.desired(), ghost.desired()} }
	a, err = etcdcluster.Reconcile(ctx, c, withGhost())
	if err != nil || a.Kind != etcdcluster.AddLearner || a.Machine != "ghost" {
		t.Fatalf("Add ghost: %s, %v", a, err)
	}
	a, err = etcdcluster.Reconcile(ctx, c, one())
	if err != nil || a.Kind != etcdcluster.Remove || a.Reason != etcdcluster.ReasonMachineGone {
		t.Fatalf("Ghost's machine gone: %s (%s), %v; want Remove MachineGone", a, a.Message, err)
	}
	a, err = etcdcluster.Reconcile(ctx, c, withGhost())
	if err != nil || a.Kind != etcdcluster.AddLearner {
		t.Fatalf("Add ghost again: %s, %v", a, err)
	}
	late := withGhost()
	late[1].JoiningSince = time.Now().Add(-time.Hour)
	a, err = etcdcluster.Reconcile(ctx, c, late)
	if err != nil || a.Kind != etcdcluster.Remove || a.Reason != etcdcluster.ReasonJoinTimeout {
		t.Fatalf("Ghost never started: %s (%s), %v; want Remove JoinTimeout", a, a.Message, err)
	}
	a, err = etcdcluster.Reconcile(ctx, c, one())
	if err != nil || a.Kind != etcdcluster.None {
		t.Fatalf("Final: %s (%s), %v; want None", a, a.Message, err)
	}
	if ms, err := c.Members(ctx); err != nil || !slices.Equal(memberNames(ms), []string{"m1"}) {
		t.Fatalf("Final members %v, %v; want m1", memberNames(ms), err)
	}
	watching = false
	watcher.stop(t)
}
