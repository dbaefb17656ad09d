package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
	"github.com/basalt-dev/basalt/controllers/pkisecrets"
	"github.com/basalt-dev/basalt/controllers/rotation"
	"github.com/basalt-dev/basalt/controllers/topology"
)

const (
	// encryptionPoll is how often a rotation looks again while it waits for the API servers
	// (each reads its encryption configuration again once a minute) or for etcd.
	encryptionPoll = 15 * time.Second
	// encryptionTimeout bounds one rotation step: the servers asked, or every Secret rewritten
	// and etcd read.
	encryptionTimeout = 5 * time.Minute
)

// reconcileEncryption keeps status.encryption and moves a rotation of the encryption key
// (basalt.dev/rotate-encryption-key) one step at a time. The key set stored in the PKI Secret
// is the rotation's state (clusterpki.EncryptionKeys: steady, adding, rewriting); each step
// writes the next set only once every control-plane kube-apiserver reports the current one
// loaded, so no API server ever meets a Secret it cannot read:
//
//	steady + new request    → adding     a new key, read-only
//	adding, all loaded      → rewriting  the new key encrypts, the old one only reads
//	rewriting, all loaded   → rewrite every Secret; read etcd; none left under the old key
//	                        → steady     the old key removed
//	steady, all loaded      → Completed
//
// A crash anywhere resumes from the stored set: a step is only ever done again, never skipped.
func (r *Reconciler) reconcileEncryption(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	keys := s.encryption
	if len(keys.Write.Secret) == 0 {
		return ctrl.Result{}, nil
	}
	st := c.Status.Encryption
	if st == nil {
		st = &basaltv1.EncryptionStatus{}
		c.Status.Encryption = st
	}
	st.KeyName, st.Keys = keys.Write.Name, keyNames(keys)
	rot := st.Rotation
	if (keys.Request != "" || keys.Phase() != clusterpki.EncryptionSteady) && (rot == nil || rot.Request != recordOf(keys.Request)) {
		// The status was lost (or never written): the stored set says which request it serves.
		rot = &basaltv1.EncryptionRotationStatus{Request: recordOf(keys.Request)}
		st.Rotation = rot
	}
	if s.etcdRestoring {
		return ctrl.Result{}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, encryptionTimeout)
	defer cancel()
	log := ctrl.LoggerFrom(ctx).WithValues("cluster", klog.KObj(c))
	now := metav1.NewTime(r.now().Truncate(time.Second))
	wait := func(phase, msg string) (ctrl.Result, error) {
		if rot.Phase != phase || rot.Message != msg {
			log.Info("Encryption key rotation waits", "phase", phase, "request", rot.Request, "message", msg)
		}
		rot.Phase, rot.Message = phase, clip(msg, 1000)
		return ctrl.Result{RequeueAfter: encryptionPoll}, nil
	}
	write := func(to clusterpki.EncryptionKeys) error {
		if err := pkisecrets.SetEncryption(ctx, r.apiReader(), r.Client, c, keys, to); err != nil {
			return err
		}
		keys, s.encryption = to, to
		st.KeyName, st.Keys = to.Write.Name, keyNames(to)
		return nil
	}

	switch keys.Phase() {
	case clusterpki.EncryptionAdding:
		if waiting := r.serversWithout(ctx, s, keys); waiting != "" {
			return wait(basaltv1.EncryptionPhaseAddingKey, fmt.Sprintf("waiting for every kube-apiserver to load key %s (read-only): %s", keys.Next.Name, waiting))
		}
		next, err := keys.Promote()
		if err != nil {
			return ctrl.Result{}, err
		}
		if err := write(next); err != nil {
			return ctrl.Result{}, err
		}
		rot.Phase, rot.Message = basaltv1.EncryptionPhaseRewriting, "waiting for every kube-apiserver to encrypt with "+next.Write.Name
		r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, basaltv1.ReasonEncryptionKeyPromoted, "RotateEncryptionKey",
			"Every kube-apiserver holds key %s: it now encrypts new writes, %s only decrypts until every Secret is rewritten", next.Write.Name, next.Retired.Name)
		return ctrl.Result{RequeueAfter: encryptionPoll}, nil

	case clusterpki.EncryptionRewriting:
		if waiting := r.serversWithout(ctx, s, keys); waiting != "" {
			return wait(basaltv1.EncryptionPhaseRewriting, fmt.Sprintf("waiting for every kube-apiserver to encrypt with key %s: %s", keys.Write.Name, waiting))
		}
		remaining, err := r.secretsNotUnder(ctx, s, keys)
		if err != nil {
			return wait(basaltv1.EncryptionPhaseRewriting, err.Error())
		}
		if remaining > 0 {
			wcfg, err := r.Workload.RESTConfig(ctx, c)
			if err != nil {
				return wait(basaltv1.EncryptionPhaseRewriting, err.Error())
			}
			res, err := rotation.RewriteSecrets(ctx, wcfg)
			rot.Rewritten += int32(res.Rewritten)
			if err != nil {
				return wait(basaltv1.EncryptionPhaseRewriting, fmt.Sprintf("rewrote %d Secrets, then: %v", res.Rewritten, err))
			}
			log.Info("Rewrote every Secret with the new encryption key", "key", keys.Write.Name, "rewritten", res.Rewritten, "changedMeanwhile", res.Changed)
			if remaining, err = r.secretsNotUnder(ctx, s, keys); err != nil {
				return wait(basaltv1.EncryptionPhaseRewriting, err.Error())
			}
		}
		rot.Remaining = int32(remaining)
		if remaining > 0 {
			return wait(basaltv1.EncryptionPhaseRewriting, fmt.Sprintf("etcd still holds %d Secret(s) not encrypted with %s after the rewrite; rewriting again", remaining, keys.Write.Name))
		}
		retired := keys.Retired.Name
		next, err := keys.Retire()
		if err != nil {
			return ctrl.Result{}, err
		}
		if err := write(next); err != nil {
			return ctrl.Result{}, err
		}
		rot.Phase, rot.Message = basaltv1.EncryptionPhaseRemovingKey, "waiting for every kube-apiserver to drop key "+retired
		r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, basaltv1.ReasonSecretsReencrypted, "RotateEncryptionKey",
			"etcd holds every Secret encrypted with %s (%d rewritten); key %s is removed", next.Write.Name, rot.Rewritten, retired)
		return ctrl.Result{RequeueAfter: encryptionPoll}, nil
	}

	// Steady: finish the rotation the set answers, then start the next one asked for.
	if rot != nil && rot.Request == recordOf(keys.Request) && rot.Phase != basaltv1.EncryptionPhaseCompleted {
		if waiting := r.serversWithout(ctx, s, keys); waiting != "" {
			return wait(basaltv1.EncryptionPhaseRemovingKey, "waiting for every kube-apiserver to hold key "+keys.Write.Name+" alone: "+waiting)
		}
		rot.Phase, rot.Message, rot.CompletedAt = basaltv1.EncryptionPhaseCompleted, "", &now
		log.Info("Encryption key rotated", "key", keys.Write.Name, "request", rot.Request)
		r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, basaltv1.ReasonEncryptionKeyRotated, "RotateEncryptionKey",
			"Every Secret is encrypted with key %s, the only key the API servers hold; snapshots taken before the rotation hold Secrets only the removed key can read (docs/rotation.md)", keys.Write.Name)
	}
	req := c.Annotations[basaltv1.AnnotationRotateEncryptionKey]
	if req == "" || req == keys.Request {
		return ctrl.Result{}, nil
	}
	next, err := keys.Begin(req)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := write(next); err != nil {
		return ctrl.Result{}, err
	}
	st.Rotation = &basaltv1.EncryptionRotationStatus{Request: recordOf(req), Phase: basaltv1.EncryptionPhaseAddingKey, StartedAt: &now,
		Message: "waiting for every kube-apiserver to load key " + next.Next.Name + " (read-only)"}
	log.Info("Encryption key rotation started", "request", req, "newKey", next.Next.Name)
	r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, basaltv1.ReasonEncryptionKeyRotationStarted, "RotateEncryptionKey",
		"%s=%s: key %s is handed to every kube-apiserver, read-only, before it encrypts anything", basaltv1.AnnotationRotateEncryptionKey, recordOf(req), next.Next.Name)
	return ctrl.Result{RequeueAfter: encryptionPoll}, nil
}

