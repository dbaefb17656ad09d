// Package tokens issues and consumes the one-time bootstrap tokens an agent exchanges for its
// client certificate at the agent API's /v1/register.
//
// A token looks like a Kubernetes bootstrap token: "<id>.<secret>", a 6-character id and a
// 16-character secret of lowercase letters and digits (about 82 bits of entropy in the secret).
// Only the id is ever written in clear: each token is one Secret in the manager's namespace,
// named SecretPrefix+id, holding the sha256 of the secret, the Host it speaks for (namespace,
// name and UID) and its expiry.
//
// Guarantees:
//
//   - A token is single-use. Consume deletes its Secret with a precondition on the Secret's UID
//     and resourceVersion, so of two registrations racing with the same token exactly one
//     succeeds; the other sees a conflict or NotFound and gets ErrInvalidToken.
//   - Unknown, malformed, wrong, expired and already-used tokens all fail with ErrInvalidToken.
//     The wrapped detail is for logs and metrics; callers answer every such error the same way,
//     so a client learns nothing from the failure.
//   - Expired token Secrets are deleted by CollectGarbage, and by Consume when it meets one.
//   - A Host has at most MaxPerHost outstanding tokens: Issue revokes the oldest beyond it.
//   - The token secret is never logged and never stored in clear.
package tokens

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// DefaultTTL is how long a token is valid when Store.TTL is zero. A token must outlive the
// boot it is made for (an iPXE script is fetched about 30 s before its agent registers on the
// test VMs; real servers take longer to boot), and no more: it is in clear on the provisioning
// network and on the host's kernel command line until then.
const DefaultTTL = 15 * time.Minute

// DefaultMaxPerHost is how many tokens one Host may have outstanding when Store.MaxPerHost is
// zero: a host that fetches its boot script a few times before it registers keeps them all,
// and repeated fetches cannot pile up Secrets.
const DefaultMaxPerHost = 3

// Token shape.
const (
	// IDLength and SecretLength are the lengths of the two halves of a token.
	IDLength     = 6
	SecretLength = 16
	alphabet     = "abcdefghijklmnopqrstuvwxyz0123456789"
)

// Secret layout.
const (
	// SecretPrefix starts the name of every token Secret; the token id follows.
	SecretPrefix = "basalt-token-"
	// SecretType is the type of every token Secret.
	SecretType corev1.SecretType = "basalt.dev/bootstrap-token"
	// LabelSecretKind marks Basalt's Secrets by role; token Secrets carry KindBootstrapToken.
	LabelSecretKind    = "basalt.dev/secret"
	KindBootstrapToken = "bootstrap-token"
	// LabelHost carries the Host name when it fits in a label value (informational).
	LabelHost = "basalt.dev/host"

	keyID            = "token-id"
	keySecretSHA256  = "token-secret-sha256"
	keyHostNamespace = "host-namespace"
	keyHostName      = "host-name"
	keyHostUID       = "host-uid"
	keyExpiration    = "expiration"
)

// ErrInvalidToken is returned for every token that cannot be used: malformed, unknown, wrong
// secret, expired or already consumed. Answer all of them alike.
var ErrInvalidToken = errors.New("invalid bootstrap token")

// HostRef names the Host a token speaks for. UID pins one incarnation of the Host: a Host deleted
// and re-created under the same name does not accept the old Host's tokens.
type HostRef struct {
	Namespace string
	Name      string
	UID       types.UID
}

// String returns namespace/name.
func (h HostRef) String() string { return h.Namespace + "/" + h.Name }

// Store issues and consumes tokens kept as Secrets in one namespace.
type Store struct {
	// Client creates and deletes token Secrets. Required.
	Client client.Client
	// Reader reads token Secrets. It should read from the API server, not a cache (e.g. the
	// manager's GetAPIReader), so a token just issued is found at once. Default: Client.
	Reader client.Reader
	// Namespace holds the token Secrets: the manager's namespace. Required.
	Namespace string
	// TTL is how long a token is valid after Issue. Default DefaultTTL.
	TTL time.Duration
	// MaxPerHost bounds the outstanding tokens of one Host (incarnation). Default
	// DefaultMaxPerHost.
	MaxPerHost int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (s *Store) reader() client.Reader {
	if s.Reader != nil {
		return s.Reader
	}
	return s.Client
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Store) ttl() time.Duration {
	if s.TTL > 0 {
		return s.TTL
	}
	return DefaultTTL
}

// Issue creates a new token for host and returns it. The token is valid for TTL and for one
// registration. Earlier tokens of the same host stay valid (see Revoke), but for the oldest
// beyond MaxPerHost, which Issue deletes.
func (s *Store) Issue(ctx context.Context, host HostRef) (string, error) {
	tok, name, err := s.issue(ctx, host)
	if err != nil {
		return "", err
	}
	if err := s.trim(ctx, host, name); err != nil {
		// The new token is good; its Host just has more than MaxPerHost for now. Delete it
		// rather than hand out a token beyond the bound.
		_ = s.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: name}})
		return "", err
	}
	return tok, nil
}

