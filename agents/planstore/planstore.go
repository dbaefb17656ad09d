// Package planstore keeps the Plan of each Host: one Secret per Host in the Host's namespace
// (PlanSecretName; type PlanSecretType; data PlanKey; annotation AnnotationPlanHash; label
// LabelSecretKind=KindPlan), owned by the Host. It is the only code that writes, reads or deletes
// a Plan Secret; the agent API server (agents/agentserver) serves what is stored here to the
// Host's agent, and an absent Plan means the empty Plan (the agent runs nothing of Basalt's and
// wipes what it applied before).
//
// # Who writes a Host's Plan, in which state
//
// A Host has at most one writer at a time, decided by its state and its consumer:
//
//	Host state (consumer)                  writer              what it stores
//	Provisioning (claimed by a Machine),   Host controller     a Plan with only OS: the root image
//	  network-booted, with a root image    (host_disk.go)      the agent writes to its disk
//	Provisioned (bound to a Machine)       Machine controller  the Machine's node or control-plane
//	                                       (machine_plan.go)   Plan, carrying the same OS
//	Provisioned (Machine being deleted)    Machine controller  the empty Plan, until the agent
//	                                       (machine_phases.go) reports it applied (or the wait
//	                                                           ends); then DeletePlan
//	every other state                      nobody              nothing: the empty Plan is served
//
// The Host controller hands a Host to a Machine (Provisioned) only after the disk is written, and
// the Machine controller stores a Plan only for a Host bound to it, so the two never write one
// Host's Plan at once; StorePlan's hash check makes every write idempotent, so a writer may call
// it on every reconcile.
//
// Plan Secrets are read from the API server, never through the manager's cache: use Client with
// the manager's cached client and its API reader, so storing a Plan never makes the cache list
// and watch every Secret of the cluster.
package planstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/agents/tokens"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// Plan storage: one Secret per Host, in the Host's namespace.
const (
	// PlanSecretPrefix starts the name of a Plan Secret; PlanSecretName adds the Host name.
	PlanSecretPrefix = "basalt-plan-"
	// PlanSecretType is the type of every Plan Secret.
	PlanSecretType corev1.SecretType = "basalt.dev/plan"
	// PlanKey is the data key holding the Plan as JSON (normalized, see plan.Plan.Normalize).
	PlanKey = "plan.json"
	// AnnotationPlanHash holds the Plan's hash (plan.Plan.Hash).
	AnnotationPlanHash = "basalt.dev/plan-hash"
	// AnnotationHost holds the Host name in full (labels are limited to 63 characters).
	AnnotationHost = "basalt.dev/host"
	// LabelSecretKind marks Basalt's Secrets by role; Plan Secrets carry KindPlan. The agent API
	// watches only Secrets with this label.
	LabelSecretKind = tokens.LabelSecretKind
	KindPlan        = "plan"
	// LabelHost carries the Host name (or, for names longer than a label value allows, a hash).
	LabelHost = tokens.LabelHost
	// maxPlanBytes keeps a Plan Secret under the API server's object size limit.
	maxPlanBytes = 900 << 10
)

// ErrNoPlan means no Plan is stored for the Host.
var ErrNoPlan = errors.New("no Plan is stored for this Host")

// PlanSecretName returns the name of the Secret holding the Plan of Host host.
func PlanSecretName(host string) string {
	name := PlanSecretPrefix + host
	if len(name) <= validation.DNS1123SubdomainMaxLength {
		return name
	}
	sum := sha256.Sum256([]byte(host))
	keep := strings.TrimRight(name[:validation.DNS1123SubdomainMaxLength-11], ".-")
	return keep + "-" + hex.EncodeToString(sum[:])[:10]
}

// hostLabelValue returns host when it is a valid label value, else a stable hash of it.
func hostLabelValue(host string) string {
	if len(validation.IsValidLabelValue(host)) == 0 {
		return host
	}
	sum := sha256.Sum256([]byte(host))
	return "sha256-" + hex.EncodeToString(sum[:])[:40]
}

// Client is what controllers pass to StorePlan and DeletePlan: writes and everything but
// Secrets go through c (the manager's cached client); Secrets are read from reader (the API
// server), so storing a Plan never makes the cache list and watch every Secret of the cluster.
func Client(c client.Client, reader client.Reader) client.Client {
	return uncachedSecrets{Client: c, reader: reader}
}

// uncachedSecrets reads Secrets through reader and everything else through the embedded Client.
type uncachedSecrets struct {
	client.Client
	reader client.Reader
}

func (u uncachedSecrets) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*corev1.Secret); ok {
		return u.reader.Get(ctx, key, obj, opts...)
	}
	return u.Client.Get(ctx, key, obj, opts...)
}