// keyNames lists the names of keys, the write key first.
func keyNames(keys clusterpki.EncryptionKeys) []string {
	var out []string
	for _, k := range keys.Ordered() {
		out = append(out, k.Name)
	}
	return out
}

// serversWithout asks every control-plane kube-apiserver which encryption configuration it has
// loaded and names those that do not run keys' (or did not answer); "" when all do. Machines
// being deleted count while they run an API server: one left with old keys could write what
// the others cannot read.
func (r *Reconciler) serversWithout(ctx context.Context, s *scope, keys clusterpki.EncryptionKeys) string {
	if r.Workload == nil {
		return "the manager has no access to workload clusters"
	}
	want, err := rotation.ConfigHash(keys)
	if err != nil {
		return err.Error()
	}
	cp, _ := s.boundNodes()
	var waiting []string
	servers := 0
	for _, n := range cp {
		if !topology.RunsAPIServer(n.machine) {
			continue
		}
		servers++
		addr := topology.APIServerAddress(netip.MustParseAddr(n.ip))
		cfg, err := r.Workload.ServerConfig(ctx, s.cluster, addr)
		if err != nil {
			return err.Error()
		}
		loaded, err := rotation.LoadedConfigs(ctx, cfg)
		switch {
		case err != nil:
			waiting = append(waiting, fmt.Sprintf("%s (%v)", n.machine.Name, err))
		case len(loaded) == 0 || slices.ContainsFunc(loaded, func(h string) bool { return h != want }):
			waiting = append(waiting, fmt.Sprintf("%s (runs %s)", n.machine.Name, shortHashes(loaded)))
		}
	}
	if servers == 0 {
		return "no control-plane Machine runs kube-apiserver yet"
	}
	return strings.Join(waiting, ", ")
}

