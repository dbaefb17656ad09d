package host_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/host"
	"github.com/basalt-dev/basalt/pxe/bmc/bmcsim"
	"github.com/basalt-dev/basalt/test/envtest"
)

// bmcHost creates, in the API server, a network-booted Host whose Redfish BMC is the simulator
// at url, and its credentials Secret (with the simulator's certificate as CA).
func bmcHost(t *testing.T, ns, url string, ca []byte, password string) *basaltv1.Host {
	t.Helper()
	ctx := context.Background()
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bmc"},
		Data: map[string][]byte{"username": []byte("root"), "password": []byte(password), "ca.crt": ca}}
	if err := env.Client.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	h := &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "metal-1"},
		Spec: basaltv1.HostSpec{
			Boot: &basaltv1.BootSpec{MACAddresses: []string{"52:54:00:12:34:56"}},
			BMC: &basaltv1.BMCSpec{Protocol: basaltv1.BMCRedfish, Address: url,
				CredentialsSecretRef: basaltv1.LocalObjectReference{Name: "bmc"}},
		},
	}
	if err := env.Client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	return h
}

func bmcCondition(t *testing.T, h *basaltv1.Host) *metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(h.Status.Conditions, basaltv1.HostBMCReachable)
	if c == nil {
		t.Fatalf("no %s condition in %+v", basaltv1.HostBMCReachable, h.Status.Conditions)
	}
	return c
}

// TestHostBMCCalls: the Host controller's BMC calls reach a Redfish BMC over HTTPS with the
// credentials and CA of the Host's Secret, change the machine as the state machine needs (PXE then
// on, power cycle for remediation, off), and record status.power and BMCReachable.
func TestHostBMCCalls(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	sys := &bmcsim.MemorySystem{}
	srv := httptest.NewTLSServer(&bmcsim.Redfish{Username: "root", Password: "pw-of-the-bmc", System: sys})
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	h := bmcHost(t, ns, srv.URL, ca, "pw-of-the-bmc")
	r := &host.Reconciler{Client: env.Client, APIReader: env.Client, BMC: &host.BMCAccess{PollInterval: time.Hour}}

	if next := r.RefreshPower(ctx, h); next <= 0 || h.Status.Power != basaltv1.PowerOff {
		t.Fatalf("RefreshPower: next %s, power %q; want a later poll and Off", next, h.Status.Power)
	}
	if c := bmcCondition(t, h); c.Status != metav1.ConditionTrue || c.Reason != basaltv1.ReasonReady {
		t.Fatalf("BMCReachable %s/%s: %s", c.Status, c.Reason, c.Message)
	}

	if err := r.PowerOnForProvisioning(ctx, h); err != nil {
		t.Fatal(err)
	}
	if on, _ := sys.PowerState(ctx); !on || h.Status.Power != basaltv1.PowerOn {
		t.Fatalf("after PowerOnForProvisioning: machine on=%v, status.power %q", on, h.Status.Power)
	}
	// Already on: it boots from PXE again, through a restart.
	if err := r.PowerOnForProvisioning(ctx, h); err != nil {
		t.Fatal(err)
	}
	if got, want := sys.Boots(), []bmcsim.BootDevice{bmcsim.BootPXE, bmcsim.BootPXE}; !slices.Equal(got, want) {
		t.Fatalf("boots %v, want %v", got, want)
	}

	// Remediation: a power cycle keeps the boot order (the one-time PXE override is used up).
	if err := r.PowerCycle(ctx, h); err != nil {
		t.Fatal(err)
	}
	if got := sys.Boots(); len(got) != 3 || got[2] != bmcsim.BootDisk || sys.Resets() != 2 {
		t.Fatalf("after PowerCycle: boots %v, resets %d", got, sys.Resets())
	}
	if err := r.SetNextBootPXE(ctx, h, true); err != nil {
		t.Fatal(err)
	}
	if dev, persistent := sys.BootOverride(); dev != bmcsim.BootPXE || !persistent {
		t.Fatalf("override %q persistent=%v, want Pxe continuous", dev, persistent)
	}
	if err := r.PowerOff(ctx, h); err != nil {
		t.Fatal(err)
	}
	if on, _ := sys.PowerState(ctx); on || h.Status.Power != basaltv1.PowerOff {
		t.Fatalf("after PowerOff: machine on=%v, status.power %q", on, h.Status.Power)
	}

	// The recorded status is valid for the API server (enum of status.power, condition reasons).
	if err := env.Client.Status().Update(ctx, h); err != nil {
		t.Fatal(err)
	}
	r.ForgetBMC(h)
}

