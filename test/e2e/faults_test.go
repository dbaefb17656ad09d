//go:build faults

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
	"github.com/basalt-dev/basalt/test/e2e/bed"
	"github.com/basalt-dev/basalt/test/e2e/framework"
)

// The fault-injection suite (make test-faults, docs/faults.md): each test injects one kind of
// fault into a real Cluster on the bed and counts what a user would see. Not in make test: it
// takes about an hour.

// faultSeed is the seed of the suite's random fault points: BASALT_FAULTS_SEED, else the clock.
// Every test logs it, so a failing sequence can be replayed.
func faultSeed(t *testing.T) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BASALT_FAULTS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("BASALT_FAULTS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("fault points drawn with BASALT_FAULTS_SEED=%d", seed)
	return rand.New(rand.NewPCG(seed, seed))
}

// envInt is an integer from the environment, or def.
func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		t.Fatalf("%s=%q is not a count", name, s)
	}
	return v
}

// faultBed is a bed of SSH Hosts and a management plane whose manager runs as a process.
type faultBed struct {
	m  *framework.Management
	b  *bed.Bed
	ns string
}

// startFaultBed starts hosts bed hosts (the first cp of them labelled role=cp, the others
// role=worker) and a manager process that serves the artifact sets of versions, and waits until
// every Host is Available.
func startFaultBed(ctx context.Context, t *testing.T, name string, hosts, cp int, versions ...string) *faultBed {
	t.Helper()
	var sets []string
	for _, v := range versions {
		sets = append(sets, artifactSet(t, v))
	}
	b := framework.NewBed(ctx, t, bed.Options{Hosts: hosts, Name: name})
	m := framework.StartManagementProcess(t, framework.StartManagementInput{Bed: b, ArtifactSets: sets})
	ns := m.Env.Namespace(t)
	labels := make([]map[string]string, hosts)
	for i := range labels {
		labels[i] = map[string]string{"role": "worker"}
		if i < cp {
			labels[i]["role"] = "cp"
		}
	}
	m.CreateSSHHosts(ctx, t, framework.SSHHostsInput{
		Namespace: ns, Bed: b, Labels: labels,
		OS: &basaltv1.OSFacts{Container: ptr.To(true), SystemdPID1: ptr.To(true), CgroupVersion: 1},
	})
	m.WaitHostsAvailable(ctx, t, ns, hostNames(b), 5*time.Minute)
	return &faultBed{m: m, b: b, ns: ns}
}

// cluster is a Cluster of cp control planes and workers on the bed's labelled Hosts.
func (f *faultBed) cluster(name, version string, cp, workers int32) *basaltv1.Cluster {
	return &basaltv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name},
		Spec: basaltv1.ClusterSpec{
			Version:          version,
			NodeDrainTimeout: &metav1.Duration{Duration: 2 * time.Minute},
			ControlPlane:     basaltv1.ControlPlaneSpec{Replicas: cp, HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "cp"}}},
			Workers:          []basaltv1.WorkerPool{{Name: "pool", Replicas: workers, HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "worker"}}}},
		},
	}
}

// waitReady waits until the Cluster is Ready with its counts and, for a version, every Machine
// reports it.
func (f *faultBed) waitReady(ctx context.Context, t *testing.T, cl *basaltv1.Cluster, timeout time.Duration) {
	t.Helper()
	f.m.WaitForClusterReady(ctx, t, framework.WaitForClusterReadyInput{Namespace: f.ns, Name: cl.Name,
		ControlPlanes: cl.Spec.ControlPlane.Replicas, Workers: cl.Spec.Workers[0].Replicas, Timeout: timeout})
	framework.Eventually(t, timeout, func() error {
		got := &basaltv1.Cluster{}
		if err := f.m.Env.Client.Get(ctx, framework.ObjectKey(f.ns, cl.Name), got); err != nil {
			return err
		}
		if got.Status.Version != cl.Spec.Version {
			return fmt.Errorf("cluster %s at %q, want %s", cl.Name, got.Status.Version, cl.Spec.Version)
		}
		return nil
	})
}

// etcdMember is one entry of `etcdctl member list -w json`.
type etcdMember struct {
	ID        uint64   `json:"ID"`
	Name      string   `json:"name"`
	PeerURLs  []string `json:"peerURLs"`
	IsLearner bool     `json:"isLearner"`
}