// shortHashes abbreviates configuration hashes for messages.
func shortHashes(hs []string) string {
	if len(hs) == 0 {
		return "no encryption configuration reported"
	}
	var out []string
	for _, h := range hs {
		out = append(out, clip(strings.TrimPrefix(h, "sha256:"), 12))
	}
	return "configuration " + strings.Join(out, ", ")
}

// secretsNotUnder reads every Secret's stored value in etcd and counts those not encrypted with
// keys' write key.
func (r *Reconciler) secretsNotUnder(ctx context.Context, s *scope, keys clusterpki.EncryptionKeys) (int, error) {
	cp, _ := s.boundNodes()
	var endpoints []string
	for _, n := range cp {
		if e := n.machine.Status.Etcd; e != nil && !e.Learner && topology.ComponentHealthy(n.machine, topology.ComponentEtcd) {
			endpoints = append(endpoints, topology.EtcdClientURL(netip.MustParseAddr(n.ip)))
		}
	}
	if len(endpoints) == 0 || s.material == nil {
		return 0, fmt.Errorf("no healthy etcd member to read the Secrets from")
	}
	ca, pair := s.material[clusterpki.EtcdCA], s.material[clusterpki.APIServerEtcdClient]
	cli, err := r.etcdClient()(etcdcluster.Config{Endpoints: endpoints, CA: ca.Cert, Cert: pair.Cert, Key: pair.Key})
	if err != nil {
		return 0, err
	}
	defer func() { _ = cli.Close() }()
	sc, ok := cli.(etcdcluster.StorageScanner)
	if !ok {
		return 0, fmt.Errorf("the etcd client cannot read stored values")
	}
	counts, err := sc.StoragePrefixes(ctx, rotation.SecretsPrefix)
	if err != nil {
		return 0, fmt.Errorf("reading the Secrets in etcd: %w", err)
	}
	want, remaining := rotation.StorageClass(keys), 0
	for class, n := range counts {
		if class != want {
			remaining += n
		}
	}
	return remaining, nil
}

// recordOf is how a rotation request is recorded in status (at most 64 characters).
func recordOf(request string) string { return clip(request, 60) }