// trim deletes the oldest tokens of host (by expiry) so that at most MaxPerHost remain, keeping
// keep, the one just issued. Run after every create, concurrent issuers all converge on the
// newest MaxPerHost.
func (s *Store) trim(ctx context.Context, host HostRef, keep string) error {
	maxN := s.MaxPerHost
	if maxN <= 0 {
		maxN = DefaultMaxPerHost
	}
	list, err := s.list(ctx)
	if err != nil {
		return err
	}
	var mine []*corev1.Secret
	for i := range list.Items {
		sec := &list.Items[i]
		if sec.Name != keep && sec.Type == SecretType && forHost(sec, host) {
			mine = append(mine, sec)
		}
	}
	if len(mine) < maxN {
		return nil
	}
	// Newest first; an unreadable expiry sorts as the oldest.
	expiry := func(sec *corev1.Secret) time.Time {
		t, _ := time.Parse(time.RFC3339, string(sec.Data[keyExpiration]))
		return t
	}
	slices.SortFunc(mine, func(a, b *corev1.Secret) int {
		if c := expiry(b).Compare(expiry(a)); c != 0 {
			return c
		}
		return strings.Compare(b.Name, a.Name)
	})
	var errs []error
	for _, sec := range mine[maxN-1:] {
		if err := s.delete(ctx, sec); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("tokens: deleting %s: %w", sec.Name, err))
		}
	}
	return errors.Join(errs...)
}

// issue creates the token Secret and returns the token and the Secret's name.
func (s *Store) issue(ctx context.Context, host HostRef) (token, name string, err error) {
	if s.Client == nil || s.Namespace == "" {
		return "", "", errors.New("tokens: Store needs a Client and a Namespace")
	}
	if host.Namespace == "" || host.Name == "" || host.UID == "" {
		return "", "", fmt.Errorf("tokens: host reference %q needs a namespace, a name and a UID", host)
	}
	for range 5 {
		id, err := randomString(IDLength)
		if err != nil {
			return "", "", err
		}
		secret, err := randomString(SecretLength)
		if err != nil {
			return "", "", err
		}
		// Nanoseconds, so that tokens issued within one second sort by age (trim).
		exp := s.now().Add(s.ttl()).UTC()
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name:      SecretName(id),
				Namespace: s.Namespace,
				Labels:    map[string]string{LabelSecretKind: KindBootstrapToken},
			},
			Type: SecretType,
			Data: map[string][]byte{
				keyID:            []byte(id),
				keySecretSHA256:  []byte(hashSecret(secret)),
				keyHostNamespace: []byte(host.Namespace),
				keyHostName:      []byte(host.Name),
				keyHostUID:       []byte(host.UID),
				keyExpiration:    []byte(exp.Format(time.RFC3339Nano)),
			},
		}
		if len(validation.IsValidLabelValue(host.Name)) == 0 {
			sec.Labels[LabelHost] = host.Name
		}
		err = s.Client.Create(ctx, sec)
		if apierrors.IsAlreadyExists(err) {
			continue // an id collision: draw again
		}
		if err != nil {
			return "", "", fmt.Errorf("tokens: creating token Secret for Host %s: %w", host, err)
		}
		return id + "." + secret, sec.Name, nil
	}
	return "", "", errors.New("tokens: could not find a free token id")
}

