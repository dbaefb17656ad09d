package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/test/e2e/framework"
	"github.com/basalt-dev/basalt/test/e2e/pxenet"
)

// TestBareMetalControlPlane is the longer bare-metal proof, kept out of make test for its time
// (make test-baremetal-cp runs it): the Cluster's whole control plane (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler) runs on a QEMU VM that PXE-booted from a blank disk
// and got the Debian whole-disk image, and its worker on an SSH host of the bed. The Cluster is
// Ready with its endpoint at the VM's spec.boot.address; the manager reaches the workload API
// there; a pod is scheduled onto the worker and answers through a Service (endpoints made by the
// VM's controller-manager).
func TestBareMetalControlPlane(t *testing.T) {
	if os.Getenv("BASALT_BAREMETAL_CP") != "1" {
		t.Skip("the longer bare-metal proof: set BASALT_BAREMETAL_CP=1 (make test-baremetal-cp does)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	b, network, m, ns := startBareMetalBed(ctx, t, "bmcp", "worker")
	c := m.Env.Client
	addr := framework.BedAddress(b, 201)
	const mac = "52:54:00:ba:5a:31"
	metal := &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pxe-cp-1", Labels: map[string]string{"role": "cp"}},
		Spec: basaltv1.HostSpec{Boot: &basaltv1.BootSpec{
			MACAddresses: []string{mac}, Mode: basaltv1.BootModeBIOS,
			Address: fmt.Sprintf("%s/%d", addr, b.Subnet.Bits()), Gateway: b.Gateway,
		}},
	}
	if err := c.Create(ctx, metal); err != nil {
		t.Fatal(err)
	}
	powerOn := time.Now()
	vm := framework.StartPXEVM(t, framework.StartPXEVMInput{Network: network, VMOptions: pxenet.VMOptions{
		MAC: mac, CPUs: metalVMCPUs, MemoryMiB: 3072, DiskBytes: metalVMDiskBytes,
	}})
	console := func() string { return vm.Tail(40) }
	m.WaitForHost(ctx, t, framework.WaitForHostInput{
		Namespace: ns, Name: metal.Name, Timeout: 8 * time.Minute, Console: console, Check: hostReadyIn(basaltv1.HostStateAvailable),
	})
	m.WaitHostsAvailable(ctx, t, ns, hostNames(b), 5*time.Minute)

	cl := &basaltv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bmcp"},
		Spec: basaltv1.ClusterSpec{
			Version:      etcdTestVersion,
			ControlPlane: basaltv1.ControlPlaneSpec{Replicas: 1, HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "cp"}}},
			Workers:      []basaltv1.WorkerPool{{Name: "ssh", Replicas: 1, HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "worker"}}}},
		},
	}
	applied := time.Now()
	if err := c.Create(ctx, cl); err != nil {
		t.Fatal(err)
	}
	m.WaitForClusterReady(ctx, t, framework.WaitForClusterReadyInput{Namespace: ns, Name: cl.Name, ControlPlanes: 1, Workers: 1, Timeout: 25 * time.Minute})
	t.Logf("Control plane on a PXE-booted VM: Cluster applied → Ready %s; blank VM powered on → Ready %s",
		time.Since(applied).Round(time.Second), time.Since(powerOn).Round(time.Second))
	got := &basaltv1.Cluster{}
	if err := c.Get(ctx, framework.ObjectKey(ns, cl.Name), got); err != nil {
		t.Fatal(err)
	}
	if ep := got.Status.ControlPlaneEndpoint; ep == nil || ep.Host != addr.String() {
		t.Fatalf("control-plane endpoint %+v, want the VM's address %s", ep, addr)
	}
	wc, _ := m.WorkloadClient(ctx, t, ns, cl.Name)
	cpNode := metalNode(ctx, t, wc, addr.String())
	if _, cp := cpNode.Labels["node-role.kubernetes.io/control-plane"]; !nodeReady(*cpNode) || !cp {
		t.Fatalf("the VM's node %s: Ready %v, labels %v", cpNode.Name, nodeReady(*cpNode), cpNode.Labels)
	}
	worker := b.Hosts[0]
	workerNode := metalNode(ctx, t, wc, worker.IP)
	podIP := runWebPod(ctx, t, wc, "web-cp", workerNode.Name)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web-cp", Namespace: "default"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web-cp"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	svc, err := wc.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 2*time.Minute, func() error {
		out, err := worker.Run(ctx, "curl -fsS --max-time 3 http://"+svc.Spec.ClusterIP+"/")
		if err != nil || !strings.Contains(out, "podIP="+podIP) {
			return fmt.Errorf("from %s to Service %s: %q %w", worker.Name, svc.Spec.ClusterIP, out, err)
		}
		return nil
	})
	t.Logf("Pod %s scheduled by the VM's scheduler onto %s answers through Service %s", podIP, workerNode.Name, svc.Spec.ClusterIP)
}
