package host_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/agents/agentserver"
	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/agents/tokens"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/host"
	"github.com/basalt-dev/basalt/pxe/dhcp"
	"github.com/basalt-dev/basalt/pxe/httpboot"
	"github.com/basalt-dev/basalt/test/envtest"
)

func bootHost(ns, name string, macs ...string) *basaltv1.Host {
	return &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       basaltv1.HostSpec{Boot: &basaltv1.BootSpec{MACAddresses: macs}},
	}
}

// netBootFixture is a NetBoot reading through a started manager's cache, with the real agent API
// server issuing its tokens into the namespace ns.
type netBootFixture struct {
	nb     *host.NetBoot
	ns     string
	tokens *tokens.Store
}

func newNetBoot(t *testing.T, discovery bool, maxDiscovered int) *netBootFixture {
	t.Helper()
	ns := env.Namespace(t)
	mgr, err := env.NewManager()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.IndexHostsByMAC(context.Background(), mgr.GetFieldIndexer()); err != nil {
		t.Fatal(err)
	}
	srv := &agentserver.Server{Namespace: ns, Addresses: []string{"192.168.10.1"}, Client: env.Client}
	nb := &host.NetBoot{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Bootstrapper: srv,
		Discovery: discovery, DiscoveryNamespace: ns, MaxDiscovered: maxDiscovered,
	}
	if err := nb.Validate(); err != nil {
		t.Fatal(err)
	}
	envtest.StartManager(t, mgr)
	// The PXE services run as a manager runnable, which starts once the cache has synced.
	if !mgr.GetCache().WaitForCacheSync(context.Background()) {
		t.Fatal("the cache did not sync")
	}
	return &netBootFixture{nb: nb, ns: ns, tokens: &tokens.Store{Client: env.Client, Namespace: ns}}
}

// target waits until the cache answers for mac as want says, and returns the answer.
func (f *netBootFixture) target(t *testing.T, mac string, ready func(httpboot.Target) bool) httpboot.Target {
	t.Helper()
	var got httpboot.Target
	envtest.Eventually(t, wait, func() error {
		var err error
		if got, err = f.nb.Target(context.Background(), mac); err != nil {
			return err
		}
		if !ready(got) {
			return fmt.Errorf("target %+v", got)
		}
		return nil
	})
	return got
}

// consume redeems a bootstrap token the way registration does, and returns the Host it is for.
func (f *netBootFixture) consume(t *testing.T, token string) (tokens.HostRef, error) {
	t.Helper()
	return f.tokens.Consume(context.Background(), token)
}

