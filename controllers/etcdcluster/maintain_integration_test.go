package etcdcluster_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/basalt-dev/basalt/bootstrap/components"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
)

// TestMaintenanceRecoversFromNoSpace fills a real three-member etcd up to a 16 MiB
// --quota-backend-bytes until it raises NOSPACE and refuses writes, deletes the data (as an
// operator or kube-apiserver's garbage collection would), and lets Maintain recover it: compact,
// defragment each member one at a time, disarm. Writes succeed again, and every member stayed a
// healthy voter.
func TestMaintenanceRecoversFromNoSpace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const quota = 16 << 20
	tb := newTestbed(t, "m1", "m2", "m3")
	var endpoints []string
	for _, n := range []string{"m1", "m2", "m3"} {
		h := tb.hosts[n]
		h.extraArgs = []string{"--quota-backend-bytes=" + strconv.Itoa(quota)}
		endpoints = append(endpoints, h.clientURL())
	}
	// m1 initialises the cluster; Reconcile adds m2 and m3 the way the controller does.
	m1 := tb.hosts["m1"]
	tb.start(m1, []components.EtcdMember{{Name: "m1", PeerURL: m1.peerURL()}}, false)
	c, err := etcdcluster.NewClient(etcdcluster.Config{Endpoints: []string{m1.clientURL()}, CA: tb.ca.Cert, Cert: tb.client.Cert, Key: tb.client.Key})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	three := func() []etcdcluster.DesiredMember {
		return []etcdcluster.DesiredMember{m1.desired(), tb.hosts["m2"].desired(), tb.hosts["m3"].desired()}
	}
	reconcileUntil(ctx, t, c, three, func(a etcdcluster.Action) bool {
		if h := tb.hosts[a.Machine]; a.Kind == etcdcluster.AddLearner ||
			a.Kind == etcdcluster.Wait && a.Reason == etcdcluster.ReasonWaitingForJoin && h != nil && !h.running() {
			initial, err := etcdcluster.InitialCluster(a.Members, h.desired())
			if err != nil {
				t.Fatal(err)
			}
			tb.start(h, initial, true)
		}
		return a.Kind == etcdcluster.None
	})
	kv, err := clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: tb.tls(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = kv.Close() }()
	for healthy := 0; healthy < len(endpoints); {
		if ctx.Err() != nil {
			t.Fatal("the three members never became healthy")
		}
		healthy = 0
		for _, ep := range endpoints {
			if h, err := c.Health(ctx, ep); err == nil && h.Healthy {
				healthy++
			}
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Fill it: 512 KiB values until etcd refuses.
	value := strings.Repeat("x", 512<<10)
	full := false
	for i := 0; i < 200 && !full; i++ {
		_, err := kv.Put(ctx, "/fill/"+strconv.Itoa(i), value)
		switch {
		case errors.Is(err, rpctypes.ErrNoSpace):
			full = true
		case err != nil:
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if !full {
		t.Fatal("etcd never refused a write with a 16 MiB quota")
	}
	alarms, err := c.Alarms(ctx)
	if err != nil || len(alarms) == 0 || alarms[0].Type != etcdcluster.AlarmNoSpace {
		t.Fatalf("alarms %v (%v), want NOSPACE", alarms, err)
	}
	// A steady-state pass does nothing drastic: the alarm comes first, and compaction does not
	// free the space until the data is gone.
	if _, err := kv.Delete(ctx, "/fill/", clientv3.WithPrefix()); err != nil {
		t.Fatalf("deleting under NOSPACE (etcd allows deletes): %v", err)
	}

	begin := time.Now()
	var state etcdcluster.MaintenanceState
	var steps []string
	for i := 0; ; i++ {
		if i > 20 {
			t.Fatalf("no end after %v", steps)
		}
		a, err := etcdcluster.Maintain(ctx, c, c, endpoints, etcdcluster.MaintenancePolicy{Quota: quota}, &state, time.Now())
		if err != nil {
			t.Fatalf("after %v: %s: %v", steps, a.Kind, err)
		}
		if a.Kind == etcdcluster.MaintainNone {
			break
		}
		if a.Kind == etcdcluster.MaintainWait {
			t.Fatalf("after %v: Wait %s: %s", steps, a.Reason, a.Message)
		}
		t.Logf("%s: %s", a.Kind, a.Message)
		steps = append(steps, string(a.Kind)+" "+a.Endpoint)
	}
	want := []string{"Compact ", "Defragment ", "Defragment ", "Defragment ", "Disarm "}
	if len(steps) != len(want) {
		t.Fatalf("steps %v, want compact, a defragmentation of each of the three members, disarm", steps)
	}
	seen := map[string]bool{}
	for i, s := range steps {
		if !strings.HasPrefix(s, want[i]) {
			t.Fatalf("steps %v, want %v in that order", steps, want)
		}
		seen[strings.TrimPrefix(s, want[i])] = true
	}
	if len(seen) != 4 { // "" for compact and disarm, and the three endpoints
		t.Fatalf("steps %v: each member must be defragmented exactly once", steps)
	}
	t.Logf("MEASURE NOSPACE recovery: %s from the first step to disarmed (%d steps)", time.Since(begin).Round(time.Millisecond), len(steps))
	if _, err := kv.Put(ctx, "/after", "writable"); err != nil {
		t.Fatalf("a write after recovery: %v", err)
	}
	for _, ep := range endpoints {
		if h, err := c.Health(ctx, ep); err != nil || !h.Healthy || h.DBSize >= quota/2 {
			t.Fatalf("member %s after recovery: %+v %v", ep, h, err)
		}
	}
}
