package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/hostclaim"
	"github.com/basalt-dev/basalt/test/e2e/bed"
	"github.com/basalt-dev/basalt/test/e2e/framework"
	"github.com/basalt-dev/basalt/test/envtest"
)

// upgradeFromVersion is the release TestClusterHA starts at and upgrades from.
const upgradeFromVersion = "v1.36.3"

// TestClusterHA applies one Cluster at v1.36.3 with 3 control-plane and 2 worker machines (and a
// spare control-plane host): etcd forms with three healthy voters (learners promoted one at a
// time), /readyz answers through the endpoint, all 5 nodes are Ready, a Deployment of the test
// web server with 2 replicas spread over two nodes runs, a ClusterIP Service reaches both pods
// from a third node, and a pod on one node reaches a pod on another by pod IP. Then, on the same
// cluster: scaling 3→1→3 / 2→1→2 without losing the API; an in-place upgrade to v1.37.2 while
// requests to the web server are counted (before it, the encryption key is rotated:
// encryption_test.go); and a stopped control-plane host remediated onto the
// spare while the API keeps answering.
func TestClusterHA(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: needs Docker and the test bed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	prevDir := artifactSet(t, upgradeFromVersion)
	setDir := artifactSet(t, etcdTestVersion)
	b := framework.NewBed(ctx, t, bed.Options{Hosts: 6, Name: "ha"})
	m := framework.StartManagement(t, framework.StartManagementInput{Bed: b, ArtifactSets: []string{prevDir, setDir}})
	c := m.Env.Client
	ns := m.Env.Namespace(t)
	// Hosts are bound by name, so ha-0..ha-2 form the control plane and ha-3 is the spare.
	labels := []map[string]string{{"role": "cp"}, {"role": "cp"}, {"role": "cp"}, {"role": "cp"}, {"role": "worker"}, {"role": "worker"}}
	m.CreateSSHHosts(ctx, t, framework.SSHHostsInput{
		Namespace: ns, Bed: b, Labels: labels,
		OS: &basaltv1.OSFacts{Container: ptr.To(true), SystemdPID1: ptr.To(true), CgroupVersion: 1},
	})
	m.WaitHostsAvailable(ctx, t, ns, hostNames(b), 5*time.Minute)

	cl := &basaltv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ha"},
		Spec: basaltv1.ClusterSpec{
			Version: upgradeFromVersion,
			// Bounds the upgrade's drains: in one of the first two runs a PodDisruptionBudget held a
			// worker's drain for the whole default 5m (docs/lifecycle.md, "Left").
			NodeDrainTimeout: &metav1.Duration{Duration: 2 * time.Minute},
			// The endpoint is a virtual IP the control-plane agents hold (docs/vip.md).
			ControlPlane: basaltv1.ControlPlaneSpec{Replicas: 3, HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "cp"}},
				VirtualIP: &basaltv1.VirtualIPSpec{Address: b.VirtualIP()}},
			Workers: []basaltv1.WorkerPool{{Name: "pool", Replicas: 2, HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "worker"}}}},
		},
	}
	start := time.Now()
	if err := c.Create(ctx, cl); err != nil {
		t.Fatal(err)
	}
	took := m.WaitForClusterReady(ctx, t, framework.WaitForClusterReadyInput{Namespace: ns, Name: cl.Name, ControlPlanes: 3, Workers: 2, Timeout: 20 * time.Minute})
	t.Logf("Cluster Ready %s after it was applied (3 control plane + 2 workers)", took.Round(time.Second))
	wc, rc := m.WorkloadClient(ctx, t, ns, cl.Name)
	if want := "https://" + net.JoinHostPort(b.VirtualIP(), "6443"); rc.Host != want {
		t.Fatalf("the admin kubeconfig's server is %s, want the virtual IP %s", rc.Host, want)
	}
	body, err := wc.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil || string(body) != "ok" {
		t.Fatalf("/readyz through the endpoint %s: %q %v", rc.Host, body, err)
	}
	holder := vipHolder(ctx, t, m, b, ns, cl.Name, "")
	t.Logf("The virtual IP %s is held by %s", b.VirtualIP(), holder.Name)

	// Three voting etcd members, every one healthy: read with etcdctl on each control-plane host.
	for _, h := range b.Hosts[:3] {
		out, err := h.Run(ctx, "ETCDCTL_API=3 /opt/basalt/bin/etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/basalt/pki/etcd/ca.crt "+
			"--cert=/etc/basalt/pki/etcd/healthcheck-client.crt --key=/etc/basalt/pki/etcd/healthcheck-client.key member list -w simple")
		if err != nil {
			t.Fatalf("etcd member list on %s: %v", h.Name, err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || strings.Contains(out, "true") { // the last column is isLearner
			t.Fatalf("etcd members seen from %s: %s", h.Name, out)
		}
	}

	nl, err := wc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nl.Items) != 5 {
		t.Fatalf("%d nodes, want 5", len(nl.Items))
	}
	for _, n := range nl.Items {
		if !nodeReady(n) {
			t.Fatalf("node %s is not Ready", n.Name)
		}
	}

	// A Deployment of 2 web servers on different nodes, and a Service in front of them.
	labelsWeb := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labelsWeb},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labelsWeb},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{Name: "web", Image: "basalt.dev/webserver:v1", ImagePullPolicy: corev1.PullNever,
						Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}},
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "kubernetes.io/hostname",
						WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: labelsWeb}}},
					// Any node, control planes included, so the pods have somewhere to go while workers scale.
					Tolerations: tolerateControlPlane,
				},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec:       corev1.ServiceSpec{Selector: labelsWeb, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	framework.Eventually(t, time.Minute, func() error {
		if _, err := wc.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
			return err
		}
		_, err := wc.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
		return err
	})
	podNodes := map[string]string{} // pod IP → node
	framework.Eventually(t, 5*time.Minute, func() error {
		pl, err := wc.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		clear(podNodes)
		for _, p := range pl.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				podNodes[p.Status.PodIP] = p.Spec.NodeName
			}
		}
		nodes := map[string]bool{}
		for _, n := range podNodes {
			nodes[n] = true
		}
		if len(podNodes) != 2 || len(nodes) != 2 {
			return fmt.Errorf("web pods running: %v", podNodes)
		}
		return nil
	})
	got, err := wc.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A third node: a host that runs neither web pod.
	var third *bed.Host
	for _, h := range append(slices.Clone(b.Hosts[:3]), b.Hosts[4:]...) {
		used := false
		for _, node := range podNodes {
			if nodeIP(nl.Items, node) == h.IP {
				used = true
			}
		}
		if !used {
			third = h
			break
		}
	}
	if third == nil {
		t.Fatal("no host without a web pod")
	}
	seen := map[string]bool{}
	framework.Eventually(t, 2*time.Minute, func() error {
		out, err := third.Run(ctx, "curl -fsS --max-time 3 http://"+net.JoinHostPort(got.Spec.ClusterIP, "80")+"/")
		if err != nil {
			return fmt.Errorf("from %s to Service %s: %w", third.Name, got.Spec.ClusterIP, err)
		}
		for ip := range podNodes {
			if strings.Contains(out, "podIP="+ip+"\n") {
				seen[ip] = true
			}
		}
		if len(seen) != 2 {
			return fmt.Errorf("the Service answered from %v so far, want both pods %v", seen, podNodes)
		}
		return nil
	})
	t.Logf("ClusterIP Service %s reached both pods from %s", got.Spec.ClusterIP, third.Name)

	// Pod to pod across nodes: a client pod on the third node reaches each web pod by pod IP.
	client := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "client", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"kubernetes.io/hostname": nodeName(nl.Items, third.IP)},
			Tolerations:  tolerateControlPlane,
			Containers:   []corev1.Container{{Name: "client", Image: "basalt.dev/webserver:v1", ImagePullPolicy: corev1.PullNever}},
		},
	}
	if _, err := wc.CoreV1().Pods("default").Create(ctx, client, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 3*time.Minute, func() error {
		p, err := wc.CoreV1().Pods("default").Get(ctx, "client", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("client pod %s %s", p.Status.Phase, podMessage(p))
		}
		// From inside the client pod's network namespace (found by its pod IP) with the host's curl.
		findNS := "for ns in $(ip netns list | awk '{print $1}'); do ip netns exec $ns ip -4 -o addr | grep -q ' " + p.Status.PodIP + "/' && echo $ns; done | head -1"
		for ip := range podNodes {
			out, err := third.Run(ctx, "ns=$("+findNS+"); test -n \"$ns\" && ip netns exec $ns curl -fsS --max-time 3 http://"+net.JoinHostPort(ip, "8080")+"/")
			if err != nil || !strings.Contains(out, "podIP="+ip) {
				return fmt.Errorf("from pod %s to pod %s: %q %w", p.Status.PodIP, ip, out, err)
			}
		}
		return nil
	})
	t.Logf("Pod-to-pod across nodes works; everything took %s from the Cluster applied", time.Since(start).Round(time.Second))

	// The API watchers read through the virtual IP; etcd's members are listed on whichever
	// control-plane host (the spare included) runs a member.
	etcdMembers := func() (string, error) {
		var errs []error
		for _, h := range b.Hosts[:4] {
			out, err := h.Run(ctx, "ETCDCTL_API=3 /opt/basalt/bin/etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/basalt/pki/etcd/ca.crt "+
				"--cert=/etc/basalt/pki/etcd/healthcheck-client.crt --key=/etc/basalt/pki/etcd/healthcheck-client.key --command-timeout=5s member list -w simple")
			if err == nil {
				return out, nil
			}
			errs = append(errs, fmt.Errorf("%s: %w", h.Name, err))
		}
		return "", errors.Join(errs...)
	}

	t.Run("scale control plane 3→1→3 and workers 2→1→2 without losing the API", func(t *testing.T) {
		w := watchAPI(ctx, wc)
		scale := func(cp, workers int32) {
			t.Helper()
			framework.Eventually(t, time.Minute, func() error {
				got := &basaltv1.Cluster{}
				if err := c.Get(ctx, framework.ObjectKey(ns, cl.Name), got); err != nil {
					return err
				}
				got.Spec.ControlPlane.Replicas = cp
				got.Spec.Workers[0].Replicas = workers
				return c.Update(ctx, got)
			})
			began := time.Now()
			framework.Eventually(t, 15*time.Minute, func() error {
				got := &basaltv1.Cluster{}
				if err := c.Get(ctx, framework.ObjectKey(ns, cl.Name), got); err != nil {
					return err
				}
				ms := &basaltv1.MachineList{}
				if err := c.List(ctx, ms, framework.InNamespace(ns)); err != nil {
					return err
				}
				ready, _ := envtest.Condition(got.Status.Conditions, basaltv1.ConditionReady)
				if len(ms.Items) != int(cp+workers) || got.Status.ControlPlane.Ready != cp || got.Status.Workers.Ready != workers ||
					ready == nil || ready.Status != metav1.ConditionTrue {
					return fmt.Errorf("%d Machines, control plane %+v, workers %+v, Ready %v", len(ms.Items), got.Status.ControlPlane, got.Status.Workers, ready)
				}
				out, err := etcdMembers()
				if err != nil {
					return err
				}
				if n := len(strings.Split(strings.TrimSpace(out), "\n")); n != int(cp) || strings.Contains(out, "true") {
					return fmt.Errorf("etcd members: %s", out)
				}
				return nil
			})
			t.Logf("Scaled to %d control plane + %d workers in %s", cp, workers, time.Since(began).Round(time.Second))
		}
		scale(1, 1)
		scale(3, 2)
		w.check(t, "scaling", 20)
	})

	t.Run("credential rotation: every Secret re-encrypted in etcd, every certificate renewed one API server at a time", func(t *testing.T) {
		rotateCredentials(ctx, t, m, b.Hosts[:4], ns, cl.Name, wc)
	})

	t.Run("in-place upgrade "+upgradeFromVersion+" → "+etcdTestVersion+" while the web server answers", func(t *testing.T) {
		// At most one web pod away at a time, and a NodePort the test reaches on every node.
		pdb := &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)),
				Selector: &metav1.LabelSelector{MatchLabels: labelsWeb}},
		}
		np := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web-np", Namespace: "default"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: labelsWeb,
				Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
		}
		framework.Eventually(t, time.Minute, func() error {
			if _, err := wc.PolicyV1().PodDisruptionBudgets("default").Create(ctx, pdb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
			if _, err := wc.CoreV1().Services("default").Create(ctx, np, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
			return nil
		})
		got, err := wc.CoreV1().Services("default").Get(ctx, "web-np", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		port := got.Spec.Ports[0].NodePort
		nodes, err := wc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var targets []string
		for _, n := range nodes.Items {
			targets = append(targets, net.JoinHostPort(nodeIP(nodes.Items, n.Name), fmt.Sprint(port)))
		}
		framework.Eventually(t, 2*time.Minute, func() error {
			for _, tg := range targets {
				if err := getWeb(ctx, tg); err != nil {
					return err
				}
			}
			return nil
		})
		load := serveLoad(ctx, targets)
		api := watchAPI(ctx, wc)
		// Evidence for a drain a PodDisruptionBudget holds: every change of the web pods and the
		// budget during the upgrade, logged at its end (docs/lifecycle.md, "Limits").
		webLog := watchDisruption(ctx, wc, "default", "app=web", "web")
		defer func() { t.Logf("web pods and their budget during the upgrade:\n%s", webLog()) }()

		began := time.Now()
		framework.Eventually(t, time.Minute, func() error {
			got := &basaltv1.Cluster{}
			if err := c.Get(ctx, framework.ObjectKey(ns, cl.Name), got); err != nil {
				return err
			}
			got.Spec.Version = etcdTestVersion
			return c.Update(ctx, got)
		})
		framework.Eventually(t, 30*time.Minute, func() error {
			got := &basaltv1.Cluster{}
			if err := c.Get(ctx, framework.ObjectKey(ns, cl.Name), got); err != nil {
				return err
			}
			up, _ := envtest.Condition(got.Status.Conditions, basaltv1.ClusterUpToDate)
			ready, _ := envtest.Condition(got.Status.Conditions, basaltv1.ConditionReady)
			if got.Status.Version != etcdTestVersion || ready == nil || ready.Status != metav1.ConditionTrue {
				return fmt.Errorf("status.version %s, phase %s, UpToDate %v", got.Status.Version, got.Status.Phase, up)
			}
			nodes, err := wc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, n := range nodes.Items {
				if n.Status.NodeInfo.KubeletVersion != etcdTestVersion || !nodeReady(n) || n.Spec.Unschedulable {
					return fmt.Errorf("node %s: kubelet %s, Ready %v, unschedulable %v", n.Name, n.Status.NodeInfo.KubeletVersion, nodeReady(n), n.Spec.Unschedulable)
				}
			}
			return nil
		})
		took := time.Since(began)
		evs := &corev1.EventList{}
		if err := c.List(ctx, evs, framework.InNamespace(ns)); err == nil {
			for _, e := range evs.Items {
				if e.Reason == "DrainTimedOut" {
					t.Logf("drain timed out: %s: %s", e.InvolvedObject.Name, e.Message)
				}
			}
		}
		total, failed, samples := load.stop()
		t.Logf("Upgraded 3 control plane + 2 workers to %s in place in %s; requests to the web server through NodePort %d: %d failed of %d (%.2f%%) %v",
			etcdTestVersion, took.Round(time.Second), port, failed, total, 100*float64(failed)/float64(max(total, 1)), samples)
		// Through the virtual IP, which moves off each control-plane host while its API server
		// restarts (docs/benchmarks.md compares the gap with a host's own address). What the
		// agents did with it, to read beside the failed reads' times:
		for _, h := range b.Hosts[:4] {
			out, _ := h.Run(ctx, "journalctl -u basalt-agent --since=-15min -o short-precise --no-pager | grep -E 'virtual IP|Starting service.*kube-apiserver' | tail -n 16; true")
			t.Logf("virtual IP on %s:\n%s", h.Name, out)
		}
		api.check(t, "the upgrade", 120)
		if total < 100 {
			t.Fatalf("only %d requests were sent during the upgrade", total)
		}
		if failed*100 > total*2 {
			t.Fatalf("%d of %d requests to the web server failed during the upgrade (more than 2%%)", failed, total)
		}
		out, err := etcdMembers()
		if err != nil || len(strings.Split(strings.TrimSpace(out), "\n")) != 3 || strings.Contains(out, "true") {
			t.Fatalf("etcd members after the upgrade: %s %v", out, err)
		}
	})

	t.Run("a stopped control-plane host is remediated onto the spare while the API answers", func(t *testing.T) {
		framework.Eventually(t, time.Minute, func() error {
			got := &basaltv1.Cluster{}
			if err := c.Get(ctx, framework.ObjectKey(ns, cl.Name), got); err != nil {
				return err
			}
			got.Spec.Remediation.NodeNotReadyTimeout = &metav1.Duration{Duration: 30 * time.Second}
			return c.Update(ctx, got)
		})
		ms := &basaltv1.MachineList{}
		if err := c.List(ctx, ms, framework.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		// The victim is the host that holds the virtual IP: the reads through it must resume on
		// another control-plane host within seconds, long before remediation.
		victimHost := vipHolder(ctx, t, m, b, ns, cl.Name, "")
		var victim *basaltv1.Machine
		for i := range ms.Items {
			mm := &ms.Items[i]
			if mm.Spec.Role == basaltv1.RoleControlPlane && mm.Spec.HostRef != nil && mm.Spec.HostRef.Name == victimHost.Name {
				victim = mm
			}
		}
		if victim == nil {
			t.Fatalf("no control-plane Machine on %s, which holds the virtual IP", victimHost.Name)
		}
		api := watchAPI(ctx, wc)
		began := time.Now()
		if err := victimHost.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("Stopped host %s (Machine %s), which held the virtual IP", victimHost.Name, victim.Name)
		next := vipHolder(ctx, t, m, b, ns, cl.Name, victimHost.Name)
		t.Logf("The virtual IP moved to %s; status.virtualIP named it %s after the holder stopped (read every 30 s); reads through it so far: %s", next.Name, time.Since(began).Round(100*time.Millisecond), api.sofar())
		framework.Eventually(t, 20*time.Minute, func() error {
			got := &basaltv1.Cluster{}
			if err := c.Get(ctx, framework.ObjectKey(ns, cl.Name), got); err != nil {
				return err
			}
			if err := c.Get(ctx, framework.ObjectKey(ns, victim.Name), &basaltv1.Machine{}); err == nil {
				healthy, _ := envtest.Condition(got.Status.Conditions, basaltv1.ClusterMachinesHealthy)
				return fmt.Errorf("Machine %s still there; MachinesHealthy %v", victim.Name, healthy)
			}
			ready, _ := envtest.Condition(got.Status.Conditions, basaltv1.ConditionReady)
			if got.Status.ControlPlane.Ready != 3 || ready == nil || ready.Status != metav1.ConditionTrue {
				return fmt.Errorf("control plane %+v, Ready %v", got.Status.ControlPlane, ready)
			}
			if got.Status.Remediation == nil || got.Status.Remediation.LastMachine != victim.Name {
				return fmt.Errorf("status.remediation %+v", got.Status.Remediation)
			}
			out, err := etcdMembers()
			if err != nil {
				return err
			}
			if len(strings.Split(strings.TrimSpace(out), "\n")) != 3 || strings.Contains(out, "true") || strings.Contains(out, victimHost.IP+":") {
				return fmt.Errorf("etcd members: %s", out)
			}
			return nil
		})
		t.Logf("Control-plane Machine %s remediated in %s: etcd has 3 voters without %s", victim.Name, time.Since(began).Round(time.Second), victimHost.IP)
		api.check(t, "the remediation", 20)

		// Released while it is off: nothing confirms that the old member's data is gone, so the
		// Host is Unwiped, out of the pool.
		framework.Eventually(t, time.Minute, func() error {
			vh := &basaltv1.Host{}
			if err := c.Get(ctx, framework.ObjectKey(ns, victimHost.Name), vh); err != nil {
				return err
			}
			if hostclaim.Available(vh) {
				t.Fatalf("host %s, off since its release, is claimable", victimHost.Name)
			}
			if vh.Status.State != basaltv1.HostStateUnwiped {
				return fmt.Errorf("host %s is %s, want Unwiped", victimHost.Name, vh.Status.State)
			}
			return nil
		})

		// The host comes back: its agent gets the empty Plan and stops what it ran for the old
		// node; the Host is Available again once the agent confirmed the wipe.
		// At boot systemd starts the old node's units before the agent is told to stop them; one
		// may fail and leave systemd "degraded" until the agent removes it.
		if err := victimHost.Start(ctx); err != nil && !strings.Contains(err.Error(), "booted degraded") {
			t.Fatal(err)
		}
		m.WaitHostsAvailable(ctx, t, ns, []string{victimHost.Name}, 5*time.Minute)
		framework.Eventually(t, 3*time.Minute, func() error {
			procs, _ := victimHost.Run(ctx, "ps -eo comm= | grep -x -E 'etcd|kubelet|kube-apiserver|kube-proxy|containerd|containerd-shim|pause|webserver' || true")
			if strings.TrimSpace(procs) != "" {
				return fmt.Errorf("host %s still runs %s", victimHost.Name, strings.Join(strings.Fields(procs), " "))
			}
			if state, _ := victimHost.Run(ctx, "systemctl is-system-running"); strings.TrimSpace(state) != "running" {
				failed, _ := victimHost.Run(ctx, "systemctl --failed --plain --no-legend")
				return fmt.Errorf("host %s: systemd %s: %s", victimHost.Name, strings.TrimSpace(state), failed)
			}
			left, _ := victimHost.Run(ctx, "find /var/lib/kubelet /var/lib/containerd /var/lib/etcd /run/containerd -mindepth 1 -maxdepth 1 2>/dev/null; true")
			if strings.TrimSpace(left) != "" {
				return fmt.Errorf("host %s keeps node state: %s", victimHost.Name, strings.Join(strings.Fields(left), " "))
			}
			return nil
		})
		t.Logf("Host %s came back: the agent stopped the old node and wiped its state; the Host is Available", victimHost.Name)
	})
}

// watchDisruption records, every 2 s until the returned func is called, each change of the pods
// matching selector (node, phase, readiness, deletion) and of the PodDisruptionBudget pdb
// (healthy, desired, disruptions allowed), and returns the transcript.
func watchDisruption(ctx context.Context, wc kubernetes.Interface, ns, selector, pdb string) func() string {
	var (
		mu    sync.Mutex
		lines []string
		last  string
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	began := time.Now()
	go func() {
		defer close(done)
		for {
			var parts []string
			if pl, err := wc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector}); err != nil {
				parts = append(parts, "pods: "+err.Error())
			} else {
				for _, p := range pl.Items {
					ready := "NotReady"
					for _, c := range p.Status.Conditions {
						if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
							ready = "Ready"
						}
					}
					st := fmt.Sprintf("%s on %s %s %s", p.Name, p.Spec.NodeName, p.Status.Phase, ready)
					if p.DeletionTimestamp != nil {
						st += " deleting"
					}
					if msg := podMessage(&p); msg != "" {
						st += " (" + msg + ")"
					}
					parts = append(parts, st)
				}
			}
			if b, err := wc.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, pdb, metav1.GetOptions{}); err == nil {
				parts = append(parts, fmt.Sprintf("budget healthy %d/%d, allowed %d", b.Status.CurrentHealthy, b.Status.DesiredHealthy, b.Status.DisruptionsAllowed))
			}
			slices.Sort(parts)
			if now := strings.Join(parts, "; "); now != last {
				mu.Lock()
				lines = append(lines, fmt.Sprintf("+%s %s", time.Since(began).Round(time.Second), now))
				mu.Unlock()
				last = now
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Second):
			}
		}
	}()
	var once sync.Once
	return func() string {
		once.Do(func() { close(stop) })
		<-done
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(lines, "\n")
	}
}