// issue has a target's NewBootstrap issue a token, as httpboot does for an admitted request.
func issue(t *testing.T, got httpboot.Target) protocol.Bootstrap {
	t.Helper()
	if got.Agent == nil || got.Agent.NewBootstrap == nil {
		t.Fatalf("target %+v issues no token", got)
	}
	b, err := got.Agent.NewBootstrap(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hostTokens counts the token Secrets of the Host named name.
func (f *netBootFixture) hostTokens(t *testing.T, name string) int {
	t.Helper()
	var sl corev1.SecretList
	if err := env.Client.List(context.Background(), &sl, client.InNamespace(f.ns), client.MatchingLabels{tokens.LabelHost: name}); err != nil {
		t.Fatal(err)
	}
	return len(sl.Items)
}

// TestNetBootScripts: every state boots what it must, each agent script carries a new token for
// its own Host (fetching one does not revoke the others, which are bounded), only to the Host's
// address; unknown and doubly-claimed MACs get nothing.
func TestNetBootScripts(t *testing.T) {
	ctx := context.Background()
	f := newNetBoot(t, false, 0)
	h := bootHost(f.ns, "n1", "52:54:00:00:01:01")
	// httptest's requests come from 192.0.2.1.
	h.Spec.Boot.Address = "192.0.2.1/24"
	if err := env.Client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}

	// Registering (no status yet): the agent, with a token bound to this Host incarnation,
	// issued only when httpboot asks for it.
	first := f.target(t, "52:54:00:00:01:01", func(t httpboot.Target) bool { return t.Known })
	if first.Agent == nil || first.State != basaltv1.HostStateRegistering || first.Host != f.ns+"/n1" || first.Address != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("Registering Host: %+v", first)
	}
	if n := f.hostTokens(t, "n1"); n != 0 {
		t.Fatalf("%d tokens before any was asked for", n)
	}
	b1 := issue(t, first)
	if b1.Server != "https://192.168.10.1:9443" || len(b1.CA) == 0 {
		t.Fatalf("bootstrap %+v", b1)
	}
	// The next script (the host booted again, or someone else asked) has a new token; the
	// first one still works: a fetch revokes nothing.
	b2 := issue(t, f.target(t, "52:54:00:00:01:01", func(t httpboot.Target) bool { return t.Agent != nil }))
	if b2.Token == b1.Token {
		t.Fatal("two scripts carried the same token")
	}
	for _, b := range []protocol.Bootstrap{b1, b2} {
		ref, err := f.consume(t, b.Token)
		if err != nil {
			t.Fatalf("the token of an earlier script: %v", err)
		}
		if ref.Namespace != f.ns || ref.Name != "n1" || ref.UID != h.UID {
			t.Fatalf("token is for %+v, want %s/n1 uid %s", ref, f.ns, h.UID)
		}
	}
	if _, err := f.consume(t, b2.Token); err == nil {
		t.Fatal("a token worked twice")
	}
	// Repeated fetches cannot pile up tokens: the oldest go beyond tokens.DefaultMaxPerHost.
	var many []protocol.Bootstrap
	for range tokens.DefaultMaxPerHost + 2 {
		many = append(many, issue(t, first))
	}
	if n := f.hostTokens(t, "n1"); n != tokens.DefaultMaxPerHost {
		t.Errorf("%d outstanding tokens, want %d", n, tokens.DefaultMaxPerHost)
	}
	for i, b := range many {
		_, err := f.consume(t, b.Token)
		if old := i < 2; old != (err != nil) {
			t.Errorf("token %d of %d: %v", i+1, len(many), err)
		}
	}

	// The whole script, through pxe/httpboot: each state's action.
	srv := &httpboot.Server{BaseURL: "http://192.168.10.1:8080", Scripts: f.nb, TokenBurst: 100}
	scriptFrom := func(from string) string {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/boot/52:54:00:00:01:01.ipxe", nil)
		r.RemoteAddr = from + ":41000"
		srv.ServeHTTP(w, r)
		return w.Body.String()
	}
	script := func() string { return scriptFrom("192.0.2.1") }
	// From another address: no token, and none issued.
	if got := scriptFrom("192.0.2.99"); strings.Contains(got, "basalt.token=") || !strings.Contains(got, "not served to 192.0.2.99") {
		t.Errorf("script for another address:\n%s", got)
	}
	if n := f.hostTokens(t, "n1"); n != 0 {
		t.Errorf("%d tokens after a refused script, want 0", n)
	}
	for _, tt := range []struct {
		state basaltv1.HostState
		want  string
	}{
		{basaltv1.HostStateInspecting, "kernel --name vmlinuz http://192.168.10.1:8080/boot/kernel"},
		{basaltv1.HostStateAvailable, "kernel --name vmlinuz"},
		{basaltv1.HostStateProvisioning, "kernel --name vmlinuz"},
		{basaltv1.HostStateDeprovisioning, "kernel --name vmlinuz"},
		// Nothing is written to disk: the installed system is the agent with its Plan.
		{basaltv1.HostStateProvisioned, "(Provisioned) boots the agent"},
		{basaltv1.HostStateError, "has nothing to boot yet"},
	} {
		env.UpdateHostStatus(t, h, func(h *basaltv1.Host) { h.Status.State = tt.state })
		f.target(t, "52:54:00:00:01:01", func(t httpboot.Target) bool { return t.State == tt.state })
		if got := script(); !strings.Contains(got, tt.want) {
			t.Errorf("%s: script lacks %q:\n%s", tt.state, tt.want, got)
		}
	}

	// Unknown MAC: nothing, and no Host is made without discovery.
	got, err := f.nb.Target(ctx, "52:54:00:00:01:99")
	if err != nil || got.Known {
		t.Fatalf("unknown MAC: %+v %v", got, err)
	}
	if !strings.Contains(func() string {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/boot/52:54:00:00:01:99.ipxe", nil))
		return w.Body.String()
	}(), "no Host has the MAC address") {
		t.Error("unknown MAC did not exit")
	}

	// Two Hosts with one MAC: neither boots, and no token is issued.
	if err := env.Client.Create(ctx, bootHost(f.ns, "n2", "52:54:00:00:01:02", "52:54:00:00:01:03")); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, bootHost(f.ns, "n3", "52:54:00:00:01:03")); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, wait, func() error {
		_, err := f.nb.Target(ctx, "52:54:00:00:01:03")
		if !errors.Is(err, host.ErrDuplicateMAC) {
			return fmt.Errorf("got %w, want ErrDuplicateMAC", err)
		}
		return nil
	})
	if _, _, err := f.nb.Reservation(ctx, net.HardwareAddr{0x52, 0x54, 0, 0, 1, 3}); !errors.Is(err, host.ErrDuplicateMAC) {
		t.Errorf("Reservation of a duplicate MAC: %v", err)
	}
}

