package host_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/agents/agentserver"
	"github.com/basalt-dev/basalt/agents/planstore"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/host"
	"github.com/basalt-dev/basalt/pxe/httpboot"
	"github.com/basalt-dev/basalt/test/envtest"
)

// ext4Head and gptHead are the first bytes of an ext4 filesystem image and of a whole-disk
// image, as host.ImageFormat tells them apart.
func ext4Head() []byte {
	b := make([]byte, 4096)
	b[1080], b[1081] = 0x53, 0xEF
	return b
}

func gptHead() []byte {
	b := make([]byte, 4096)
	b[510], b[511] = 0x55, 0xAA
	copy(b[512:], "EFI PART")
	return b
}

// writeRootImage writes a gzip-compressed ext4 filesystem image of raw bytes and loads it.
func writeRootImage(t *testing.T, raw int) *host.RootImage {
	t.Helper()
	return writeImage(t, ext4Head(), raw, basaltv1.OSImageFormatFilesystem)
}

// writeImage writes a gzip-compressed image of raw bytes starting with head and loads it.
func writeImage(t *testing.T, head []byte, raw int, format basaltv1.OSImageFormat) *host.RootImage {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	content := make([]byte, raw)
	copy(content, head)
	if _, err := w.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "root.img.gz")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := host.LoadRootImage(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b.Bytes())
	if img.Ref.SHA256 != hex.EncodeToString(sum[:]) || img.Ref.Size != int64(b.Len()) || img.RawSize != int64(raw) || img.Ref.Name != host.RootImageName || img.Format != format {
		t.Fatalf("LoadRootImage: %+v", img)
	}
	return img
}

func TestLoadRootImageRefusesWhatIsNotGzip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "root.img")
	if err := os.WriteFile(path, []byte("not gzip"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := host.LoadRootImage(path); err == nil || !strings.Contains(err.Error(), "not gzip-compressed") {
		t.Fatalf("got %v", err)
	}
}

func TestImageFormat(t *testing.T) {
	for name, tc := range map[string]struct {
		head []byte
		want basaltv1.OSImageFormat
	}{
		"gpt disk":   {gptHead(), basaltv1.OSImageFormatDisk},
		"ext4":       {ext4Head(), basaltv1.OSImageFormatFilesystem},
		"zeros":      {make([]byte, 4096), ""},
		"short":      {[]byte{1, 2, 3}, ""},
		"mbr no gpt": {func() []byte { b := make([]byte, 4096); b[510], b[511] = 0x55, 0xAA; return b }(), ""},
	} {
		got, err := host.ImageFormat(tc.head)
		if got != tc.want || (tc.want == "") != (err != nil) {
			t.Errorf("%s: %q %v, want %q", name, got, err, tc.want)
		}
	}
	path := filepath.Join(t.TempDir(), "zeros.img.gz")
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	_, _ = w.Write(make([]byte, 8192))
	_ = w.Close()
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := host.LoadRootImage(path); err == nil || !strings.Contains(err.Error(), "neither a whole-disk image") {
		t.Errorf("an image of zeros: %v", err)
	}
}

// startDiskController runs the Host controller with img as its root image, and returns a fresh
// namespace and the HTTP boot server answering for its Hosts (NetBoot with a real agent API).
func startDiskController(t *testing.T, img *host.RootImage) (string, *httpboot.Server) {
	t.Helper()
	mgr, err := env.NewManager()
	if err != nil {
		t.Fatal(err)
	}
	r := &host.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("basalt-host"), NetBoot: true, RootImage: img}
	if err := r.SetupWithManager(mgr, envtest.ControllerOptions()); err != nil {
		t.Fatal(err)
	}
	ns := env.Namespace(t)
	srv := &agentserver.Server{Namespace: ns, Addresses: []string{"192.168.10.1"}, Client: env.Client}
	nb := &host.NetBoot{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Bootstrapper: srv}
	envtest.StartManager(t, mgr)
	return ns, &httpboot.Server{BaseURL: "http://192.168.10.1:8080", Scripts: nb}
}

