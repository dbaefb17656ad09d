package etcdcluster_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/basalt-dev/basalt/bootstrap/components"
	"github.com/basalt-dev/basalt/bootstrap/plan"
	"github.com/basalt-dev/basalt/bootstrap/plan/builder"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
)

// TestRestoreIntegration restores real etcd data with the artifact set's etcdutl and the
// command the Plan builder gives the agent: from a snapshot streamed the way the backup
// controller streams it, and from a stopped member's own database. The restored member holds
// what the source held and nothing written after it, has the member ID the Cluster controller
// waits for, has its revision moved past every revision a client saw (a watch from an old
// revision is told it is compacted), and another member joins it as a learner and is promoted.
func TestRestoreIntegration(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ctx = logr.NewContext(ctx, funcr.New(func(prefix, args string) { t.Log(prefix, args) }, funcr.Options{}))
	tb := newTestbed(t, "m1", "m2")
	m1, m2 := tb.hosts["m1"], tb.hosts["m2"]
	etcdutl := filepath.Join(filepath.Dir(tb.bin), "etcdutl")
	if _, err := os.Stat(etcdutl); err != nil {
		t.Fatalf("etcdutl is missing next to etcd (%v): build it with `hack/build-artifacts.sh --only etcdutl %s`", err, tb.version)
	}
	self := func(h *host) components.EtcdMember { return components.EtcdMember{Name: h.name, PeerURL: h.peerURL()} }
	raw := func(h *host) *clientv3.Client {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{h.clientURL()}, TLS: tb.tls(), DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cli.Close() })
		return cli
	}
	waitHealthy := func(h *host) {
		t.Helper()
		c, err := etcdcluster.NewClient(etcdcluster.Config{Endpoints: []string{h.clientURL()}, CA: tb.ca.Cert, Cert: tb.client.Cert, Key: tb.client.Key})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		for ctx.Err() == nil {
			if hl, err := c.Health(ctx, h.clientURL()); err == nil && hl.Healthy {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("%s never became healthy", h.name)
	}
	dataDir := func(h *host, epoch string) string {
		return components.EtcdDataDirOf(components.Paths{}.UnderRoot(h.root).EtcdDataDir, epoch)
	}
	// restore runs the Plan's init the way the agent does: into dir.init, renamed to dir.
	restore := func(h *host, src string, fromMember bool, epoch string) {
		t.Helper()
		dir := dataDir(h, epoch)
		argv := builder.EtcdRestoreArgv(etcdutl, src, fromMember, dir+plan.InitSuffix, self(h), components.EtcdClusterToken("etcd-it", epoch))
		begin := time.Now()
		if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
		if err := os.Rename(dir+plan.InitSuffix, dir); err != nil {
			t.Fatal(err)
		}
		t.Logf("MEASURE restore (%s) into %s: %s", map[bool]string{true: "member data", false: "snapshot"}[fromMember], epoch, time.Since(begin).Round(time.Millisecond))
		h.epoch = epoch
		tb.start(h, []components.EtcdMember{self(h)}, false)
		waitHealthy(h)
	}

	tb.start(m1, []components.EtcdMember{self(m1)}, false)
	waitHealthy(m1)
	cli := raw(m1)
	if _, err := cli.Put(ctx, "/before", "1"); err != nil {
		t.Fatal(err)
	}
	ec, err := etcdcluster.NewClient(etcdcluster.Config{Endpoints: []string{m1.clientURL()}, CA: tb.ca.Cert, Cert: tb.client.Cert, Key: tb.client.Key})
	if err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(t.TempDir(), "snap.db")
	info, err := ec.Snapshot(ctx, m1.clientURL(), snap)
	_ = ec.Close()
	if err != nil {
		t.Fatal(err)
	}
	after, err := cli.Put(ctx, "/after", "2")
	if err != nil {
		t.Fatal(err)
	}
	seen := after.Header.Revision

	// From the snapshot.
	tb.stop(m1, syscall.SIGTERM)
	restore(m1, snap, false, "r1")
	cli = raw(m1)
	check := func(wantAfter bool) {
		t.Helper()
		for key, want := range map[string]bool{"/before": true, "/after": wantAfter} {
			resp, err := cli.Get(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(resp.Kvs) == 1; got != want {
				t.Errorf("key %s present = %v, want %v", key, got, want)
			}
		}
	}
	check(false)
	resp, err := cli.Get(ctx, "/before")
	if err != nil {
		t.Fatal(err)
	}
	if rev := resp.Header.Revision; rev < info.Revision+builder.EtcdRevisionBump || rev <= seen {
		t.Errorf("restored revision %d, want at least the snapshot's %d + %d", rev, info.Revision, builder.EtcdRevisionBump)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	wresp := <-cli.Watch(wctx, "/before", clientv3.WithRev(seen))
	wcancel()
	if !errors.Is(wresp.Err(), rpctypes.ErrCompacted) {
		t.Errorf("a watch from revision %d seen before the restore: %v, want ErrCompacted", seen, wresp.Err())
	}
	ms, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := etcdcluster.MemberIDOf([]string{m1.peerURL()}, components.EtcdClusterToken("etcd-it", "r1")); len(ms.Members) != 1 || ms.Members[0].ID != want {
		t.Errorf("members after the restore %v, want one with ID %x", ms.Members, want)
	}

	// Another member joins the restored cluster in its epoch.
	c, err := etcdcluster.NewClient(etcdcluster.Config{Endpoints: []string{m1.clientURL()}, CA: tb.ca.Cert, Cert: tb.client.Cert, Key: tb.client.Key})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	m2.epoch = "r1"
	started := false
	two := func() []etcdcluster.DesiredMember { return []etcdcluster.DesiredMember{m1.desired(), m2.desired()} }
	reconcileUntil(ctx, t, c, two, func(a etcdcluster.Action) bool {
		if a.Kind == etcdcluster.AddLearner && !started {
			initial, err := etcdcluster.InitialCluster(a.Members, etcdcluster.DesiredMember{Name: "m2", PeerURL: m2.peerURL()})
			if err != nil {
				t.Fatal(err)
			}
			var members []components.EtcdMember
			for _, p := range initial {
				members = append(members, components.EtcdMember{Name: p.Name, PeerURL: p.PeerURL})
			}
			tb.start(m2, members, true)
			started = true
		}
		return a.Kind == etcdcluster.None
	})
	if _, err := os.Stat(dataDir(m2, "r1")); err != nil {
		t.Errorf("the joining member does not keep its data in the epoch's folder: %v", err)
	}
	// m2 leaves again (a stopped voter of two would take quorum with it).
	reconcileUntil(ctx, t, c, func() []etcdcluster.DesiredMember { return []etcdcluster.DesiredMember{m1.desired()} },
		func(a etcdcluster.Action) bool { return a.Kind == etcdcluster.None })
	tb.stop(m2, syscall.SIGTERM)

	// From m1's own database (quorum lost, that member's data survives).
	if _, err := cli.Put(ctx, "/after", "3"); err != nil {
		t.Fatal(err)
	}
	tb.stop(m1, syscall.SIGTERM)
	restore(m1, filepath.Join(dataDir(m1, "r1"), "member", "snap", "db"), true, "r2")
	cli = raw(m1)
	check(true)
	ms, err = cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms.Members) != 1 {
		t.Errorf("members after the member-data restore: %v, want m1 alone", ms.Members)
	}
}
