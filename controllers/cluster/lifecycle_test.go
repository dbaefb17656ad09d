package cluster_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/agents/planstore"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/artifacts"
	"github.com/basalt-dev/basalt/bootstrap/plan"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
	"github.com/basalt-dev/basalt/controllers/pkisecrets"
	"github.com/basalt-dev/basalt/controllers/topology"
	"github.com/basalt-dev/basalt/test/envtest"
)

// hostInput describes a Host as the agent leaves it after registering.
type hostInput struct {
	name    string
	labels  map[string]string
	address string
	// inspected is false for a Host whose agent registered but has not reported its hardware.
	inspected bool
}

// createHost creates an SSH Host declared as a test-bed container (systemd PID 1, cgroup v1) and
// moves it to Available, as its agent would.
func createHost(t *testing.T, ns string, in hostInput) *basaltv1.Host {
	t.Helper()
	h := &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{Name: in.name, Namespace: ns, Labels: in.labels},
		Spec: basaltv1.HostSpec{
			SSH: &basaltv1.SSHSpec{Address: in.address, PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: "ssh", Key: "id"}},
			OS:  &basaltv1.OSFacts{Container: ptr.To(true), SystemdPID1: ptr.To(true), CgroupVersion: 1},
		},
	}
	if err := env.Client.Create(context.Background(), h); err != nil {
		t.Fatalf("creating Host %s: %v", in.name, err)
	}
	return env.UpdateHostStatus(t, h, func(h *basaltv1.Host) {
		now := metav1.Now()
		h.Status.State = basaltv1.HostStateAvailable
		h.Status.Agent = basaltv1.AgentStatus{Version: "test", LastSeen: &now}
		if in.inspected {
			h.Status.Hardware = &basaltv1.Hardware{CPUs: 2, Memory: resource.NewQuantity(4<<30, resource.BinarySI)}
		}
	})
}

// inspect records hardware on a Host, as its agent's first report does.
func inspect(t *testing.T, h *basaltv1.Host) {
	t.Helper()
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) {
		h.Status.Hardware = &basaltv1.Hardware{CPUs: 2, Memory: resource.NewQuantity(4<<30, resource.BinarySI)}
	})
}

// clusterMachines returns the Machines of a Cluster by role, each list oldest first.
func clusterMachines(ctx context.Context, ns, name string) (cp, workers []basaltv1.Machine, err error) {
	ms, err := machines(ctx, ns, name)
	if err != nil {
		return nil, nil, err
	}
	slices.SortFunc(ms, func(a, b basaltv1.Machine) int { return topology.OldestFirst(&a, &b) })
	for _, m := range ms {
		if m.Spec.Role == basaltv1.RoleControlPlane {
			cp = append(cp, m)
		} else {
			workers = append(workers, m)
		}
	}
	return cp, workers, nil
}

// storedPlan returns the Plan stored for a Machine's Host and its hash.
func storedPlan(ctx context.Context, m *basaltv1.Machine) (*plan.Plan, string, error) {
	if m.Spec.HostRef == nil {
		return nil, "", fmt.Errorf("Machine %s has no Host", m.Name)
	}
	return planstore.LoadPlan(ctx, env.Client, m.Namespace, m.Spec.HostRef.Name)
}

// conditionIs checks a condition's status and, when reason is not empty, its reason.
func conditionIs(conds []metav1.Condition, t string, status metav1.ConditionStatus, reason string) error {
	c, err := envtest.Condition(conds, t)
	if err != nil {
		return err
	}
	if c.Status != status || (reason != "" && c.Reason != reason) {
		return fmt.Errorf("%s is %s/%s (%s), want %s/%s", t, c.Status, c.Reason, c.Message, status, reason)
	}
	return nil
}

// waitClusterReady waits until the Cluster is Running and Ready with every Machine Running.
func waitClusterReady(t *testing.T, c *basaltv1.Cluster, timeout time.Duration) *basaltv1.Cluster {
	t.Helper()
	ctx := context.Background()
	var got *basaltv1.Cluster
	envtest.Eventually(t, timeout, func() error {
		var err error
		if got, err = get(ctx, c); err != nil {
			return err
		}
		cp, workers, err := clusterMachines(ctx, c.Namespace, c.Name)
		if err != nil {
			return err
		}
		if got.Status.ObservedGeneration != got.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", got.Status.ObservedGeneration, got.Generation)
		}
		want := int(got.Spec.ControlPlane.Replicas)
		for _, w := range got.Spec.Workers {
			want += int(w.Replicas)
		}
		if n := len(cp) + len(workers); n != want {
			return fmt.Errorf("%d Machines, want %d", n, want)
		}
		for _, m := range slices.Concat(cp, workers) {
			if m.Status.Phase != basaltv1.MachinePhaseRunning {
				return fmt.Errorf("Machine %s is %s: %s", m.Name, m.Status.Phase, readyMessage(m.Status.Conditions))
			}
		}
		if err := conditionIs(got.Status.Conditions, basaltv1.ConditionReady, metav1.ConditionTrue, ""); err != nil {
			return err
		}
		if got.Status.Phase != basaltv1.ClusterPhaseRunning {
			return fmt.Errorf("phase %s", got.Status.Phase)
		}
		return nil
	})
	return got
}

func readyMessage(conds []metav1.Condition) string {
	c := meta.FindStatusCondition(conds, basaltv1.ConditionReady)
	if c == nil {
		return "no Ready condition"
	}
	return c.Reason + ": " + c.Message
}

func serviceNames(p *plan.Plan) []string {
	var out []string
	for _, s := range p.Services {
		out = append(out, s.Name)
	}
	slices.Sort(out)
	return out
}