// claim makes a Machine and has it claim h, as the Machine controller does.
func claim(t *testing.T, h *basaltv1.Host, machine string) {
	t.Helper()
	m := &basaltv1.Machine{
		ObjectMeta: metav1.ObjectMeta{Name: machine, Namespace: h.Namespace},
		Spec:       basaltv1.MachineSpec{Cluster: "c", Role: basaltv1.RoleWorker, HostRef: &basaltv1.LocalObjectReference{Name: h.Name}},
	}
	if err := env.Client.Create(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) { h.Status.ConsumerRef = &basaltv1.LocalObjectReference{Name: machine} })
}

// agentRunsFrom stands in for the agent API recording an agent's report of its root (nil: RAM).
func agentRunsFrom(t *testing.T, h *basaltv1.Host, root *basaltv1.AgentRoot) {
	t.Helper()
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) {
		h.Status.Agent.LastSeen = &metav1.Time{Time: time.Now()}
		h.Status.Agent.Root = root
	})
}

// agentWipes stands for the agent's last report from the disk before its reboot: it wiped root.
func agentWipes(t *testing.T, h *basaltv1.Host, root *basaltv1.AgentRoot) {
	t.Helper()
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) {
		h.Status.Agent.LastSeen = &metav1.Time{Time: time.Now()}
		h.Status.Agent.Root = root
		h.Status.Agent.Wiped = root
	})
}