// TestNetBootReservations: full mode's reservations come from spec.boot.
func TestNetBootReservations(t *testing.T) {
	ctx := context.Background()
	f := newNetBoot(t, false, 0)
	h := bootHost(f.ns, "rack1-node7", "52:54:00:00:02:01", "52:54:00:00:02:02")
	h.Spec.Boot.Address, h.Spec.Boot.Gateway = "192.168.10.21/24", "192.168.10.1"
	if err := env.Client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, bootHost(f.ns, "plain", "52:54:00:00:02:03")); err != nil {
		t.Fatal(err)
	}
	want := dhcp.Reservation{Address: netip.MustParsePrefix("192.168.10.21/24"), Gateway: netip.MustParseAddr("192.168.10.1"), Hostname: "rack1-node7"}
	for _, mac := range []net.HardwareAddr{{0x52, 0x54, 0, 0, 2, 1}, {0x52, 0x54, 0, 0, 2, 2}} {
		envtest.Eventually(t, wait, func() error {
			got, ok, err := f.nb.Reservation(ctx, mac)
			if err != nil || !ok {
				return fmt.Errorf("%s: ok %v err %w", mac, ok, err)
			}
			if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				return fmt.Errorf("%s (-want +got):\n%s", mac, diff)
			}
			return nil
		})
	}
	envtest.Eventually(t, wait, func() error {
		got, ok, err := f.nb.Reservation(ctx, net.HardwareAddr{0x52, 0x54, 0, 0, 2, 3})
		if err != nil || !ok || got.Address.IsValid() || got.Hostname != "plain" {
			return fmt.Errorf("no-address Host: %+v %v %w", got, ok, err)
		}
		return nil
	})
	if _, ok, err := f.nb.Reservation(ctx, net.HardwareAddr{0x52, 0x54, 0, 0, 2, 9}); ok || err != nil {
		t.Errorf("unknown MAC: ok %v err %v", ok, err)
	}
}

// TestBootSpecValidation: the API server refuses addresses that DHCP could not hand out.
func TestBootSpecValidation(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	for _, tt := range []struct{ address, gateway, want string }{
		{"192.168.10.21", "", "spec.boot.address must be an IPv4 address with its prefix length"},
		{"fd00::5/64", "", "spec.boot.address must be an IPv4 address with its prefix length"},
		{"192.168.10.21/24", "10.0.0.1", "spec.boot.gateway needs spec.boot.address and must be inside its subnet"},
		{"", "192.168.10.1", "spec.boot.gateway needs spec.boot.address"},
	} {
		h := bootHost(ns, "bad", "52:54:00:00:03:01")
		h.Spec.Boot.Address, h.Spec.Boot.Gateway = tt.address, tt.gateway
		err := env.Client.Create(ctx, h)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("address %q gateway %q: got %v, want %q", tt.address, tt.gateway, err, tt.want)
			_ = env.Client.Delete(ctx, h)
		}
	}
	ok := bootHost(ns, "good", "52:54:00:00:03:02")
	ok.Spec.Boot.Address, ok.Spec.Boot.Gateway = "192.168.10.21/24", "192.168.10.1"
	if err := env.Client.Create(ctx, ok); err != nil {
		t.Fatal(err)
	}
	if ok.Spec.Accepted == nil || !*ok.Spec.Accepted {
		t.Errorf("spec.accepted defaulted to %v, want true", ok.Spec.Accepted)
	}
}