// StorePlan stores p as the Plan of Host namespace/host and returns its hash. changed is false
// when the stored Plan already had this hash, in which case nothing is written. p is normalized
// and validated on a copy (the caller's Plan is not modified); its Host field must be empty or
// host. The Secret is owned by the Host (garbage-collected with it). A conflicting concurrent
// write returns a Conflict error for the caller to retry.
//
// StorePlan may be called on every reconcile: agents long-polling /v1/plan are woken only when the
// hash changes.
func StorePlan(ctx context.Context, c client.Client, namespace, host string, p *plan.Plan) (hash string, changed bool, err error) {
	if p == nil {
		return "", false, errors.New("StorePlan: nil Plan")
	}
	cp := p.DeepCopy()
	if cp.Host == "" {
		cp.Host = host
	}
	if cp.Host != host {
		return "", false, fmt.Errorf("StorePlan: the Plan is for host %q, not %q", cp.Host, host)
	}
	cp.Normalize()
	if err := cp.Validate(); err != nil {
		return "", false, fmt.Errorf("StorePlan: invalid Plan for Host %s/%s: %w", namespace, host, err)
	}
	hash = cp.Hash()
	body, err := json.Marshal(cp)
	if err != nil {
		return "", false, err
	}
	if len(body) > maxPlanBytes {
		return "", false, fmt.Errorf("StorePlan: the Plan of Host %s/%s is %d bytes, at most %d fit in a Secret", namespace, host, len(body), maxPlanBytes)
	}

	h := &basaltv1.Host{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: host}, h); err != nil {
		return "", false, fmt.Errorf("StorePlan: reading Host %s/%s: %w", namespace, host, err)
	}
	owner := metav1.OwnerReference{
		APIVersion: basaltv1.GroupVersion.String(), Kind: "Host", Name: h.Name, UID: h.UID,
		BlockOwnerDeletion: ptr.To(false),
	}
	key := client.ObjectKey{Namespace: namespace, Name: PlanSecretName(host)}
	sec := &corev1.Secret{}
	err = c.Get(ctx, key, sec)
	switch {
	case apierrors.IsNotFound(err):
		sec = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name: key.Name, Namespace: namespace,
				Labels:          map[string]string{LabelSecretKind: KindPlan, LabelHost: hostLabelValue(host)},
				Annotations:     map[string]string{AnnotationPlanHash: hash, AnnotationHost: host},
				OwnerReferences: []metav1.OwnerReference{owner},
			},
			Type: PlanSecretType,
			Data: map[string][]byte{PlanKey: body},
		}
		if err := c.Create(ctx, sec); err != nil {
			return "", false, fmt.Errorf("StorePlan: creating Secret %s: %w", key, err)
		}
		return hash, true, nil
	case err != nil:
		return "", false, fmt.Errorf("StorePlan: reading Secret %s: %w", key, err)
	}
	if sec.Type != PlanSecretType {
		return "", false, fmt.Errorf("StorePlan: Secret %s exists and is not a Plan (type %q)", key, sec.Type)
	}
	if sec.Annotations[AnnotationPlanHash] == hash && sec.Annotations[AnnotationHost] == host &&
		sec.Labels[LabelSecretKind] == KindPlan && hasOwner(sec, h.UID) {
		return hash, false, nil
	}
	if sec.Labels == nil {
		sec.Labels = map[string]string{}
	}
	if sec.Annotations == nil {
		sec.Annotations = map[string]string{}
	}
	sec.Labels[LabelSecretKind] = KindPlan
	sec.Labels[LabelHost] = hostLabelValue(host)
	sec.Annotations[AnnotationPlanHash] = hash
	sec.Annotations[AnnotationHost] = host
	if !hasOwner(sec, h.UID) {
		sec.OwnerReferences = []metav1.OwnerReference{owner}
	}
	sec.Data = map[string][]byte{PlanKey: body}
	if err := c.Update(ctx, sec); err != nil {
		return "", false, fmt.Errorf("StorePlan: updating Secret %s: %w", key, err)
	}
	return hash, true, nil
}

func hasOwner(sec *corev1.Secret, uid types.UID) bool {
	for _, o := range sec.OwnerReferences {
		if o.UID == uid {
			return true
		}
	}
	return false
}

// LoadPlan returns the Plan stored for Host namespace/host and its hash, or an error wrapping
// ErrNoPlan. The hash is recomputed and checked against the stored one.
func LoadPlan(ctx context.Context, r client.Reader, namespace, host string) (*plan.Plan, string, error) {
	sec := &corev1.Secret{}
	err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: PlanSecretName(host)}, sec)
	if apierrors.IsNotFound(err) {
		return nil, "", fmt.Errorf("%w: %s/%s", ErrNoPlan, namespace, host)
	}
	if err != nil {
		return nil, "", err
	}
	p := &plan.Plan{}
	if err := json.Unmarshal(sec.Data[PlanKey], p); err != nil {
		return nil, "", fmt.Errorf("the Plan in Secret %s/%s: %w", namespace, sec.Name, err)
	}
	hash := p.Hash()
	if stored := sec.Annotations[AnnotationPlanHash]; stored != hash {
		return nil, "", fmt.Errorf("the Plan in Secret %s/%s: stored hash %q does not match the Plan (%s); write Plans only with StorePlan",
			namespace, sec.Name, stored, hash)
	}
	return p, hash, nil
}

// DeletePlan removes the Plan of Host namespace/host; a missing Plan is not an error. Agents
// long-polling for it get 404.
func DeletePlan(ctx context.Context, c client.Client, namespace, host string) error {
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: PlanSecretName(host)}}
	if err := c.Delete(ctx, sec); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}