// TestRootOnDiskLifecycle: with a root image, a claimed network-booted Host stays Provisioning
// (DiskProvisioned False/WritingImage) with a Plan that has only OS, on the smallest disk that
// holds the image, until its agent reports running from that image on that disk; then it is
// Provisioned and its script boots the disk without a token. Released, it waits in
// Deprovisioning (WipingDisk) until the agent runs from the network again, then is Available
// with nothing recorded on the disk. A Host whose disks are all too small says so.
func TestRootOnDiskLifecycle(t *testing.T) {
	ctx := context.Background()
	img := writeRootImage(t, 3<<20)
	ns, boot := startDiskController(t, img)
	script := func(mac string) string {
		w := httptest.NewRecorder()
		boot.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/boot/"+mac+".ipxe", nil))
		return w.Body.String()
	}

	h := bootHost(ns, "n1", "52:54:00:00:d1:01")
	// httptest's requests come from 192.0.2.1: its scripts with a token go there.
	h.Spec.Boot.Address = "192.0.2.1/24"
	if err := env.Client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) {
		h.Status.Agent = basaltv1.AgentStatus{Version: "test", LastSeen: &metav1.Time{Time: time.Now()}}
		h.Status.Hardware = &basaltv1.Hardware{CPUs: 2, Disks: []basaltv1.Disk{
			{Name: "sdb", Size: resource.NewQuantity(100<<30, resource.BinarySI)},
			{Name: "vdb", Size: resource.NewQuantity(1<<20, resource.BinarySI)}, // too small
			{Name: "sda", Size: resource.NewQuantity(8<<30, resource.BinarySI)},
		}}
	})
	hostIs(t, h, basaltv1.HostStateAvailable)
	claim(t, h, "m1")
	hostIs(t, h, basaltv1.HostStateProvisioning,
		basaltv1.HostDiskProvisioned, "False", basaltv1.ReasonWritingImage,
		basaltv1.ConditionReady, "False", basaltv1.ReasonWritingImage)

	got := &basaltv1.Host{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
		t.Fatal(err)
	}
	if p := got.Status.Provisioning; p == nil || p.Disk != "/dev/sda" || p.Image != img.Ref || p.ProvisionedAt != nil {
		t.Fatalf("status.provisioning %+v, want %+v on /dev/sda (the smallest disk that holds it)", p, img.Ref)
	}
	envtest.Eventually(t, wait, func() error {
		p, _, err := planstore.LoadPlan(ctx, env.Client, ns, "n1")
		if err != nil {
			return err
		}
		if p.OS == nil || p.OS.Disk != "/dev/sda" || p.OS.SHA256 != img.Ref.SHA256 || len(p.Services)+len(p.Files) != 0 {
			return fmt.Errorf("Plan %+v, want only OS", p)
		}
		return nil
	})
	// While it is written, every boot carries a token and basalt.root=, so a disk without a
	// finished root falls back to the agent in RAM.
	if s := script("52:54:00:00:d1:01"); !strings.Contains(s, "basalt.root=basalt-root") || !strings.Contains(s, "basalt.token=") {
		t.Errorf("Provisioning script:\n%s", s)
	}

	// The agent reports from another disk: not it.
	agentRunsFrom(t, h, &basaltv1.AgentRoot{Image: img.Ref.SHA256, Disk: "/dev/sdb"})
	time.Sleep(time.Second)
	hostIs(t, h, basaltv1.HostStateProvisioning)
	// From the image on /dev/sda: Provisioned.
	agentRunsFrom(t, h, &basaltv1.AgentRoot{Image: img.Ref.SHA256, Disk: "/dev/sda"})
	hostIs(t, h, basaltv1.HostStateProvisioned,
		basaltv1.HostDiskProvisioned, "True", basaltv1.ReasonReady,
		basaltv1.ConditionReady, "True", basaltv1.ReasonReady)
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Provisioning.ProvisionedAt == nil {
		t.Error("provisionedAt not set")
	}
	// Its boots go to the disk, with no token.
	envtest.Eventually(t, wait, func() error {
		s := script("52:54:00:00:d1:01")
		if !strings.Contains(s, "(Provisioned) boots the agent") || !strings.Contains(s, "basalt.root=basalt-root") || strings.Contains(s, "basalt.token") {
			return fmt.Errorf("Provisioned script:\n%s", s)
		}
		return nil
	})

	// Released: Deprovisioning until the agent reported the wipe and runs from the network
	// again. An agent that merely runs from the network (the machine was off during the wipe
	// and booted without its root) proves nothing: the Host stays out of the pool.
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) { h.Status.ConsumerRef = nil })
	hostIs(t, h, basaltv1.HostStateDeprovisioning,
		basaltv1.HostDiskProvisioned, "False", basaltv1.ReasonWipingDisk)
	agentRunsFrom(t, h, nil)
	time.Sleep(time.Second)
	hostIs(t, h, basaltv1.HostStateDeprovisioning,
		basaltv1.HostDiskProvisioned, "False", basaltv1.ReasonWipingDisk,
		basaltv1.HostWiped, "False", basaltv1.ReasonWiping)
	agentWipes(t, h, &basaltv1.AgentRoot{Image: img.Ref.SHA256, Disk: "/dev/sda"})
	agentRunsFrom(t, h, nil)
	hostIs(t, h, basaltv1.HostStateAvailable, basaltv1.ConditionReady, "True", basaltv1.ReasonReady,
		basaltv1.HostWiped, "True", basaltv1.ReasonWipeConfirmed)
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Provisioning != nil {
		t.Errorf("status.provisioning %+v after the wipe", got.Status.Provisioning)
	}
	if _, err := envtest.Condition(got.Status.Conditions, basaltv1.HostDiskProvisioned); err == nil {
		t.Error("DiskProvisioned is still set with nothing on the disk")
	}

	// spec.boot.rootDisk naming a disk too small: it says so and stays Provisioning.
	small := bootHost(ns, "n2", "52:54:00:00:d1:02")
	small.Spec.Boot.RootDisk = "vdb" //nolint:staticcheck // the older field keeps working
	if err := env.Client.Create(ctx, small); err != nil {
		t.Fatal(err)
	}
	env.UpdateHostStatus(t, small, func(h *basaltv1.Host) {
		h.Status.Agent = basaltv1.AgentStatus{Version: "test", LastSeen: &metav1.Time{Time: time.Now()}}
		h.Status.Hardware = &basaltv1.Hardware{CPUs: 2, Disks: []basaltv1.Disk{
			{Name: "vdb", Size: resource.NewQuantity(1<<20, resource.BinarySI)},
			{Name: "sda", Size: resource.NewQuantity(8<<30, resource.BinarySI)},
		}}
	})
	hostIs(t, small, basaltv1.HostStateAvailable)
	claim(t, small, "m2")
	hostIs(t, small, basaltv1.HostStateProvisioning, basaltv1.HostDiskProvisioned, "False", basaltv1.ReasonNoRootDisk)
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(small), got); err != nil {
		t.Fatal(err)
	}
	c, _ := envtest.Condition(got.Status.Conditions, basaltv1.HostDiskProvisioned)
	if c == nil || !strings.Contains(c.Message, `no disk is spec.boot.rootDisk "vdb" and holds the root image (3145728 bytes); the agent reported vdb: 1048576 bytes, too small for the image; sda: name is not "vdb"`) || got.Status.Provisioning != nil {
		t.Errorf("DiskProvisioned %+v, provisioning %+v", c, got.Status.Provisioning)
	}
}