// TestNetBootDiscovery: an unknown netbooting MAC becomes one Host, not accepted, labelled
// discovered, booting the agent with a token for it; the number waiting is bounded.
func TestNetBootDiscovery(t *testing.T) {
	ctx := context.Background()
	f := newNetBoot(t, true, 1)
	const mac = "52:54:00:00:04:01"
	got, err := f.nb.Target(ctx, mac)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Known || got.Agent == nil || got.State != basaltv1.HostStateRegistering || got.Host != f.ns+"/mac-52-54-00-00-04-01" {
		t.Fatalf("discovered target %+v", got)
	}
	h := &basaltv1.Host{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: host.DiscoveredHostName(mac)}, h); err != nil {
		t.Fatal(err)
	}
	if h.Labels[basaltv1.LabelDiscovered] != "true" || h.Spec.IsAccepted() || h.Spec.Boot == nil || !cmp.Equal(h.Spec.Boot.MACAddresses, []string{mac}) {
		t.Fatalf("discovered Host %+v", h)
	}
	if ref, err := f.consume(t, issue(t, got).Token); err != nil || ref.UID != h.UID {
		t.Fatalf("token of the discovered Host: %+v %v", ref, err)
	}
	// Asking again (before or after the cache has it) finds the same Host.
	for range 2 {
		again, err := f.nb.Target(ctx, mac)
		if err != nil || again.Host != got.Host {
			t.Fatalf("second request: %+v %v", again, err)
		}
	}
	var hl basaltv1.HostList
	if err := env.Client.List(ctx, &hl, client.InNamespace(f.ns)); err != nil || len(hl.Items) != 1 {
		t.Fatalf("%d Hosts after discovery (%v), want 1", len(hl.Items), err)
	}
	// The limit: one discovered Host waits for acceptance, so a second machine is told to wait.
	envtest.Eventually(t, wait, func() error {
		_, err := f.nb.Target(ctx, "52:54:00:00:04:02")
		if err == nil || !strings.Contains(err.Error(), "wait for acceptance") {
			return fmt.Errorf("second unknown machine: %w", err)
		}
		return nil
	})
	// Accepting the first makes room.
	before := h.DeepCopy()
	h.Spec.Accepted = ptr.To(true)
	if err := env.Client.Patch(ctx, h, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, wait, func() error {
		t2, err := f.nb.Target(ctx, "52:54:00:00:04:02")
		if err != nil || !t2.Known {
			return fmt.Errorf("after acceptance: %+v %w", t2, err)
		}
		return nil
	})
	// A name taken by a Host without the MAC is not hijacked.
	if err := env.Client.Create(ctx, bootHost(f.ns, host.DiscoveredHostName("52:54:00:00:04:03"), "52:54:00:00:04:04")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.nb.Target(ctx, "52:54:00:00:04:03"); err == nil || !strings.Contains(err.Error(), "does not list MAC address") {
		t.Errorf("taken name: %v", err)
	}
}

// startBootController runs the Host controller with PXE on (NetBoot true).
func startBootController(t *testing.T) {
	t.Helper()
	mgr, err := env.NewManager()
	if err != nil {
		t.Fatal(err)
	}
	r := &host.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("basalt-host"), NetBoot: true}
	if err := r.SetupWithManager(mgr, envtest.ControllerOptions()); err != nil {
		t.Fatal(err)
	}
	envtest.StartManager(t, mgr)
}

// agentReports stands in for the agent API writing an agent's report.
func agentReports(t *testing.T, h *basaltv1.Host, at time.Time) {
	t.Helper()
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) {
		h.Status.Agent = basaltv1.AgentStatus{Version: "test", LastSeen: &metav1.Time{Time: at}}
		h.Status.Hardware = &basaltv1.Hardware{CPUs: 2, NICs: []basaltv1.NIC{{Name: "eth0", MAC: "52:54:00:00:05:01"}}}
	})
}

// hostIs waits until the Host is in state and every given condition has the given status/reason.
func hostIs(t *testing.T, h *basaltv1.Host, state basaltv1.HostState, conds ...string) {
	t.Helper()
	envtest.Eventually(t, wait, func() error {
		got := &basaltv1.Host{}
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(h), got); err != nil {
			return err
		}
		if got.Status.State != state {
			return fmt.Errorf("state %q, want %q", got.Status.State, state)
		}
		for i := 0; i+2 < len(conds); i += 3 {
			c, err := envtest.Condition(got.Status.Conditions, conds[i])
			if err != nil {
				return err
			}
			if string(c.Status) != conds[i+1] || (conds[i+2] != "" && c.Reason != conds[i+2]) {
				return fmt.Errorf("%s %s/%s, want %s/%s", conds[i], c.Status, c.Reason, conds[i+1], conds[i+2])
			}
		}
		return nil
	})
}

