package e2e

import (
	"context"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/host"
	"github.com/basalt-dev/basalt/pxe/bmc/bmcsim"
	"github.com/basalt-dev/basalt/test/e2e/framework"
	"github.com/basalt-dev/basalt/test/e2e/pxenet"
	"github.com/basalt-dev/basalt/test/envtest"
)

// The PXE VM's shape; the Host's hardware facts must match it.
const (
	pxeVMCPUs      = 2
	pxeVMMemoryMiB = 768
	pxeVMDiskBytes = 2 << 30
	pxeVMMAC       = "52:54:00:ba:5a:01"
)

// TestPXE is the network boot's end-to-end proof. A QEMU VM (TCG, BIOS, virtio NIC, blank virtio
// disk) on a bridge in a network namespace PXE-boots from the manager's own DHCP (full mode),
// HTTP boot and agent API: the manager runs discovery, so its unknown MAC becomes a Host that
// the agent in the initramfs registers with a one-time token and fills with the VM's real
// hardware. The discovered Host waits for acceptance; accepted, it becomes Available. A Machine
// claims it: the agent streams the manager's root filesystem image (--pxe-root-image) onto the
// VM's blank disk, checks its sha256, carries its identity over and reboots; the network boots the
// same kernel with basalt.root=, /init switches to the disk, and the agent there reports with the
// identity it registered with: Provisioned, no new registration. A power cycle boots the disk
// again the same way (no token, no loop, the Host stays Provisioned). The Machine goes: its agent
// applies the empty Plan, wipes the disk and reboots into the network, and the Host is Available
// again with nothing on its disk.
func TestPXE(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: needs root, QEMU and network namespaces")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	framework.EnsurePXEDebs(t)
	img := framework.PXEImage(ctx, t)
	network := framework.NewPXENetwork(ctx, t)
	const ns = "pxe"
	m := framework.StartPXEManagement(t, framework.PXEManagementInput{
		Network: network, Image: img, Discovery: true, Namespace: ns, RootOnDisk: true,
	})
	c := m.Env.Client

	powerOn := time.Now()
	vm := framework.StartPXEVM(t, framework.StartPXEVMInput{Network: network, VMOptions: pxenet.VMOptions{
		MAC: pxeVMMAC, CPUs: pxeVMCPUs, MemoryMiB: pxeVMMemoryMiB, DiskBytes: pxeVMDiskBytes,
	}})
	name := host.DiscoveredHostName(pxeVMMAC)

	// Discovered, registered, inspected with the VM's real hardware, and not Available.
	h, took := m.WaitForHost(ctx, t, framework.WaitForHostInput{
		Namespace: ns, Name: name, Timeout: 6 * time.Minute, Console: func() string { return vm.Tail(40) },
		Check: func(h *basaltv1.Host) error {
			if err := checkPXEHardware(h.Status.Hardware); err != nil {
				return err
			}
			if h.Status.State != basaltv1.HostStateInspecting {
				return fmt.Errorf("state %s, want Inspecting (discovered, not accepted)", h.Status.State)
			}
			return nil
		},
	})
	t.Logf("Power-on to discovered Host with hardware (%d CPUs, %s, disk %s): %s",
		h.Status.Hardware.CPUs, h.Status.Hardware.Memory, h.Status.Hardware.Disks[0].Size, took.Round(time.Second))
	if h.Labels[basaltv1.LabelDiscovered] != "true" || h.Spec.IsAccepted() {
		t.Fatalf("discovered Host: labels %v, accepted %v", h.Labels, h.Spec.Accepted)
	}
	if h.Status.Agent.Version != "e2e" {
		t.Errorf("agent version %q, want e2e (the agent built into the image)", h.Status.Agent.Version)
	}
	for cond, want := range map[string]string{basaltv1.HostAgentConnected: "True", basaltv1.HostInspected: "True", basaltv1.HostAccepted: "False"} {
		if cc, err := envtest.Condition(h.Status.Conditions, cond); err != nil || string(cc.Status) != want {
			t.Errorf("%s: %v %v, want %s", cond, cc, err, want)
		}
	}
	// Not Available while not accepted, however long it waits.
	time.Sleep(3 * time.Second)
	if err := c.Get(ctx, framework.ObjectKey(ns, name), h); err != nil || h.Status.State != basaltv1.HostStateInspecting {
		t.Fatalf("unaccepted Host: state %s, %v", h.Status.State, err)
	}
	// The one token the script carried was burnt by the registration.
	if n := bootstrapTokens(ctx, t, c); n != 0 {
		t.Errorf("%d bootstrap tokens left after registration, want 0", n)
	}
	// The VM's script asked for from another address than the one DHCP leased the VM (this
	// process's, on the provisioning network) carries no token, and none is issued.
	refused := counter(t, "basalt_pxe_http_scripts_refused_total", "reason", "wrong_address")
	if script := httpGetText(ctx, t, m.Parts.PXE.HTTP.BaseURL+"/boot/"+pxeVMMAC+".ipxe"); strings.Contains(script, "basalt.token=") || !strings.Contains(script, "not served to "+network.ServerIP.String()) {
		t.Errorf("the VM's script for %s:\n%s", network.ServerIP, script)
	}
	if n := counter(t, "basalt_pxe_http_scripts_refused_total", "reason", "wrong_address"); n != refused+1 {
		t.Errorf("refused scripts (wrong_address) went from %v to %v, want +1", refused, n)
	}
	if n := bootstrapTokens(ctx, t, c); n != 0 {
		t.Errorf("%d bootstrap tokens after a refused script, want 0", n)
	}

	// Accepted: Available.
	before := h.DeepCopy()
	h.Spec.Accepted = ptr.To(true)
	if err := c.Patch(ctx, h, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	_, took = m.WaitForHost(ctx, t, framework.WaitForHostInput{
		Namespace: ns, Name: name, Timeout: time.Minute, Check: hostReadyIn(basaltv1.HostStateAvailable),
	})
	t.Logf("Accepted to Available: %s (power-on to Available: %s)", took.Round(time.Millisecond), time.Since(powerOn).Round(time.Second))

	// A Machine claims it: the agent, from RAM, streams the root image onto the VM's disk, gives
	// it its identity and reboots; the network boots the same kernel with basalt.root=, /init
	// switches to the disk, and the agent there reports with the identity it registered with.
	registrations := counter(t, "basalt_agent_api_registrations_total")
	claimed := time.Now()
	mach := &basaltv1.Machine{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pxe-worker"},
		Spec:       basaltv1.MachineSpec{Cluster: "none", Role: basaltv1.RoleWorker, HostRef: &basaltv1.LocalObjectReference{Name: name}},
	}
	if err := c.Create(ctx, mach); err != nil {
		t.Fatal(err)
	}
	rootSHA := readFileTrim(t, img.RootImage+".sha256")
	stop := watchState(ctx, t, c, framework.ObjectKey(ns, name), basaltv1.HostStateProvisioning)
	h, took = m.WaitForHost(ctx, t, framework.WaitForHostInput{
		Namespace: ns, Name: name, Timeout: 8 * time.Minute, Console: func() string { return vm.Tail(40) },
		Check: func(h *basaltv1.Host) error {
			if h.Status.ConsumerRef == nil || h.Status.ConsumerRef.Name != mach.Name {
				return fmt.Errorf("not claimed by %s yet (state %s)", mach.Name, h.Status.State)
			}
			return hostReadyIn(basaltv1.HostStateProvisioned)(h)
		},
	})
	if left := stop(); left != "" && left != string(basaltv1.HostStateProvisioned) {
		t.Errorf("the Host went through %s while provisioned", left)
	}
	t.Logf("Claimed to Provisioned (image written, rebooted into it): %s", took.Round(time.Second))
	if p := h.Status.Provisioning; p == nil || p.Disk != "/dev/vda" || p.Image.SHA256 != rootSHA || p.ProvisionedAt == nil {
		t.Errorf("status.provisioning %+v, want image %s on /dev/vda", p, rootSHA)
	}
	if r := h.Status.Agent.Root; r == nil || r.Image != rootSHA || r.Disk != "/dev/vda" {
		t.Errorf("status.agent.root %+v: the agent does not run from the image on disk", r)
	}
	if n := counter(t, "basalt_agent_api_registrations_total"); n != registrations {
		t.Errorf("%v registrations after provisioning, want %v: the agent on disk must keep the identity it registered with", n, registrations)
	}
	checkDiskHoldsExt4(t, vm.Disk, true)
	if cc, _ := envtest.Condition(h.Status.Conditions, basaltv1.HostDiskProvisioned); cc == nil || cc.Status != metav1.ConditionTrue {
		t.Errorf("DiskProvisioned %+v", cc)
	}
	if got := strings.Count(vm.ConsoleText(), "switching to the root filesystem on /dev/vda"); got != 1 {
		t.Errorf("the console shows %d switches to the disk, want 1:\n%s", got, vm.Tail(60))
	}
	t.Logf("Power-on to Provisioned on disk: %s (claimed to Provisioned %s)", time.Since(powerOn).Round(time.Second), time.Since(claimed).Round(time.Second))

	// Power-cycle: the provisioned host boots from the network into its root filesystem on
	// disk again, with no token; the agent there reports with its own identity, and the Host
	// never leaves Provisioned.
	if err := vm.Stop(); err != nil {
		t.Fatal(err)
	}
	reboot, consoleBefore := time.Now(), len(vm.ConsoleText())
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	stop = watchState(ctx, t, c, framework.ObjectKey(ns, name), basaltv1.HostStateProvisioned)
	_, took = m.WaitForHost(ctx, t, framework.WaitForHostInput{
		Namespace: ns, Name: name, Timeout: 6 * time.Minute, Console: func() string { return vm.Tail(40) },
		Check: func(h *basaltv1.Host) error {
			if !strings.Contains(vm.ConsoleText()[consoleBefore:], "switching to the root filesystem on /dev/vda") {
				return errors.New("the rebooted VM has not switched to its disk yet")
			}
			if h.Status.Agent.LastSeen == nil || h.Status.Agent.LastSeen.Time.Before(reboot.Truncate(time.Second)) {
				return errors.New("no report since the reboot")
			}
			return hostReadyIn(basaltv1.HostStateProvisioned)(h)
		},
	})
	if left := stop(); left != "" {
		t.Errorf("the Host left Provisioned during the reboot: %s", left)
	}
	if n := counter(t, "basalt_agent_api_registrations_total"); n != registrations {
		t.Errorf("%v registrations after the power cycle, want %v (the agent on disk keeps its identity)", n, registrations)
	}
	if n := bootstrapTokens(ctx, t, c); n != 0 {
		t.Errorf("%d bootstrap tokens after booting the provisioned system, want 0 (its script carries none)", n)
	}
	t.Logf("Power-cycle to the provisioned system's agent reporting from disk: %s", took.Round(time.Second))

	// The Machine goes: its agent applies the empty Plan, wipes the disk and reboots into the
	// network; the agent from RAM registers anew and the Host is Available again.
	if err := c.Delete(ctx, mach); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 3*time.Minute, m.Env.Gone(mach))
	m.WaitForHost(ctx, t, framework.WaitForHostInput{
		Namespace: ns, Name: name, Timeout: 6 * time.Minute, Console: func() string { return vm.Tail(40) },
		Check: func(h *basaltv1.Host) error {
			if h.Status.ConsumerRef != nil {
				return fmt.Errorf("still consumed by %s", h.Status.ConsumerRef.Name)
			}
			if h.Status.Provisioning != nil {
				return fmt.Errorf("status.provisioning still set (state %s, agent root %+v)", h.Status.State, h.Status.Agent.Root)
			}
			return hostReadyIn(basaltv1.HostStateAvailable)(h)
		},
	})
	if n := counter(t, "basalt_agent_api_registrations_total"); n != registrations+1 {
		t.Errorf("%v registrations after the wipe, want %v (the agent from RAM registers once)", n, registrations+1)
	}
	checkDiskHoldsExt4(t, vm.Disk, false)
	if strings.Contains(vm.ConsoleText(), "Kernel panic") {
		t.Errorf("the VM's kernel panicked:\n%s", vm.Tail(40))
	}
}

