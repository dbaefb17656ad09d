package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/agents/planstore"
	"github.com/basalt-dev/basalt/agents/protocol"
	agentssh "github.com/basalt-dev/basalt/agents/ssh"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/plan"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
	"github.com/basalt-dev/basalt/controllers/etcdcluster/etcdfake"
	"github.com/basalt-dev/basalt/controllers/topology"
)

// testClock is the Cluster controller's clock; tests move it forward to reach renewal windows.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

func (c *testClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// fakeAgents stands in for the agents of a namespace's Hosts and for the kubelets of the workload
// cluster: it writes what the agent API writes (Machine status.planHash and components) once a
// Plan is stored, starts etcd in the etcdfake.Cluster when a Plan runs it, and marks the workload Node Ready
// with the kubelet's version once a Plan runs the kubelet. Machines named in hold are left alone,
// so a test can write their status itself.
type fakeAgents struct {
	ns   string
	etcd *etcdfake.Cluster

	mu   sync.Mutex
	hold map[string]bool
	// inits are the restores run, by machine and data folder.
	inits map[string]bool
	// violations are Plans the agents were given that a real node could not have run correctly.
	violations []string
}

// runAgents starts the simulated agents of namespace ns until the test ends.
func runAgents(t *testing.T, ns string, etcd *etcdfake.Cluster) *fakeAgents {
	a := &fakeAgents{ns: ns, etcd: etcd, hold: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := a.step(ctx); err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) {
				t.Logf("simulated agents: %v", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, v := range a.violations {
			t.Error(v)
		}
	})
	return a
}

// Hold stops the simulated agent of Machine name from writing its status.
func (a *fakeAgents) Hold(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hold[name] = true
}

// Release lets the simulated agent of Machine name report again.
func (a *fakeAgents) Release(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.hold, name)
}

// restored says whether a restore into dir already ran (and records that it did): an init
// command runs once per data folder.
func (a *fakeAgents) restored(dir string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.inits == nil {
		a.inits = map[string]bool{}
	}
	done := a.inits[dir]
	a.inits[dir] = true
	return done
}

func (a *fakeAgents) held(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hold[name]
}