// TestNetBootHostLifecycle: Registering (waiting for PXE) → Inspecting → Available → claimed:
// Provisioning until the agent is connected, then Provisioned → released while the Machine is
// deleted: Deprovisioning until the claim is gone → Available.
func TestNetBootHostLifecycle(t *testing.T) {
	startBootController(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	h := bootHost(ns, "n1", "52:54:00:00:05:01")
	if err := env.Client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	hostIs(t, h, basaltv1.HostStateRegistering,
		basaltv1.HostAgentConnected, "False", basaltv1.ReasonWaitingForNetBoot,
		basaltv1.ConditionReady, "False", basaltv1.ReasonWaitingForNetBoot,
		basaltv1.HostAccepted, "True", basaltv1.ReasonReady)

	// An agent that reported long ago (a host that booted, then went silent).
	agentReports(t, h, time.Now().Add(-time.Hour))
	hostIs(t, h, basaltv1.HostStateAvailable,
		basaltv1.HostInspected, "True", basaltv1.ReasonReady,
		basaltv1.HostAgentConnected, "False", basaltv1.ReasonAgentSilent)

	// A Machine that is being deleted later (its finalizer holds it).
	m := &basaltv1.Machine{
		ObjectMeta: metav1.ObjectMeta{Name: "m1", Namespace: ns, Finalizers: []string{"test.basalt.dev/hold"}},
		Spec:       basaltv1.MachineSpec{Cluster: "c", Role: basaltv1.RoleWorker, HostRef: &basaltv1.LocalObjectReference{Name: "n1"}},
	}
	if err := env.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) { h.Status.ConsumerRef = &basaltv1.LocalObjectReference{Name: "m1"} })
	// The agent is silent: nothing can be provisioned yet.
	hostIs(t, h, basaltv1.HostStateProvisioning)
	agentReports(t, h, time.Now())
	hostIs(t, h, basaltv1.HostStateProvisioned, basaltv1.ConditionReady, "True", basaltv1.ReasonReady)

	if err := env.Client.Delete(ctx, m); err != nil {
		t.Fatal(err)
	}
	hostIs(t, h, basaltv1.HostStateDeprovisioning)
	// Still claimed: it stays there.
	time.Sleep(time.Second)
	hostIs(t, h, basaltv1.HostStateDeprovisioning)
	// The Machine controller releases the Host once its agent applied the empty Plan.
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) { h.Status.ConsumerRef = nil })
	hostIs(t, h, basaltv1.HostStateAvailable, basaltv1.ConditionReady, "True", basaltv1.ReasonReady)
	before := m.DeepCopy()
	m.Finalizers = nil
	if err := env.Client.Patch(ctx, m, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}

	// A claim released outright (no Deprovisioning wait needed) also comes back to Available.
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) { h.Status.ConsumerRef = &basaltv1.LocalObjectReference{Name: "gone"} })
	hostIs(t, h, basaltv1.HostStateAvailable)
}

