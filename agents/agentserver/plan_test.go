package agentserver_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/agents/agentserver"
	"github.com/basalt-dev/basalt/agents/planstore"
	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/bootstrap/pki"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

func testPlan(host, content string) *plan.Plan {
	return &plan.Plan{Host: host, Files: []plan.File{{Path: "/etc/basalt/test", Mode: 0o644, Content: []byte(content)}}}
}

// pollResult is one answer to GET /v1/plan.
type pollResult struct {
	code    int
	hash    string
	plan    *plan.Plan
	elapsed time.Duration
}

func poll(t testing.TB, a *agent, base, query string) pollResult {
	t.Helper()
	start := time.Now()
	resp, body := get(t, a.client, base+protocol.PathPlan+query)
	r := pollResult{code: resp.StatusCode, hash: resp.Header.Get(protocol.HeaderPlanHash), elapsed: time.Since(start)}
	if r.code == http.StatusOK {
		var pr protocol.PlanResponse
		if err := json.Unmarshal(body, &pr); err != nil {
			t.Fatalf("plan answer %s: %v", body, err)
		}
		if pr.Hash != r.hash {
			t.Errorf("body hash %s, header hash %s", pr.Hash, r.hash)
		}
		r.plan = pr.Plan
	}
	return r
}

func TestPlanLongPoll(t *testing.T) {
	h := newHarness(t)
	host := h.createHost("node-1")
	a := h.register(host)
	ctx := context.Background()

	// No Plan yet: the agent has none either, so nothing changed.
	if r := poll(t, a, h.url, "?wait=0s"); r.code != http.StatusNotModified {
		t.Fatalf("poll without a Plan: %d, want 304", r.code)
	}

	hash1, changed, err := planstore.StorePlan(ctx, h.env.Client, h.hostNS, "node-1", testPlan("", "one"))
	if err != nil || !changed {
		t.Fatalf("StorePlan: %s, changed %v, %v", hash1, changed, err)
	}
	eventually(t, func() error {
		r := poll(t, a, h.url, "")
		if r.code != http.StatusOK || r.hash != hash1 {
			return fmt.Errorf("poll: %d %s, want 200 %s", r.code, r.hash, hash1)
		}
		if r.plan.Host != "node-1" || string(r.plan.Files[0].Content) != "one" || r.plan.Hash() != hash1 {
			return fmt.Errorf("poll returned Plan %+v", r.plan)
		}
		return nil
	})
	if _, changed, err := planstore.StorePlan(ctx, h.env.Client, h.hostNS, "node-1", testPlan("node-1", "one")); err != nil || changed {
		t.Errorf("storing the same Plan again: changed %v, %v; want unchanged", changed, err)
	}
	p, hash, err := planstore.LoadPlan(ctx, h.env.Client, h.hostNS, "node-1")
	if err != nil || hash != hash1 || string(p.Files[0].Content) != "one" {
		t.Errorf("LoadPlan = %+v, %s, %v", p, hash, err)
	}

	// The agent has the current Plan: 304 after the wait.
	r := poll(t, a, h.url, "?hash="+hash1+"&wait=1s")
	if r.code != http.StatusNotModified || r.hash != hash1 {
		t.Errorf("poll with the current hash: %d %s, want 304 %s", r.code, r.hash, hash1)
	}
	if r.elapsed < 900*time.Millisecond {
		t.Errorf("304 after %s, want after the 1s wait", r.elapsed)
	}

	// A long poll returns as soon as the Plan changes.
	results := make(chan pollResult, 1)
	go func() { results <- poll(t, a, h.url, "?hash="+hash1+"&wait=60s") }()
	time.Sleep(500 * time.Millisecond)
	hash2, changed, err := planstore.StorePlan(ctx, h.env.Client, h.hostNS, "node-1", testPlan("node-1", "two"))
	if err != nil || !changed {
		t.Fatal(err)
	}
	select {
	case r := <-results:
		if r.code != http.StatusOK || r.hash != hash2 || string(r.plan.Files[0].Content) != "two" {
			t.Errorf("woken poll: %d %s, want 200 %s with the new Plan", r.code, r.hash, hash2)
		}
		if r.elapsed > 10*time.Second {
			t.Errorf("the poll returned after %s; it should wake on the change, not wait out its 60s", r.elapsed)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the long poll did not return after the Plan changed")
	}

	// Bad queries.
	for _, q := range []string{"?hash=xyz", "?wait=-1s", "?wait=soon", "?hash=" + hash2[:63] + "G"} {
		if r := poll(t, a, h.url, q); r.code != http.StatusBadRequest {
			t.Errorf("poll %s: %d, want 400", q, r.code)
		}
	}

	// A withdrawn Plan: the empty Plan (stop everything, remove what Basalt wrote) to an agent
	// that has one, and 304 once the agent applied it.
	if err := planstore.DeletePlan(ctx, h.env.Client, h.hostNS, "node-1"); err != nil {
		t.Fatal(err)
	}
	empty := &plan.Plan{Format: plan.FormatVersion, Host: "node-1"}
	eventually(t, func() error {
		r := poll(t, a, h.url, "?hash="+hash2)
		if r.code != http.StatusOK || r.hash != empty.Hash() || r.plan.Hash() != empty.Hash() || len(r.plan.Services)+len(r.plan.Files) != 0 {
			return fmt.Errorf("poll after DeletePlan: %d %s, want 200 with the empty Plan %s", r.code, r.hash, empty.Hash())
		}
		return nil
	})
	if r := poll(t, a, h.url, "?hash="+empty.Hash()); r.code != http.StatusNotModified {
		t.Errorf("poll with the empty Plan applied and none stored: %d, want 304", r.code)
	}
	if _, _, err := planstore.LoadPlan(ctx, h.env.Client, h.hostNS, "node-1"); !errors.Is(err, planstore.ErrNoPlan) {
		t.Errorf("LoadPlan after DeletePlan: %v, want ErrNoPlan", err)
	}
}

func TestStorePlanRefusesInvalidPlans(t *testing.T) {
	h := newHarness(t)
	h.createHost("node-1")
	ctx := context.Background()
	if _, _, err := planstore.StorePlan(ctx, h.env.Client, h.hostNS, "node-1", testPlan("node-2", "x")); err == nil {
		t.Errorf("StorePlan accepted a Plan for another host")
	}
	bad := testPlan("node-1", "x")
	bad.Files[0].Path = "relative/path"
	if _, _, err := planstore.StorePlan(ctx, h.env.Client, h.hostNS, "node-1", bad); err == nil {
		t.Errorf("StorePlan accepted a Plan with a relative path")
	}
	if _, _, err := planstore.StorePlan(ctx, h.env.Client, h.hostNS, "no-such-host", testPlan("", "x")); err == nil {
		t.Errorf("StorePlan accepted a Plan for a Host that does not exist")
	}
}

// TestHostsAreIsolated: a certificate speaks for its Host only.
func TestHostsAreIsolated(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	hostA, hostB := h.createHost("node-a"), h.createHost("node-b")
	a, b := h.register(hostA), h.register(hostB)
	for _, n := range []string{"node-a", "node-b"} {
		if _, _, err := planstore.StorePlan(ctx, h.env.Client, h.hostNS, n, testPlan(n, "for "+n)); err != nil {
			t.Fatal(err)
		}
	}

	// A asks for its Plan and gets its own, never B's.
	eventually(t, func() error {
		r := poll(t, a, h.url, "")
		if r.code != http.StatusOK || r.plan.Host != "node-a" {
			return fmt.Errorf("A's poll: %d %+v", r.code, r.plan)
		}
		return nil
	})
	// A naming B: 403 on Plan and status.
	other := "?" + agentserver.QueryHost + "=" + url.QueryEscape(h.hostNS+"/node-b")
	if r := poll(t, a, h.url, other); r.code != http.StatusForbidden {
		t.Errorf("A reading B's Plan: %d, want 403", r.code)
	}
	if code, body := post(t, a.client, h.url+protocol.PathStatus+other, protocol.Status{AgentVersion: "evil"}); code != http.StatusForbidden {
		t.Errorf("A writing B's status: %d %s, want 403", code, body)
	}
	// A's own status lands on A only.
	if code, body := post(t, a.client, h.url+protocol.PathStatus, protocol.Status{AgentVersion: "a-agent"}); code != http.StatusNoContent {
		t.Fatalf("A's status: %d %s", code, body)
	}
	if v := h.getHost("node-a").Status.Agent.Version; v != "a-agent" {
		t.Errorf("A's version %q, want a-agent", v)
	}
	if v := h.getHost("node-b").Status.Agent.Version; v != "v0.1.0-test" {
		t.Errorf("B's version %q changed; want its registration's v0.1.0-test", v)
	}
	if r := poll(t, b, h.url, ""); r.code != http.StatusOK || r.plan.Host != "node-b" {
		t.Errorf("B's poll: %d %+v", r.code, r.plan)
	}

	// No client certificate: 401 everywhere but registration.
	anon := h.client()
	if resp, _ := get(t, anon, h.url+protocol.PathPlan); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous plan: %d, want 401", resp.StatusCode)
	}
	if code, _ := post(t, anon, h.url+protocol.PathStatus, protocol.Status{AgentVersion: "x"}); code != http.StatusUnauthorized {
		t.Errorf("anonymous status: %d, want 401", code)
	}

	// A certificate with B's identity from another CA is refused.
	now := time.Now()
	evilCA, _, err := pki.EnsureCA(nil, pki.CARequest{CommonName: "evil"}, now)
	if err != nil {
		t.Fatal(err)
	}
	forged, _, err := pki.EnsureCertificate(nil, evilCA, pki.CertRequest{
		CommonName: agentserver.Identity(h.hostNS, "node-b"), Organizations: []string{protocol.IdentityOrganization}, Usage: pki.UsageClient,
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(forged.Cert, forged.Key)
	if err != nil {
		t.Fatal(err)
	}
	evil := h.client()
	evil.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &pair, nil
	}
	if resp, err := evil.Get(h.url + protocol.PathPlan); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("forged certificate: %d, want the handshake to fail or 401", resp.StatusCode)
		}
	}

	// Host A is deleted and re-created: the old agent's certificate no longer works.
	if err := h.env.Client.Delete(ctx, hostA); err != nil {
		t.Fatal(err)
	}
	eventually(t, h.env.Gone(hostA))
	h.createHost("node-a")
	if r := poll(t, a, h.url, ""); r.code != http.StatusForbidden {
		t.Errorf("old certificate of a re-created Host reading its Plan: %d, want 403", r.code)
	}
	if code, _ := post(t, a.client, h.url+protocol.PathStatus, protocol.Status{AgentVersion: "stale"}); code != http.StatusForbidden {
		t.Errorf("old certificate of a re-created Host writing status: %d, want 403", code)
	}
	// Nor does it download artifacts (Kubernetes binaries, images) any more.
	if resp, _ := get(t, a.client, h.url+protocol.PathArtifacts+sum([]byte("any artifact"))); resp.StatusCode != http.StatusForbidden {
		t.Errorf("old certificate of a re-created Host downloading an artifact: %d, want 403", resp.StatusCode)
	}
}