// TestClusterComesUp: a 1+1 Cluster gets its PKI and kubeconfig Secrets, each Machine a valid
// Plan for its role once its agent has reported, distinct pod ranges; the Machines move
// Provisioning → Bootstrapping → Running as the simulated agents report, and the Cluster becomes
// Ready at spec.version with the Nodes it created in the workload cluster.
func TestClusterComesUp(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	h := startControllers(t, ns)
	agents := runAgents(t, ns, h.etcd)
	createHost(t, ns, hostInput{name: "cp-0", labels: cpLabels, address: "10.0.1.10", inspected: true})
	w0 := createHost(t, ns, hostInput{name: "w-0", labels: workerLabels, address: "10.0.1.20"}) // not inspected yet
	c := newCluster(ns, "one", 1, 1)
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}

	// The PKI and the kubeconfig are in Secrets owned by the Cluster.
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if err := conditionIs(got.Status.Conditions, basaltv1.ClusterCertificatesReady, metav1.ConditionTrue, basaltv1.ReasonReady); err != nil {
			return err
		}
		if got.Status.KubeconfigSecretRef == nil || got.Status.KubeconfigSecretRef.Name != "one-kubeconfig" || got.Status.CertificatesExpireAt == nil {
			return fmt.Errorf("kubeconfigSecretRef %v, certificatesExpireAt %v", got.Status.KubeconfigSecretRef, got.Status.CertificatesExpireAt)
		}
		if d := time.Until(got.Status.CertificatesExpireAt.Time); d < 364*24*time.Hour || d > 366*24*time.Hour {
			return fmt.Errorf("certificates expire in %s, want about a year", d)
		}
		sec := &corev1.Secret{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "one-pki"}, sec); err != nil {
			return err
		}
		if sec.Type != corev1.SecretTypeOpaque || len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].UID != got.UID {
			return fmt.Errorf("Secret one-pki: type %s, owners %v", sec.Type, sec.OwnerReferences)
		}
		for _, k := range []string{"ca.crt", "ca.key", "etcd-ca.crt", "etcd-ca.key", "front-proxy-ca.crt", "sa.key", "sa.pub", "admin.crt", "apiserver-etcd-client.key"} {
			if len(sec.Data[k]) == 0 {
				return fmt.Errorf("Secret one-pki has no %s (keys %v)", k, keysOf(sec.Data))
			}
		}
		if len(sec.Data[pkisecrets.EncryptionKeyKey]) != 32 {
			return fmt.Errorf("encryption key of %d bytes", len(sec.Data[pkisecrets.EncryptionKeyKey]))
		}
		cp, workers, err := clusterMachines(ctx, ns, "one")
		if err != nil {
			return err
		}
		if len(cp) != 1 || len(workers) != 1 {
			return fmt.Errorf("%d+%d Machines", len(cp), len(workers))
		}
		nodeSec := &corev1.Secret{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "one-pki-" + cp[0].Name}, nodeSec); err != nil {
			return err
		}
		for _, k := range []string{"apiserver-" + cp[0].Name + ".crt", "etcd-peer-" + cp[0].Name + ".key", "kubelet-serving-" + cp[0].Name + ".crt"} {
			if len(nodeSec.Data[k]) == 0 {
				return fmt.Errorf("Secret %s has no %s (keys %v)", nodeSec.Name, k, keysOf(nodeSec.Data))
			}
		}
		kc := &corev1.Secret{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "one-kubeconfig"}, kc); err != nil {
			return err
		}
		cfg, err := clientcmd.RESTConfigFromKubeConfig(kc.Data["value"])
		if err != nil {
			return err
		}
		if cfg.Host != "https://10.0.1.10:6443" || got.Status.ControlPlaneEndpoint == nil || got.Status.ControlPlaneEndpoint.Host != "10.0.1.10" {
			return fmt.Errorf("kubeconfig server %s, endpoint %v", cfg.Host, got.Status.ControlPlaneEndpoint)
		}
		return nil
	})

	// The worker's agent has registered but not reported its hardware: no Plan, Provisioning.
	agents.Hold(machineName(t, ns, "one", basaltv1.RoleWorker))
	envtest.Eventually(t, wait, func() error {
		_, workers, err := clusterMachines(ctx, ns, "one")
		if err != nil {
			return err
		}
		w := workers[0]
		if w.Status.Phase != basaltv1.MachinePhaseProvisioning {
			return fmt.Errorf("worker phase %s", w.Status.Phase)
		}
		return conditionIs(w.Status.Conditions, basaltv1.MachinePlanApplied, metav1.ConditionFalse, basaltv1.ReasonWaitingForAgent)
	})
	// Once it has, its Plan is stored; while its agent has not applied it, it is Bootstrapping.
	inspect(t, w0)
	envtest.Eventually(t, wait, func() error {
		_, workers, err := clusterMachines(ctx, ns, "one")
		if err != nil {
			return err
		}
		w := workers[0]
		if w.Status.Phase != basaltv1.MachinePhaseBootstrapping {
			return fmt.Errorf("worker phase %s: %s", w.Status.Phase, readyMessage(w.Status.Conditions))
		}
		return conditionIs(w.Status.Conditions, basaltv1.MachinePlanApplied, metav1.ConditionFalse, basaltv1.ReasonApplying)
	})
	agents.Release(machineName(t, ns, "one", basaltv1.RoleWorker))

	got := waitClusterReady(t, c, wait)
	if got.Status.Version != "v1.37.2" || got.Status.ControlPlane.Ready != 1 || got.Status.Workers.Ready != 1 || got.Status.Workers.Updated != 1 {
		t.Errorf("version %q, control plane %+v, workers %+v", got.Status.Version, got.Status.ControlPlane, got.Status.Workers)
	}
	for _, ct := range []string{basaltv1.ClusterEtcdReady, basaltv1.ClusterControlPlaneReady, basaltv1.ClusterWorkersReady, basaltv1.ClusterUpToDate} {
		if err := conditionIs(got.Status.Conditions, ct, metav1.ConditionTrue, ""); err != nil {
			t.Error(err)
		}
	}
	if !h.workloadServers()["https://10.0.1.10:6443"] {
		t.Errorf("the workload cluster was reached at %v, want the kubeconfig's server https://10.0.1.10:6443", h.workloadServers())
	}

	cp, workers, err := clusterMachines(ctx, ns, "one")
	if err != nil {
		t.Fatal(err)
	}
	cpm, wm := cp[0], workers[0]
	// Machines: pod ranges distinct in the pod CIDR, Node name and kubelet version, every
	// condition True.
	for _, m := range []basaltv1.Machine{cpm, wm} {
		p, err := netip.ParsePrefix(m.Status.PodCIDR)
		if err != nil || p.Bits() != 24 || !netip.MustParsePrefix("10.244.0.0/16").Contains(p.Addr()) {
			t.Errorf("Machine %s has pod range %q", m.Name, m.Status.PodCIDR)
		}
		if m.Status.NodeName != m.Name || m.Status.Version != "v1.37.2" {
			t.Errorf("Machine %s: nodeName %q version %q", m.Name, m.Status.NodeName, m.Status.Version)
		}
		for _, ct := range []string{basaltv1.MachineHostBound, basaltv1.MachineAgentConnected, basaltv1.MachinePlanApplied, basaltv1.MachineNodeReady, basaltv1.ConditionReady} {
			if err := conditionIs(m.Status.Conditions, ct, metav1.ConditionTrue, ""); err != nil {
				t.Errorf("Machine %s: %v", m.Name, err)
			}
		}
		n := &corev1.Node{}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: m.Name}, n); err != nil {
			t.Fatalf("workload Node %s: %v", m.Name, err)
		}
		if n.Spec.PodCIDR != m.Status.PodCIDR {
			t.Errorf("Node %s has spec.podCIDR %q, Machine %q", n.Name, n.Spec.PodCIDR, m.Status.PodCIDR)
		}
		if _, isCP := n.Labels["node-role.kubernetes.io/control-plane"]; isCP != (m.Spec.Role == basaltv1.RoleControlPlane) {
			t.Errorf("Node %s labels %v", n.Name, n.Labels)
		}
	}
	if cpm.Status.PodCIDR == wm.Status.PodCIDR {
		t.Errorf("both Machines have pod range %s", cpm.Status.PodCIDR)
	}
	if cpm.Status.Etcd == nil || cpm.Status.Etcd.Join || cpm.Status.Etcd.Learner {
		t.Errorf("the control-plane Machine's etcd record is %+v, want the initialising member", cpm.Status.Etcd)
	}
	if member, ok := h.etcd.Member(cpm.Name); !ok || cpm.Status.EtcdMemberID != etcdcluster.HexID(member.ID) {
		t.Errorf("etcdMemberID %q, etcd has %+v", cpm.Status.EtcdMemberID, member)
	}

	// Plans: the control plane runs etcd and the API server; the worker does not; each routes to
	// the other's pod range and balances to the one API server.
	cpPlan, cpHash, err := storedPlan(ctx, &cpm)
	if err != nil {
		t.Fatal(err)
	}
	wPlan, wHash, err := storedPlan(ctx, &wm)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := serviceNames(cpPlan), []string{"containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-proxy", "kube-scheduler", "kubelet"}; !slices.Equal(got, want) {
		t.Errorf("control-plane Plan runs %v, want %v", got, want)
	}
	if got, want := serviceNames(wPlan), []string{"containerd", "kube-proxy", "kubelet"}; !slices.Equal(got, want) {
		t.Errorf("worker Plan runs %v, want %v", got, want)
	}
	// Each Plan names its Cluster by UID, so an agent that holds another Cluster's state wipes it
	// before applying.
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(c), c); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*plan.Plan{cpPlan, wPlan} {
		if want := (plan.ClusterRef{Namespace: ns, Name: c.Name, UID: string(c.UID)}); p.Cluster == nil || *p.Cluster != want {
			t.Errorf("Plan of %s names Cluster %v, want %v", p.Host, p.Cluster, want)
		}
	}
	for _, tc := range []struct {
		p     *plan.Plan
		route plan.Route
	}{{cpPlan, plan.Route{Destination: wm.Status.PodCIDR, Gateway: "10.0.1.20"}}, {wPlan, plan.Route{Destination: cpm.Status.PodCIDR, Gateway: "10.0.1.10"}}} {
		if !slices.Equal(tc.p.Routes, []plan.Route{tc.route}) {
			t.Errorf("Plan of %s has routes %v, want %v", tc.p.Host, tc.p.Routes, tc.route)
		}
		if len(tc.p.LoadBalancers) != 1 || !slices.Equal(tc.p.LoadBalancers[0].Backends, []string{"10.0.1.10:6443"}) {
			t.Errorf("Plan of %s has load balancers %+v", tc.p.Host, tc.p.LoadBalancers)
		}
		if err := tc.p.Validate(); err != nil {
			t.Errorf("Plan of %s: %v", tc.p.Host, err)
		}
	}
	for _, f := range wPlan.Files {
		if strings.Contains(f.Path, "/etcd/") || strings.HasSuffix(f.Path, "sa.key") {
			t.Errorf("the worker Plan carries %s", f.Path)
		}
	}
	if !slices.ContainsFunc(cpPlan.Files, func(f plan.File) bool {
		return strings.HasSuffix(f.Path, "kubelet/config.yaml") && strings.Contains(string(f.Content), "cgroupDriver: cgroupfs")
	}) {
		t.Error("the control-plane Plan's kubelet does not use the cgroupfs driver of a cgroup v1 host")
	}

	// Steady state: more reconciles change no pod range and no Plan.
	touch(t, c)
	for _, m := range []*basaltv1.Machine{&cpm, &wm} {
		touch(t, m)
	}
	time.Sleep(2 * time.Second)
	cp2, workers2, err := clusterMachines(ctx, ns, "one")
	if err != nil {
		t.Fatal(err)
	}
	if cp2[0].Status.PodCIDR != cpm.Status.PodCIDR || workers2[0].Status.PodCIDR != wm.Status.PodCIDR {
		t.Errorf("pod ranges moved: %s → %s, %s → %s", cpm.Status.PodCIDR, cp2[0].Status.PodCIDR, wm.Status.PodCIDR, workers2[0].Status.PodCIDR)
	}
	if _, h2, _ := storedPlan(ctx, &cpm); h2 != cpHash {
		t.Errorf("control-plane Plan changed without a cause: %s → %s", cpHash, h2)
	}
	if _, h2, _ := storedPlan(ctx, &wm); h2 != wHash {
		t.Errorf("worker Plan changed without a cause: %s → %s", wHash, h2)
	}

	// A second worker gets a third range; the first two keep theirs, and the control plane's Plan
	// gains a route to it.
	createHost(t, ns, hostInput{name: "w-1", labels: workerLabels, address: "10.0.1.21", inspected: true})
	updateCluster(t, c, func(c *basaltv1.Cluster) {
		c.Spec.Workers[0].Replicas = 2
	})
	waitClusterReady(t, c, wait)
	cp3, workers3, err := clusterMachines(ctx, ns, "one")
	if err != nil {
		t.Fatal(err)
	}
	ranges := map[string]string{}
	for _, m := range slices.Concat(cp3, workers3) {
		if other, dup := ranges[m.Status.PodCIDR]; dup {
			t.Errorf("Machines %s and %s share pod range %s", other, m.Name, m.Status.PodCIDR)
		}
		ranges[m.Status.PodCIDR] = m.Name
	}
	if cp3[0].Status.PodCIDR != cpm.Status.PodCIDR || workers3[0].Status.PodCIDR != wm.Status.PodCIDR || len(ranges) != 3 {
		t.Errorf("pod ranges after scale-up: %v", ranges)
	}
	envtest.Eventually(t, wait, func() error {
		p, _, err := storedPlan(ctx, &cpm)
		if err != nil {
			return err
		}
		if len(p.Routes) != 2 {
			return fmt.Errorf("control-plane Plan routes %v, want 2", p.Routes)
		}
		return nil
	})
}