// apiWatch reads the workload API every half second until checked.
type apiWatch struct {
	stopOnce func()
	done     chan struct{}
	total    int
	failed   int
	worst    int

	mu sync.Mutex
	// longest is the longest time from a read that succeeded to the next one that did, over
	// failures (a failed read may take its whole 5 s timeout).
	longest time.Duration
	// failures are the first failed reads: when each began, and its error.
	failures []string
}

// sofar says what the watch saw until now.
func (w *apiWatch) sofar() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprintf("%d failed of %d, longest gap between successful reads %s", w.failed, w.total, w.longest.Round(100*time.Millisecond))
}

// vipHolder waits until exactly one control-plane host (of the first four, skipping the host
// named skip) carries the Cluster's virtual IP, and until status.virtualIP names its Machine.
func vipHolder(ctx context.Context, t *testing.T, m *framework.Management, b *bed.Bed, ns, cluster, skip string) *bed.Host {
	t.Helper()
	var holder *bed.Host
	began := time.Now()
	framework.Eventually(t, 3*time.Minute, func() error {
		holder = nil
		var with []string
		for _, h := range b.Hosts[:4] {
			if h.Name == skip {
				continue
			}
			out, err := h.Run(ctx, "ip -4 -o addr show")
			if err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
			if strings.Contains(out, " "+b.VirtualIP()+"/32 ") {
				holder = h
				with = append(with, h.Name)
			}
		}
		if len(with) != 1 {
			return fmt.Errorf("hosts with the virtual IP %s: %v", b.VirtualIP(), with)
		}
		return nil
	})
	t.Logf("The virtual IP %s is on %s (seen %s after the check began; hosts polled every second)", b.VirtualIP(), holder.Name, time.Since(began).Round(100*time.Millisecond))
	framework.Eventually(t, 2*time.Minute, func() error {
		got := &basaltv1.Cluster{}
		if err := m.Env.Client.Get(ctx, framework.ObjectKey(ns, cluster), got); err != nil {
			return err
		}
		ms := &basaltv1.MachineList{}
		if err := m.Env.Client.List(ctx, ms, framework.InNamespace(ns)); err != nil {
			return err
		}
		for _, mm := range ms.Items {
			if mm.Spec.HostRef != nil && mm.Spec.HostRef.Name == holder.Name && got.Status.VirtualIP != nil && got.Status.VirtualIP.Holder == mm.Name {
				return nil
			}
		}
		return fmt.Errorf("status.virtualIP %+v; the address is on %s", got.Status.VirtualIP, holder.Name)
	})
	return holder
}

