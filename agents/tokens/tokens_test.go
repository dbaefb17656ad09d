package tokens_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/agents/tokens"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

func newStore(t *testing.T) (*tokens.Store, *clock) {
	t.Helper()
	clk := &clock{t: time.Now()}
	return &tokens.Store{Client: env.Client, Namespace: env.Namespace(t), Now: clk.Now}, clk
}

var hostA = tokens.HostRef{Namespace: "site-a", Name: "node-1", UID: types.UID("0f6b1e0c-1111-4c5e-9a51-3a7c2d9e0b01")}

func TestIssueConsumeOnce(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	tok, err := s.Issue(ctx, hostA)
	if err != nil {
		t.Fatal(err)
	}
	id, secret, err := tokens.Parse(tok)
	if err != nil {
		t.Fatalf("issued token %q does not parse: %v", tok, err)
	}

	// The secret half is never stored in clear.
	sec := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: tokens.SecretName(id)}, sec); err != nil {
		t.Fatal(err)
	}
	for k, v := range sec.Data {
		if strings.Contains(string(v), secret) {
			t.Errorf("token Secret key %s holds the token secret in clear", k)
		}
	}

	got, err := s.Consume(ctx, tok)
	if err != nil {
		t.Fatalf("first use: %v", err)
	}
	if got != hostA {
		t.Errorf("Consume returned %+v, want %+v", got, hostA)
	}
	if _, err := s.Consume(ctx, tok); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Errorf("second use: got %v, want ErrInvalidToken", err)
	}
}

func TestWrongSecretDoesNotBurnToken(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	tok, err := s.Issue(ctx, hostA)
	if err != nil {
		t.Fatal(err)
	}
	wrong := tok[:7] + strings.Repeat("a", 16)
	if wrong == tok {
		wrong = tok[:7] + strings.Repeat("b", 16)
	}
	if _, err := s.Consume(ctx, wrong); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Fatalf("wrong secret: got %v, want ErrInvalidToken", err)
	}
	if _, err := s.Consume(ctx, tok); err != nil {
		t.Fatalf("the right secret after a wrong one: %v", err)
	}
}

func TestExpiredTokenRefusedAndDeleted(t *testing.T) {
	ctx := context.Background()
	s, clk := newStore(t)
	s.TTL = time.Minute
	tok, err := s.Issue(ctx, hostA)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if _, err := s.Consume(ctx, tok); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Fatalf("expired: got %v, want ErrInvalidToken", err)
	}
	id, _, _ := tokens.Parse(tok)
	sec := &corev1.Secret{ObjectMeta: metaName(s.Namespace, tokens.SecretName(id))}
	envtestEventually(t, env.Gone(sec))
}

func TestConcurrentConsumeSucceedsOnce(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	tok, err := s.Issue(ctx, hostA)
	if err != nil {
		t.Fatal(err)
	}
	var ok, invalid atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := s.Consume(ctx, tok)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, tokens.ErrInvalidToken):
				invalid.Add(1)
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || invalid.Load() != 7 {
		t.Errorf("8 concurrent uses: %d succeeded, %d refused; want 1 and 7", ok.Load(), invalid.Load())
	}
}

func TestCollectGarbageAndRevoke(t *testing.T) {
	ctx := context.Background()
	s, clk := newStore(t)
	s.TTL = time.Minute
	for range 2 {
		if _, err := s.Issue(ctx, hostA); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(30 * time.Second)
	young, err := s.Issue(ctx, hostA)
	if err != nil {
		t.Fatal(err)
	}
	other := tokens.HostRef{Namespace: "site-a", Name: "node-2", UID: "u2"}
	otherTok, err := s.Issue(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(45 * time.Second)
	n, err := s.CollectGarbage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("CollectGarbage deleted %d tokens, want the 2 expired ones", n)
	}
	if got := countTokens(t, s.Namespace); got != 2 {
		t.Errorf("%d token Secrets left, want 2", got)
	}
	if err := s.Revoke(ctx, hostA); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Consume(ctx, young); !errors.Is(err, tokens.ErrInvalidToken) {
		t.Errorf("revoked token: got %v, want ErrInvalidToken", err)
	}
	if _, err := s.Consume(ctx, otherTok); err != nil {
		t.Errorf("another host's token was revoked too: %v", err)
	}
}

// TestIssueBoundsTokensPerHost: a Host keeps its MaxPerHost newest tokens, whatever the number
// issued; other Hosts (and other incarnations of the same name) are not touched.
func TestIssueBoundsTokensPerHost(t *testing.T) {
	ctx := context.Background()
	s, clk := newStore(t)
	s.MaxPerHost = 2
	other := tokens.HostRef{Namespace: hostA.Namespace, Name: hostA.Name, UID: "an-earlier-incarnation"}
	otherTok, err := s.Issue(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	var issued []string
	for range 5 {
		// Time passes between issues, as it does on a real clock: "newest" is by expiry, and
		// tokens issued at one instant have no order (the test clock stands still otherwise).
		clk.Advance(time.Second)
		tok, err := s.Issue(ctx, hostA)
		if err != nil {
			t.Fatal(err)
		}
		issued = append(issued, tok)
	}
	if got := countTokens(t, s.Namespace); got != 3 {
		t.Errorf("%d token Secrets, want 2 of hostA and 1 of the other incarnation", got)
	}
	for i, tok := range issued {
		_, err := s.Consume(ctx, tok)
		if kept := i >= 3; kept != (err == nil) {
			t.Errorf("token %d of %d: %v (the two newest are kept)", i+1, len(issued), err)
		}
	}
	if _, err := s.Consume(ctx, otherTok); err != nil {
		t.Errorf("the other incarnation's token: %v", err)
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		token string
		ok    bool
	}{
		{"abcdef.0123456789abcdef", true},
		{"abcdef.0123456789abcde", false},
		{"abcdef-0123456789abcdef", false},
		{"ABCDEF.0123456789abcdef", false},
		{"abcdef.0123456789abcdeF", false},
		{"abcde.f0123456789abcdef", false},
		{"", false},
		{"abcdef.0123456789abcdef\n", false},
	} {
		_, _, err := tokens.Parse(tc.token)
		if (err == nil) != tc.ok {
			t.Errorf("Parse(%q): err %v, want ok=%v", tc.token, err, tc.ok)
		}
		if err != nil && !errors.Is(err, tokens.ErrInvalidToken) {
			t.Errorf("Parse(%q): %v does not wrap ErrInvalidToken", tc.token, err)
		}
	}
}

func countTokens(t *testing.T, ns string) int {
	t.Helper()
	list := &corev1.SecretList{}
	if err := env.Client.List(context.Background(), list, client.InNamespace(ns),
		client.MatchingLabels{tokens.LabelSecretKind: tokens.KindBootstrapToken}); err != nil {
		t.Fatal(err)
	}
	return len(list.Items)
}