// TestCertificateRenewalChangesPlans: certificates that enter their renewal window are re-issued
// from the same CAs, stored, and reach the nodes as new Plans.
func TestCertificateRenewalChangesPlans(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	h := startControllers(t, ns)
	runAgents(t, ns, h.etcd)
	createHost(t, ns, hostInput{name: "cp-0", labels: cpLabels, address: "10.0.2.10", inspected: true})
	createHost(t, ns, hostInput{name: "w-0", labels: workerLabels, address: "10.0.2.20", inspected: true})
	c := newCluster(ns, "renew", 1, 1)
	c.Spec.Certificates = basaltv1.CertificatesSpec{ValidityDays: 2, RenewBeforeDays: 1}
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	before := waitClusterReady(t, c, wait)
	cp, workers, err := clusterMachines(ctx, ns, "renew")
	if err != nil {
		t.Fatal(err)
	}
	cpPlan, cpHash, err := storedPlan(ctx, &cp[0])
	if err != nil {
		t.Fatal(err)
	}
	_, wHash, err := storedPlan(ctx, &workers[0])
	if err != nil {
		t.Fatal(err)
	}
	ca := pkiData(t, ns, "renew-pki")["ca.crt"]

	h.clock.Advance(30 * time.Hour) // past the renewal point, one day before expiry
	touch(t, c)
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if got.Status.CertificatesExpireAt == nil || !got.Status.CertificatesExpireAt.After(before.Status.CertificatesExpireAt.Add(24*time.Hour)) {
			return fmt.Errorf("certificates expire at %v, before at %v", got.Status.CertificatesExpireAt, before.Status.CertificatesExpireAt)
		}
		_, cpHash2, err := storedPlan(ctx, &cp[0])
		if err != nil {
			return err
		}
		_, wHash2, err := storedPlan(ctx, &workers[0])
		if err != nil {
			return err
		}
		if cpHash2 == cpHash || wHash2 == wHash {
			return fmt.Errorf("Plans not renewed: control plane %s → %s, worker %s → %s", cpHash[:12], cpHash2[:12], wHash[:12], wHash2[:12])
		}
		return nil
	})
	if got := pkiData(t, ns, "renew-pki")["ca.crt"]; string(got) != string(ca) {
		t.Error("the cluster CA changed on renewal")
	}
	cpPlan2, _, err := storedPlan(ctx, &cp[0])
	if err != nil {
		t.Fatal(err)
	}
	if string(fileOf(cpPlan, "/etc/basalt/pki/apiserver.crt")) == string(fileOf(cpPlan2, "/etc/basalt/pki/apiserver.crt")) {
		t.Error("the API server certificate in the Plan was not renewed")
	}
	// The simulated agents apply the new Plans: the cluster is Ready again.
	waitClusterReady(t, c, wait)
}

