package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/hostclaim"
	"github.com/basalt-dev/basalt/test/e2e/bed"
	"github.com/basalt-dev/basalt/test/e2e/framework"
	"github.com/basalt-dev/basalt/test/e2e/pxenet"
	"github.com/basalt-dev/basalt/test/envtest"
)

// The bare-metal VM's shape.
const (
	metalVMMAC       = "52:54:00:ba:5a:21"
	metalVMCPUs      = 2
	metalVMMemoryMiB = 2048
	metalVMDiskBytes = 6 << 30
)

// TestBareMetalWorker is the bare-metal path end to end, with real parts: a Cluster whose control
// plane runs on an SSH host of the bed and whose worker is a QEMU VM (TCG, SeaBIOS, blank disk)
// with its tap on the bed's own Docker bridge, so it shares the L2 segment of the control plane.
// The VM PXE-boots from the manager's DHCP (full mode, its spec.boot.address reserved), registers,
// is inspected and is Available; the Cluster claims it; the agent in RAM writes the whole-disk
// Debian image (hack/os-image.sh) onto the disk, installs itself with its identity and the
// Host's static address into it, reports it written and reboots; the network hands over to the
// disk (iPXE sanboot), GRUB boots Debian with systemd, and the agent there applies the node Plan
// (systemd runtime). The node is Ready, a pod on it answers the control-plane host and a pod there by pod IP
// and through a Service. Released while the VM is off, the Host stays out of the pool; powered on,
// the VM boots its disk, whose agent wipes it (read back from the VM's disk file), and the Host is
// Available again; claimed again, the image is written again. Then the manager is
// stopped and the VM power-cycled: it boots from its disk on its own (no DHCP, no PXE), and its
// node is Ready again with a new boot ID.
func TestBareMetalWorker(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: needs root, Docker, QEMU and the test bed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	b, network, m, ns := startBareMetalBed(ctx, t, "bm", "cp")
	c := m.Env.Client
	addr := framework.BedAddress(b, 200)
	metal := &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pxe-vm-1", Labels: map[string]string{"role": "worker"}},
		Spec: basaltv1.HostSpec{Boot: &basaltv1.BootSpec{
			MACAddresses: []string{metalVMMAC}, Mode: basaltv1.BootModeBIOS,
			Address: fmt.Sprintf("%s/%d", addr, b.Subnet.Bits()), Gateway: b.Gateway,
		}},
	}
	if err := c.Create(ctx, metal); err != nil {
		t.Fatal(err)
	}
	powerOn := time.Now()
	vm := framework.StartPXEVM(t, framework.StartPXEVMInput{Network: network, VMOptions: pxenet.VMOptions{
		MAC: metalVMMAC, CPUs: metalVMCPUs, MemoryMiB: metalVMMemoryMiB, DiskBytes: metalVMDiskBytes,
	}})
	console := func() string { return vm.Tail(40) }
	_, took := m.WaitForHost(ctx, t, framework.WaitForHostInput{
		Namespace: ns, Name: metal.Name, Timeout: 8 * time.Minute, Console: console,
		Check: hostReadyIn(basaltv1.HostStateAvailable),
	})
	t.Logf("Blank VM powered on → Host Available (agent registered from RAM, hardware reported): %s", took.Round(time.Second))
	m.WaitHostsAvailable(ctx, t, ns, hostNames(b), 5*time.Minute)

	cl := &basaltv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "metal"},
		Spec: basaltv1.ClusterSpec{
			Version:      etcdTestVersion,
			ControlPlane: basaltv1.ControlPlaneSpec{Replicas: 1, HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "cp"}}},
			Workers:      []basaltv1.WorkerPool{{Name: "metal", Replicas: 1, HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "worker"}}}},
		},
	}
	applied := time.Now()
	if err := c.Create(ctx, cl); err != nil {
		t.Fatal(err)
	}
	// The image is written, the network hands over to the disk, the agent there reports.
	h, took := m.WaitForHost(ctx, t, framework.WaitForHostInput{
		Namespace: ns, Name: metal.Name, Timeout: 20 * time.Minute, Console: console,
		Check: func(h *basaltv1.Host) error {
			p := h.Status.Provisioning
			if p == nil || p.Format != basaltv1.OSImageFormatDisk {
				return fmt.Errorf("state %s, no whole-disk provisioning yet: %s", h.Status.State, framework.ConditionSummary(h.Status.Conditions))
			}
			if p.WrittenAt == nil {
				return fmt.Errorf("state %s, image %s being written to %s: %s", h.Status.State, p.Image.Name, p.Disk, framework.ConditionSummary(h.Status.Conditions))
			}
			return hostReadyIn(basaltv1.HostStateProvisioned)(h)
		},
	})
	p := h.Status.Provisioning
	t.Logf("Cluster applied → Host Provisioned from its disk: %s (image %s, %d bytes gzip, to %s; written %s after the Cluster was applied, booted from disk %s later)",
		took.Round(time.Second), p.Image.SHA256[:12], p.Image.Size, p.Disk,
		p.WrittenAt.Sub(applied).Round(time.Second), p.ProvisionedAt.Sub(p.WrittenAt.Time).Round(time.Second))
	if h.Status.OS == nil || h.Status.OS.SystemdPID1 == nil || !*h.Status.OS.SystemdPID1 || (h.Status.OS.Container != nil && *h.Status.OS.Container) {
		t.Errorf("the installed system's facts %+v, want systemd as PID 1 and no container", h.Status.OS)
	}

	took = m.WaitForClusterReady(ctx, t, framework.WaitForClusterReadyInput{Namespace: ns, Name: cl.Name, ControlPlanes: 1, Workers: 1, Timeout: 20 * time.Minute})
	t.Logf("Host Provisioned → Cluster Ready (node Plan applied on the installed system): %s; Cluster applied → Ready: %s; blank VM powered on → Cluster Ready with its node: %s",
		took.Round(time.Second), time.Since(applied).Round(time.Second), time.Since(powerOn).Round(time.Second))
	wc, _ := m.WorkloadClient(ctx, t, ns, cl.Name)
	node := metalNode(ctx, t, wc, addr.String())
	if !nodeReady(*node) {
		t.Fatalf("node %s of the VM is not Ready", node.Name)
	}
	t.Logf("Node %s: %s, kernel %s, %s, runtime %s", node.Name, node.Status.NodeInfo.OSImage, node.Status.NodeInfo.KernelVersion,
		node.Status.NodeInfo.KubeletVersion, node.Status.NodeInfo.ContainerRuntimeVersion)
	if !strings.Contains(node.Status.NodeInfo.OSImage, "Debian GNU/Linux 12") {
		t.Errorf("node OS %q, want the Debian image", node.Status.NodeInfo.OSImage)
	}

	// A pod on the VM answers from the control-plane host and from a pod on the control-plane
	// node: by pod IP (routed to the VM) and through a Service (the control-plane node's
	// kube-proxy).
	podIP := runWebPod(ctx, t, wc, "web-metal", node.Name)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web-metal", Namespace: "default"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web-metal"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	svc, err := wc.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cp := b.Hosts[0]
	for _, url := range []string{"http://" + podIP + ":8080/", "http://" + svc.Spec.ClusterIP + "/"} {
		framework.Eventually(t, 2*time.Minute, func() error {
			out, err := cp.Run(ctx, "curl -fsS --max-time 3 "+url)
			if err != nil || !strings.Contains(out, "podIP="+podIP) {
				return fmt.Errorf("from %s to %s: %q %w", cp.Name, url, out, err)
			}
			return nil
		})
	}
	t.Logf("Pod %s on the bare-metal node answers from %s by pod IP and through Service %s", podIP, cp.Name, svc.Spec.ClusterIP)
	// And from a pod on the other node: the requests leave that pod's own network namespace
	// (its veth, the node's bridge, the route to the VM's pod range, kube-proxy's rules).
	cpNode := metalNode(ctx, t, wc, cp.IP)
	clientIP := runWebPod(ctx, t, wc, "web-cp", cpNode.Name)
	inPod := "nsenter -t \"$(pgrep -x webserver | head -n 1)\" -n "
	for _, url := range []string{"http://" + podIP + ":8080/", "http://" + svc.Spec.ClusterIP + "/"} {
		framework.Eventually(t, 2*time.Minute, func() error {
			out, err := cp.Run(ctx, inPod+"sh -c 'ip -4 -o addr show eth0; curl -fsS --max-time 3 "+url+"'")
			if err != nil || !strings.Contains(out, clientIP+"/") || !strings.Contains(out, "podIP="+podIP) {
				return fmt.Errorf("from pod %s on %s to %s: %q %w", clientIP, cpNode.Name, url, out, err)
			}
			return nil
		})
	}
	t.Logf("Pod %s on the bare-metal node answers pod %s on %s by pod IP and through Service %s", podIP, clientIP, cpNode.Name, svc.Spec.ClusterIP)

	// Released while the machine is off (a power loss before its wipe; the worker Machine
	// force-deleted, so its deletion does not wait for the agent): nothing confirms the wipe, so
	// the Host is not Available, and the network still hands the machine over to its disk.
	// Powered on, it boots its disk; the agent there is served the empty Plan, stops the node,
	// wipes every signature of the disk (partition tables at both ends, the filesystems), says so,
	// and reboots into the network, where the agent registers anew from RAM: the Host is
	// Available and the VM's disk file holds nothing a firmware, a kernel or blkid would
	// recognise. Scaled back to 1, the same Host is claimed and the image written again: the
	// wiped disk is not refused as one holding data.
	setWorkers := func(n int32) {
		framework.Eventually(t, time.Minute, func() error {
			got := &basaltv1.Cluster{}
			if err := c.Get(ctx, framework.ObjectKey(ns, cl.Name), got); err != nil {
				return err
			}
			got.Spec.Workers[0].Replicas = n
			return c.Update(ctx, got)
		})
	}
	if err := c.Get(ctx, framework.ObjectKey(ns, metal.Name), h); err != nil || h.Status.ConsumerRef == nil {
		t.Fatalf("the bare-metal Host has no Machine (%v)", err)
	}
	framework.Eventually(t, time.Minute, func() error {
		wm := &basaltv1.Machine{}
		if err := c.Get(ctx, framework.ObjectKey(ns, h.Status.ConsumerRef.Name), wm); err != nil {
			return err
		}
		if wm.Annotations == nil {
			wm.Annotations = map[string]string{}
		}
		wm.Annotations[basaltv1.AnnotationForceDelete] = "true"
		return c.Update(ctx, wm)
	})
	if err := vm.Stop(); err != nil {
		t.Fatal(err)
	}
	released := time.Now()
	setWorkers(0)
	m.WaitForHost(ctx, t, framework.WaitForHostInput{
		Namespace: ns, Name: metal.Name, Timeout: 5 * time.Minute, Console: console,
		Check: func(h *basaltv1.Host) error {
			if h.Status.ConsumerRef != nil {
				return fmt.Errorf("still claimed by %s (%s)", h.Status.ConsumerRef.Name, h.Status.State)
			}
			return nil
		},
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if err := c.Get(ctx, framework.ObjectKey(ns, metal.Name), h); err != nil {
			t.Fatal(err)
		}
		if hostclaim.Available(h) || h.Status.Provisioning == nil {
			t.Fatalf("released while off, the Host is %s with provisioning %v: its disk was never wiped", h.Status.State, h.Status.Provisioning)
		}
		time.Sleep(2 * time.Second)
	}
	if w, err := envtest.Condition(h.Status.Conditions, basaltv1.HostWiped); err != nil || w.Status != metav1.ConditionFalse {
		t.Fatalf("Wiped %+v (%v), want False while the machine is off", w, err)
	}
	t.Logf("Released while off: %s, Wiped=False/%s", h.Status.State, meta.FindStatusCondition(h.Status.Conditions, basaltv1.HostWiped).Reason)
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	poweredOn := time.Now()
	m.WaitForHost(ctx, t, framework.WaitForHostInput{
		Namespace: ns, Name: metal.Name, Timeout: 10 * time.Minute, Console: console,
		Check: func(h *basaltv1.Host) error {
			if h.Status.Provisioning != nil || h.Status.ConsumerRef != nil {
				return fmt.Errorf("state %s, provisioning %v, consumer %v: %s", h.Status.State, h.Status.Provisioning != nil, h.Status.ConsumerRef, framework.ConditionSummary(h.Status.Conditions))
			}
			if w := meta.FindStatusCondition(h.Status.Conditions, basaltv1.HostWiped); w == nil || w.Reason != basaltv1.ReasonWipeConfirmed {
				return fmt.Errorf("state %s, Wiped %+v", h.Status.State, w)
			}
			return hostReadyIn(basaltv1.HostStateAvailable)(h)
		},
	})
	took = time.Since(poweredOn)
	t.Logf("Powered on after the release → booted its disk, wiped it, agent back in RAM, Host Available: %s", took.Round(time.Second))
	if err := diskSignatures(vm.Disk); err != nil {
		t.Error(err)
	}
	setWorkers(1)
	took = m.WaitForClusterReady(ctx, t, framework.WaitForClusterReadyInput{Namespace: ns, Name: cl.Name, ControlPlanes: 1, Workers: 1, Timeout: 20 * time.Minute})
	t.Logf("Scaled back to 1 → the image written again and the node Ready: %s (release to Ready again: %s)", took.Round(time.Second), time.Since(released).Round(time.Second))
	node = metalNode(ctx, t, wc, addr.String())

	// The manager (and with it DHCP, TFTP, HTTP boot and the agent API) goes away; the VM is
	// power-cycled. It boots from its disk on its own, and its node comes back.
	m.Stop()
	bootID := node.Status.NodeInfo.BootID
	if err := vm.Stop(); err != nil {
		t.Fatal(err)
	}
	cycled := time.Now()
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 10*time.Minute, func() error {
		n := metalNode(ctx, t, wc, addr.String())
		if n.Status.NodeInfo.BootID == bootID {
			return fmt.Errorf("node %s still reports boot %s (console: %s)", n.Name, bootID, lastLine(vm.ConsoleText()))
		}
		if !nodeReady(*n) {
			return fmt.Errorf("node %s booted again (%s) but is not Ready", n.Name, n.Status.NodeInfo.BootID)
		}
		return nil
	})
	t.Logf("Power cycle with the manager stopped → node Ready again (booted from its disk): %s", time.Since(cycled).Round(time.Second))
}