func (a *fakeAgents) step(ctx context.Context) error {
	ml := &basaltv1.MachineList{}
	if err := env.Client.List(ctx, ml, client.InNamespace(a.ns)); err != nil {
		return err
	}
	for i := range ml.Items {
		m := &ml.Items[i]
		if m.Spec.HostRef == nil || a.held(m.Name) {
			continue
		}
		p, hash, err := planstore.LoadPlan(ctx, env.Client, a.ns, m.Spec.HostRef.Name)
		if errors.Is(err, planstore.ErrNoPlan) {
			continue
		}
		if err != nil {
			return err
		}
		h := &basaltv1.Host{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: a.ns, Name: m.Spec.HostRef.Name}, h); err != nil {
			return err
		}
		if has(p, "etcd") {
			// etcd on the node of a member already removed would exit: Start fails, nothing changes.
			ip := netip.MustParseAddr(h.Spec.SSH.Address)
			if in := p.Services[slices.IndexFunc(p.Services, func(s plan.Service) bool { return s.Name == "etcd" })].Init; in != nil {
				// etcdutl restores the data once; etcd then starts alone with the restore's token.
				if i := slices.Index(in.Argv, "--initial-cluster-token"); i > 0 && !a.restored(m.Name+":"+in.Creates) {
					a.etcd.Restore(m.Name, topology.EtcdPeerURL(ip), topology.EtcdClientURL(ip),
						etcdcluster.MemberIDOf([]string{topology.EtcdPeerURL(ip)}, in.Argv[i+1]))
				}
			}
			_, _ = a.etcd.Start(m.Name, topology.EtcdPeerURL(ip), topology.EtcdClientURL(ip))
		}
		if err := a.reportHost(ctx, h, hash); err != nil {
			return err
		}
		if err := a.report(ctx, m, hash, p); err != nil {
			return err
		}
		if has(p, "kubelet") {
			// The kubelet may only start once its Node exists with the Machine's pod range, or it
			// would register a Node kube-controller-manager gives another range.
			n := &corev1.Node{}
			err := env.Client.Get(ctx, client.ObjectKey{Name: m.Name}, n)
			if err != nil && !apierrors.IsNotFound(err) {
				return err // the test is ending (context canceled), or the API server did not answer
			}
			if err != nil || n.Spec.PodCIDR == "" || n.Spec.PodCIDR != m.Status.PodCIDR {
				a.mu.Lock()
				a.violations = append(a.violations, fmt.Sprintf("the Plan of %s runs the kubelet before its Node has the pod range %s (Node: %q, %v)", m.Name, m.Status.PodCIDR, n.Spec.PodCIDR, err))
				a.mu.Unlock()
			}
			if err := markNodeReady(ctx, m.Name, m.Spec.Version); err != nil {
				return err
			}
			if err := finishEvictions(ctx, m.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// report writes the applied Plan hash and every service healthy, as the agent API does.
func (a *fakeAgents) report(ctx context.Context, m *basaltv1.Machine, hash string, p *plan.Plan) error {
	var comps []basaltv1.ComponentHealth
	for _, s := range p.Services {
		comps = append(comps, basaltv1.ComponentHealth{Name: s.Name, Healthy: true})
	}
	slices.SortFunc(comps, func(a, b basaltv1.ComponentHealth) int { return cmpString(a.Name, b.Name) })
	if m.Status.PlanHash == hash && slices.EqualFunc(m.Status.Components, comps, func(a, b basaltv1.ComponentHealth) bool {
		return a.Name == b.Name && a.Healthy == b.Healthy
	}) {
		return nil
	}
	before := m.DeepCopy()
	m.Status.PlanHash, m.Status.Components, m.Status.FailedSteps = hash, comps, nil
	return env.Client.Status().Patch(ctx, m, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
}

// reportHost is the agent API's record of a report on the Host (the agent is connected and
// applied hash), which the Host controller needs to see before it takes a released Host back.
func (a *fakeAgents) reportHost(ctx context.Context, h *basaltv1.Host, hash string) error {
	if last := h.Status.Agent.LastSeen; h.Status.Agent.PlanHash == hash && last != nil && time.Since(last.Time) < 10*time.Second {
		return nil
	}
	before := h.DeepCopy()
	now := metav1.Now()
	h.Status.Agent.LastSeen, h.Status.Agent.PlanHash = &now, hash
	return client.IgnoreNotFound(env.Client.Status().Patch(ctx, h, client.MergeFrom(before)))
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func has(p *plan.Plan, service string) bool {
	return slices.ContainsFunc(p.Services, func(s plan.Service) bool { return s.Name == service })
}

// markNodeReady is the kubelet registering: the Node the Machine controller created gets a Ready
// condition and the kubelet's version (the version the Machine's Plan is built for, as a real
// kubelet reports the version of its binary).
func markNodeReady(ctx context.Context, name, version string) error {
	if version == "" {
		version = "v1.37.2"
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n := &corev1.Node{}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: name}, n); err != nil {
			return client.IgnoreNotFound(err)
		}
		if n.Status.NodeInfo.KubeletVersion == version && len(n.Status.Conditions) > 0 {
			return nil
		}
		n.Status.NodeInfo.KubeletVersion = version
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "kubelet is posting ready status", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		return env.Client.Status().Update(ctx, n)
	})
}

// finishEvictions is the kubelet of node finishing what an eviction started: its pods being
// deleted go at once.
func finishEvictions(ctx context.Context, node string) error {
	pods := &corev1.PodList{}
	if err := env.Client.List(ctx, pods, client.MatchingFields{"spec.nodeName": node}); err != nil {
		return err
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp.IsZero() {
			continue
		}
		if err := env.Client.Delete(ctx, p, client.GracePeriodSeconds(0)); client.IgnoreNotFound(err) != nil {
			return err
		}
	}
	return nil
}

// refusingInstaller is the SSH installer of a host whose SSH port refuses connections.
type refusingInstaller struct{}

func (refusingInstaller) Install(_ context.Context, in agentssh.InstallInput) (agentssh.InstallResult, error) {
	return agentssh.InstallResult{}, fmt.Errorf("ssh %s:%d: dial tcp %s:%d: connect: connection refused", in.Address, in.Port, in.Address, in.Port)
}

// fakeBootstrapper issues empty bootstraps (no agent API runs in these tests).
type fakeBootstrapper struct{}

func (fakeBootstrapper) Bootstrap(context.Context, *basaltv1.Host) (protocol.Bootstrap, error) {
	return protocol.Bootstrap{}, nil
}

func (fakeBootstrapper) RevokeTokens(context.Context, *basaltv1.Host) error { return nil }
