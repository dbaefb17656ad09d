package etcdbackup

import (
	"context"
	"errors"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/agents/artifactcache"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// Stager makes a stored snapshot available to the agent that restores it: it reads the snapshot
// back from the Cluster's store, checks it against its record (Fetch) and puts it in the
// manager's artifact cache as a private artifact, which the agent API serves only to a Host
// whose Plan lists it.
type Stager struct {
	// APIReader reads the credentials Secret.
	APIReader client.Reader
	// NewStore opens the store; default NewS3.
	NewStore func(spec basaltv1.S3Store, sec *corev1.Secret) (Store, error)
	// Dir holds the snapshot while it is checked (the manager's --snapshot-dir).
	Dir string
	// Cache is the agent API's artifact cache.
	Cache *artifactcache.Cache
}

// ErrNoArtifactCache says the manager runs without the agent API, so no agent can fetch a
// snapshot from it.
var ErrNoArtifactCache = errors.New("the manager runs without the agent API (--agent-api-addr), so it cannot hand a snapshot to an agent")

// Stage fetches snapshot s of Cluster c, checks it and caches it; it returns the sha256 and size
// the agent fetches it by. Staging the same snapshot again costs a store read and no copy.
func (st *Stager) Stage(ctx context.Context, c *basaltv1.Cluster, s basaltv1.EtcdSnapshot) (string, int64, error) {
	if st.Cache == nil {
		return "", 0, ErrNoArtifactCache
	}
	if c.Spec.Etcd == nil || c.Spec.Etcd.Backup == nil {
		return "", 0, errors.New("spec.etcd.backup.s3 is not set: the store the snapshot is in is unknown")
	}
	if ref, ok := st.Cache.Lookup(s.SHA256); ok && ref.Private {
		if _, err := st.Cache.Ensure(ctx, s.SHA256); err == nil {
			return s.SHA256, s.Size, nil
		}
	}
	r := &Reconciler{APIReader: st.APIReader, NewStore: st.NewStore}
	store, out := r.store(ctx, c)
	if store == nil {
		return "", 0, fmt.Errorf("%s: %s", out.reason, out.message)
	}
	sctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	path, err := Fetch(sctx, store, KeyOf(c, s), s, st.Dir)
	if err != nil {
		return "", 0, fmt.Errorf("reading snapshot %s back from %s: %w", s.Name, s.Location, err)
	}
	defer func() { _ = os.Remove(path) }()
	ref := artifactcache.ArtifactRef{Name: "etcd-snapshot/" + c.Namespace + "/" + c.Name + "/" + s.Name, SHA256: s.SHA256, Size: s.Size, Private: true}
	if err := st.Cache.AddFile(ref, path); err != nil {
		return "", 0, fmt.Errorf("caching snapshot %s: %w", s.Name, err)
	}
	return s.SHA256, s.Size, nil
}