// diskSignatures reads the places of the VM's disk file where the whole-disk image had
// signatures: the MBR boot signature, the primary GPT header (LBA 1) and the backup one (last
// LBA), the ESP's FAT boot sector (2 MiB) and the root ext4 superblock (66 MiB + 1024).
func diskSignatures(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	read := func(off int64, n int) []byte {
		b := make([]byte, n)
		_, _ = f.ReadAt(b, off)
		return b
	}
	var found []string
	if b := read(510, 2); b[0] == 0x55 && b[1] == 0xAA {
		found = append(found, "MBR boot signature at 510")
	}
	if string(read(512, 8)) == "EFI PART" {
		found = append(found, "primary GPT header at 512")
	}
	if string(read(st.Size()-512, 8)) == "EFI PART" {
		found = append(found, "backup GPT header at the last sector")
	}
	if b := read(2<<20+510, 2); b[0] == 0x55 && b[1] == 0xAA {
		found = append(found, "FAT boot sector at 2 MiB")
	}
	if b := read(66<<20+1024+0x38, 2); b[0] == 0x53 && b[1] == 0xEF {
		found = append(found, "ext4 superblock at 66 MiB")
	}
	if len(found) > 0 {
		return fmt.Errorf("the released VM's disk still holds: %s", strings.Join(found, ", "))
	}
	return nil
}

