// Package artifactsource finds the artifact set of a Kubernetes version for a Cluster: in the
// manager's local sets (--artifact-sets), or at the Cluster's mirror (spec.artifacts.mirror),
// whose manifest it fetches, checks and keeps for a while, and whose artifacts it registers with
// the artifact cache so each is fetched from the mirror once, checked against the manifest's
// sha256 and served to every host from the cache (docs/artifacts.md).
package artifactsource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/basalt-dev/basalt/agents/artifactcache"
	"github.com/basalt-dev/basalt/bootstrap/artifacts"
)

// Defaults.
const (
	// DefaultTTL is how long a mirror's manifest is used before it is fetched again.
	DefaultTTL = 10 * time.Minute
	// DefaultErrorTTL is how long a failed manifest fetch is remembered, so reconciles of many
	// Machines do not each ask the mirror.
	DefaultErrorTTL = 15 * time.Second
	// maxManifestBytes bounds a mirror's manifest.json.
	maxManifestBytes = 1 << 20
)

// NotFoundError says there is no artifact set of the version: the manager has no local set, or
// the mirror does not serve it (or cannot be reached). Its message says which and what there is.
type NotFoundError struct{ Msg string }

func (e *NotFoundError) Error() string { return e.Msg }

// Source finds artifact sets. The zero value has no set.
type Source struct {
	// Sets are the manager's local artifact sets, by version.
	Sets artifacts.Sets
	// Cache, when set, gets every artifact of a mirror's manifest registered with its URL. Without
	// it mirrors are refused: hosts could not fetch their artifacts.
	Cache *artifactcache.Cache
	// Client fetches manifests. Default: 30 s timeout.
	Client *http.Client
	// TTL and ErrorTTL; zero means DefaultTTL and DefaultErrorTTL.
	TTL, ErrorTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu      sync.Mutex
	mirrors map[string]fetched
}

type fetched struct {
	at       time.Time
	manifest *artifacts.Manifest
	err      error
}

// Manifest returns the manifest of version's artifact set: from mirror when it is set, else from
// the local sets. A missing set is a *NotFoundError.
func (s *Source) Manifest(ctx context.Context, mirror, version string) (*artifacts.Manifest, error) {
	if mirror == "" {
		if set, ok := s.Sets[version]; ok {
			return set.Manifest, nil
		}
		have := "none (start the manager with --artifact-sets, or set spec.artifacts.mirror)"
		if len(s.Sets) > 0 {
			have = strings.Join(s.Sets.Versions(), ", ")
		}
		return nil, &NotFoundError{fmt.Sprintf("the manager has no artifact set of %s; it has %s", version, have)}
	}
	if s.Cache == nil {
		return nil, &NotFoundError{fmt.Sprintf("spec.artifacts.mirror %s needs the manager's agent API and artifact cache, which are off", mirror)}
	}
	key := strings.TrimRight(mirror, "/") + "\x00" + version
	now := s.now()
	s.mu.Lock()
	f, ok := s.mirrors[key]
	s.mu.Unlock()
	if ok && ((f.err == nil && now.Sub(f.at) < s.ttl()) || (f.err != nil && now.Sub(f.at) < s.errorTTL())) {
		return f.manifest, f.err
	}
	m, err := s.fetch(ctx, mirror, version)
	if err != nil && ok && f.err == nil {
		// The mirror answered before: keep its manifest (a set of a version does not change)
		// while it cannot be reached, and try again later.
		m, err = f.manifest, nil
	}
	s.mu.Lock()
	if s.mirrors == nil {
		s.mirrors = map[string]fetched{}
	}
	s.mirrors[key] = fetched{at: now, manifest: m, err: err}
	s.mu.Unlock()
	return m, err
}

// Available says whether an upgrade to version may start: there is a set of it, or the manager
// has no local set at all and no mirror is named (a manager started without sets decides nothing).
func (s *Source) Available(ctx context.Context, mirror, version string) error {
	if mirror == "" && len(s.Sets) == 0 {
		return nil
	}
	_, err := s.Manifest(ctx, mirror, version)
	return err
}

// ManifestURL is where a mirror serves the manifest of version: <mirror>/<version>/manifest.json,
// the layout of hack/build-artifacts.sh's output folder ($BASALT_CACHE/artifacts/<version>).
func ManifestURL(mirror, version string) string {
	return strings.TrimRight(mirror, "/") + "/" + url.PathEscape(version) + "/" + artifacts.ManifestFile
}

func (s *Source) fetch(ctx context.Context, mirror, version string) (*artifacts.Manifest, error) {
	u := ManifestURL(mirror, version)
	notFound := func(format string, args ...any) error {
		return &NotFoundError{fmt.Sprintf("spec.artifacts.mirror: %s: ", u) + fmt.Sprintf(format, args...)}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, notFound("%v", err)
	}
	c := s.Client
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, notFound("%v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, notFound("%s (the mirror serves no artifact set of %s)", resp.Status, version)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestBytes+1))
	if err != nil {
		return nil, notFound("%v", err)
	}
	m, err := ParseManifest(b, version)
	if err != nil {
		return nil, notFound("%v", err)
	}
	base := strings.TrimRight(mirror, "/") + "/" + url.PathEscape(version) + "/"
	for _, a := range m.Artifacts {
		s.Cache.Register(artifactcache.ArtifactRef{Name: a.Name, SHA256: a.SHA256, Size: a.Size,
			URL: base + (&url.URL{Path: path.Clean(a.Path)}).EscapedPath()})
	}
	return m, nil
}

// ParseManifest decodes a mirror's manifest.json of version: valid (artifacts.Manifest.Validate:
// unique names, sha256s, every path inside the set's folder) and of that version.
func ParseManifest(b []byte, version string) (*artifacts.Manifest, error) {
	if len(b) > maxManifestBytes {
		return nil, fmt.Errorf("more than %d bytes", maxManifestBytes)
	}
	var m artifacts.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("not an artifact manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if m.KubernetesVersion != version {
		return nil, fmt.Errorf("the manifest is of %s, not %s", m.KubernetesVersion, version)
	}
	return &m, nil
}

func (s *Source) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Source) ttl() time.Duration {
	if s.TTL > 0 {
		return s.TTL
	}
	return DefaultTTL
}

func (s *Source) errorTTL() time.Duration {
	if s.ErrorTTL > 0 {
		return s.ErrorTTL
	}
	return DefaultErrorTTL
}