// TestPlanWatchNamespaced is the chart's namespaced mode: the server's Kubernetes identity may
// read Secrets in one namespace only (a Role, as the namespaced chart grants). A cluster-wide
// Plan watch is forbidden to it and would never sync; with WatchNamespace the watch syncs, an
// agent registers, and a stored Plan wakes its long poll at once.
func TestPlanWatchNamespaced(t *testing.T) {
	env := needEnv(t)
	ns := env.Namespace(t)
	ctx := context.Background()
	user := "basalt-namespaced-" + ns
	for _, o := range []client.Object{
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plans"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch"}}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plans"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "plans"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}},
	} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	limited, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	// What the identity may not do: the list a cluster-wide watch starts with.
	if err := limited.List(ctx, &corev1.SecretList{}); !apierrors.IsForbidden(err) {
		t.Fatalf("listing Secrets in every namespace as %s: %v, want Forbidden", user, err)
	}
	eventually(t, func() error { return limited.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)) })

	h := newHarness(t, func(s *agentserver.Server) { s.Config = cfg; s.WatchNamespace = ns })
	if h.hostNS != ns {
		t.Fatalf("Hosts in %s, want the watched namespace %s", h.hostNS, ns)
	}
	a := h.register(h.createHost("node-1"))
	results := make(chan pollResult, 1)
	go func() {
		results <- poll(t, a, h.url, "?wait=60s&hash="+(&plan.Plan{Format: plan.FormatVersion, Host: "node-1"}).Hash())
	}()
	time.Sleep(500 * time.Millisecond)
	hash, changed, err := planstore.StorePlan(ctx, env.Client, ns, "node-1", testPlan("node-1", "one"))
	if err != nil || !changed {
		t.Fatal(err)
	}
	select {
	case r := <-results:
		if r.code != http.StatusOK || r.hash != hash {
			t.Errorf("woken poll: %d %s, want 200 %s", r.code, r.hash, hash)
		}
		if r.elapsed > 10*time.Second {
			t.Errorf("the poll returned after %s: the namespaced watch did not wake it", r.elapsed)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the long poll did not return after the Plan was stored")
	}
}
