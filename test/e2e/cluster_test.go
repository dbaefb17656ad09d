package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/test/e2e/bed"
	"github.com/basalt-dev/basalt/test/e2e/framework"
)

// TestClusterLifecycle is Basalt's core promise on the test bed: one Cluster object (1 control
// plane + 1 worker) applied to the management API, and the manager binds two Hosts, installs their
// agents over SSH, issues the PKI, forms etcd, starts the control plane and the workers, and the
// Cluster becomes Ready. Through the kubeconfig Basalt wrote, both nodes are Ready and a pod of the
// test web server runs on the worker and answers by pod IP from the control-plane host. Deleting
// the Cluster removes its Machines and Secrets, and its Hosts become Available again with no
// Basalt service but the agent left running on them, no container, and no node state.
func TestClusterLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: needs Docker and the test bed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	setDir := artifactSet(t, etcdTestVersion)
	b := framework.NewBed(ctx, t, bed.Options{Hosts: 3, Name: "life"})
	// The third host is not a node: it runs the OCI registry the nodes pull from.
	regHost := b.Hosts[2]
	b.Hosts = b.Hosts[:2]
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range b.Hosts {
				out, _ := h.Run(context.WithoutCancel(ctx), "systemctl list-units 'basalt-*' --all --no-legend --plain; journalctl -u basalt-kubelet -u basalt-kube-apiserver -u basalt-etcd --no-pager -n 20 | grep -v -E ' [IW][0-9]{4} ' | cut -c1-600")
				t.Logf("%s:\n%s", h.Name, out)
			}
		}
	})
	// The manager has no artifact set of its own: the Cluster names a mirror (an HTTP server laid
	// out as hack/build-artifacts.sh writes sets), and the manager fetches each artifact from it
	// once, checks it and serves it to the hosts.
	mirror := framework.ServeArtifactMirror(t, filepath.Dir(setDir))
	// Agent certificates last 2 minutes here: the agents renew theirs every 80 s or so over
	// mTLS while the test runs, and a renewal that failed would silence them within minutes.
	renewedBefore := counter(t, "basalt_agent_api_renewals_total")
	m := framework.StartManagement(t, framework.StartManagementInput{Bed: b, AgentCertValidity: 2 * time.Minute})
	c := m.Env.Client
	ns := m.Env.Namespace(t)
	m.CreateSSHHosts(ctx, t, framework.SSHHostsInput{
		Namespace: ns, Bed: b,
		Labels: []map[string]string{{"role": "cp"}, {"role": "worker"}},
		OS:     &basaltv1.OSFacts{Container: ptr.To(true), SystemdPID1: ptr.To(true), CgroupVersion: 1},
	})
	m.WaitHostsAvailable(ctx, t, ns, hostNames(b), 5*time.Minute)
	registry, registries := registrySetup(ctx, t, c, ns, regHost, etcdTestVersion)

	cl := &basaltv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "life"},
		Spec: basaltv1.ClusterSpec{
			Version:      etcdTestVersion,
			ControlPlane: basaltv1.ControlPlaneSpec{Replicas: 1, HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "cp"}}},
			Workers: []basaltv1.WorkerPool{{Name: "pool", Replicas: 1, HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "worker"}},
				NodeLabels: []basaltv1.NodeLabel{{Key: "example.com/tier", Value: "web"}}}},
			Registries: registries,
			Artifacts:  basaltv1.ArtifactsSpec{Mirror: mirror.URL},
		},
	}
	start := time.Now()
	if err := c.Create(ctx, cl); err != nil {
		t.Fatal(err)
	}
	took := m.WaitForClusterReady(ctx, t, framework.WaitForClusterReadyInput{Namespace: ns, Name: cl.Name, ControlPlanes: 1, Workers: 1, Timeout: 15 * time.Minute})
	t.Logf("Cluster Ready %s after it was applied (1 control plane + 1 worker)", took.Round(time.Second))
	mirror.CheckFetchedOnce(t, etcdTestVersion)
	got := &basaltv1.Cluster{}
	if err := c.Get(ctx, framework.ObjectKey(ns, cl.Name), got); err != nil || got.Status.Version != etcdTestVersion {
		t.Fatalf("cluster %s status version %q, want %s (%v)", cl.Name, got.Status.Version, etcdTestVersion, err)
	}

	// The kubeconfig Basalt wrote reaches the workload cluster.
	wc, wrc := m.WorkloadClient(ctx, t, ns, cl.Name)
	nl, err := wc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nl.Items) != 2 {
		t.Fatalf("%d nodes, want 2", len(nl.Items))
	}
	var workerNode string
	for _, n := range nl.Items {
		if !nodeReady(n) {
			t.Fatalf("node %s is not Ready", n.Name)
		}
		if _, cp := n.Labels["node-role.kubernetes.io/control-plane"]; cp {
			// A Cluster with workers keeps ordinary pods off its control plane.
			if !slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool {
				return t.Key == "node-role.kubernetes.io/control-plane" && t.Effect == corev1.TaintEffectNoSchedule
			}) {
				t.Errorf("control-plane node %s is not tainted: %v", n.Name, n.Spec.Taints)
			}
			continue
		}
		workerNode = n.Name
		for k, v := range map[string]string{"node-role.kubernetes.io/worker": "", "basalt.dev/pool": "pool", "example.com/tier": "web"} {
			if got, ok := n.Labels[k]; !ok || got != v {
				t.Errorf("worker node %s label %s=%q (%v), want %q", n.Name, k, got, ok, v)
			}
		}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"kubernetes.io/hostname": workerNode},
			Containers:   []corev1.Container{{Name: "web", Image: "basalt.dev/webserver:v1", ImagePullPolicy: corev1.PullNever}},
		},
	}
	framework.Eventually(t, time.Minute, func() error {
		_, err := wc.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
		return err
	})
	var podIP string
	framework.Eventually(t, 3*time.Minute, func() error {
		p, err := wc.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return fmt.Errorf("pod %s: %s %s", p.Name, p.Status.Phase, podMessage(p))
		}
		podIP = p.Status.PodIP
		return nil
	})
	framework.Eventually(t, time.Minute, func() error {
		out, err := b.Hosts[0].Run(ctx, "curl -fsS --max-time 3 http://"+podIP+":8080/")
		if err != nil || !strings.Contains(out, "podIP="+podIP) {
			return fmt.Errorf("from %s to pod %s: %q %w", b.Hosts[0].Name, podIP, out, err)
		}
		return nil
	})
	t.Logf("Pod %s on %s Running and answering across nodes %s after the Cluster was applied", podIP, workerNode, time.Since(start).Round(time.Second))
	checkPodLogs(ctx, t, wc, "default", "web")
	checkExecAndPortForward(ctx, t, wc, wrc, "default", "web")

	// Workload-ready: the built-in DNS add-on is reported applied, and names resolve in pods.
	if err := c.Get(ctx, framework.ObjectKey(ns, cl.Name), got); err != nil {
		t.Fatal(err)
	}
	if !meta.IsStatusConditionTrue(got.Status.Conditions, basaltv1.ClusterAddonsReady) {
		t.Fatalf("AddonsReady is not True: %s", framework.ConditionSummary(got.Status.Conditions))
	}
	if len(got.Status.Addons) != 3 || got.Status.Addons[0].Name != basaltv1.AddonDNS || got.Status.Addons[0].Revision == "" ||
		got.Status.Addons[1].Name != basaltv1.AddonMetrics || got.Status.Addons[1].Revision == "" ||
		got.Status.Addons[2].Name != basaltv1.AddonStorage || got.Status.Addons[2].Revision == "" {
		t.Fatalf("status.addons %+v, want the dns, metrics and storage add-ons applied", got.Status.Addons)
	}
	checkClusterDNS(ctx, t, wc, b.Hosts[0], podIP, start)
	checkNodeMetrics(ctx, t, wc, 2)
	checkLocalStorage(ctx, t, wc, b.Hosts[0])
	checkRegistryPull(ctx, t, wc, registry, workerNode, b.Hosts[1], b.Hosts[0])
	checkManifestAddon(ctx, t, c, wc, got)
	snap := checkEtcdSnapshot(ctx, t, c, wc, ns, cl.Name)
	checkEtcdRestore(ctx, t, c, wc, ns, cl.Name, snap, destroyEtcdData(b.Hosts[0]))
	checkAgentsRenewed(ctx, t, c, ns, b.Hosts, renewedBefore, start)

	// Basalt's Helm chart, installed with the Helm SDK into the cluster Basalt just made, with
	// the manager image (built FROM scratch, no registry) imported into the nodes' containerd:
	// the manager pod becomes Ready there and reconciles a Host of that cluster.
	image, tarball := framework.BuildImage(t)
	kc := &corev1.Secret{}
	if err := c.Get(ctx, framework.ObjectKey(ns, cl.Name+"-kubeconfig"), kc); err != nil {
		t.Fatal(err)
	}
	installed := time.Now()
	framework.InstallChart(ctx, t, framework.InstallChartInput{
		Kubeconfig: kc.Data["value"], Nodes: []framework.ImageNode{b.Hosts[0], b.Hosts[1]},
		ImageTar: tarball, Image: image, Wait: true, Timeout: 5 * time.Minute,
		Keep: true, // the whole cluster is deleted below
	})
	_, rc := m.WorkloadClient(ctx, t, ns, cl.Name)
	bc, err := client.New(rc, client.Options{Scheme: m.Env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	inner := &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "inner"},
		Spec: basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{Address: "127.0.0.1",
			PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: "absent", Key: "id"}}},
	}
	framework.Eventually(t, time.Minute, func() error { return bc.Create(ctx, inner) })
	framework.Eventually(t, 3*time.Minute, func() error {
		got := &basaltv1.Host{}
		if err := bc.Get(ctx, client.ObjectKeyFromObject(inner), got); err != nil {
			return err
		}
		if got.Status.ObservedGeneration != got.Generation || got.Status.State == "" || len(got.Finalizers) == 0 {
			return fmt.Errorf("Host inner not reconciled by the manager in the cluster: %+v", got.Status)
		}
		return nil
	})
	t.Logf("The chart's manager (image %s) runs in the cluster Basalt made and reconciled a Host %s after the install began", image, time.Since(installed).Round(time.Second))

	// Delete: Machines and Secrets go, Hosts come back Available and wiped.
	deleted := time.Now()
	if err := c.Delete(ctx, cl); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 10*time.Minute, m.Env.Gone(cl))
	t.Logf("Cluster deleted in %s", time.Since(deleted).Round(time.Second))
	ml := &basaltv1.MachineList{}
	if err := c.List(ctx, ml, framework.InNamespace(ns)); err != nil || len(ml.Items) != 0 {
		t.Fatalf("%d Machines left after the Cluster was deleted (%v)", len(ml.Items), err)
	}
	sl := &corev1.SecretList{}
	if err := c.List(ctx, sl, framework.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, s := range sl.Items {
		if strings.HasPrefix(s.Name, cl.Name+"-") {
			t.Errorf("Secret %s outlived its Cluster", s.Name)
		}
	}
	m.WaitHostsAvailable(ctx, t, ns, hostNames(b), 2*time.Minute)
	for _, h := range b.Hosts {
		framework.Eventually(t, 2*time.Minute, func() error {
			got := &basaltv1.Host{}
			if err := c.Get(ctx, framework.ObjectKey(ns, h.Name), got); err != nil {
				return err
			}
			if got.Status.ConsumerRef != nil {
				return fmt.Errorf("host %s still consumed by %s", h.Name, got.Status.ConsumerRef.Name)
			}
			units, err := h.Run(ctx, "systemctl list-units 'basalt-*' --state=active --no-legend --plain | awk '{print $1}' | tr '\\n' ' '")
			if err != nil {
				return err
			}
			if strings.TrimSpace(units) != "basalt-agent.service" {
				return fmt.Errorf("host %s still runs %s", h.Name, units)
			}
			// No container either: the pod's processes and containerd's shims went with containerd.
			procs, _ := h.Run(ctx, "ps -eo comm= | grep -x -E 'etcd|kubelet|kube-apiserver|kube-proxy|containerd|containerd-shim|pause|webserver' || true")
			if strings.TrimSpace(procs) != "" {
				return fmt.Errorf("host %s still runs processes: %s", h.Name, strings.Join(strings.Fields(procs), " "))
			}
			// Every file of the Plans is gone, and so is etcd's data (a service state dir), the local
			// volumes and the pods' bridge (a next cluster's pod range would clash with its address).
			// Nor the node's state: etcd's data, the kubelet's and containerd's (kept as empty
			// mount points: they are volumes on the bed), CNI allocations.
			left, _ := h.Run(ctx, "find /opt/basalt /etc/basalt/pki /etc/basalt/kubeconfig /etc/basalt/kube-apiserver /etc/basalt/containerd /etc/cni/net.d -type f 2>/dev/null; "+
				"find /var/lib/kubelet /var/lib/containerd /run/containerd /var/lib/cni /var/lib/basalt-volumes -mindepth 1 -maxdepth 1 2>/dev/null; test -e /var/lib/etcd && echo /var/lib/etcd; "+
				"ip link show cni0 >/dev/null 2>&1 && echo 'link cni0'; true")
			if strings.TrimSpace(left) != "" {
				return fmt.Errorf("host %s still has %s", h.Name, strings.Join(strings.Fields(left), " "))
			}
			return nil
		})
	}
}

func nodeReady(n corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