// TestWholeDiskImageLifecycle: with a whole-disk image (its own partition table and boot
// loader), a claimed Host's Plan carries the image's format and the Host's static address; its
// network boots the agent with a token and no basalt.root while the image is written; once the
// agent reports it written (just before its reboot) the network hands the host over to its
// local disk, and keeps doing so once Provisioned. Released, the network boots the agent again.
func TestWholeDiskImageLifecycle(t *testing.T) {
	ctx := context.Background()
	img := writeImage(t, gptHead(), 3<<20, basaltv1.OSImageFormatDisk)
	ns, boot := startDiskController(t, img)
	const mac = "52:54:00:00:d2:01"
	script := func() string {
		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/boot/"+mac+".ipxe", nil)
		req.RemoteAddr = "192.168.10.21:4321" // the Host's own address: scripts with a token go only there
		boot.ServeHTTP(w, req)
		return w.Body.String()
	}

	h := bootHost(ns, "metal1", mac)
	h.Spec.Boot.Address, h.Spec.Boot.Gateway = "192.168.10.21/24", "192.168.10.1"
	if err := env.Client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) {
		h.Status.Agent = basaltv1.AgentStatus{Version: "test", LastSeen: &metav1.Time{Time: time.Now()}}
		h.Status.Hardware = &basaltv1.Hardware{CPUs: 2, Disks: []basaltv1.Disk{{Name: "vda", Size: resource.NewQuantity(8<<30, resource.BinarySI)}}}
	})
	hostIs(t, h, basaltv1.HostStateAvailable)
	claim(t, h, "m1")
	hostIs(t, h, basaltv1.HostStateProvisioning, basaltv1.HostDiskProvisioned, "False", basaltv1.ReasonWritingImage)
	envtest.Eventually(t, wait, func() error {
		p, _, err := planstore.LoadPlan(ctx, env.Client, ns, "metal1")
		if err != nil {
			return err
		}
		if p.OS == nil || p.OS.Format != "disk" || p.OS.Network == nil || p.OS.Network.Address != "192.168.10.21/24" ||
			p.OS.Network.MAC != mac || p.OS.Network.Gateway != "192.168.10.1" {
			return fmt.Errorf("Plan OS %+v, want the whole-disk image with the Host's address", p.OS)
		}
		return p.Validate()
	})
	// While it is written: the agent from RAM with a token, and no basalt.root (the PXE
	// initramfs must never switch into the image's own system).
	if s := script(); !strings.Contains(s, "basalt.token=") || strings.Contains(s, "basalt.root") {
		t.Errorf("Provisioning script:\n%s", s)
	}
	// The agent reports the image written (its last report before the reboot): the network
	// hands over to the disk from now on, before the controller has even seen it.
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) {
		h.Status.Agent.Written = &basaltv1.AgentRoot{Image: img.Ref.SHA256, Disk: "/dev/vda"}
	})
	envtest.Eventually(t, wait, func() error {
		if s := script(); !strings.Contains(s, "boots from its local disk") || strings.Contains(s, "basalt.token") {
			return fmt.Errorf("script after the write:\n%s", s)
		}
		got := &basaltv1.Host{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
			return err
		}
		if p := got.Status.Provisioning; p == nil || p.Format != basaltv1.OSImageFormatDisk || p.WrittenAt == nil {
			return fmt.Errorf("status.provisioning %+v, want format Disk and writtenAt", p)
		}
		return nil
	})
	// The agent on the disk reports (no longer "written"): Provisioned, and still the disk.
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) {
		h.Status.Agent.Written = nil
		h.Status.Agent.Root = &basaltv1.AgentRoot{Image: img.Ref.SHA256, Disk: "/dev/vda"}
		h.Status.Agent.LastSeen = &metav1.Time{Time: time.Now()}
	})
	hostIs(t, h, basaltv1.HostStateProvisioned, basaltv1.HostDiskProvisioned, "True", basaltv1.ReasonReady)
	if s := script(); !strings.Contains(s, "(Provisioned) boots from its local disk") || strings.Contains(s, "basalt.token") {
		t.Errorf("Provisioned script:\n%s", s)
	}
	// Released: until the agent on the disk reports the image wiped, the network still hands
	// the machine over to its disk, so one that reboots or loses power before its wipe comes
	// back where its agent wipes it.
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) { h.Status.ConsumerRef = nil })
	hostIs(t, h, basaltv1.HostStateDeprovisioning, basaltv1.HostDiskProvisioned, "False", basaltv1.ReasonWipingDisk)
	if s := script(); !strings.Contains(s, "(Deprovisioning) boots from its local disk") || strings.Contains(s, "basalt.token") {
		t.Errorf("Deprovisioning script before the wipe:\n%s", s)
	}
	// It wiped the disk (its last report before the reboot): the network boots the agent from
	// RAM with a token.
	agentWipes(t, h, &basaltv1.AgentRoot{Image: img.Ref.SHA256, Disk: "/dev/vda"})
	envtest.Eventually(t, wait, func() error {
		if s := script(); !strings.Contains(s, "basalt.token=") || strings.Contains(s, "basalt.root") || strings.Contains(s, "local disk") {
			return fmt.Errorf("Deprovisioning script after the wipe:\n%s", s)
		}
		return nil
	})
	agentRunsFrom(t, h, nil)
	hostIs(t, h, basaltv1.HostStateAvailable, basaltv1.HostWiped, "True", basaltv1.ReasonWipeConfirmed)
}