// TestPXEUEFI boots a UEFI machine the way real hardware does: OVMF's own network stack (no iPXE
// option ROM) sends DHCP with architecture 7 to the manager's full-mode DHCP, which leases the
// Host's reserved spec.boot.address and offers ipxe.efi; OVMF loads it over the manager's TFTP
// (Debian's ipxe package); iPXE asks DHCP again and chains its script over HTTP; the EFI stub
// kernel boots the agent, which registers for the Host that was created beforehand (no
// discovery) and reports hardware with the reserved address on the NIC. The Host is Available
// without any acceptance (spec.accepted defaults to true). The VM is off at the start: the Host
// controller powers it on through its BMC, a Redfish endpoint over HTTPS in front of the QEMU
// process (gofish on the manager side), with a one-time boot from PXE.
func TestPXEUEFI(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: needs root, QEMU and network namespaces")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	framework.EnsurePXEDebs(t, "ovmf")
	img := framework.PXEImage(ctx, t)
	network := framework.NewPXENetwork(ctx, t)
	const ns, name, mac = "pxe-uefi", "uefi-1", "52:54:00:ba:5a:e1"
	m := framework.StartPXEManagement(t, framework.PXEManagementInput{Network: network, Image: img, Namespace: ns})
	reserved := network.Subnet.Addr().As4()
	reserved[3] = 21
	address := netip.PrefixFrom(netip.AddrFrom4(reserved), network.Subnet.Bits()).String()
	// The VM is off; its BMC is a Redfish endpoint (over HTTPS, with a password) in front of its
	// QEMU process. The Host controller powers it on through that BMC, with a one-time boot
	// from PXE, as it would a server's.
	// Its disk is NVMe: the agent image loads the driver, and inspection reports it with its
	// serial number.
	vm, err := network.NewVM(pxenet.VMOptions{Dir: t.TempDir(), MAC: mac, CPUs: pxeVMCPUs, MemoryMiB: pxeVMMemoryMiB, DiskBytes: pxeVMDiskBytes, UEFI: true, NVMe: true})
	if err != nil {
		t.Fatal(err)
	}
	sys := &vmSystem{vm: vm}
	t.Cleanup(func() {
		if err := sys.ForceOff(context.Background()); err != nil {
			t.Errorf("stopping the VM: %v", err)
		}
		if t.Failed() {
			t.Logf("VM %s serial console (last 80 lines):\n%s", mac, vm.Tail(80))
		}
	})
	redfish := httptest.NewTLSServer(&bmcsim.Redfish{Username: "admin", Password: "bmc-secret", System: sys})
	t.Cleanup(redfish.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: redfish.Certificate().Raw})
	if err := m.Env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bmc-" + name},
		Data: map[string][]byte{"username": []byte("admin"), "password": []byte("bmc-secret"), "ca.crt": ca}}); err != nil {
		t.Fatal(err)
	}
	h := &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: basaltv1.HostSpec{
			Boot: &basaltv1.BootSpec{MACAddresses: []string{mac}, Mode: basaltv1.BootModeUEFI, Address: address},
			BMC: &basaltv1.BMCSpec{Protocol: basaltv1.BMCRedfish, Address: redfish.URL,
				CredentialsSecretRef: basaltv1.LocalObjectReference{Name: "bmc-" + name}},
		},
	}
	tftpOK := counter(t, "basalt_pxe_tftp_requests_total", "result", "ok")
	if err := m.Env.Client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	got, took := m.WaitForHost(ctx, t, framework.WaitForHostInput{
		Namespace: ns, Name: name, Timeout: 10 * time.Minute, Console: func() string { return vm.Tail(40) },
		Check: func(h *basaltv1.Host) error {
			hw := h.Status.Hardware
			if hw == nil {
				return fmt.Errorf("no hardware reported yet (state %s)", h.Status.State)
			}
			for _, n := range hw.NICs {
				if n.MAC == mac && slices.Contains(n.Addresses, address) {
					return hostReadyIn(basaltv1.HostStateAvailable)(h)
				}
			}
			return fmt.Errorf("no NIC %s with the reserved address %s: %+v", mac, address, hw.NICs)
		},
	})
	t.Logf("UEFI, powered on through Redfish: Host created to Available with the reserved address %s: %s", address, took.Round(time.Second))
	if err := checkPXEHardwareOf(got.Status.Hardware, mac, "nvme0n1", pxenet.NVMeSerial); err != nil {
		t.Error(err)
	}
	if on, _ := sys.PowerState(ctx); !on || sys.powerOns() != 1 || sys.pxeOverrides() != 1 {
		t.Errorf("through the BMC: on %v, %d power-ons, %d one-time PXE overrides; want exactly one of each", on, sys.powerOns(), sys.pxeOverrides())
	}
	if c, _ := envtest.Condition(got.Status.Conditions, basaltv1.HostBMCReachable); c == nil || c.Status != metav1.ConditionTrue || got.Status.Power != basaltv1.PowerOn {
		t.Errorf("BMCReachable %+v, status.power %q", c, got.Status.Power)
	}
	if n := counter(t, "basalt_pxe_tftp_requests_total", "result", "ok"); n < tftpOK+1 {
		t.Errorf("TFTP served %v files, want ipxe.efi", n-tftpOK)
	}
}