// TestEtcdMembersJoinOneAtATime: with three control-plane Machines, the first initialises etcd and
// the others join as learners, one at a time; a learner's Plan runs no API server until it is
// promoted; each Machine's join list is recorded once and never changes.
func TestEtcdMembersJoinOneAtATime(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	h := startControllers(t, ns)
	runAgents(t, ns, h.etcd)
	for i := range 3 {
		createHost(t, ns, hostInput{name: fmt.Sprintf("cp-%d", i), labels: cpLabels, address: fmt.Sprintf("10.0.3.1%d", i), inspected: true})
	}
	c := newCluster(ns, "three", 3, 0)
	h.etcd.HoldPromotions(true)
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}

	// While etcd refuses to promote the first learner, it runs etcd but no API server, is not
	// Ready, and the control plane is not Ready either.
	envtest.Eventually(t, wait, func() error {
		cp, _, err := clusterMachines(ctx, ns, "three")
		if err != nil {
			return err
		}
		for i := range cp {
			m := &cp[i]
			if m.Status.Etcd == nil || !m.Status.Etcd.Learner {
				continue
			}
			p, hash, err := storedPlan(ctx, m)
			if err != nil {
				return err
			}
			if m.Status.PlanHash != hash {
				return fmt.Errorf("learner %s has not applied its Plan yet", m.Name)
			}
			if !has(p, "etcd") || has(p, "kube-apiserver") || has(p, "kube-scheduler") {
				t.Fatalf("the Plan of learner %s runs %v", m.Name, serviceNames(p))
			}
			if err := conditionIs(m.Status.Conditions, basaltv1.ConditionReady, metav1.ConditionFalse, basaltv1.ReasonWaitingForEtcdMember); err != nil {
				return fmt.Errorf("learner %s: %w", m.Name, err)
			}
			got, err := get(ctx, c)
			if err != nil {
				return err
			}
			if err := conditionIs(got.Status.Conditions, basaltv1.ClusterEtcdReady, metav1.ConditionFalse, ""); err != nil {
				return err
			}
			return conditionIs(got.Status.Conditions, basaltv1.ClusterControlPlaneReady, metav1.ConditionFalse, "")
		}
		return errors.New("no learner yet")
	})
	h.etcd.HoldPromotions(false)

	records := map[string]*basaltv1.MachineEtcd{}
	envtest.Eventually(t, wait, func() error {
		cp, _, err := clusterMachines(ctx, ns, "three")
		if err != nil {
			return err
		}
		learners := 0
		for i := range cp {
			m := &cp[i]
			e := m.Status.Etcd
			if e == nil {
				continue
			}
			if first, ok := records[m.Name]; !ok {
				records[m.Name] = e.DeepCopy()
			} else if first.Join != e.Join || !slices.Equal(first.InitialCluster, e.InitialCluster) {
				t.Fatalf("the etcd join list of %s changed: %+v → %+v", m.Name, first, e)
			}
			if e.Learner {
				learners++
				if p, _, err := storedPlan(ctx, m); err == nil && has(p, "kube-apiserver") {
					t.Fatalf("the Plan of learner %s runs kube-apiserver", m.Name)
				}
			}
		}
		if learners > 1 {
			t.Fatalf("%d learners at once", learners)
		}
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if err := conditionIs(got.Status.Conditions, basaltv1.ConditionReady, metav1.ConditionTrue, ""); err != nil {
			return err
		}
		return conditionIs(got.Status.Conditions, basaltv1.ClusterEtcdReady, metav1.ConditionTrue, etcdcluster.ReasonInSync)
	})
	// Every Plan balances to the three API servers once the last promotion reached the peers.
	var cp []basaltv1.Machine
	envtest.Eventually(t, wait, func() error {
		var err error
		if cp, _, err = clusterMachines(ctx, ns, "three"); err != nil {
			return err
		}
		for i := range cp {
			p, _, err := storedPlan(ctx, &cp[i])
			if err != nil {
				return err
			}
			if !has(p, "kube-apiserver") || len(p.LoadBalancers[0].Backends) != 3 {
				return fmt.Errorf("the Plan of %s runs %v and balances to %v", cp[i].Name, serviceNames(p), p.LoadBalancers[0].Backends)
			}
		}
		return nil
	})
	hist := h.etcd.History()
	var kinds []string
	for _, a := range hist {
		kinds = append(kinds, strings.Fields(a)[0])
	}
	if want := []string{"Initialise", "AddLearner", "Promote", "AddLearner", "Promote"}; !slices.Equal(kinds, want) {
		t.Errorf("etcd saw %v, want one change at a time: %v", hist, want)
	}
	initialiser := ""
	for _, m := range cp {
		e := m.Status.Etcd
		member, ok := h.etcd.Member(m.Name)
		if !ok || m.Status.EtcdMemberID != etcdcluster.HexID(member.ID) || member.IsLearner || e == nil || e.Learner {
			t.Errorf("Machine %s: etcdMemberID %q, record %+v, member %+v", m.Name, m.Status.EtcdMemberID, e, member)
			continue
		}
		if !e.Join {
			initialiser = m.Name
			continue
		}
		self := basaltv1.EtcdPeer{Name: m.Name, PeerURL: topology.EtcdPeerURL(netip.MustParseAddr(m.Status.Addresses[0]))}
		if !slices.Contains(e.InitialCluster, self) || len(e.InitialCluster) < 2 {
			t.Errorf("Machine %s joined with %+v", m.Name, e.InitialCluster)
		}
	}
	if len(hist) == 0 || hist[0] != "Initialise "+initialiser {
		t.Errorf("the Machine recorded as initialising etcd is %q; etcd saw %v", initialiser, hist)
	}

	// Back to one: each Machine leaving waits for its etcd member to be removed and for its agent
	// to wipe the host (the empty Plan), then frees its Host; the survivor balances to itself.
	updateCluster(t, c, func(c *basaltv1.Cluster) {
		c.Spec.ControlPlane.Replicas = 1
	})
	got := waitClusterReady(t, c, wait)
	if err := conditionIs(got.Status.Conditions, basaltv1.ClusterEtcdReady, metav1.ConditionTrue, etcdcluster.ReasonInSync); err != nil {
		t.Error(err)
	}
	left, _, err := clusterMachines(ctx, ns, "three")
	if err != nil {
		t.Fatal(err)
	}
	members, _ := h.etcd.Members(ctx)
	if len(left) != 1 || len(members) != 1 || members[0].Name != left[0].Name {
		t.Fatalf("Machines %v, etcd members %+v", left, members)
	}
	removed := 0
	for _, a := range h.etcd.History() {
		if strings.HasPrefix(a, "Remove ") {
			removed++
		}
	}
	if removed != 2 {
		t.Errorf("etcd saw %v, want two removals", h.etcd.History())
	}
	envtest.Eventually(t, wait, func() error {
		p, _, err := storedPlan(ctx, &left[0])
		if err != nil {
			return err
		}
		if want := []string{topology.APIServerAddress(netip.MustParseAddr(left[0].Status.Addresses[0]))}; !slices.Equal(p.LoadBalancers[0].Backends, want) {
			return fmt.Errorf("the survivor balances to %v, want %v", p.LoadBalancers[0].Backends, want)
		}
		hs, err := hosts(ctx, ns)
		if err != nil {
			return err
		}
		for _, h := range hs {
			if h.Name == left[0].Spec.HostRef.Name {
				continue
			}
			if h.Status.ConsumerRef != nil {
				return fmt.Errorf("Host %s still claimed by %s", h.Name, h.Status.ConsumerRef.Name)
			}
			if _, _, err := planstore.LoadPlan(ctx, env.Client, ns, h.Name); !errors.Is(err, planstore.ErrNoPlan) {
				return fmt.Errorf("Host %s still has a Plan: %w", h.Name, err)
			}
		}
		return nil
	})
}