// TestHostBMCFailuresSayWhatToFix: a wrong password, a missing Secret and an untrusted certificate
// each set BMCReachable=False with the reason to act on, status.power Unknown, and leave the
// machine alone. A Host without spec.bmc gets no condition.
func TestHostBMCFailuresSayWhatToFix(t *testing.T) {
	ctx := context.Background()
	sys := &bmcsim.MemorySystem{}
	srv := httptest.NewTLSServer(&bmcsim.Redfish{Username: "root", Password: "right-password", System: sys})
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	r := &host.Reconciler{Client: env.Client, APIReader: env.Client}

	for _, tc := range []struct {
		name     string
		ca       []byte
		password string
		prepare  func(ns string)
		reason   string
		mentions string
	}{
		{name: "wrong password", ca: ca, password: "wrong-password", reason: basaltv1.ReasonBMCAuthFailed, mentions: "password"},
		{name: "untrusted certificate", ca: nil, password: "right-password", reason: basaltv1.ReasonBMCCertificateInvalid, mentions: "ca.crt"},
		{name: "no Secret", ca: ca, password: "right-password", reason: basaltv1.ReasonBMCCredentialsInvalid, mentions: "does not exist",
			prepare: func(ns string) {
				if err := env.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bmc"}}); err != nil {
					t.Fatal(err)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t)
			h := bmcHost(t, ns, srv.URL, tc.ca, tc.password)
			if tc.prepare != nil {
				tc.prepare(ns)
			}
			if err := r.PowerOnForProvisioning(ctx, h); err == nil {
				t.Fatal("PowerOnForProvisioning succeeded")
			}
			c := bmcCondition(t, h)
			if c.Status != metav1.ConditionFalse || c.Reason != tc.reason || !strings.Contains(c.Message, tc.mentions) {
				t.Fatalf("BMCReachable %s/%s %q; want False/%s mentioning %q", c.Status, c.Reason, c.Message, tc.reason, tc.mentions)
			}
			if strings.Contains(c.Message, tc.password) {
				t.Fatalf("condition leaks the password: %s", c.Message)
			}
			if h.Status.Power != basaltv1.PowerUnknown {
				t.Fatalf("status.power %q, want Unknown", h.Status.Power)
			}
			if err := env.Client.Status().Update(ctx, h); err != nil {
				t.Fatal(err)
			}
		})
	}
	if on, _ := sys.PowerState(ctx); on {
		t.Fatal("a failed call powered the machine on")
	}

	ns := env.Namespace(t)
	h := sshHost(ns, "no-bmc")
	if err := r.PowerCycle(ctx, h); err == nil || !strings.Contains(err.Error(), "spec.bmc") {
		t.Fatalf("PowerCycle of a Host without spec.bmc: %v", err)
	}
	if meta.FindStatusCondition(h.Status.Conditions, basaltv1.HostBMCReachable) != nil || r.RefreshPower(ctx, h) != 0 {
		t.Fatal("a Host without spec.bmc got a BMC condition or a poll")
	}
}

// TestNetBootedHostIsPoweredOnThroughItsBMC: the Host controller boots a registering,
// network-booted Host with a BMC from PXE once (one-time PXE, power on), records the power, and
// does not boot it again while it waits for the agent to register.
func TestNetBootedHostIsPoweredOnThroughItsBMC(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	sys, url, ca := startRedfishController(t)
	h := bmcHost(t, ns, url, ca, "pw")
	envtest.Eventually(t, 30*time.Second, func() error {
		got := &basaltv1.Host{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
			return err
		}
		on, _ := sys.PowerState(ctx)
		if !on || got.Status.Power != basaltv1.PowerOn || got.Status.Agent.InstalledAt == nil {
			return fmt.Errorf("machine on=%v, status.power %q, installedAt %v", on, got.Status.Power, got.Status.Agent.InstalledAt)
		}
		return nil
	})
	// Reconciles while it waits do not boot it again.
	touch := func() {
		got := &basaltv1.Host{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
			t.Fatal(err)
		}
		got.Labels = map[string]string{"touched": time.Now().Format("150405.000")}
		if err := env.Client.Update(ctx, got); err != nil {
			t.Fatal(err)
		}
	}
	touch()
	time.Sleep(2 * time.Second)
	touch()
	time.Sleep(2 * time.Second)
	if got, want := sys.Boots(), []bmcsim.BootDevice{bmcsim.BootPXE}; !slices.Equal(got, want) {
		t.Fatalf("boots %v, want one boot from PXE", got)
	}
}

// startRedfishController runs the Host controller (PXE on, power polled hourly) with a simulated
// Redfish BMC over HTTPS (user root, password pw) in front of a machine in memory; it returns
// the machine, the BMC's URL and its CA.
func startRedfishController(t *testing.T) (*bmcsim.MemorySystem, string, []byte) {
	t.Helper()
	sys := &bmcsim.MemorySystem{}
	srv := httptest.NewTLSServer(&bmcsim.Redfish{Username: "root", Password: "pw", System: sys})
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	mgr, err := env.NewManager()
	if err != nil {
		t.Fatal(err)
	}
	r := &host.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("basalt-host"),
		NetBoot: true, BMC: &host.BMCAccess{PollInterval: time.Hour}}
	if err := r.SetupWithManager(mgr, envtest.ControllerOptions()); err != nil {
		t.Fatal(err)
	}
	envtest.StartManager(t, mgr)
	return sys, srv.URL, ca
}