// checkPXEHardware compares the reported hardware with the VM's QEMU flags.
func checkPXEHardware(hw *basaltv1.Hardware) error {
	return checkPXEHardwareOf(hw, pxeVMMAC, "vda", "")
}

// checkPXEHardwareOf is checkPXEHardware for a VM with the given MAC and disk (its kernel name,
// and its serial number when serial is set).
func checkPXEHardwareOf(hw *basaltv1.Hardware, mac, diskName, serial string) error {
	if hw == nil {
		return errors.New("no hardware reported yet")
	}
	if hw.CPUs != pxeVMCPUs {
		return fmt.Errorf("%d CPUs, want %d", hw.CPUs, pxeVMCPUs)
	}
	// MemTotal is what the kernel has left after its own reservations: 80-100% of -m.
	full := resource.NewQuantity(pxeVMMemoryMiB<<20, resource.BinarySI)
	if hw.Memory == nil || hw.Memory.Cmp(*full) > 0 || hw.Memory.Value() < full.Value()*8/10 {
		return fmt.Errorf("memory %v, want 80-100%% of %s", hw.Memory, full)
	}
	disk := false
	for _, d := range hw.Disks {
		if d.Name == diskName && d.Size != nil && d.Size.Value() == pxeVMDiskBytes && (serial == "" || d.Serial == serial) {
			disk = true
		}
	}
	if !disk {
		return fmt.Errorf("disks %+v, want %s of %d bytes (serial %q)", hw.Disks, diskName, pxeVMDiskBytes, serial)
	}
	for _, n := range hw.NICs {
		if n.MAC == mac {
			return nil
		}
	}
	return fmt.Errorf("NICs %+v, want one with MAC %s", hw.NICs, mac)
}