// Consume checks token and burns it. It returns the Host the token speaks for, or an error
// wrapping ErrInvalidToken (with a detail for logs) when the token cannot be used, or another
// error when the API server could not be asked. Of any number of concurrent calls with the same
// token, at most one succeeds.
func (s *Store) Consume(ctx context.Context, token string) (HostRef, error) {
	id, secret, err := Parse(token)
	if err != nil {
		return HostRef{}, err
	}
	sec := &corev1.Secret{}
	err = s.reader().Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: SecretName(id)}, sec)
	if apierrors.IsNotFound(err) {
		return HostRef{}, fmt.Errorf("%w: id %s: unknown or already used", ErrInvalidToken, id)
	}
	if err != nil {
		return HostRef{}, fmt.Errorf("tokens: reading token %s: %w", id, err)
	}
	if sec.Type != SecretType {
		return HostRef{}, fmt.Errorf("%w: id %s: Secret is not a bootstrap token", ErrInvalidToken, id)
	}
	want := sec.Data[keySecretSHA256]
	got := []byte(hashSecret(secret))
	if len(want) != len(got) || subtle.ConstantTimeCompare(want, got) != 1 {
		return HostRef{}, fmt.Errorf("%w: id %s: wrong secret", ErrInvalidToken, id)
	}
	exp, err := time.Parse(time.RFC3339, string(sec.Data[keyExpiration]))
	if err != nil || !s.now().Before(exp) {
		_ = s.delete(ctx, sec)
		return HostRef{}, fmt.Errorf("%w: id %s: expired", ErrInvalidToken, id)
	}
	ref := HostRef{
		Namespace: string(sec.Data[keyHostNamespace]),
		Name:      string(sec.Data[keyHostName]),
		UID:       types.UID(sec.Data[keyHostUID]),
	}
	// The delete is the commit point: the precondition fails for every caller but one.
	if err := s.delete(ctx, sec); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return HostRef{}, fmt.Errorf("%w: id %s: already used", ErrInvalidToken, id)
		}
		return HostRef{}, fmt.Errorf("tokens: consuming token %s: %w", id, err)
	}
	return ref, nil
}

// delete removes sec only if it is still the object that was read.
func (s *Store) delete(ctx context.Context, sec *corev1.Secret) error {
	uid, rv := sec.UID, sec.ResourceVersion
	return s.Client.Delete(ctx, sec, client.Preconditions{UID: &uid, ResourceVersion: &rv})
}

// Revoke deletes every outstanding token of host (any incarnation of it when host.UID is empty).
func (s *Store) Revoke(ctx context.Context, host HostRef) error {
	return s.deleteWhere(ctx, func(sec *corev1.Secret) bool { return forHost(sec, host) })
}

// forHost says whether sec is a token of host (any incarnation when host.UID is empty).
func forHost(sec *corev1.Secret, host HostRef) bool {
	return string(sec.Data[keyHostNamespace]) == host.Namespace &&
		string(sec.Data[keyHostName]) == host.Name &&
		(host.UID == "" || types.UID(sec.Data[keyHostUID]) == host.UID)
}

// CollectGarbage deletes the Secrets of expired tokens and returns how many it deleted.
func (s *Store) CollectGarbage(ctx context.Context) (int, error) {
	now := s.now()
	n := 0
	err := s.deleteWhere(ctx, func(sec *corev1.Secret) bool {
		exp, err := time.Parse(time.RFC3339, string(sec.Data[keyExpiration]))
		expired := err != nil || !now.Before(exp)
		if expired {
			n++
		}
		return expired
	})
	return n, err
}

// list returns every token Secret.
func (s *Store) list(ctx context.Context) (*corev1.SecretList, error) {
	list := &corev1.SecretList{}
	if err := s.reader().List(ctx, list, client.InNamespace(s.Namespace),
		client.MatchingLabels{LabelSecretKind: KindBootstrapToken}); err != nil {
		return nil, fmt.Errorf("tokens: listing token Secrets: %w", err)
	}
	return list, nil
}

func (s *Store) deleteWhere(ctx context.Context, match func(*corev1.Secret) bool) error {
	list, err := s.list(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for i := range list.Items {
		sec := &list.Items[i]
		if sec.Type != SecretType || !match(sec) {
			continue
		}
		if err := s.delete(ctx, sec); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("tokens: deleting %s: %w", sec.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Parse splits a token into its id and secret, checking the shape. The error wraps
// ErrInvalidToken.
func Parse(token string) (id, secret string, err error) {
	if len(token) != IDLength+1+SecretLength || token[IDLength] != '.' {
		return "", "", fmt.Errorf("%w: malformed", ErrInvalidToken)
	}
	id, secret = token[:IDLength], token[IDLength+1:]
	if !inAlphabet(id) || !inAlphabet(secret) {
		return "", "", fmt.Errorf("%w: malformed", ErrInvalidToken)
	}
	return id, secret, nil
}

// SecretName is the name of the Secret of the token with this id.
func SecretName(id string) string { return SecretPrefix + id }

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

func inAlphabet(s string) bool {
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// randomString draws n characters uniformly from alphabet.
func randomString(n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("tokens: reading randomness: %w", err)
		}
		for _, b := range buf {
			// 252 = 7*36: rejecting the top 4 values keeps the draw uniform.
			if b < 252 && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out), nil
}