// TestDiscoveredHostWaitsForAcceptance: a Host with spec.accepted=false is inspected but never
// Available; accepting it makes it Available, withdrawing acceptance takes it out of the pool.
func TestDiscoveredHostWaitsForAcceptance(t *testing.T) {
	startBootController(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	h := bootHost(ns, host.DiscoveredHostName("52:54:00:00:06:01"), "52:54:00:00:06:01")
	h.Labels = map[string]string{basaltv1.LabelDiscovered: "true"}
	h.Spec.Accepted = ptr.To(false)
	if err := env.Client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	hostIs(t, h, basaltv1.HostStateRegistering, basaltv1.HostAccepted, "False", basaltv1.ReasonNotAccepted)
	if res := kstatusOf(t, h); res.Status != status.FailedStatus {
		t.Errorf("a Host waiting for acceptance: kstatus = %s (%s), want Failed (Stalled: a person must accept it)", res.Status, res.Message)
	}
	agentReports(t, h, time.Now())
	hostIs(t, h, basaltv1.HostStateInspecting,
		basaltv1.HostInspected, "True", basaltv1.ReasonReady,
		basaltv1.HostAccepted, "False", basaltv1.ReasonNotAccepted,
		basaltv1.ConditionReady, "False", basaltv1.ReasonNotAccepted)
	time.Sleep(time.Second)
	hostIs(t, h, basaltv1.HostStateInspecting)

	setAccepted := func(v bool) {
		got := &basaltv1.Host{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
			t.Fatal(err)
		}
		before := got.DeepCopy()
		got.Spec.Accepted = ptr.To(v)
		if err := env.Client.Patch(ctx, got, client.MergeFrom(before)); err != nil {
			t.Fatal(err)
		}
	}
	setAccepted(true)
	hostIs(t, h, basaltv1.HostStateAvailable, basaltv1.ConditionReady, "True", basaltv1.ReasonReady)
	if res := kstatusOf(t, h); res.Status != status.CurrentStatus {
		t.Errorf("an accepted Available Host: kstatus = %s (%s), want Current", res.Status, res.Message)
	}
	setAccepted(false)
	hostIs(t, h, basaltv1.HostStateInspecting, basaltv1.HostAccepted, "False", basaltv1.ReasonNotAccepted)
}

// TestSSHHostProvisionedWhenClaimed: an SSH Host has nothing to write, so a claim makes it
// Provisioned at once (its agent is connected), and the release makes it Available again.
func TestSSHHostProvisionedWhenClaimed(t *testing.T) {
	startController(t)
	ns := env.Namespace(t)
	m := &basaltv1.Machine{
		ObjectMeta: metav1.ObjectMeta{Name: "m1", Namespace: ns},
		Spec:       basaltv1.MachineSpec{Cluster: "c", Role: basaltv1.RoleWorker, HostRef: &basaltv1.LocalObjectReference{Name: "h1"}},
	}
	if err := env.Client.Create(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	h := env.CreateAvailableHost(t, envtest.AvailableHostInput{Namespace: ns, Name: "h1"})
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) { h.Status.ConsumerRef = &basaltv1.LocalObjectReference{Name: "m1"} })
	hostIs(t, h, basaltv1.HostStateProvisioned)
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) { h.Status.ConsumerRef = nil })
	hostIs(t, h, basaltv1.HostStateAvailable)
}