// watchAPI starts reading a namespace through the endpoint twice a second.
func watchAPI(ctx context.Context, wc kubernetes.Interface) *apiWatch {
	w := &apiWatch{done: make(chan struct{})}
	stop := make(chan struct{})
	var once sync.Once
	w.stopOnce = func() { once.Do(func() { close(stop) }) }
	go func() {
		defer close(w.done)
		run := 0
		lastOK := time.Now()
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			began := time.Now()
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := wc.CoreV1().Namespaces().Get(rctx, "default", metav1.GetOptions{})
			cancel()
			w.mu.Lock()
			w.total++
			if err != nil {
				if len(w.failures) < 20 {
					w.failures = append(w.failures, fmt.Sprintf("%s (%s): %v", began.UTC().Format("15:04:05.0"), time.Since(began).Round(100*time.Millisecond), err))
				}
				w.failed++
				run++
				w.worst = max(w.worst, run)
			} else {
				if run > 0 {
					w.longest = max(w.longest, time.Since(lastOK))
				}
				run = 0
				lastOK = time.Now()
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// check stops the watch, logs what it saw and fails when the API was away for more than
// maxOutage consecutive reads (long enough to mean etcd lost quorum).
func (w *apiWatch) check(t *testing.T, during string, maxOutage int) {
	t.Helper()
	w.stopOnce()
	<-w.done
	t.Logf("API reads during %s: %d failed of %d, longest outage %d reads, longest gap between successful reads %s; failures: %s",
		during, w.failed, w.total, w.worst, w.longest.Round(100*time.Millisecond), strings.Join(w.failures, "; "))
	if w.worst > maxOutage {
		t.Fatalf("the API was unreachable for %d consecutive reads (%s) during %s", w.worst, w.longest.Round(100*time.Millisecond), during)
	}
}

// webLoad sends requests to the web server round-robin over targets until stopped.
type webLoad struct {
	stopOnce func()
	done     chan struct{}
	total    int
	failed   int
	samples  []string
}

func serveLoad(ctx context.Context, targets []string) *webLoad {
	l := &webLoad{done: make(chan struct{})}
	stop := make(chan struct{})
	var once sync.Once
	l.stopOnce = func() { once.Do(func() { close(stop) }) }
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			l.total++
			if err := getWeb(ctx, targets[i%len(targets)]); err != nil {
				l.failed++
				if len(l.samples) < 5 {
					l.samples = append(l.samples, err.Error())
				}
			}
		}
	}()
	return l
}

func (l *webLoad) stop() (total, failed int, samples []string) {
	l.stopOnce()
	<-l.done
	return l.total, l.failed, l.samples
}

// getWeb asks the test web server at hostport and checks it answered with its pod IP.
func getWeb(ctx context.Context, hostport string) error {
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+hostport+"/", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "podIP=") {
		return fmt.Errorf("%s: %d %q", hostport, resp.StatusCode, body)
	}
	return nil
}

func nodeIP(nodes []corev1.Node, name string) string {
	for _, n := range nodes {
		if n.Name == name {
			for _, a := range n.Status.Addresses {
				if a.Type == corev1.NodeInternalIP {
					return a.Address
				}
			}
		}
	}
	return ""
}

func nodeName(nodes []corev1.Node, ip string) string {
	for _, n := range nodes {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP && a.Address == ip {
				return n.Name
			}
		}
	}
	return ""
}
