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

// writeRootImage writes a gzip-compressed image of raw bytes and loads it.
func writeRootImage(t *testing.T, raw int) *host.RootImage {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(make([]byte, raw)); err != nil {
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
	if img.Ref.SHA256 != hex.EncodeToString(sum[:]) || img.Ref.Size != int64(b.Len()) || img.RawSize != int64(raw) || img.Ref.Name != host.RootImageName {
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

// TestRootOnDiskLifecycle: with a root image, a claimed network-booted Host stays Provisioning
// (DiskProvisioned False/WritingImage) with a Plan that has only OS, on the smallest disk that
// holds the image, until its agent reports running from that image on that disk; then it is
// Provisioned and its script boots the disk without a token. Released, it waits in
// Deprovisioning (WipingDisk) until the agent runs from the network again, then is Available
// with nothing recorded on the disk. A Host whose disks are all too small says so.
func TestRootOnDiskLifecycle(t *testing.T) {
	ctx := context.Background()
	img := writeRootImage(t, 3<<20)
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
	boot := &httpboot.Server{BaseURL: "http://192.168.10.1:8080", Scripts: nb}
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

	// Released: Deprovisioning until the agent runs from the network again.
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) { h.Status.ConsumerRef = nil })
	hostIs(t, h, basaltv1.HostStateDeprovisioning,
		basaltv1.HostDiskProvisioned, "False", basaltv1.ReasonWipingDisk)
	agentRunsFrom(t, h, nil)
	hostIs(t, h, basaltv1.HostStateAvailable, basaltv1.ConditionReady, "True", basaltv1.ReasonReady)
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
	small.Spec.Boot.RootDisk = "vdb"
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
	if c == nil || !strings.Contains(c.Message, `spec.boot.rootDisk "vdb" is not a disk of 3145728 bytes or more`) || got.Status.Provisioning != nil {
		t.Errorf("DiskProvisioned %+v, provisioning %+v", c, got.Status.Provisioning)
	}
}