// TestNetBootHostWithoutPXE: a manager without PXE says so on network-booted Hosts.
func TestNetBootHostWithoutPXE(t *testing.T) {
	startController(t)
	ns := env.Namespace(t)
	h := bootHost(ns, "n1", "52:54:00:00:07:01")
	if err := env.Client.Create(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	hostIs(t, h, basaltv1.HostStateRegistering, basaltv1.HostAgentConnected, "False", basaltv1.ReasonNetBootDisabled)
	// Nothing but a person fixes that: Stalled, which GitOps tools (kstatus) report Failed.
	hostIs(t, h, basaltv1.HostStateRegistering, basaltv1.ConditionStalled, "True", basaltv1.ReasonNetBootDisabled)
	if res := kstatusOf(t, h); res.Status != status.FailedStatus || !strings.Contains(res.Message, "PXE") {
		t.Errorf("kstatus = %s (%s), want Failed", res.Status, res.Message)
	}
}

// kstatusOf reads h back as unstructured, as Flux does, and computes its kstatus.
func kstatusOf(t *testing.T, h *basaltv1.Host) *status.Result {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(basaltv1.GroupVersion.WithKind("Host"))
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(h), u); err != nil {
		t.Fatal(err)
	}
	res, err := status.Compute(u)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestReprovision: basalt.dev/reprovision on a Host in use waits for its Machine; on a free Host
// it is consumed once, the Host forgets its agent and hardware and goes back to Registering, and
// the agent's next report brings it to Available again.
func TestReprovision(t *testing.T) {
	startBootController(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	h := bootHost(ns, "r1", "52:54:00:00:06:01")
	if err := env.Client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	agentReports(t, h, time.Now())
	hostIs(t, h, basaltv1.HostStateAvailable)
	value := time.Now().UTC().Format(time.RFC3339)
	annotate := func() {
		got := &basaltv1.Host{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
			t.Fatal(err)
		}
		got.Annotations = map[string]string{basaltv1.AnnotationReprovision: value}
		if err := env.Client.Update(ctx, got); err != nil {
			t.Fatal(err)
		}
	}

	// In use: the request waits.
	m := &basaltv1.Machine{
		ObjectMeta: metav1.ObjectMeta{Name: "rm", Namespace: ns},
		Spec:       basaltv1.MachineSpec{Cluster: "c", Role: basaltv1.RoleWorker, HostRef: &basaltv1.LocalObjectReference{Name: "r1"}},
	}
	if err := env.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) { h.Status.ConsumerRef = &basaltv1.LocalObjectReference{Name: "rm"} })
	hostIs(t, h, basaltv1.HostStateProvisioned)
	annotate()
	time.Sleep(2 * time.Second)
	got := &basaltv1.Host{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
		t.Fatal(err)
	}
	if _, kept := got.Annotations[basaltv1.AnnotationReprovision]; !kept || got.Status.State != basaltv1.HostStateProvisioned || got.Status.Hardware == nil {
		t.Fatalf("a Host in use was reprovisioned: state %s, annotation kept %v", got.Status.State, kept)
	}

	// Released: the request is carried out, recorded in status.lastReprovision; the annotation
	// stays (a GitOps tool keeps it) and the same value is never acted on again.
	if err := env.Client.Delete(ctx, m); err != nil {
		t.Fatal(err)
	}
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) { h.Status.ConsumerRef = nil })
	envtest.Eventually(t, wait, func() error {
		got := &basaltv1.Host{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
			return err
		}
		if last := got.Status.LastReprovision; last == nil || last.Request != value || got.Status.State != basaltv1.HostStateRegistering ||
			got.Status.Hardware != nil || got.Status.Agent.LastSeen != nil {
			return fmt.Errorf("lastReprovision %+v, state %s, hardware %v, lastSeen %v", last, got.Status.State, got.Status.Hardware != nil, got.Status.Agent.LastSeen)
		}
		if got.Annotations[basaltv1.AnnotationReprovision] != value {
			return fmt.Errorf("the request annotation was changed: %v", got.Annotations)
		}
		return nil
	})
	agentReports(t, h, time.Now())
	hostIs(t, h, basaltv1.HostStateAvailable)
	time.Sleep(2 * time.Second)
	hostIs(t, h, basaltv1.HostStateAvailable)
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil || got.Status.Hardware == nil {
		t.Fatalf("the kept annotation reprovisioned the Host again (%v)", err)
	}
}

// TestInspectionFailureEndsInError: an agent that registers but never reports hardware puts its
// Host in Error (InspectionFailed, with what to do) after InspectTimeout; basalt.dev/reprovision
// restarts the inspection, and a report then makes the Host Available.
func TestInspectionFailureEndsInError(t *testing.T) {
	mgr, err := env.NewManager()
	if err != nil {
		t.Fatal(err)
	}
	r := &host.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("basalt-host"),
		NetBoot: true, InspectTimeout: 2 * time.Second}
	if err := r.SetupWithManager(mgr, envtest.ControllerOptions()); err != nil {
		t.Fatal(err)
	}
	envtest.StartManager(t, mgr)
	ctx := context.Background()
	ns := env.Namespace(t)
	h := bootHost(ns, "i1", "52:54:00:00:07:01")
	if err := env.Client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	// Registered, no hardware.
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) {
		h.Status.Agent = basaltv1.AgentStatus{Version: "test", LastSeen: &metav1.Time{Time: time.Now()}}
	})
	hostIs(t, h, basaltv1.HostStateError,
		basaltv1.HostInspected, "False", basaltv1.ReasonInspectionFailed,
		basaltv1.ConditionReady, "False", basaltv1.ReasonInspectionFailed)
	got := &basaltv1.Host{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got.Status.ErrorMessage, basaltv1.AnnotationReprovision) {
		t.Errorf("errorMessage %q should say how to restart the inspection", got.Status.ErrorMessage)
	}
	got.Annotations = map[string]string{basaltv1.AnnotationReprovision: "now"}
	if err := env.Client.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, wait, func() error {
		got := &basaltv1.Host{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
			return err
		}
		if got.Status.State == basaltv1.HostStateError || got.Status.ErrorMessage != "" {
			return fmt.Errorf("state %s, errorMessage %q", got.Status.State, got.Status.ErrorMessage)
		}
		return nil
	})
	agentReports(t, h, time.Now())
	hostIs(t, h, basaltv1.HostStateAvailable, basaltv1.HostInspected, "True", basaltv1.ReasonReady)
}