// hostReadyIn checks that a Host is in state with Ready and AgentConnected True.
func hostReadyIn(state basaltv1.HostState) func(*basaltv1.Host) error {
	return func(h *basaltv1.Host) error {
		if h.Status.State != state {
			return fmt.Errorf("state %s, want %s: %s", h.Status.State, state, framework.ConditionSummary(h.Status.Conditions))
		}
		for _, cond := range []string{basaltv1.ConditionReady, basaltv1.HostAgentConnected} {
			if cc, err := envtest.Condition(h.Status.Conditions, cond); err != nil || cc.Status != metav1.ConditionTrue {
				return fmt.Errorf("%s: %v %w", cond, cc, err)
			}
		}
		return nil
	}
}

// readFileTrim returns a file's content without surrounding space.
func readFileTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// checkDiskHoldsExt4 reads the VM's disk file from this side: an ext4 superblock (magic 0xEF53
// at byte 1080, label at 1144) spanning the whole disk when want, and none (the wipe) otherwise.
func checkDiskHoldsExt4(t *testing.T, disk string, want bool) {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sb := make([]byte, 2048)
	if _, err := f.ReadAt(sb, 0); err != nil {
		t.Fatal(err)
	}
	magic := binary.LittleEndian.Uint16(sb[1080:])
	label := strings.TrimRight(string(sb[1144:1160]), "\x00")
	// The agent grows the filesystem online to the whole disk (the image is 256 MiB).
	blocks := int64(binary.LittleEndian.Uint32(sb[1028:]))
	size := blocks * (1024 << binary.LittleEndian.Uint32(sb[1048:]))
	switch {
	case want && (magic != 0xEF53 || label != "basalt-root"):
		t.Errorf("the VM's disk has no ext4 labelled basalt-root (magic %#x, label %q)", magic, label)
	case want && size != pxeVMDiskBytes:
		t.Errorf("the root filesystem is %d bytes, want the whole disk (%d): it was not grown", size, pxeVMDiskBytes)
	case !want && magic == 0xEF53:
		t.Errorf("the VM's disk still holds an ext4 superblock (label %q) after the wipe", label)
	}
}