// etcdMembers lists the etcd members as the member on h sees them.
func etcdMembers(ctx context.Context, h *bed.Host) ([]etcdMember, error) {
	out, err := h.Run(ctx, etcdctl("https://127.0.0.1:2379")+" member list -w json")
	if err != nil {
		return nil, err
	}
	var list struct {
		Members []etcdMember `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, fmt.Errorf("etcdctl member list on %s: %w: %s", h.Name, err, out)
	}
	return list.Members, nil
}

// checkConverged checks what a crash must never leave behind, once the Cluster is Ready: every
// Machine on a Host of its own that names it back, no Host bound to a Machine that is gone or
// bound elsewhere, and exactly one started, voting etcd member per control-plane Machine, on that
// Machine's Host, with the ID the Machine records.
func (f *faultBed) checkConverged(ctx context.Context, t *testing.T, cl *basaltv1.Cluster) {
	t.Helper()
	c := f.m.Env.Client
	framework.Eventually(t, 2*time.Minute, func() error {
		ml := &basaltv1.MachineList{}
		if err := c.List(ctx, ml, framework.InNamespace(f.ns)); err != nil {
			return err
		}
		hl := &basaltv1.HostList{}
		if err := c.List(ctx, hl, framework.InNamespace(f.ns)); err != nil {
			return err
		}
		want := int(cl.Spec.ControlPlane.Replicas + cl.Spec.Workers[0].Replicas)
		if len(ml.Items) != want {
			return fmt.Errorf("%d Machines, want %d", len(ml.Items), want)
		}
		machines := map[string]*basaltv1.Machine{}
		hostOf := map[string]string{} // Host → Machine
		cpIPs := map[string]string{}  // Host IP → control-plane Machine
		for i := range ml.Items {
			m := &ml.Items[i]
			machines[m.Name] = m
			if m.Spec.HostRef == nil {
				return fmt.Errorf("machine %s has no Host", m.Name)
			}
			if other, ok := hostOf[m.Spec.HostRef.Name]; ok {
				return fmt.Errorf("machines %s and %s both on Host %s", other, m.Name, m.Spec.HostRef.Name)
			}
			hostOf[m.Spec.HostRef.Name] = m.Name
			if m.Spec.Role == basaltv1.RoleControlPlane {
				cpIPs[f.b.Host(m.Spec.HostRef.Name).IP] = m.Name
			}
		}
		for _, h := range hl.Items {
			ref := h.Status.ConsumerRef
			switch {
			case ref == nil && hostOf[h.Name] != "":
				return fmt.Errorf("host %s is not bound, but Machine %s runs on it", h.Name, hostOf[h.Name])
			case ref == nil:
			case machines[ref.Name] == nil:
				return fmt.Errorf("host %s leaked: bound to Machine %s, which is gone", h.Name, ref.Name)
			case hostOf[h.Name] != ref.Name:
				return fmt.Errorf("host %s bound to Machine %s, which runs on %v", h.Name, ref.Name, machines[ref.Name].Spec.HostRef)
			}
		}
		var cpHost *bed.Host
		for ip := range cpIPs {
			for _, h := range f.b.Hosts {
				if h.IP == ip {
					cpHost = h
				}
			}
		}
		members, err := etcdMembers(ctx, cpHost)
		if err != nil {
			return err
		}
		if len(members) != len(cpIPs) {
			return fmt.Errorf("%d etcd members for %d control-plane Machines: %+v", len(members), len(cpIPs), members)
		}
		seen := map[string]bool{}
		for _, mem := range members {
			if mem.Name == "" || mem.IsLearner || len(mem.PeerURLs) != 1 {
				return fmt.Errorf("etcd member %x is not a started voter: %+v", mem.ID, mem)
			}
			host, _, err := net.SplitHostPort(strings.TrimPrefix(mem.PeerURLs[0], "https://"))
			if err != nil {
				return fmt.Errorf("etcd member %x peer URL %q: %w", mem.ID, mem.PeerURLs[0], err)
			}
			machine := cpIPs[host]
			if machine == "" || seen[machine] {
				return fmt.Errorf("etcd member %x at %s is not the one member of a control-plane Machine (%v)", mem.ID, host, cpIPs)
			}
			seen[machine] = true
			if got := machines[machine].Status.EtcdMemberID; got != etcdcluster.HexID(mem.ID) {
				return fmt.Errorf("machine %s records etcd member %q, its host runs %s", machine, got, etcdcluster.HexID(mem.ID))
			}
		}
		return nil
	})
	f.checkNoPanic(t)
}

// checkNoPanic fails when the manager's log shows a panic.
func (f *faultBed) checkNoPanic(t *testing.T) {
	t.Helper()
	lines, err := f.m.Process.LogLines(5, "panic")
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) > 0 {
		t.Fatalf("the manager panicked (%s):\n%s", f.m.Process.Log, strings.Join(lines, "\n"))
	}
}

// deleteCluster deletes the Cluster and waits until its Hosts are Available again.
func (f *faultBed) deleteCluster(ctx context.Context, t *testing.T, cl *basaltv1.Cluster) {
	t.Helper()
	if err := f.m.Env.Client.Delete(ctx, cl); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 10*time.Minute, f.m.Env.Gone(cl))
	f.m.WaitHostsAvailable(ctx, t, f.ns, hostNames(f.b), 5*time.Minute)
}

// leases counts the times a manager took the leader lease.
func leases(t *testing.T, p *framework.ManagerProcess) int {
	t.Helper()
	n, err := p.Leads()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// crash kills the manager with SIGKILL, starts it again at once and waits until the new process
// holds the leader lease (the old one's must expire first: nothing released it). It returns the
// time from the kill until the new process leads.
func crash(ctx context.Context, t *testing.T, p *framework.ManagerProcess) (time.Duration, error) {
	before := leases(t, p)
	killed := time.Now()
	if err := p.Kill(); err != nil {
		return 0, err
	}
	if err := p.Start(); err != nil {
		return 0, err
	}
	for leases(t, p) == before {
		if time.Since(killed) > 2*time.Minute {
			return 0, fmt.Errorf("the restarted manager took no lease in 2 minutes (%s)", p.Log)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return time.Since(killed), nil
}

// faultResult is what injectAfter did: how many faults, how long each took to recover from (as
// inject measured it) and the first error.
type faultResult struct {
	faults int
	took   []time.Duration
	err    error
}

// injectAfter calls inject after each of the waits, until the waits are used up or done is
// closed (nil: never), and reports on its channel once it stops.
func injectAfter(ctx context.Context, waits []time.Duration, done <-chan struct{}, inject func() (time.Duration, error)) <-chan faultResult {
	out := make(chan faultResult, 1)
	go func() {
		var r faultResult
		defer func() { out <- r }()
		for _, w := range waits {
			select {
			case <-ctx.Done():
				r.err = ctx.Err()
				return
			case <-done:
				return
			case <-time.After(w):
			}
			took, err := inject()
			if err != nil {
				r.err = err
				return
			}
			r.faults++
			r.took = append(r.took, took)
		}
	}()
	return out
}

// crashes kills the manager after each of the waits (time the manager spends leading, since
// crash returns once the new process leads), until the waits are used up or done is closed; took
// is each kill's time until a new leader.
func crashes(ctx context.Context, t *testing.T, p *framework.ManagerProcess, waits []time.Duration, done <-chan struct{}) <-chan faultResult {
	return injectAfter(ctx, waits, done, func() (time.Duration, error) { return crash(ctx, t, p) })
}

// crashUntilReady kills the manager after each of the waits until the Cluster is Ready at its
// spec.version, and reports the kills that happened before.
func (f *faultBed) crashUntilReady(ctx context.Context, t *testing.T, cl *basaltv1.Cluster, waits []time.Duration, timeout time.Duration) faultResult {
	t.Helper()
	ready := make(chan struct{})
	res := crashes(ctx, t, f.m.Process, waits, ready)
	f.waitReady(ctx, t, cl, timeout)
	close(ready)
	out := <-res
	if out.err != nil {
		t.Fatalf("killing the manager: %v", out.err)
	}
	return out
}

// offsets draws n points uniformly in [0, span) and returns the waits between them, in order.
func offsets(rng *rand.Rand, n int, span time.Duration) []time.Duration {
	points := make([]time.Duration, n)
	for i := range points {
		points[i] = time.Duration(rng.Int64N(int64(span)))
	}
	slices.Sort(points)
	waits := make([]time.Duration, n)
	prev := time.Duration(0)
	for i, p := range points {
		waits[i] = p - prev
		prev = p
	}
	return waits
}

func durations(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.Round(100 * time.Millisecond).String()
	}
	return strings.Join(s, " ")
}

// TestFaultManagerKilledCreating (F2, creations) kills the manager with SIGKILL at random points
// of 3 + 2 creations (BASALT_FAULTS_CREATE_ROUNDS rounds of BASALT_FAULTS_CREATE_KILLS kills, 5 × 4
// by default), restarting it like the kubelet would. Every time the Cluster must converge to Ready
// with no duplicate etcd member and no leaked or double-bound Host. Two creations without kills
// come first; the second measures the span the kill points are drawn from.
func TestFaultManagerKilledCreating(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Minute)
	defer cancel()
	rng := faultSeed(t)
	rounds := envInt(t, "BASALT_FAULTS_CREATE_ROUNDS", 5)
	perRound := envInt(t, "BASALT_FAULTS_CREATE_KILLS", 4)
	f := startFaultBed(ctx, t, "f2", 5, 3, etcdTestVersion)
	p := f.m.Process

	// The span of a creation without faults: kill points are drawn from it. Measured on the
	// second one: the first also fills the manager's artifact cache and the hosts' downloads, and
	// took twice as long in the first run, so most kill points fell after Ready.
	var span time.Duration
	for i := range 2 {
		cl := f.cluster(fmt.Sprintf("f2-calibrate-%d", i), etcdTestVersion, 3, 2)
		began := time.Now()
		if err := f.m.Env.Client.Create(ctx, cl); err != nil {
			t.Fatal(err)
		}
		f.waitReady(ctx, t, cl, 15*time.Minute)
		span = time.Since(began)
		f.checkConverged(ctx, t, cl)
		t.Logf("calibration %d: 3 + 2 Ready in %s without faults", i, span.Round(time.Second))
		f.deleteCluster(ctx, t, cl)
	}

	var all, readies []time.Duration
	total := 0
	for r := 1; r <= rounds; r++ {
		cl := f.cluster(fmt.Sprintf("f2-%d", r), etcdTestVersion, 3, 2)
		waits := offsets(rng, perRound, span)
		began := time.Now()
		if err := f.m.Env.Client.Create(ctx, cl); err != nil {
			t.Fatal(err)
		}
		out := f.crashUntilReady(ctx, t, cl, waits, 20*time.Minute)
		readyAfter := time.Since(began)
		// Kills the creation outran still count once it converges after them.
		f.waitReady(ctx, t, cl, 10*time.Minute)
		f.checkConverged(ctx, t, cl)
		total += out.faults
		all = append(all, out.took...)
		readies = append(readies, readyAfter)
		t.Logf("round %d: %d kills before Ready (points after %s of leading), 3 + 2 Ready %s after it was applied; kill → new leader %s",
			r, out.faults, durations(waits), readyAfter.Round(time.Second), durations(out.took))
		f.deleteCluster(ctx, t, cl)
	}
	slices.Sort(all)
	slices.Sort(readies)
	if len(all) > 0 {
		t.Logf("F2 creations summary: %d kills in %d creations, every one converged with no duplicate etcd member and no leaked or double-bound Host; "+
			"Ready median %s (without faults %s); kill → new leader median %s, max %s; the manager exited by itself %d times",
			total, rounds, readies[len(readies)/2].Round(time.Second), span.Round(time.Second),
			all[len(all)/2].Round(100*time.Millisecond), all[len(all)-1].Round(100*time.Millisecond), p.Exits())
	}
	if total < rounds*perRound/2 {
		t.Fatalf("only %d of %d kills fell before the creations were Ready: the span measured in round 0 was too short", total, rounds*perRound)
	}
}

// TestFaultManagerKilledUpgrading (F2, upgrade) kills the manager every 5–25 s of leading
// (BASALT_FAULTS_UPGRADE_KILLS times, 10 by default) during an in-place upgrade of a 3 + 2 Cluster
// from the previous release: the upgrade completes, with no duplicate etcd member and no leaked
// or double-bound Host.
func TestFaultManagerKilledUpgrading(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Minute)
	defer cancel()
	rng := faultSeed(t)
	upgradeKills := envInt(t, "BASALT_FAULTS_UPGRADE_KILLS", 10)
	f := startFaultBed(ctx, t, "f2u", 5, 3, upgradeFromVersion, etcdTestVersion)
	p := f.m.Process
	up := f.cluster("f2-up", upgradeFromVersion, 3, 2)
	if err := f.m.Env.Client.Create(ctx, up); err != nil {
		t.Fatal(err)
	}
	f.waitReady(ctx, t, up, 15*time.Minute)
	// Two web servers spread over the nodes under a budget of one, as TestClusterHA runs them, so
	// the drains meet a PodDisruptionBudget and every change of the pods and the budget is logged
	// (evidence for the drain a budget once held, docs/lifecycle.md "Limits").
	wc, _ := f.m.WorkloadClient(ctx, t, f.ns, up.Name)
	web := map[string]string{"app": "web"}
	framework.Eventually(t, time.Minute, func() error {
		dep := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](2),
				Selector: &metav1.LabelSelector{MatchLabels: web},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: web},
					Spec: corev1.PodSpec{
						Containers: []corev1.Container{{Name: "web", Image: "basalt.dev/webserver:v1", ImagePullPolicy: corev1.PullNever}},
						TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "kubernetes.io/hostname",
							WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: web}}},
						Tolerations: tolerateControlPlane,
					},
				},
			},
		}
		if _, err := wc.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		pdb := &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)), Selector: &metav1.LabelSelector{MatchLabels: web}},
		}
		if _, err := wc.PolicyV1().PodDisruptionBudgets("default").Create(ctx, pdb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		d, err := wc.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.ReadyReplicas != 2 {
			return fmt.Errorf("web: %d of 2 replicas ready", d.Status.ReadyReplicas)
		}
		return nil
	})
	webLog := watchDisruption(ctx, wc, "default", "app=web", "web")
	defer func() { t.Logf("web pods and their budget during the upgrade:\n%s", webLog()) }()
	waits := make([]time.Duration, upgradeKills)
	for i := range waits {
		waits[i] = 5*time.Second + time.Duration(rng.Int64N(int64(20*time.Second)))
	}
	framework.Eventually(t, time.Minute, func() error {
		got := &basaltv1.Cluster{}
		if err := f.m.Env.Client.Get(ctx, framework.ObjectKey(f.ns, up.Name), got); err != nil {
			return err
		}
		got.Spec.Version = etcdTestVersion
		return f.m.Env.Client.Update(ctx, got)
	})
	up.Spec.Version = etcdTestVersion
	began := time.Now()
	out := f.crashUntilReady(ctx, t, up, waits, 40*time.Minute)
	upgradedAfter := time.Since(began)
	f.waitReady(ctx, t, up, 10*time.Minute)
	f.checkConverged(ctx, t, up)
	evs := &corev1.EventList{}
	if err := f.m.Env.Client.List(ctx, evs, framework.InNamespace(f.ns)); err == nil {
		for _, e := range evs.Items {
			if e.Reason == "DrainTimedOut" {
				t.Logf("drain timed out: %s: %s", e.InvolvedObject.Name, e.Message)
			}
		}
	}
	t.Logf("F2 upgrade summary: %s → %s with %d kills before it was done (after %s of leading each), done %s after the change; kill → new leader %s; "+
		"no duplicate etcd member, no leaked or double-bound Host; the manager exited by itself %d times",
		upgradeFromVersion, etcdTestVersion, out.faults, durations(waits[:out.faults]), upgradedAfter.Round(time.Second), durations(out.took), p.Exits())
	if out.faults < upgradeKills/2 {
		t.Fatalf("only %d of %d kills fell before the upgrade was done", out.faults, upgradeKills)
	}
}

// TestFaultAPIServerRestart (F5) crashes (SIGKILL) and restarts the management cluster's kube-apiserver at
// BASALT_FAULTS_API_RESTARTS (3) random points of a 3 + 2 creation. The manager loses its watches
// and, when the API is away longer than its lease's renew deadline, its leadership (it exits and
// is started again, as in a pod); the Cluster must converge all the same.
func TestFaultAPIServerRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	rng := faultSeed(t)
	restarts := envInt(t, "BASALT_FAULTS_API_RESTARTS", 3)
	f := startFaultBed(ctx, t, "f5", 5, 3, etcdTestVersion)

	cl := f.cluster("f5", etcdTestVersion, 3, 2)
	// Points drawn from a minute, about as long as a creation takes here.
	waits := offsets(rng, restarts, time.Minute)
	began := time.Now()
	if err := f.m.Env.Client.Create(ctx, cl); err != nil {
		t.Fatal(err)
	}
	r := <-injectAfter(ctx, waits, nil, func() (time.Duration, error) {
		stopped := time.Now()
		err := f.m.Env.RestartAPIServer()
		return time.Since(stopped), err
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	f.waitReady(ctx, t, cl, 20*time.Minute)
	took := time.Since(began)
	f.checkConverged(ctx, t, cl)
	t.Logf("F5 summary: kube-apiserver restarted %d times (after %s; away %s each), 3 + 2 Ready %s after it was applied; "+
		"the manager exited by itself %d times (lost its lease) and was started again",
		r.faults, durations(waits), durations(r.took), took.Round(time.Second), f.m.Process.Exits())
}

// createReady creates the Cluster, waits until it is Ready and returns a client of its workload
// API, that client's config and the bed host whose API server is the endpoint.
func (f *faultBed) createReady(ctx context.Context, t *testing.T, cl *basaltv1.Cluster) (*kubernetes.Clientset, *rest.Config, *bed.Host) {
	t.Helper()
	if err := f.m.Env.Client.Create(ctx, cl); err != nil {
		t.Fatal(err)
	}
	f.waitReady(ctx, t, cl, 15*time.Minute)
	wc, rc := f.m.WorkloadClient(ctx, t, f.ns, cl.Name)
	return wc, rc, f.endpointHost(t, rc.Host)
}

// endpointHost is the bed host whose API server the Cluster's kubeconfig names.
func (f *faultBed) endpointHost(t *testing.T, apiURL string) *bed.Host {
	t.Helper()
	for _, h := range f.b.Hosts {
		if strings.Contains(apiURL, "//"+h.IP+":") {
			return h
		}
	}
	t.Fatalf("no bed host serves %s", apiURL)
	return nil
}

// machineHosts maps each Machine of the namespace to its Host's name, with its UID, so a test can
// tell whether any was replaced.
func (f *faultBed) machineHosts(ctx context.Context, t *testing.T) map[string]string {
	t.Helper()
	ml := &basaltv1.MachineList{}
	if err := f.m.Env.Client.List(ctx, ml, framework.InNamespace(f.ns)); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range ml.Items {
		host := ""
		if m.Spec.HostRef != nil {
			host = m.Spec.HostRef.Name
		}
		out[m.Name+"/"+string(m.UID)] = host
		if !m.DeletionTimestamp.IsZero() {
			out[m.Name+"/"+string(m.UID)] += " (deleting)"
		}
	}
	return out
}

// apiProbe sends a quorum read or a write through the workload API endpoint ten times a second
// (each in flight on its own, so a slow answer does not lower the rate) until stopped, and keeps
// every result with the time it was sent.
type apiProbe struct {
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	results []probeResult
}

type probeResult struct {
	at time.Time
	ok bool
}

func startAPIProbe(ctx context.Context, t *testing.T, rc *rest.Config) *apiProbe {
	t.Helper()
	// Ten a second is above client-go's default limit of 5: throttled requests would wait in the
	// client and fail there, counted against the cluster.
	rc = rest.CopyConfig(rc)
	rc.QPS, rc.Burst = 50, 50
	wc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	p := &apiProbe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		var inflight sync.WaitGroup
		defer inflight.Wait()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			inflight.Add(1)
			go func(i int, sent time.Time) {
				defer inflight.Done()
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				var err error
				if i%2 == 0 {
					_, err = wc.CoreV1().Namespaces().Get(rctx, "default", metav1.GetOptions{})
				} else {
					// Unconditional writes (no resourceVersion) of one ConfigMap per second's slot.
					cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("fault-probe-%d", i%10), Namespace: "default"},
						Data: map[string]string{"n": strconv.Itoa(i)}}
					_, err = wc.CoreV1().ConfigMaps("default").Update(rctx, cm, metav1.UpdateOptions{})
					if apierrors.IsNotFound(err) {
						_, err = wc.CoreV1().ConfigMaps("default").Create(rctx, cm, metav1.CreateOptions{})
						if apierrors.IsAlreadyExists(err) { // another of ours created it first: the API answered
							err = nil
						}
					}
				}
				p.mu.Lock()
				p.results = append(p.results, probeResult{at: sent, ok: err == nil})
				p.mu.Unlock()
			}(i, time.Now())
		}
	}()
	return p
}

// finish stops the probe and returns, for the results in [from, to], how many were sent, how
// many succeeded and the longest run of failures in time.
func (p *apiProbe) finish(from, to time.Time) (sent, ok int, longest time.Duration) {
	close(p.stop)
	<-p.done
	slices.SortFunc(p.results, func(a, b probeResult) int { return a.at.Compare(b.at) })
	var failStart time.Time
	for _, r := range p.results {
		if r.at.Before(from) || r.at.After(to) {
			continue
		}
		sent++
		if r.ok {
			ok++
			if !failStart.IsZero() {
				longest = max(longest, r.at.Sub(failStart))
				failStart = time.Time{}
			}
		} else if failStart.IsZero() {
			failStart = r.at
		}
	}
	if !failStart.IsZero() {
		longest = max(longest, to.Sub(failStart))
	}
	return sent, ok, longest
}

// maxOutage is the longest run of failing requests through the endpoint a fault that leaves etcd
// its quorum may cause: when the lost member led, the others elect a new leader first (etcd's
// election timeout is 1 s; requests in flight then fail). Longer means the cluster stopped
// serving.
const maxOutage = 5 * time.Second

// etcdHealthyVoters checks, from h, that etcd has want started voters, none at the excluded IP,
// each healthy.
func etcdHealthyVoters(ctx context.Context, h *bed.Host, want int, excluded string) error {
	members, err := etcdMembers(ctx, h)
	if err != nil {
		return err
	}
	var endpoints []string
	for _, m := range members {
		if m.Name == "" || m.IsLearner || len(m.PeerURLs) != 1 || strings.Contains(m.PeerURLs[0], "//"+excluded+":") {
			return fmt.Errorf("etcd member %+v", m)
		}
		endpoints = append(endpoints, strings.Replace(m.PeerURLs[0], ":2380", ":2379", 1))
	}
	if len(members) != want {
		return fmt.Errorf("%d etcd members, want %d", len(members), want)
	}
	out, err := h.Run(ctx, etcdctl(strings.Join(endpoints, ","))+" endpoint health -w json")
	if err != nil {
		return fmt.Errorf("etcd endpoint health: %w", err)
	}
	if strings.Count(out, `"health":true`) != want {
		return fmt.Errorf("etcd endpoint health: %s", out)
	}
	return nil
}

// etcdctl is the etcdctl command line on a control-plane host for endpoints.
func etcdctl(endpoints string) string {
	return "ETCDCTL_API=3 /opt/basalt/bin/etcdctl --endpoints=" + endpoints + " --cacert=/etc/basalt/pki/etcd/ca.crt " +
		"--cert=/etc/basalt/pki/etcd/healthcheck-client.crt --key=/etc/basalt/pki/etcd/healthcheck-client.key --command-timeout=5s"
}

// TestFaultControlPlaneHostLost (F1) powers off (docker kill) one of three control-plane hosts —
// not the one whose API server is the endpoint — while a client sends 10 requests a second
// through the endpoint (alternating a quorum read and a write), and measures the share that
// succeed and the time until etcd has three healthy voters again (the Machine remediated onto a
// spare Host).
func TestFaultControlPlaneHostLost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	f := startFaultBed(ctx, t, "f1", 5, 4, etcdTestVersion) // 3 control planes and a spare, 1 worker
	cl := f.cluster("f1", etcdTestVersion, 3, 1)
	cl.Spec.Remediation.NodeNotReadyTimeout = &metav1.Duration{Duration: 30 * time.Second}
	_, rc, ep := f.createReady(ctx, t, cl)
	var victim *bed.Host
	ml := &basaltv1.MachineList{}
	if err := f.m.Env.Client.List(ctx, ml, framework.InNamespace(f.ns)); err != nil {
		t.Fatal(err)
	}
	for _, m := range ml.Items {
		if m.Spec.Role == basaltv1.RoleControlPlane && m.Spec.HostRef != nil && m.Spec.HostRef.Name != ep.Name {
			victim = f.b.Host(m.Spec.HostRef.Name)
			break
		}
	}
	if victim == nil {
		t.Fatal("no control-plane host off the endpoint")
	}
	probe := startAPIProbe(ctx, t, rc)
	time.Sleep(10 * time.Second) // a baseline before the fault
	killed := time.Now()
	if err := victim.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("powered off %s (a control-plane host; the endpoint is %s)", victim.Name, ep.Name)
	framework.Eventually(t, 20*time.Minute, func() error {
		got := &basaltv1.Cluster{}
		if err := f.m.Env.Client.Get(ctx, framework.ObjectKey(f.ns, cl.Name), got); err != nil {
			return err
		}
		if got.Status.ControlPlane.Ready != 3 {
			return fmt.Errorf("control plane %+v", got.Status.ControlPlane)
		}
		return etcdHealthyVoters(ctx, ep, 3, victim.IP)
	})
	healed := time.Since(killed)
	sent, ok, longest := probe.finish(killed, time.Now())
	f.checkConverged(ctx, t, cl)
	share := 100 * float64(ok) / float64(max(sent, 1))
	t.Logf("F1 summary: %s powered off; three healthy etcd voters again after %s (remediated onto the spare); "+
		"requests through the endpoint meanwhile: %d of %d succeeded (%.2f%%), longest failing stretch %s",
		victim.Name, healed.Round(time.Second), ok, sent, share, longest.Round(100*time.Millisecond))
	if longest > maxOutage {
		t.Fatalf("requests through the endpoint failed for %s in a row while a non-endpoint control-plane host was off (%.2f%% succeeded)", longest, share)
	}
}

// TestFaultPartitions (F3) cuts one worker's agent off the manager (iptables in its host, longer
// than the manager's 2-minute silence deadline) while its Plan changes: nothing is remediated, the
// agent is reported silent, and once the partition heals the agent applies the Plan it missed.
// Then it cuts one control-plane host (neither the endpoint nor etcd's leader) off its etcd peers
// for a minute while writes go through the endpoint: no second leader, the leader and its term
// unchanged, writes keep succeeding, and the member catches up afterwards.
func TestFaultPartitions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	agentCut := time.Duration(envInt(t, "BASALT_FAULTS_AGENT_PARTITION_SECONDS", 150)) * time.Second
	f := startFaultBed(ctx, t, "f3", 4, 3, etcdTestVersion)
	cl := f.cluster("f3", etcdTestVersion, 3, 1)
	// Short deadlines, so that remediation would have acted within the partition if it wrongly
	// counted a silent agent on a working node.
	cl.Spec.Remediation.AgentSilentTimeout = &metav1.Duration{Duration: 20 * time.Second}
	cl.Spec.Remediation.NodeNotReadyTimeout = &metav1.Duration{Duration: 30 * time.Second}
	_, rc, ep := f.createReady(ctx, t, cl)
	_, agentPort, err := net.SplitHostPort(f.m.AgentAPI)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("agent cut off from the manager", func(t *testing.T) {
		worker := f.b.Host("f3-4") // the one worker-labelled host
		var machine string
		ml := &basaltv1.MachineList{}
		if err := f.m.Env.Client.List(ctx, ml, framework.InNamespace(f.ns)); err != nil {
			t.Fatal(err)
		}
		for _, m := range ml.Items {
			if m.Spec.HostRef != nil && m.Spec.HostRef.Name == worker.Name {
				machine = m.Name
			}
		}
		before := f.machineHosts(ctx, t)
		rule := fmt.Sprintf("OUTPUT -p tcp -d %s --dport %s -j DROP", f.b.Gateway, agentPort)
		if _, err := worker.Run(ctx, "iptables -w -I "+rule); err != nil {
			t.Fatal(err)
		}
		cut := time.Now()
		t.Logf("%s cut off from the agent API %s for %s", worker.Name, f.m.AgentAPI, agentCut)
		// The Plan changes while the agent cannot hear it: a registry for every node.
		framework.Eventually(t, time.Minute, func() error {
			got := &basaltv1.Cluster{}
			if err := f.m.Env.Client.Get(ctx, framework.ObjectKey(f.ns, cl.Name), got); err != nil {
				return err
			}
			got.Spec.Registries = []basaltv1.Registry{{Host: "faults.invalid:5000"}}
			return f.m.Env.Client.Update(ctx, got)
		})
		silentSeen := false
		for time.Since(cut) < agentCut {
			m := &basaltv1.Machine{}
			if err := f.m.Env.Client.Get(ctx, framework.ObjectKey(f.ns, machine), m); err != nil {
				t.Fatal(err)
			}
			if c := meta.FindStatusCondition(m.Status.Conditions, basaltv1.MachineAgentConnected); c != nil && c.Reason == basaltv1.ReasonAgentSilent {
				silentSeen = true
			}
			if now := f.machineHosts(ctx, t); !maps.Equal(now, before) {
				t.Fatalf("Machines changed during the partition: %v, were %v", now, before)
			}
			time.Sleep(2 * time.Second)
		}
		if _, err := worker.Run(ctx, "iptables -w -D "+rule); err != nil {
			t.Fatal(err)
		}
		healed := time.Now()
		if !silentSeen {
			t.Fatalf("Machine %s never reported its agent silent during a %s partition: the partition did not hold", machine, agentCut)
		}
		framework.Eventually(t, 5*time.Minute, func() error {
			m := &basaltv1.Machine{}
			if err := f.m.Env.Client.Get(ctx, framework.ObjectKey(f.ns, machine), m); err != nil {
				return err
			}
			for _, cond := range []string{basaltv1.MachineAgentConnected, basaltv1.MachinePlanApplied} {
				if c := meta.FindStatusCondition(m.Status.Conditions, cond); c == nil || c.Status != metav1.ConditionTrue {
					return fmt.Errorf("machine %s %s: %v", machine, cond, c)
				}
			}
			out, err := worker.Run(ctx, "find /etc -path '*certs.d/faults.invalid:5000/hosts.toml'")
			if err != nil {
				return err
			}
			if strings.TrimSpace(out) == "" {
				return fmt.Errorf("the missed Plan's registry is not on %s yet", worker.Name)
			}
			return nil
		})
		caughtUp := time.Since(healed)
		if now := f.machineHosts(ctx, t); !maps.Equal(now, before) {
			t.Fatalf("Machines changed after the partition: %v, were %v", now, before)
		}
		got := &basaltv1.Cluster{}
		if err := f.m.Env.Client.Get(ctx, framework.ObjectKey(f.ns, cl.Name), got); err != nil {
			t.Fatal(err)
		}
		if got.Status.Remediation != nil && got.Status.Remediation.Count > 0 {
			t.Fatalf("remediation acted: %+v", got.Status.Remediation)
		}
		t.Logf("F3 agent partition: %s cut for %s, reported AgentSilent, no Machine remediated or replaced; the Plan changed during the cut was applied %s after it healed",
			worker.Name, agentCut, caughtUp.Round(time.Second))
	})

	t.Run("control-plane host cut off from its etcd peers", func(t *testing.T) {
		// The default remediation timeouts again: a control-plane host whose etcd is cut off has
		// a NotReady Node after about 40 s (its kubelet reports through its own API server, which
		// has no quorum), and the 30 s timeout of the first part would rightly replace it.
		framework.Eventually(t, time.Minute, func() error {
			got := &basaltv1.Cluster{}
			if err := f.m.Env.Client.Get(ctx, framework.ObjectKey(f.ns, cl.Name), got); err != nil {
				return err
			}
			got.Spec.Remediation.AgentSilentTimeout, got.Spec.Remediation.NodeNotReadyTimeout = nil, nil
			return f.m.Env.Client.Update(ctx, got)
		})
		type status struct {
			Endpoint string `json:"Endpoint"`
			Status   struct {
				Header struct {
					MemberID uint64 `json:"member_id"`
					RaftTerm uint64 `json:"raft_term"`
				} `json:"header"`
				Leader    uint64 `json:"leader"`
				RaftIndex uint64 `json:"raftIndex"`
				RaftTerm  uint64 `json:"raftTerm"`
			} `json:"Status"`
		}
		members, err := etcdMembers(ctx, ep)
		if err != nil {
			t.Fatal(err)
		}
		var endpoints []string
		for _, m := range members {
			endpoints = append(endpoints, strings.Replace(m.PeerURLs[0], ":2380", ":2379", 1))
		}
		statuses := func() ([]status, error) {
			out, err := ep.Run(ctx, etcdctl(strings.Join(endpoints, ","))+" endpoint status -w json")
			var st []status
			if jerr := json.Unmarshal([]byte(out), &st); jerr != nil && err == nil {
				err = jerr
			}
			return st, err
		}
		st, err := statuses()
		if err != nil || len(st) != 3 {
			t.Fatalf("etcd endpoint status: %+v %v", st, err)
		}
		leader, term := st[0].Status.Leader, st[0].Status.RaftTerm
		var victim *bed.Host
		var peers []string
		for _, s := range st {
			ip := strings.TrimSuffix(strings.TrimPrefix(s.Endpoint, "https://"), ":2379")
			if victim == nil && s.Status.Header.MemberID != leader && ip != ep.IP {
				victim = f.b.Hosts[slices.IndexFunc(f.b.Hosts, func(h *bed.Host) bool { return h.IP == ip })]
			} else {
				peers = append(peers, ip)
			}
		}
		var rules []string
		for _, p := range peers {
			rules = append(rules, fmt.Sprintf("INPUT -p tcp -s %s --dport 2380 -j DROP", p), fmt.Sprintf("OUTPUT -p tcp -d %s --dport 2380 -j DROP", p))
		}
		before := f.machineHosts(ctx, t)
		probe := startAPIProbe(ctx, t, rc)
		for _, r := range rules {
			if _, err := victim.Run(ctx, "iptables -w -I "+r); err != nil {
				t.Fatal(err)
			}
		}
		cut := time.Now()
		t.Logf("%s cut off from its etcd peers %v for 1m (the endpoint is %s, etcd's leader %x)", victim.Name, peers, ep.Name, leader)
		samples, twoLeaders := 0, 0
		for time.Since(cut) < time.Minute {
			st, err := statuses()
			if err == nil || len(st) > 0 {
				samples++
				claims := 0
				for _, s := range st {
					if s.Status.Leader == s.Status.Header.MemberID {
						claims++
						if s.Status.Leader != leader || s.Status.RaftTerm != term {
							t.Errorf("member %x leads in term %d; before the cut %x led in term %d", s.Status.Leader, s.Status.RaftTerm, leader, term)
						}
					}
				}
				if claims > 1 {
					twoLeaders++
				}
			}
			time.Sleep(2 * time.Second)
		}
		for _, r := range rules {
			if _, err := victim.Run(ctx, "iptables -w -D "+r); err != nil {
				t.Fatal(err)
			}
		}
		healed := time.Now()
		sent, ok, longest := probe.finish(cut, healed)
		framework.Eventually(t, 3*time.Minute, func() error {
			if err := etcdHealthyVoters(ctx, ep, 3, "none"); err != nil {
				return err
			}
			st, err := statuses()
			if err != nil {
				return err
			}
			lo, hi := st[0].Status.RaftIndex, st[0].Status.RaftIndex
			for _, s := range st {
				lo, hi = min(lo, s.Status.RaftIndex), max(hi, s.Status.RaftIndex)
			}
			if hi-lo > 50 {
				return fmt.Errorf("raft indexes %d..%d: the cut member has not caught up", lo, hi)
			}
			return nil
		})
		caughtUp := time.Since(healed)
		st, err = statuses()
		if err != nil {
			t.Fatal(err)
		}
		if now := f.machineHosts(ctx, t); !maps.Equal(now, before) {
			t.Fatalf("Machines changed: %v, were %v", now, before)
		}
		share := 100 * float64(ok) / float64(max(sent, 1))
		t.Logf("F3 etcd partition: %s cut off from its peers for 1m; %d status samples, %d with two leaders; leader %x term %d before, leader %x term %d after; "+
			"requests through the endpoint %d of %d succeeded (%.2f%%), longest failing stretch %s; caught up %s after the cut healed",
			victim.Name, samples, twoLeaders, leader, term, st[0].Status.Leader, st[0].Status.RaftTerm, ok, sent, share, longest.Round(100*time.Millisecond), caughtUp.Round(time.Second))
		if twoLeaders > 0 {
			t.Fatalf("%d samples saw two members claim leadership", twoLeaders)
		}
		if longest > maxOutage {
			t.Fatalf("requests through the endpoint failed for %s in a row while one member was cut off (%.2f%% succeeded)", longest, share)
		}
	})
}

// TestFaultEtcdDiskFull (F4) fills the disk of one etcd member (its data dir is a tmpfs of 2 GiB
// on each control-plane host, so only that filesystem fills, and the healthy members have room for
// the test's writes) while writes of 64 KiB go through the endpoint: Basalt reports the member's failure in EtcdReady, the cluster keeps serving from
// the other two, and once the space is freed the member recovers and EtcdReady is True again.
func TestFaultEtcdDiskFull(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	f := startFaultBed(ctx, t, "f4", 4, 3, etcdTestVersion)
	for _, h := range f.b.Hosts[:3] {
		if _, err := h.Run(ctx, "mkdir -p /var/lib/etcd && mount -t tmpfs -o size=2g,mode=0700 tmpfs /var/lib/etcd"); err != nil {
			t.Fatal(err)
		}
	}
	cl := f.cluster("f4", etcdTestVersion, 3, 1)
	wc, rc, ep := f.createReady(ctx, t, cl)
	var victim *bed.Host
	for _, h := range f.b.Hosts[:3] {
		if h != ep {
			victim = h
			break
		}
	}
	before := f.machineHosts(ctx, t)
	probe := startAPIProbe(ctx, t, rc)
	// Writes that make etcd's WAL and database grow fast.
	big := strings.Repeat("x", 64<<10)
	stopBig := make(chan struct{})
	bigDone := make(chan struct{})
	go func() {
		defer close(bigDone)
		for i := 0; ; i++ {
			select {
			case <-stopBig:
				return
			case <-time.After(200 * time.Millisecond):
			}
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("fill-%d", i%20), Namespace: "default"}, Data: map[string]string{"v": big + strconv.Itoa(i)}}
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			if _, err := wc.CoreV1().ConfigMaps("default").Update(rctx, cm, metav1.UpdateOptions{}); apierrors.IsNotFound(err) {
				_, _ = wc.CoreV1().ConfigMaps("default").Create(rctx, cm, metav1.CreateOptions{})
			}
			cancel()
		}
	}()
	if _, err := victim.Run(ctx, "fallocate -l $(df --output=avail -B1 /var/lib/etcd | tail -1) /var/lib/etcd/fill || dd if=/dev/zero of=/var/lib/etcd/fill bs=1M 2>/dev/null; df -h /var/lib/etcd"); err != nil {
		t.Logf("filling %s: %v", victim.Name, err)
	}
	filled := time.Now()
	t.Logf("filled etcd's filesystem on %s (the endpoint is %s)", victim.Name, ep.Name)
	var reported *metav1.Condition
	framework.Eventually(t, 10*time.Minute, func() error {
		got := &basaltv1.Cluster{}
		if err := f.m.Env.Client.Get(ctx, framework.ObjectKey(f.ns, cl.Name), got); err != nil {
			return err
		}
		c := meta.FindStatusCondition(got.Status.Conditions, basaltv1.ClusterEtcdReady)
		if c == nil || c.Status == metav1.ConditionTrue {
			return fmt.Errorf("EtcdReady %v", c)
		}
		reported = c
		return nil
	})
	toReport := time.Since(filled)
	t.Logf("EtcdReady=%s %s after %s: %s", reported.Status, reported.Reason, toReport.Round(time.Second), reported.Message)
	time.Sleep(30 * time.Second) // serving from the other two for a while
	if _, err := victim.Run(ctx, "rm -f /var/lib/etcd/fill"); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	framework.Eventually(t, 10*time.Minute, func() error {
		got := &basaltv1.Cluster{}
		if err := f.m.Env.Client.Get(ctx, framework.ObjectKey(f.ns, cl.Name), got); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(got.Status.Conditions, basaltv1.ClusterEtcdReady); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("EtcdReady %v", c)
		}
		return etcdHealthyVoters(ctx, ep, 3, "none")
	})
	recovered := time.Since(freed)
	close(stopBig)
	<-bigDone
	for _, h := range f.b.Hosts[:3] {
		out, _ := h.Run(ctx, "du -sh /var/lib/etcd/member | cut -f1")
		t.Logf("etcd data on %s after the test: %s", h.Name, strings.TrimSpace(out))
	}
	sent, ok, longest := probe.finish(filled, time.Now())
	if now := f.machineHosts(ctx, t); !maps.Equal(now, before) {
		t.Fatalf("Machines changed: %v, were %v", now, before)
	}
	share := 100 * float64(ok) / float64(max(sent, 1))
	t.Logf("F4 summary: etcd's disk on %s full; reported in EtcdReady after %s (%s); requests through the endpoint %d of %d succeeded (%.2f%%), longest failing stretch %s; "+
		"EtcdReady again %s after the space was freed",
		victim.Name, toReport.Round(time.Second), reported.Reason, ok, sent, share, longest.Round(100*time.Millisecond), recovered.Round(time.Second))
	if !strings.Contains(reported.Message, victim.IP) && !strings.Contains(reported.Message, victim.Name) {
		ml := &basaltv1.MachineList{}
		_ = f.m.Env.Client.List(ctx, ml, framework.InNamespace(f.ns))
		named := false
		for _, m := range ml.Items {
			if m.Spec.HostRef != nil && m.Spec.HostRef.Name == victim.Name && strings.Contains(reported.Message, m.Name) {
				named = true
			}
		}
		if !named {
			t.Errorf("EtcdReady does not name the failing member (host %s): %s", victim.Name, reported.Message)
		}
	}
	if longest > maxOutage {
		t.Fatalf("requests through the endpoint failed for %s in a row while one member's disk was full (%.2f%% succeeded)", longest, share)
	}
}
