// Package artifactcache is the manager's artifact cache: files addressed by sha256 under Dir,
// each fetched from an Upstream once (concurrent requests share one fetch), checked against its
// sha256 and size while it streams, and stored only when both match. Only artifacts registered
// (from an artifact set's manifest or a stored Plan) are fetched or served. The agent API
// (agents/agentserver) serves it at GET /v1/artifacts/<sha256>.
//
// Upstreams: DirUpstream (artifact-set folders that hack/build-artifacts.sh writes),
// FileUpstream (single files such as the root filesystem image of network-booted Hosts, in
// front of another upstream) and HTTPUpstream (a mirror).
package artifactcache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/go-logr/logr"
	"golang.org/x/sync/singleflight"

	"github.com/basalt-dev/basalt/agents/internal/ctxio"
	"github.com/basalt-dev/basalt/bootstrap/artifacts"
	"github.com/basalt-dev/basalt/bootstrap/atomicfile"
)

// artifactFetchesTotal counts upstream fetches; registered in controller-runtime's registry so the
// manager's metrics endpoint serves it next to the agent API's request metrics.
var artifactFetchesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "basalt", Subsystem: "agent_api", Name: "artifact_upstream_fetches_total",
	Help: "Artifact fetches from upstream by result (ok, checksum_mismatch, error).",
}, []string{"result"})

func init() { metrics.Registry.MustRegister(artifactFetchesTotal) }

// Defaults of Cache.
const (
	// DefaultFetchTimeout bounds one upstream fetch.
	DefaultFetchTimeout = 30 * time.Minute
	// MaxArtifactBytes bounds an artifact whose size is not known in advance.
	MaxArtifactBytes = 8 << 30
)

// Errors of the artifact cache.
var (
	// ErrUnknownArtifact means the sha256 is in no Plan and no registered artifact set: the cache
	// fetches only what it was told about.
	ErrUnknownArtifact = errors.New("unknown artifact")
	// ErrInvalidDigest means the requested name is not 64 lowercase hex digits.
	ErrInvalidDigest = errors.New("artifact digest must be 64 lowercase hex digits")
)

// ChecksumMismatchError says upstream served bytes that do not match the artifact's sha256 (or
// size). The bytes were discarded, never stored or served.
type ChecksumMismatchError struct {
	Name      string
	Want, Got string
	WantSize  int64
	GotSize   int64
}

func (e *ChecksumMismatchError) Error() string {
	return fmt.Sprintf("artifact %s: upstream served sha256 %s (%d bytes), want %s (%d bytes); discarded",
		e.Name, e.Got, e.GotSize, e.Want, e.WantSize)
}

// ArtifactRef identifies an artifact the cache may serve.
type ArtifactRef struct {
	// Name in its artifact set, e.g. kube-apiserver; upstreams find the bytes by it.
	Name string
	// SHA256 of the bytes, lowercase hex: the cache's key.
	SHA256 string
	// Size in bytes; 0 when unknown.
	Size int64
	// URL, when set, is where the bytes are fetched from (an artifact of a Cluster's mirror,
	// spec.artifacts.mirror) instead of Upstream.
	URL string
	// Private artifacts hold a cluster's data (the etcd snapshot of a restore): the cache holds
	// them readable by the manager only, and the agent API serves them only to the agents of
	// Hosts whose stored Plan lists them.
	Private bool
}

// Upstream is where the cache gets an artifact it does not hold yet.
type Upstream interface {
	// Fetch writes the bytes of ref to w. It need not check them: the cache does.
	Fetch(ctx context.Context, ref ArtifactRef, w io.Writer) error
}

// Cache is the sha256-addressed artifact cache the agent API serves from /v1/artifacts/<sha256>.
// Each artifact is fetched from Upstream once, even under concurrent requests, verified before it
// is stored (temporary file + rename; a mismatch is an error and nothing is stored), and served
// with http.ServeContent (Range and conditional requests work). Only artifacts registered with
// Register (from artifact-set manifests and from stored Plans) can be fetched.
type Cache struct {
	// Dir holds the artifacts, as Dir/sha256/<hex>. Default DefaultCacheDir().
	Dir string
	// Upstream fetches missing artifacts. Required to fill the cache; without it only what is
	// already in Dir is served.
	Upstream Upstream
	// FetchTimeout bounds one upstream fetch. Default DefaultFetchTimeout.
	FetchTimeout time.Duration
	// Log receives fetch results. Default: discard.
	Log logr.Logger
	// MirrorClient fetches artifacts registered with a URL; nil means HTTPUpstream's default.
	MirrorClient *http.Client

	mu    sync.RWMutex
	known map[string]ArtifactRef
	group singleflight.Group
	once  sync.Once
}