// TestFailuresShowOnMachineAndCluster: an SSH failure, a failed apply step (checksum mismatch), a
// crashing component and a silent agent each show, with their reason, on the Machine and on the
// Cluster.
func TestFailuresShowOnMachineAndCluster(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	h := startControllers(t, ns)
	agents := runAgents(t, ns, h.etcd)
	env.CreateSSHKeySecret(t, ns)

	// SSH: the only Host of the control plane refuses SSH connections.
	bad := &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{Name: "unreachable", Namespace: ns, Labels: map[string]string{"role": "broken"}},
		Spec:       basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{Address: "10.0.4.99", PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: "ssh", Key: "id"}}},
	}
	if err := env.Client.Create(ctx, bad); err != nil {
		t.Fatal(err)
	}
	broken := newCluster(ns, "broken", 1, 0)
	broken.Spec.ControlPlane.HostSelector = metav1.LabelSelector{MatchLabels: map[string]string{"role": "broken"}}
	if err := env.Client.Create(ctx, broken); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, broken)
		if err != nil {
			return err
		}
		if err := conditionIs(got.Status.Conditions, basaltv1.ConditionReady, metav1.ConditionFalse, basaltv1.ReasonInstallFailed); err != nil {
			return err
		}
		hb := meta.FindStatusCondition(got.Status.Conditions, basaltv1.ClusterHostsBound)
		if !strings.Contains(hb.Message, "unreachable") || !strings.Contains(hb.Message, "connection refused") {
			return fmt.Errorf("HostsBound message %q", hb.Message)
		}
		// The Cluster's Machine, which no Host can be bound to, says why with the same reason.
		cp, _, err := clusterMachines(ctx, ns, "broken")
		if err != nil {
			return err
		}
		if len(cp) != 1 {
			return fmt.Errorf("%d Machines", len(cp))
		}
		if err := conditionIs(cp[0].Status.Conditions, basaltv1.MachineHostBound, metav1.ConditionFalse, basaltv1.ReasonInstallFailed); err != nil {
			return err
		}
		return conditionIs(cp[0].Status.Conditions, basaltv1.ConditionReady, metav1.ConditionFalse, basaltv1.ReasonInstallFailed)
	})

	// A running 1+1 cluster.
	createHost(t, ns, hostInput{name: "cp-0", labels: cpLabels, address: "10.0.4.10", inspected: true})
	w0 := createHost(t, ns, hostInput{name: "w-0", labels: workerLabels, address: "10.0.4.20", inspected: true})
	c := newCluster(ns, "fails", 1, 1)
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	waitClusterReady(t, c, wait)
	cpName, wName := machineName(t, ns, "fails", basaltv1.RoleControlPlane), machineName(t, ns, "fails", basaltv1.RoleWorker)

	// A checksum mismatch on the worker, as the agent reports it.
	agents.Hold(wName)
	setMachineStatus(t, ns, wName, func(m *basaltv1.Machine) {
		m.Status.PlanHash = "0000000000000000000000000000000000000000000000000000000000000000"
		m.Status.FailedSteps = []basaltv1.PlanStepError{{Step: "artifact:kubelet", Error: "sha256 mismatch: got 5e1f..., the Plan says 9a3c..."}}
	})
	expectFailure(t, c, wName, basaltv1.ClusterWorkersReady, basaltv1.ReasonApplyFailed, "sha256 mismatch")
	agents.Release(wName)
	waitClusterReady(t, c, wait)

	// A crashing kube-apiserver on the control plane.
	agents.Hold(cpName)
	setMachineStatus(t, ns, cpName, func(m *basaltv1.Machine) {
		for i := range m.Status.Components {
			if m.Status.Components[i].Name == "kube-apiserver" {
				m.Status.Components[i].Healthy = false
				m.Status.Components[i].Message = "GET https://127.0.0.1:6443/readyz: connection refused (restarted 5 times)"
			}
		}
	})
	expectFailure(t, c, cpName, basaltv1.ClusterControlPlaneReady, basaltv1.ReasonComponentUnhealthy, "kube-apiserver: GET https://127.0.0.1:6443/readyz")
	agents.Release(cpName)
	waitClusterReady(t, c, wait)

	// The worker's agent goes silent.
	agents.Hold(wName)
	env.UpdateHostStatus(t, w0, func(h *basaltv1.Host) {
		old := metav1.NewTime(time.Now().Add(-time.Hour))
		h.Status.Agent.LastSeen = &old
	})
	expectFailure(t, c, wName, basaltv1.ClusterWorkersReady, basaltv1.ReasonAgentSilent, "more than")
}