// TestRootDeviceHintsToProvisioning: the disk the hints select is recorded by its kernel name
// and identity (WWN, serial, by-path) in status.provisioning, and the Plan carries the
// identity and spec.boot.eraseExistingDisk to the agent. Hints no disk matches say, in the
// DiskProvisioned condition, why each disk does not.
func TestRootDeviceHintsToProvisioning(t *testing.T) {
	ctx := context.Background()
	img := writeRootImage(t, 3<<20)
	ns, _ := startDiskController(t, img)
	disks := []basaltv1.Disk{
		{Name: "sda", Size: resource.NewQuantity(480<<30, resource.BinarySI), Model: "SAMSUNG MZ7LH480", Serial: "S45N", WWN: "0x5002538e40a1b2c3", ByPath: "pci-0000:00:1f.2-ata-1.0"},
		{Name: "sdb", Size: resource.NewQuantity(4000<<30, resource.BinarySI), Model: "ST4000NM0035-1V4", Serial: "ZC1B", WWN: "0x5000c500a1b2c3d5", ByPath: "pci-0000:00:1f.2-ata-2.0", Rotational: true},
	}
	inspected := func(h *basaltv1.Host) {
		env.UpdateHostStatus(t, h, func(h *basaltv1.Host) {
			h.Status.Agent = basaltv1.AgentStatus{Version: "test", LastSeen: &metav1.Time{Time: time.Now()}}
			h.Status.Hardware = &basaltv1.Hardware{CPUs: 2, Disks: disks}
		})
	}

	yes := true
	h := bootHost(ns, "n1", "52:54:00:00:d2:01")
	h.Spec.Boot.RootDeviceHints = &basaltv1.RootDeviceHints{Rotational: &yes, MinSizeGigabytes: 1000}
	h.Spec.Boot.EraseExistingDisk = true
	if err := env.Client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	inspected(h)
	hostIs(t, h, basaltv1.HostStateAvailable)
	claim(t, h, "m1")
	hostIs(t, h, basaltv1.HostStateProvisioning, basaltv1.HostDiskProvisioned, "False", basaltv1.ReasonWritingImage)
	got := &basaltv1.Host{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
		t.Fatal(err)
	}
	want := &basaltv1.HostProvisioning{Image: img.Ref, Disk: "/dev/sdb", WWN: "0x5000c500a1b2c3d5", Serial: "ZC1B", ByPath: "pci-0000:00:1f.2-ata-2.0", Format: basaltv1.OSImageFormatFilesystem}
	if d := cmp.Diff(want, got.Status.Provisioning); d != "" {
		t.Fatalf("status.provisioning (-want +got):\n%s", d)
	}
	c, _ := envtest.Condition(got.Status.Conditions, basaltv1.HostDiskProvisioned)
	if c == nil || !strings.Contains(c.Message, "/dev/sdb (WWN 0x5000c500a1b2c3d5, serial ZC1B, by-path pci-0000:00:1f.2-ata-2.0)") {
		t.Errorf("DiskProvisioned %+v", c)
	}
	envtest.Eventually(t, wait, func() error {
		p, _, err := planstore.LoadPlan(ctx, env.Client, ns, "n1")
		if err != nil {
			return err
		}
		if p.OS == nil || p.OS.Disk != "/dev/sdb" || p.OS.WWN != "0x5000c500a1b2c3d5" || p.OS.Serial != "ZC1B" || !p.OS.Erase {
			return fmt.Errorf("Plan OS %+v, want /dev/sdb with its WWN and serial, erase allowed", p.OS)
		}
		return nil
	})

	// Hints that no disk matches: each disk is named with why it does not.
	none := bootHost(ns, "n2", "52:54:00:00:d2:02")
	none.Spec.Boot.RootDeviceHints = &basaltv1.RootDeviceHints{WWN: "0x5000c500a1b2c3d5", Model: "SAMSUNG"}
	if err := env.Client.Create(ctx, none); err != nil {
		t.Fatal(err)
	}
	inspected(none)
	hostIs(t, none, basaltv1.HostStateAvailable)
	claim(t, none, "m2")
	hostIs(t, none, basaltv1.HostStateProvisioning, basaltv1.HostDiskProvisioned, "False", basaltv1.ReasonNoRootDisk)
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(none), got); err != nil {
		t.Fatal(err)
	}
	c, _ = envtest.Condition(got.Status.Conditions, basaltv1.HostDiskProvisioned)
	wantMsg := `no disk matches spec.boot.rootDeviceHints and holds the root image (3145728 bytes); the agent reported ` +
		`sda: WWN "0x5002538e40a1b2c3" is not "0x5000c500a1b2c3d5"; sdb: model "ST4000NM0035-1V4" does not contain "SAMSUNG"`
	if c == nil || c.Message != wantMsg || got.Status.Provisioning != nil {
		t.Errorf("DiskProvisioned %+v, provisioning %+v; want the message %q", c, got.Status.Provisioning, wantMsg)
	}
}