// DefaultCacheDir is $BASALT_CACHE/agent-api/artifacts when BASALT_CACHE is set, else
// /var/lib/basalt/cache.
func DefaultCacheDir() string {
	if d := os.Getenv("BASALT_CACHE"); d != "" {
		return filepath.Join(d, "agent-api", "artifacts")
	}
	return "/var/lib/basalt/cache"
}

// Register allows the cache to fetch and serve these artifacts. Refs with an invalid sha256 are
// ignored.
func (c *Cache) Register(refs ...ArtifactRef) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.known == nil {
		c.known = map[string]ArtifactRef{}
	}
	for _, r := range refs {
		if !artifacts.IsSHA256(r.SHA256) {
			continue
		}
		if old, ok := c.known[r.SHA256]; ok {
			r.Private = r.Private || old.Private
			// A Plan's reference knows no more than the set or mirror that registered it first.
			if old.Size != 0 && r.Size == 0 {
				r.Size = old.Size
			}
			if old.URL != "" && r.URL == "" {
				r.URL = old.URL
			}
		}
		c.known[r.SHA256] = r
	}
}

// RegisterManifest registers every artifact of an artifact set.
func (c *Cache) RegisterManifest(m *artifacts.Manifest) {
	for _, a := range m.Artifacts {
		c.Register(ArtifactRef{Name: a.Name, SHA256: a.SHA256, Size: a.Size})
	}
}

// Lookup returns the registered artifact with this sha256.
func (c *Cache) Lookup(sha string) (ArtifactRef, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.known[sha]
	return r, ok
}

func (c *Cache) dir() string {
	if c.Dir != "" {
		return c.Dir
	}
	return DefaultCacheDir()
}

func (c *Cache) path(sha string) string { return filepath.Join(c.dir(), "sha256", sha) }