// bootstrapTokens counts the bootstrap token Secrets in the manager's namespace.
func bootstrapTokens(ctx context.Context, t *testing.T, c client.Client) int {
	t.Helper()
	var sl corev1.SecretList
	if err := c.List(ctx, &sl, client.InNamespace(framework.ManagerNamespace), client.MatchingLabels{"basalt.dev/secret": "bootstrap-token"}); err != nil {
		t.Fatal(err)
	}
	return len(sl.Items)
}

// httpGetText GETs url and returns the body of a 200 answer.
func httpGetText(ctx context.Context, t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// counter reads a counter of the manager's metrics registry (the manager runs in this process),
// summed over its series, or over those with the label pair given as label, value.
func counter(t *testing.T, name string, labelValue ...string) float64 {
	t.Helper()
	mfs, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(labelValue) == 2 && !hasLabel(m, labelValue[0], labelValue[1]) {
				continue
			}
			sum += counterValue(m)
		}
	}
	return sum
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

func counterValue(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return 0
}

// watchState polls the Host until the returned stop is called, and stop reports the first state
// other than want it saw ("" when none).
func watchState(ctx context.Context, t *testing.T, c client.Client, key client.ObjectKey, want basaltv1.HostState) func() string {
	t.Helper()
	done, result := make(chan struct{}), make(chan string, 1)
	go func() {
		seen := ""
		for {
			select {
			case <-done:
				result <- seen
				return
			case <-time.After(200 * time.Millisecond):
			}
			h := &basaltv1.Host{}
			if err := c.Get(ctx, key, h); err == nil && h.Status.State != want && seen == "" {
				seen = string(h.Status.State)
			}
		}
	}()
	return func() string { close(done); return <-result }
}