// expectFailure waits until Machine name is not Ready with reason, and the Cluster's condition
// condType carries the same reason and a message containing text.
func expectFailure(t *testing.T, c *basaltv1.Cluster, name, condType, reason, text string) {
	t.Helper()
	ctx := context.Background()
	envtest.Eventually(t, wait, func() error {
		m := &basaltv1.Machine{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, m); err != nil {
			return err
		}
		if err := conditionIs(m.Status.Conditions, basaltv1.ConditionReady, metav1.ConditionFalse, reason); err != nil {
			return fmt.Errorf("Machine %s: %w", name, err)
		}
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if err := conditionIs(got.Status.Conditions, condType, metav1.ConditionFalse, reason); err != nil {
			return err
		}
		if msg := meta.FindStatusCondition(got.Status.Conditions, condType).Message; !strings.Contains(msg, text) || !strings.Contains(msg, name) {
			return fmt.Errorf("%s message %q does not name %s and %q", condType, msg, name, text)
		}
		return conditionIs(got.Status.Conditions, basaltv1.ConditionReady, metav1.ConditionFalse, reason)
	})
}

// setMachineStatus writes a Machine's status as the agent API does, with an optimistic lock.
func setMachineStatus(t *testing.T, ns, name string, mutate func(*basaltv1.Machine)) {
	t.Helper()
	ctx := context.Background()
	envtest.Eventually(t, wait, func() error {
		m := &basaltv1.Machine{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, m); err != nil {
			return err
		}
		before := m.DeepCopy()
		mutate(m)
		return env.Client.Status().Patch(ctx, m, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
	})
}

// machineName returns the name of the (first) Machine of a role.
func machineName(t *testing.T, ns, cluster string, role basaltv1.MachineRole) string {
	t.Helper()
	var name string
	envtest.Eventually(t, wait, func() error {
		cp, workers, err := clusterMachines(context.Background(), ns, cluster)
		if err != nil {
			return err
		}
		ms := cp
		if role == basaltv1.RoleWorker {
			ms = workers
		}
		if len(ms) == 0 {
			return errors.New("no Machine yet")
		}
		name = ms[0].Name
		return nil
	})
	return name
}

// updateCluster applies mutate to the latest Cluster and updates it, retrying on conflict: the
// controller writes the Cluster's status concurrently.
func updateCluster(t *testing.T, c *basaltv1.Cluster, mutate func(*basaltv1.Cluster)) {
	t.Helper()
	ctx := context.Background()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(c), c); err != nil {
			return err
		}
		mutate(c)
		return env.Client.Update(ctx, c)
	})
	if err != nil {
		t.Fatalf("updating Cluster %s: %v", c.Name, err)
	}
}