// startBareMetalBed is what both bare-metal tests stand on: a bed named name with one SSH Host
// labelled role=sshRole, a VM tap on its bridge, and the manager with full-mode PXE on that
// bridge writing the OS disk image; it returns the bed, the VM network, the manager and the
// test's namespace.
func startBareMetalBed(ctx context.Context, t *testing.T, name, sshRole string) (*bed.Bed, *pxenet.Network, *framework.Management, string) {
	t.Helper()
	framework.EnsurePXEDebs(t)
	setDir := artifactSet(t, etcdTestVersion)
	osImage := framework.OSImage(ctx, t)
	pxeImage := framework.PXEImage(ctx, t)
	b := framework.NewBed(ctx, t, bed.Options{Hosts: 1, Name: name})
	network := framework.NewBedPXENetwork(ctx, t, b)
	m := framework.StartManagement(t, framework.StartManagementInput{
		Bed: b, ArtifactSets: []string{setDir}, PXE: framework.BedPXEOptions(t, b, pxeImage, osImage),
	})
	ns := m.Env.Namespace(t)
	m.CreateSSHHosts(ctx, t, framework.SSHHostsInput{
		Namespace: ns, Bed: b, Labels: []map[string]string{{"role": sshRole}},
		OS: &basaltv1.OSFacts{Container: ptr.To(true), SystemdPID1: ptr.To(true), CgroupVersion: 1},
	})
	return b, network, m, ns
}