// vmSystem is the machine behind the test's Redfish BMC: the PXE network's QEMU VM, powered on
// and off as a process (a BMC cuts and restores a server's power). The VM's only boot device is
// the network, so a boot override needs nothing more than recording.
type vmSystem struct {
	vm *pxenet.VM

	mu       sync.Mutex
	on       bool
	ons      int
	override bmcsim.BootDevice
	persist  bool
	pxeOnce  int
}

func (s *vmSystem) PowerState(context.Context) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.on, nil
}

func (s *vmSystem) PowerOn(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.on {
		return nil
	}
	if err := s.vm.Start(); err != nil {
		return err
	}
	s.on, s.ons = true, s.ons+1
	if !s.persist {
		s.override = bmcsim.BootNone
	}
	return nil
}

func (s *vmSystem) ForceOff(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.on {
		return nil
	}
	s.on = false
	return s.vm.Stop()
}

func (s *vmSystem) ForceRestart(ctx context.Context) error {
	if err := s.ForceOff(ctx); err != nil {
		return err
	}
	return s.PowerOn(ctx)
}

func (s *vmSystem) SetBootOverride(_ context.Context, dev bmcsim.BootDevice, persistent bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.override, s.persist = dev, persistent
	if dev == bmcsim.BootPXE && !persistent {
		s.pxeOnce++
	}
	return nil
}

func (s *vmSystem) BootOverride() (bmcsim.BootDevice, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.override, s.persist
}

func (s *vmSystem) powerOns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ons
}

func (s *vmSystem) pxeOverrides() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pxeOnce
}
