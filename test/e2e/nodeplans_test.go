package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/basalt-dev/basalt/agents/planstore"
	"github.com/basalt-dev/basalt/bootstrap/artifacts"
	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/bootstrap/plan"
	"github.com/basalt-dev/basalt/bootstrap/plan/builder"
	"github.com/basalt-dev/basalt/controllers/rotation"
	"github.com/basalt-dev/basalt/test/e2e/bed"
	"github.com/basalt-dev/basalt/test/e2e/framework"
)

// TestNodePlansMakeAKubernetesCluster proves the node Plans on real hosts, below the
// Cluster controller: the PKI from bootstrap/clusterpki and the Plans from bootstrap/plan/builder
// for one control-plane and one worker host, applied by agents installed over SSH, give a
// Kubernetes cluster whose /readyz is ok, whose two nodes are Ready, and which runs a pod of the
// test web server from the preloaded image (no registry) on the worker, reachable by its pod IP
// from the control-plane host across the host-gw route.
func TestNodePlansMakeAKubernetesCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: needs Docker and the test bed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	setDir := artifactSet(t, etcdTestVersion)
	manifest, err := artifacts.Load(setDir)
	if err != nil {
		t.Fatal(err)
	}
	b := framework.NewBed(ctx, t, bed.Options{Hosts: 2, Name: "node"})
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range b.Hosts {
				for _, u := range []string{"basalt-kubelet", "basalt-containerd", "basalt-agent"} {
					out, _ := h.Run(context.WithoutCancel(ctx), "journalctl -u "+u+" --no-pager -n 25 | grep -v -E ' [IW][0-9]{4} ' | cut -c1-3000")
					t.Logf("%s %s:\n%s", h.Name, u, out)
				}
			}
		}
	})
	m := framework.StartManagement(t, framework.StartManagementInput{Bed: b, ArtifactSets: []string{setDir}})
	c := m.Env.Client
	ns := m.Env.Namespace(t)
	m.CreateSSHHosts(ctx, t, framework.SSHHostsInput{Namespace: ns, Bed: b})
	m.WaitHostsAvailable(ctx, t, ns, hostNames(b), 5*time.Minute)

	cp, worker := b.Hosts[0], b.Hosts[1]
	const podCIDR, serviceCIDR = "10.244.0.0/16", "10.96.0.0/12"
	nodes := []struct {
		host    *bed.Host
		role    builder.Role
		podCIDR string
	}{{cp, builder.RoleControlPlane, "10.244.0.0/24"}, {worker, builder.RoleWorker, "10.244.1.0/24"}}
	start := time.Now()
	pkiRes, err := clusterpki.Ensure(nil, clusterpki.Input{
		ClusterName: "e2e", Endpoint: cp.IP, ServiceCIDR: serviceCIDR, DNSDomain: "cluster.local",
		ControlPlane: []clusterpki.Node{{Name: cp.Name, IPs: []net.IP{net.ParseIP(cp.IP)}}},
		Workers:      []clusterpki.Node{{Name: worker.Name, IPs: []net.IP{net.ParseIP(worker.IP)}}},
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	encKeys, _, err := clusterpki.EnsureEncryptionKeys(clusterpki.EncryptionKeys{})
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		certs, err := pkiRes.Material.ForNode(n.host.Name, n.role == builder.RoleControlPlane)
		if err != nil {
			t.Fatal(err)
		}
		other := nodes[1-i]
		p, err := builder.Build(builder.Input{
			ClusterName: "e2e", Version: etcdTestVersion, Role: n.role,
			Node:         builder.Node{Name: n.host.Name, IP: n.host.IP, PodCIDR: n.podCIDR},
			Network:      builder.Network{PodCIDR: podCIDR, ServiceCIDR: serviceCIDR},
			Endpoint:     cp.IP,
			Encryption:   rotation.EncryptionParams(encKeys),
			Certificates: certs,
			Artifacts:    manifest,
			HostFacts:    builder.HostFacts{SystemdPID1: true, CgroupV2: false, InContainer: true},
			Routes:       []plan.Route{{Destination: other.podCIDR, Gateway: other.host.IP}},
			APIServers:   []string{net.JoinHostPort(cp.IP, "6443")},
		})
		if err != nil {
			t.Fatalf("building the Plan of %s: %v", n.host.Name, err)
		}
		if _, _, err := planstore.StorePlan(ctx, c, ns, n.host.Name, p); err != nil {
			t.Fatal(err)
		}
	}

	rc, err := clientcmd.RESTConfigFromKubeConfig(pkiRes.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.Timeout = 10 * time.Second
	wc := kubernetes.NewForConfigOrDie(rc)
	framework.Eventually(t, 8*time.Minute, func() error {
		body, err := wc.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("/readyz: %w (%s)", err, diagnose(ctx, b.Hosts))
		}
		if string(body) != "ok" {
			return fmt.Errorf("/readyz: %s", body)
		}
		nl, err := wc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		ready := 0
		for _, n := range nl.Items {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		if ready != 2 {
			return fmt.Errorf("%d of %d nodes Ready (%s)", ready, len(nl.Items), diagnose(ctx, b.Hosts))
		}
		return nil
	})
	t.Logf("Two nodes Ready %s after their Plans were stored", time.Since(start).Round(time.Second))

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:   worker.Name,
			Containers: []corev1.Container{{Name: "web", Image: "basalt.dev/webserver:v1", ImagePullPolicy: corev1.PullNever}},
		},
	}
	framework.Eventually(t, time.Minute, func() error {
		// The default ServiceAccount appears a moment after the API server is ready.
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
			return fmt.Errorf("pod %s: %s %s (%s)", p.Name, p.Status.Phase, podMessage(p), diagnose(ctx, []*bed.Host{worker}))
		}
		podIP = p.Status.PodIP
		return nil
	})
	if !strings.HasPrefix(podIP, "10.244.1.") {
		t.Fatalf("pod IP %s is not in the worker's pod range 10.244.1.0/24", podIP)
	}
	framework.Eventually(t, time.Minute, func() error {
		out, err := cp.Run(ctx, "curl -fsS --max-time 3 http://"+podIP+":8080/")
		if err != nil || !strings.Contains(out, "podIP="+podIP) {
			return fmt.Errorf("from %s to pod %s: %q %w", cp.Name, podIP, out, err)
		}
		return nil
	})
	t.Logf("Pod %s on %s Running and answering across the host-gw route %s after the Plans were stored", podIP, worker.Name, time.Since(start).Round(time.Second))
}

func podMessage(p *corev1.Pod) string {
	var parts []string
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Waiting != nil {
			parts = append(parts, cs.Name+": "+cs.State.Waiting.Reason+" "+cs.State.Waiting.Message)
		}
	}
	for _, cond := range p.Status.Conditions {
		if cond.Status != corev1.ConditionTrue && cond.Message != "" {
			parts = append(parts, string(cond.Type)+": "+cond.Message)
		}
	}
	return strings.Join(parts, "; ")
}

// diagnose returns, per host, the units that are not active, for failure messages.
func diagnose(ctx context.Context, hosts []*bed.Host) string {
	var parts []string
	for _, h := range hosts {
		out, _ := h.Run(ctx, "systemctl list-units 'basalt-*' --all --no-legend --plain | awk '$3 != \"active\" || $4 != \"running\" {print $1\"=\"$3\"/\"$4}' | tr '\\n' ' '")
		parts = append(parts, h.Name+": "+strings.TrimSpace(out))
	}
	return strings.Join(parts, "; ")
}