// touch changes an annotation, which makes the controllers reconcile the object.
func touch(t *testing.T, obj client.Object) {
	t.Helper()
	ctx := context.Background()
	envtest.Eventually(t, wait, func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		a := obj.GetAnnotations()
		if a == nil {
			a = map[string]string{}
		}
		a["test.basalt.dev/touched"] = time.Now().Format(time.RFC3339Nano)
		obj.SetAnnotations(a)
		return env.Client.Update(ctx, obj)
	})
}

func pkiData(t *testing.T, ns, name string) map[string][]byte {
	t.Helper()
	sec := &corev1.Secret{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, sec); err != nil {
		t.Fatal(err)
	}
	return sec.Data
}

func fileOf(p *plan.Plan, path string) []byte {
	if f := fileEntry(p, path); f != nil {
		return f.Content
	}
	return nil
}

func keysOf(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestRegistriesReachPlans: spec.registries with a Secret that does not exist holds the Plan with
// reason RegistrySecretInvalid on the Machine; once the Secret exists every node's Plan carries
// containerd's hosts.toml with the mirror and its credentials (mode 0600), and a rotated password
// reaches the Plans with no Machine restarted.
func TestRegistriesReachPlans(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	h := startControllers(t, ns)
	runAgents(t, ns, h.etcd)
	createHost(t, ns, hostInput{name: "cp-0", labels: cpLabels, address: "10.0.6.10", inspected: true})
	c := newCluster(ns, "mirrored", 1, 0)
	c.Spec.Registries = []basaltv1.Registry{{Host: "docker.io", Mirrors: []basaltv1.RegistryMirror{{URL: "https://mirror.lan:5000",
		CredentialsSecretRef: &basaltv1.LocalObjectReference{Name: "pull"}}}}}
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	var m basaltv1.Machine
	envtest.Eventually(t, wait, func() error {
		cp, _, err := clusterMachines(ctx, ns, "mirrored")
		if err != nil || len(cp) != 1 {
			return fmt.Errorf("%d control-plane Machines (%w)", len(cp), err)
		}
		m = cp[0]
		if err := conditionIs(m.Status.Conditions, basaltv1.MachinePlanApplied, metav1.ConditionFalse, basaltv1.ReasonRegistrySecretInvalid); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(m.Status.Conditions, basaltv1.MachinePlanApplied)
		if !strings.Contains(cond.Message, "spec.registries[0].mirrors[0].credentialsSecretRef") || !strings.Contains(cond.Message, "does not exist") {
			return fmt.Errorf("PlanApplied message %q does not name the field and the missing Secret", cond.Message)
		}
		return nil
	})
	if _, _, err := storedPlan(ctx, &m); !errors.Is(err, planstore.ErrNoPlan) {
		t.Fatalf("a Plan was stored while a registry Secret is missing (%v)", err)
	}

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pull"}, Type: corev1.SecretTypeBasicAuth,
		Data: map[string][]byte{"username": []byte("puller"), "password": []byte("first")}}
	if err := env.Client.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	waitClusterReady(t, c, wait)
	const hostsToml = "/etc/basalt/containerd/certs.d/docker.io/hosts.toml"
	auth := func(pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte("puller:"+pass))
	}
	p, _, err := storedPlan(ctx, &m)
	if err != nil {
		t.Fatal(err)
	}
	f := fileEntry(p, hostsToml)
	if f == nil || f.Mode != 0o600 || !strings.Contains(string(f.Content), "[host.'https://mirror.lan:5000']") || !strings.Contains(string(f.Content), auth("first")) {
		t.Fatalf("Plan file %s: %+v", hostsToml, f)
	}
	before := map[string]string{}
	for _, s := range p.Services {
		before[s.Name], _ = p.ServiceHash(s.Name)
	}

	secret.Data["password"] = []byte("rotated")
	if err := env.Client.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	touch(t, c)
	envtest.Eventually(t, wait, func() error {
		p, _, err := storedPlan(ctx, &m)
		if err != nil {
			return err
		}
		if f := fileEntry(p, hostsToml); f == nil || !strings.Contains(string(f.Content), auth("rotated")) {
			return fmt.Errorf("the rotated password is not in the Plan yet")
		}
		for _, s := range p.Services {
			if h, _ := p.ServiceHash(s.Name); h != before[s.Name] {
				return fmt.Errorf("service %s would restart for a rotated registry password", s.Name)
			}
		}
		return nil
	})
}

