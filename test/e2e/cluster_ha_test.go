package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/test/e2e/bed"
	"github.com/basalt-dev/basalt/test/e2e/framework"
	"github.com/basalt-dev/basalt/test/envtest"
)

// TestClusterHA applies one Cluster with 3 control-plane and 2 worker machines: etcd forms with
// three healthy voters (learners promoted one at a time), /readyz answers through the endpoint,
// all 5 nodes are Ready, a Deployment of the test web server with 2 replicas spread over two
// nodes runs, a ClusterIP Service reaches both pods from a third node, and a pod on one node
// reaches a pod on another by pod IP.
func TestClusterHA(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: needs Docker and the test bed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	setDir := artifactSet(t, etcdTestVersion)
	b := framework.NewBed(ctx, t, bed.Options{Hosts: 5, Name: "ha"})
	m := framework.StartManagement(t, framework.StartManagementInput{Bed: b, ArtifactSets: []string{setDir}})
	c := m.Env.Client
	ns := m.Env.Namespace(t)
	labels := []map[string]string{{"role": "cp"}, {"role": "cp"}, {"role": "cp"}, {"role": "worker"}, {"role": "worker"}}
	m.CreateSSHHosts(ctx, t, framework.SSHHostsInput{
		Namespace: ns, Bed: b, Labels: labels,
		OS: &basaltv1.OSFacts{Container: ptr.To(true), SystemdPID1: ptr.To(true), CgroupVersion: 1},
	})
	m.WaitHostsAvailable(ctx, t, ns, hostNames(b), 5*time.Minute)

	cl := &basaltv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ha"},
		Spec: basaltv1.ClusterSpec{
			Version:      etcdTestVersion,
			ControlPlane: basaltv1.ControlPlaneSpec{Replicas: 3, HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "cp"}}},
			Workers:      []basaltv1.WorkerPool{{Name: "pool", Replicas: 2, HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "worker"}}}},
		},
	}
	start := time.Now()
	if err := c.Create(ctx, cl); err != nil {
		t.Fatal(err)
	}
	took := m.WaitForClusterReady(ctx, t, framework.WaitForClusterReadyInput{Namespace: ns, Name: cl.Name, ControlPlanes: 3, Workers: 2, Timeout: 20 * time.Minute})
	t.Logf("Cluster Ready %s after it was applied (3 control plane + 2 workers)", took.Round(time.Second))
	wc, rc := m.WorkloadClient(ctx, t, ns, cl.Name)
	body, err := wc.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil || string(body) != "ok" {
		t.Fatalf("/readyz through the endpoint %s: %q %v", rc.Host, body, err)
	}

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
	for _, h := range b.Hosts {
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

	t.Run("scale control plane 3→1→3 and workers 2→1→2 without losing the API", func(t *testing.T) {
		// The watcher reads through the endpoint, whose control-plane Machine scale-down keeps: a
		// read there needs etcd quorum.
		var epHost *bed.Host
		for _, h := range b.Hosts {
			if strings.Contains(rc.Host, "//"+h.IP+":") {
				epHost = h
			}
		}
		if epHost == nil {
			t.Fatalf("no host serves the endpoint %s", rc.Host)
		}
		stop := make(chan struct{})
		done := make(chan struct{})
		var total, failed, worst, run int
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				case <-time.After(500 * time.Millisecond):
				}
				total++
				if _, err := wc.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
					failed++
					run++
					worst = max(worst, run)
				} else {
					run = 0
				}
			}
		}()
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
				out, err := epHost.Run(ctx, "ETCDCTL_API=3 /opt/basalt/bin/etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/basalt/pki/etcd/ca.crt "+
					"--cert=/etc/basalt/pki/etcd/healthcheck-client.crt --key=/etc/basalt/pki/etcd/healthcheck-client.key member list -w simple")
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
		close(stop)
		<-done
		t.Logf("API reads through the scaling: %d failed of %d, longest outage %d reads (%.1f s)", failed, total, worst, float64(worst)/2)
		if worst > 20 {
			t.Fatalf("the API was unreachable for %d consecutive reads (%.1f s) while scaling: quorum was lost", worst, float64(worst)/2)
		}
		if _, err := wc.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
			t.Fatalf("the API does not answer after scaling: %v", err)
		}
	})
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