// Ensure makes sure the artifact with this sha256 is in the cache and returns its path. Concurrent
// calls for one artifact share one upstream fetch; a caller whose ctx ends stops waiting without
// cancelling the fetch for the others. A failed fetch is not remembered: the next call tries again.
func (c *Cache) Ensure(ctx context.Context, sha string) (string, error) {
	if !artifacts.IsSHA256(sha) {
		return "", ErrInvalidDigest
	}
	ref, ok := c.Lookup(sha)
	if !ok {
		return "", fmt.Errorf("%w: %s", ErrUnknownArtifact, sha)
	}
	final := c.path(sha)
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	ch := c.group.DoChan(sha, func() (any, error) { return nil, c.fetch(ref) })
	select {
	case res := <-ch:
		if res.Err != nil {
			return "", res.Err
		}
		return final, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// fetch copies ref from upstream into the cache, checking it on the way.
func (c *Cache) fetch(ref ArtifactRef) error {
	final := c.path(ref.SHA256)
	if _, err := os.Stat(final); err == nil {
		return nil // a flight that just ended stored it
	}
	up := c.Upstream
	if ref.URL != "" {
		up = &HTTPUpstream{BaseURL: ref.URL, Client: c.MirrorClient, Exact: true}
	}
	if up == nil {
		return fmt.Errorf("artifact %s (%s) is not cached and no upstream is configured", ref.Name, ref.SHA256)
	}
	dir := filepath.Dir(final)
	c.once.Do(func() { c.removeLeftovers(dir) })
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	timeout := c.FetchTimeout
	if timeout <= 0 {
		timeout = DefaultFetchTimeout
	}
	// The fetch belongs to every waiter, so it does not use any one request's context.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	limit := int64(MaxArtifactBytes)
	if ref.Size > 0 {
		limit = ref.Size
	}
	start := time.Now()
	var n int64
	err := atomicfile.WriteFrom(final, 0o644, atomicfile.Options{TempPattern: "." + ref.SHA256 + ".*.part"}, func(tmp io.Writer) error {
		h := sha256.New()
		w := &limitWriter{w: io.MultiWriter(tmp, h), max: limit}
		if err := up.Fetch(ctx, ref, w); err != nil {
			artifactFetchesTotal.WithLabelValues("error").Inc()
			if w.over {
				return c.mismatch(ref, "", w.n)
			}
			return fmt.Errorf("fetching artifact %s (%s) from upstream: %w", ref.Name, ref.SHA256, err)
		}
		n = w.n
		if got := hex.EncodeToString(h.Sum(nil)); got != ref.SHA256 || (ref.Size > 0 && w.n != ref.Size) {
			return c.mismatch(ref, got, w.n)
		}
		return nil
	})
	if err != nil {
		return err
	}
	artifactFetchesTotal.WithLabelValues("ok").Inc()
	c.Log.Info("Cached artifact", "artifact", ref.Name, "sha256", ref.SHA256, "bytes", n, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

func (c *Cache) mismatch(ref ArtifactRef, got string, n int64) error {
	artifactFetchesTotal.WithLabelValues("checksum_mismatch").Inc()
	if got == "" {
		got = "(not computed: more bytes than expected)"
	}
	err := &ChecksumMismatchError{Name: ref.Name, Want: ref.SHA256, Got: got, WantSize: ref.Size, GotSize: n}
	c.Log.Error(err, "Refused artifact from upstream", "artifact", ref.Name, "reason", "ChecksumMismatch")
	return err
}

// removeLeftovers deletes temporary files a crash left behind.
func (c *Cache) removeLeftovers(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") && strings.HasSuffix(e.Name(), ".part") {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// Serve answers GET/HEAD /v1/artifacts/<sha256> for the agent API: 400 for a malformed digest,
// 404 for an artifact nobody registered, 502 when upstream cannot provide the right bytes. It
// returns the reason the request was refused, for the caller's rejection metric ("" when it
// was not refused, or failed on the server's side).
func (c *Cache) Serve(w http.ResponseWriter, r *http.Request, sha string) (reason string) {
	path, err := c.Ensure(r.Context(), sha)
	var mismatch *ChecksumMismatchError
	switch {
	case errors.Is(err, ErrInvalidDigest):
		http.Error(w, err.Error(), http.StatusBadRequest)
		return "bad_request"
	case errors.Is(err, ErrUnknownArtifact):
		http.Error(w, "unknown artifact", http.StatusNotFound)
		return "unknown_artifact"
	case errors.As(err, &mismatch):
		http.Error(w, "upstream served bytes that do not match the artifact's sha256", http.StatusBadGateway)
		return ""
	case r.Context().Err() != nil:
		return ""
	case err != nil:
		c.Log.Error(err, "Cannot serve artifact", "sha256", sha)
		http.Error(w, "the artifact cannot be fetched from upstream", http.StatusBadGateway)
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		http.Error(w, "the artifact cannot be read", http.StatusInternalServerError)
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		http.Error(w, "the artifact cannot be read", http.StatusInternalServerError)
		return ""
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+sha+`"`)
	w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
	http.ServeContent(w, r, "", st.ModTime(), f)
	return ""
}

// limitWriter fails once more than max bytes are written.
type limitWriter struct {
	w    io.Writer
	max  int64
	n    int64
	over bool
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n+int64(len(p)) > l.max {
		l.over = true
		l.n += int64(len(p))
		return 0, errors.New("more bytes than the artifact's size")
	}
	n, err := l.w.Write(p)
	l.n += int64(n)
	return n, err
}

// DirUpstream serves artifacts from local artifact-set folders (artifacts.LoadSets), each
// described by its manifest.json, as hack/build-artifacts.sh builds them.
type DirUpstream struct {
	// Sets are the folders and their manifests.
	Sets artifacts.Sets
}

// Manifests returns the manifests of the sets, to register them with a Cache.
func (d *DirUpstream) Manifests() []*artifacts.Manifest {
	out := make([]*artifacts.Manifest, 0, len(d.Sets))
	for _, v := range d.Sets.Versions() {
		out = append(out, d.Sets[v].Manifest)
	}
	return out
}

// Fetch copies the file the manifests list with ref's sha256.
func (d *DirUpstream) Fetch(ctx context.Context, ref ArtifactRef, w io.Writer) error {
	for _, s := range d.Sets {
		for _, a := range s.Manifest.Artifacts {
			if a.SHA256 != ref.SHA256 {
				continue
			}
			f, err := os.Open(filepath.Join(s.Dir, filepath.Clean(a.Path)))
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(w, ctxio.Reader(ctx, f))
			return err
		}
	}
	return fmt.Errorf("artifact %s (%s) is in no artifact set", ref.Name, ref.SHA256)
}

// FileUpstream serves single files by sha256 (the root filesystem image of network-booted
// hosts) and asks Next for everything else.
type FileUpstream struct {
	// Files maps a sha256 to the file holding those bytes.
	Files map[string]string
	// Next serves the other artifacts; nil serves none.
	Next Upstream
}

// Fetch copies the file with ref's sha256, or asks Next.
func (f *FileUpstream) Fetch(ctx context.Context, ref ArtifactRef, w io.Writer) error {
	if p, ok := f.Files[ref.SHA256]; ok {
		r, err := os.Open(p)
		if err != nil {
			return err
		}
		defer r.Close()
		_, err = io.Copy(w, ctxio.Reader(ctx, r))
		return err
	}
	if f.Next == nil {
		return fmt.Errorf("artifact %s (%s) has no upstream", ref.Name, ref.SHA256)
	}
	return f.Next.Fetch(ctx, ref, w)
}

// HTTPUpstream fetches artifacts from a mirror.
type HTTPUpstream struct {
	// BaseURL of the mirror. The artifact's URL is BaseURL/<name>, or BaseURL with "{name}" and
	// "{sha256}" replaced when it contains either.
	BaseURL string
	// Client makes the requests. Default: a client with a 30s connect and header timeout.
	Client *http.Client
	// Exact uses BaseURL as the artifact's URL, as it is.
	Exact bool
}

// URL returns where ref is fetched from.
func (h *HTTPUpstream) URL(ref ArtifactRef) string {
	if h.Exact {
		return h.BaseURL
	}
	if strings.Contains(h.BaseURL, "{name}") || strings.Contains(h.BaseURL, "{sha256}") {
		return strings.NewReplacer("{name}", url.PathEscape(ref.Name), "{sha256}", ref.SHA256).Replace(h.BaseURL)
	}
	return strings.TrimRight(h.BaseURL, "/") + "/" + url.PathEscape(ref.Name)
}

// Fetch GETs the artifact; anything but 200 is an error.
func (h *HTTPUpstream) Fetch(ctx context.Context, ref ArtifactRef, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL(ref), nil)
	if err != nil {
		return err
	}
	c := h.Client
	if c == nil {
		c = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			TLSHandshakeTimeout:   30 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
		}}
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", req.URL.Redacted(), resp.Status)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// AddFile copies the local file at path into the cache as ref, checking its sha256 and size,
// and registers ref; a file already cached is not copied again. The copy is private to the
// manager's user when ref is Private.
func (c *Cache) AddFile(ref ArtifactRef, path string) error {
	if !artifacts.IsSHA256(ref.SHA256) {
		return ErrInvalidDigest
	}
	final := c.path(ref.SHA256)
	if _, err := os.Stat(final); err != nil {
		if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
			return err
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer func() { _ = in.Close() }()
		mode := os.FileMode(0o644)
		if ref.Private {
			mode = 0o600
		}
		err = atomicfile.WriteFrom(final, mode, atomicfile.Options{TempPattern: "." + ref.SHA256 + ".*.part"}, func(tmp io.Writer) error {
			h := sha256.New()
			n, err := io.Copy(io.MultiWriter(tmp, h), in)
			if err != nil {
				return err
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != ref.SHA256 || (ref.Size > 0 && n != ref.Size) {
				return c.mismatch(ref, got, n)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	c.Register(ref)
	return nil
}