func fileEntry(p *plan.Plan, path string) *plan.File {
	for i := range p.Files {
		if p.Files[i].Path == path {
			return &p.Files[i]
		}
	}
	return nil
}

// TestArtifactMirror: a manager with no artifact set of its own brings a Cluster up from
// spec.artifacts.mirror, an HTTP server laid out as hack/build-artifacts.sh writes sets. The
// Plans name the mirror's artifacts, the cache fetches one from the mirror and checks it, and a
// version the mirror does not serve holds the Machine with ArtifactSetNotFound naming the URL.
func TestArtifactMirror(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	sets := artifactSets(t)
	set := sets["v1.37.2"]
	var requests sync.Map
	mirror := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := requests.LoadOrStore(r.URL.Path, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		http.StripPrefix("/sets", http.FileServer(http.Dir(filepath.Dir(set.Dir)))).ServeHTTP(w, r)
	}))
	t.Cleanup(mirror.Close)
	h := startControllersWith(t, ns, nil) // no local set
	runAgents(t, ns, h.etcd)
	createHost(t, ns, hostInput{name: "cp-0", labels: cpLabels, address: "10.0.7.10", inspected: true})
	c := newCluster(ns, "mirrored", 1, 0)
	c.Spec.Artifacts.Mirror = mirror.URL + "/sets"
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	waitClusterReady(t, c, wait)
	cp, _, err := clusterMachines(ctx, ns, "mirrored")
	if err != nil || len(cp) != 1 {
		t.Fatalf("%d Machines (%v)", len(cp), err)
	}
	p, _, err := storedPlan(ctx, &cp[0])
	if err != nil {
		t.Fatal(err)
	}
	want, _ := set.Manifest.Get("kubelet")
	var kubelet *plan.Artifact
	for i := range p.Artifacts {
		if p.Artifacts[i].Name == "kubelet" {
			kubelet = &p.Artifacts[i]
		}
	}
	if kubelet == nil || kubelet.SHA256 != want.SHA256 {
		t.Fatalf("the Plan's kubelet %+v, want the mirror's %s", kubelet, want.SHA256)
	}
	path, err := h.artifacts.Ensure(ctx, want.SHA256)
	if err != nil {
		t.Fatalf("the cache could not fetch the kubelet from the mirror: %v", err)
	}
	if sum, size, err := artifacts.HashFile(path); err != nil || sum != want.SHA256 || size != want.Size {
		t.Fatalf("cached kubelet %s (%d bytes, %v), want %s", sum, size, err, want.SHA256)
	}
	if _, err := h.artifacts.Ensure(ctx, want.SHA256); err != nil {
		t.Fatal(err)
	}
	countOf := func(p string) int32 {
		if n, ok := requests.Load(p); ok {
			return n.(*atomic.Int32).Load()
		}
		return 0
	}
	if n := countOf("/sets/v1.37.2/" + want.Path); n != 1 {
		t.Errorf("the mirror served the kubelet %d times, want once", n)
	}
	if n := countOf("/sets/v1.37.2/manifest.json"); n < 1 || n > 5 {
		t.Errorf("the mirror served the manifest %d times while one Cluster came up (it is kept, not fetched per reconcile)", n)
	}

	// A version the mirror does not serve.
	missing := newCluster(ns, "missing", 1, 0)
	missing.Spec.Version = "v1.37.99"
	missing.Spec.Artifacts.Mirror = mirror.URL + "/sets"
	createHost(t, ns, hostInput{name: "cp-1", labels: map[string]string{"role": "missing"}, address: "10.0.7.11", inspected: true})
	missing.Spec.ControlPlane.HostSelector = metav1.LabelSelector{MatchLabels: map[string]string{"role": "missing"}}
	if err := env.Client.Create(ctx, missing); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, wait, func() error {
		cp, _, err := clusterMachines(ctx, ns, "missing")
		if err != nil || len(cp) != 1 {
			return fmt.Errorf("%d Machines (%w)", len(cp), err)
		}
		if err := conditionIs(cp[0].Status.Conditions, basaltv1.MachinePlanApplied, metav1.ConditionFalse, basaltv1.ReasonArtifactSetNotFound); err != nil {
			return err
		}
		msg := meta.FindStatusCondition(cp[0].Status.Conditions, basaltv1.MachinePlanApplied).Message
		if !strings.Contains(msg, mirror.URL+"/sets/v1.37.99/manifest.json") || !strings.Contains(msg, "404") {
			return fmt.Errorf("message %q does not name the manifest URL and the 404", msg)
		}
		return nil
	})
}