// metalNode is the workload cluster's node with InternalIP ip.
func metalNode(ctx context.Context, t *testing.T, wc *kubernetes.Clientset, ip string) *corev1.Node {
	t.Helper()
	nl, err := wc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range nl.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP && a.Address == ip {
				return &nl.Items[i]
			}
		}
	}
	t.Fatalf("no node has InternalIP %s among %d nodes", ip, len(nl.Items))
	return nil
}

// tolerateControlPlane lets a test pod run on a control-plane node, which a Cluster with workers
// taints node-role.kubernetes.io/control-plane:NoSchedule.
var tolerateControlPlane = []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}

// runWebPod runs the artifact set's webserver on node (control-plane nodes included) and returns
// its pod IP once it runs.
func runWebPod(ctx context.Context, t *testing.T, wc *kubernetes.Clientset, name, node string) string {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{"kubernetes.io/hostname": node},
			Tolerations:  tolerateControlPlane,
			Containers:   []corev1.Container{{Name: "web", Image: "basalt.dev/webserver:v1", ImagePullPolicy: corev1.PullNever}},
		},
	}
	framework.Eventually(t, time.Minute, func() error {
		_, err := wc.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
		return err
	})
	var ip string
	framework.Eventually(t, 5*time.Minute, func() error {
		p, err := wc.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return fmt.Errorf("pod %s: %s %s", p.Name, p.Status.Phase, podMessage(p))
		}
		ip = p.Status.PodIP
		return nil
	})
	return ip
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
