package agentserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/agents/artifactcache"
	"github.com/basalt-dev/basalt/agents/planstore"
	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/agents/tokens"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/artifacts"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// Messages of refused requests. Every token problem gets the same answer, so a client learns
// nothing about which tokens exist.
const (
	msgInvalidToken = "invalid bootstrap token"
	msgNoIdentity   = "a client certificate issued by the agent CA is required"
	msgForbidden    = "this certificate does not speak for that Host"
	msgUnavailable  = "the agent API cannot reach the management cluster; retry later"
)

// errHostGone means the Host named by a certificate or token no longer exists, or exists with
// another UID (it was deleted and re-created).
var errHostGone = errors.New("the Host no longer exists")

// reject answers a refused request and counts it.
func (s *Server) reject(w http.ResponseWriter, r *http.Request, code int, reason, msg string) {
	rejectedTotal.WithLabelValues(pathLabel(r.URL.Path), reason).Inc()
	http.Error(w, msg, code)
}

// authenticate returns the Host the request's client certificate speaks for, or answers 401.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (agentIdentity, bool) {
	id, err := identify(r.TLS)
	if err != nil {
		s.Log.V(1).Info("Refused request without an agent identity", "path", r.URL.Path, "remote", r.RemoteAddr, "reason", err.Error())
		s.reject(w, r, http.StatusUnauthorized, "no_identity", msgNoIdentity)
		return agentIdentity{}, false
	}
	if want := r.URL.Query().Get(QueryHost); want != "" && want != id.String() {
		s.Log.Info("Refused request for another Host", "path", r.URL.Path, "host", id.String(), "requested", want, "reason", "Forbidden")
		s.reject(w, r, http.StatusForbidden, "forbidden", msgForbidden)
		return agentIdentity{}, false
	}
	return id, true
}

// authorizeHost checks that the certificate's Host still exists with the certificate's UID and
// that the certificate is one the Host accepts (certificateAccepted); a serial the cached Host
// does not know yet (a renewal a moment ago) is checked again on the API server.
func (s *Server) authorizeHost(w http.ResponseWriter, r *http.Request, id agentIdentity) bool {
	h := &basaltv1.Host{}
	err := s.HostReader.Get(r.Context(), client.ObjectKey{Namespace: id.Namespace, Name: id.Host}, h)
	if err == nil && h.UID == id.UID && !certificateAccepted(h, id.Serial) {
		err = s.APIReader.Get(r.Context(), client.ObjectKey{Namespace: id.Namespace, Name: id.Host}, h)
	}
	switch {
	case apierrors.IsNotFound(err) || (err == nil && h.UID != id.UID):
		s.Log.Info("Refused request from the agent of a Host that is gone", "host", id.String(), "path", r.URL.Path, "reason", "HostGone")
		s.reject(w, r, http.StatusForbidden, "host_gone", msgForbidden)
		return false
	case err != nil:
		s.Log.Error(err, "Cannot read Host", "host", id.String())
		http.Error(w, msgUnavailable, http.StatusServiceUnavailable)
		return false
	case !certificateAccepted(h, id.Serial):
		s.superseded(w, r, id)
		return false
	}
	closeIfReplaced(w, h, id)
	return true
}

// closeIfReplaced ends, after this answer, a connection that still carries a certificate a
// renewal replaced (opened before it): the agent's next request opens one with its new
// certificate, before the next renewal makes the old one unacceptable. ("Connection: close"
// makes an HTTP/2 server send GOAWAY.)
func closeIfReplaced(w http.ResponseWriter, h *basaltv1.Host, id agentIdentity) {
	if a := h.Status.Agent; a.CertificateSerial != "" && id.Serial != a.CertificateSerial {
		w.Header().Set("Connection", "close")
	}
}

// superseded refuses a certificate of the Host that is no longer its last or the one before:
// another copy of the agent's identity renewed it, or the Host registered again since.
func (s *Server) superseded(w http.ResponseWriter, r *http.Request, id agentIdentity) {
	s.Log.Info("Refused a superseded agent certificate: the Host's agent registered or renewed with another one since; if this is the Host's own agent, a copy of its identity exists elsewhere",
		"host", id.String(), "path", r.URL.Path, "serial", id.Serial, "remote", r.RemoteAddr, "reason", "Superseded")
	s.reject(w, r, http.StatusForbidden, "superseded", msgForbidden)
}

// badBody answers a body that could not be decoded: 413 when too large, 400 otherwise.
func (s *Server) badBody(w http.ResponseWriter, r *http.Request, err error) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		s.reject(w, r, http.StatusRequestEntityTooLarge, "too_large", "request body larger than the limit")
		return
	}
	msg := err.Error()
	if len(msg) > 2048 {
		msg = msg[:2048] + "..."
	}
	s.reject(w, r, http.StatusBadRequest, "bad_request", "invalid request: "+strings.ToValidUTF8(msg, "?"))
}

// handleRegister exchanges a bootstrap token and a CSR for a client certificate.
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	req, csr, err := decodeRegister(http.MaxBytesReader(w, r.Body, protocol.MaxRequestBytes))
	if err != nil {
		s.badBody(w, r, err)
		return
	}
	// The CSR is checked before the token is burned, so a malformed request keeps its token.
	ref, err := s.tokens.Consume(ctx, req.Token)
	if errors.Is(err, tokens.ErrInvalidToken) {
		s.Log.Info("Refused registration", "remote", r.RemoteAddr, "reason", err.Error())
		s.reject(w, r, http.StatusUnauthorized, "invalid_token", msgInvalidToken)
		return
	}
	if err != nil {
		s.Log.Error(err, "Cannot check a bootstrap token")
		http.Error(w, msgUnavailable, http.StatusServiceUnavailable)
		return
	}
	hostKey := klog.KRef(ref.Namespace, ref.Name)
	id := agentIdentity{Namespace: ref.Namespace, Host: ref.Name, UID: ref.UID}
	cert, serial, err := s.signAgentCert(csr, ref.Namespace, ref.Name, ref.UID)
	if err != nil {
		s.Log.Error(err, "Cannot sign an agent certificate", "host", hostKey)
		http.Error(w, "cannot sign the certificate", http.StatusInternalServerError)
		return
	}
	now := metav1.NewTime(s.Now().Truncate(time.Second))
	// The new certificate is the only one the Host accepts from now on: any earlier one (a
	// former registration's, or a copy of it) is shut out.
	_, err = s.updateHost(ctx, id, func(h *basaltv1.Host) {
		h.Status.Agent.Version = req.AgentVersion
		h.Status.Agent.LastSeen = &now
		h.Status.Agent.CertificateSerial, h.Status.Agent.PreviousCertificateSerial = serial, ""
	})
	if errors.Is(err, errHostGone) {
		s.Log.Info("Refused registration", "host", hostKey, "remote", r.RemoteAddr, "reason", "HostGone")
		s.reject(w, r, http.StatusUnauthorized, "invalid_token", msgInvalidToken)
		return
	}
	if err != nil {
		// The token is spent; the Host controller issues a new one.
		s.Log.Error(err, "Cannot record the registration", "host", hostKey)
		http.Error(w, msgUnavailable, http.StatusServiceUnavailable)
		return
	}
	registrationsTotal.Inc()
	s.Log.Info("Agent registered", "host", hostKey, "version", req.AgentVersion, "remote", r.RemoteAddr)
	// The Host's agent has its identity now: any other token issued for it (scripts fetched
	// more than once, or by someone else) can only serve an impostor.
	s.revokeTokens(ctx, ref, "Registered")
	writeJSON(w, http.StatusOK, protocol.RegisterResponse{Certificate: cert, Namespace: ref.Namespace, Host: ref.Name})
}

// handleRenew signs a new client certificate for the Host the presented certificate speaks for
// (still existing, same UID), for the key of the CSR, once protocol.MinRenewFraction of the
// presented certificate's lifetime has passed.
func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request) {
	id, ok := s.authenticate(w, r)
	if !ok || !s.authorizeHost(w, r, id) {
		return
	}
	csr, err := decodeRenew(http.MaxBytesReader(w, r.Body, protocol.MaxRequestBytes))
	if err != nil {
		s.badBody(w, r, err)
		return
	}
	leaf := r.TLS.PeerCertificates[0]
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	if due := leaf.NotBefore.Add(time.Duration(float64(life) * protocol.MinRenewFraction)); s.Now().Before(due) {
		s.reject(w, r, http.StatusConflict, "too_early", fmt.Sprintf("this certificate is renewed from %s on", due.UTC().Format(time.RFC3339)))
		return
	}
	if caEnd := s.agentCA.cert.NotAfter; caEnd.Sub(s.Now()) < s.ClientCertValidity/3 {
		// A certificate capped by the CA would be due again at once: agents would renew in a loop.
		s.Log.Error(nil, "Refused an agent renewal: the agent CA expires soon and is not rotated", "host", id.String(), "caNotAfter", caEnd)
		http.Error(w, fmt.Sprintf("the agent CA expires at %s: it must be rotated before certificates are renewed", caEnd.UTC().Format(time.RFC3339)), http.StatusServiceUnavailable)
		return
	}
	cert, serial, err := s.signAgentCert(csr, id.Namespace, id.Host, id.UID)
	if err != nil {
		s.Log.Error(err, "Cannot sign an agent certificate", "host", id.String())
		http.Error(w, "cannot sign the certificate", http.StatusInternalServerError)
		return
	}
	// Only the last certificate issued is renewed (not the one before it, which authorizeHost
	// still accepts): of two copies of one identity, the first to renew keeps it.
	last := true
	_, err = s.updateHost(r.Context(), id, func(h *basaltv1.Host) {
		a := &h.Status.Agent
		if a.CertificateSerial != "" && a.CertificateSerial != id.Serial {
			last = false
			return
		}
		a.CertificateSerial, a.PreviousCertificateSerial = serial, id.Serial
	})
	switch {
	case errors.Is(err, errHostGone):
		s.reject(w, r, http.StatusForbidden, "host_gone", msgForbidden)
		return
	case err != nil:
		s.Log.Error(err, "Cannot record a renewed agent certificate", "host", id.String())
		http.Error(w, msgUnavailable, http.StatusServiceUnavailable)
		return
	case !last:
		s.superseded(w, r, id)
		return
	}
	renewalsTotal.Inc()
	s.Log.Info("Agent certificate renewed", "host", id.String(), "previousNotAfter", leaf.NotAfter.UTC().Format(time.RFC3339))
	writeJSON(w, http.StatusOK, protocol.RegisterResponse{Certificate: cert, Namespace: id.Namespace, Host: id.Host})
}

// revokeTokens revokes every outstanding bootstrap token of host. A failure is logged, not
// returned: the agent's request succeeded, and the tokens still expire.
func (s *Server) revokeTokens(ctx context.Context, host tokens.HostRef, reason string) {
	if err := s.tokens.Revoke(ctx, host); err != nil {
		s.Log.Error(err, "Cannot revoke the Host's other bootstrap tokens", "host", klog.KRef(host.Namespace, host.Name), "reason", reason)
		return
	}
	s.Log.V(1).Info("Revoked the Host's other bootstrap tokens", "host", klog.KRef(host.Namespace, host.Name), "reason", reason)
}

// handlePlan serves the caller's Plan, long-polling while its hash equals ?hash=.
//
//	stored hash ≠ ?hash=          → 200 PlanResponse
//	no Plan stored, ?hash= set    → 404 (the Plan was withdrawn)
//	equal (or both empty)         → wait up to ?wait= (≤ protocol.MaxPlanWait) for a change, then 304
func (s *Server) handlePlan(w http.ResponseWriter, r *http.Request) {
	id, ok := s.authenticate(w, r)
	if !ok || !s.authorizeHost(w, r, id) {
		return
	}
	q := r.URL.Query()
	have := q.Get(protocol.QueryHash)
	if have != "" && !artifacts.IsSHA256(have) {
		s.reject(w, r, http.StatusBadRequest, "bad_request", "hash must be 64 lowercase hex digits")
		return
	}
	var wait time.Duration
	if v := q.Get(protocol.QueryWait); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			s.reject(w, r, http.StatusBadRequest, "bad_request", "wait must be a non-negative Go duration, e.g. 30s")
			return
		}
		wait = min(d, protocol.MaxPlanWait)
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + 30*time.Second))

	key := id.String()
	deadline := time.Now().Add(wait)
	for {
		woken := s.plans.wait(key) // before the read, so a change after it is not missed
		sec, err := s.storedPlan(r.Context(), id)
		if err != nil {
			if r.Context().Err() == nil {
				s.Log.Error(err, "Cannot read the Plan", "host", key)
				http.Error(w, msgUnavailable, http.StatusServiceUnavailable)
			}
			return
		}
		// No Plan stored means the empty Plan: a host no Machine uses runs nothing of Basalt's.
		// A host that comes back after its Machine was deleted without it (the agent was
		// silent) thus stops the old node's services and removes what they wrote.
		// An agent that never applied a Plan (no hash) has nothing to stop: it is told nothing
		// changed, as before.
		current, raw := emptyPlanHash(id.Host), []byte(nil)
		if sec == nil && have == "" {
			current = ""
		}
		if sec != nil {
			current, raw = sec.Annotations[planstore.AnnotationPlanHash], sec.Data[planstore.PlanKey]
		}
		if current != have {
			if sec == nil {
				raw = emptyPlanJSON(id.Host)
			}
			if !json.Valid(raw) {
				s.Log.Error(errors.New("invalid JSON"), "Stored Plan is unreadable", "host", key, "secret", klog.KObj(sec))
				http.Error(w, "the stored Plan is unreadable", http.StatusInternalServerError)
				return
			}
			w.Header().Set(protocol.HeaderPlanHash, current)
			writeJSON(w, http.StatusOK, struct {
				Hash string          `json:"hash"`
				Plan json.RawMessage `json:"plan"`
			}{current, raw})
			return
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			w.Header().Set(protocol.HeaderPlanHash, current)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		timer := time.NewTimer(remaining)
		select {
		case <-woken:
		case <-timer.C:
		case <-r.Context().Done():
			timer.Stop()
			return
		}
		timer.Stop()
	}
}

func emptyPlanHash(host string) string { return plan.Empty(host).Hash() }

func emptyPlanJSON(host string) []byte {
	raw, err := json.Marshal(plan.Empty(host))
	if err != nil {
		panic(err) // a struct of strings always marshals
	}
	return raw
}

// storedPlan returns the Plan Secret of the Host from the watch cache, or nil when there is none.
func (s *Server) storedPlan(ctx context.Context, id agentIdentity) (*corev1.Secret, error) {
	if s.planCache == nil {
		return nil, errors.New("the Plan watch is not running")
	}
	sec := &corev1.Secret{}
	err := s.planCache.Get(ctx, client.ObjectKey{Namespace: id.Namespace, Name: planstore.PlanSecretName(id.Host)}, sec)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if sec.Type != planstore.PlanSecretType || sec.Annotations[planstore.AnnotationHost] != id.Host {
		return nil, nil
	}
	return sec, nil
}

// handleStatus records a status report on the caller's Host and on the Machine consuming it.
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	id, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	st, err := decodeStatus(http.MaxBytesReader(w, r.Body, protocol.MaxRequestBytes))
	if err != nil {
		s.badBody(w, r, err)
		return
	}
	ctx := r.Context()
	fromDisk, accepted := false, true
	host, err := s.updateHost(ctx, id, func(h *basaltv1.Host) {
		if accepted = certificateAccepted(h, id.Serial); !accepted {
			return
		}
		wasOnDisk := h.Status.Agent.Root != nil
		s.applyHostReport(h, st)
		fromDisk = !wasOnDisk && h.Status.Agent.Root != nil
	})
	if errors.Is(err, errHostGone) {
		s.Log.Info("Refused status from the agent of a Host that is gone", "host", id.String(), "reason", "HostGone")
		s.reject(w, r, http.StatusForbidden, "host_gone", msgForbidden)
		return
	}
	if err != nil {
		s.Log.Error(err, "Cannot record the status of a Host", "host", id.String())
		http.Error(w, msgUnavailable, http.StatusServiceUnavailable)
		return
	}
	if !accepted {
		s.superseded(w, r, id)
		return
	}
	closeIfReplaced(w, host, id)
	if fromDisk {
		// The agent now runs from the root filesystem on the Host's disk, with the identity
		// it registered with: the token of the script that booted it there is not needed.
		s.revokeTokens(ctx, tokens.HostRef{Namespace: id.Namespace, Name: id.Host, UID: id.UID}, "RunsFromDisk")
	}
	if ref := host.Status.ConsumerRef; ref != nil {
		if err := s.updateMachine(ctx, id, ref.Name, st); err != nil {
			s.Log.Error(err, "Cannot record the status of a Machine", "host", id.String(), "machine", ref.Name)
			http.Error(w, msgUnavailable, http.StatusServiceUnavailable)
			return
		}
	}
	for _, step := range st.Steps {
		if !step.OK {
			s.Log.V(1).Info("Agent reports a failed step", "host", id.String(), "step", step.Step, "error", step.Error)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// applyHostReport writes a report into a Host's status. lastSeen moves whenever something else
// changed, and otherwise at most every StatusWriteInterval.
func (s *Server) applyHostReport(h *basaltv1.Host, st *protocol.Status) {
	before := h.Status.DeepCopy()
	h.Status.Agent.Version = st.AgentVersion
	h.Status.Agent.PlanHash = st.PlanHash
	h.Status.Agent.Root = nil
	if r := st.Root; r != nil {
		h.Status.Agent.Root = &basaltv1.AgentRoot{Image: r.Image, Disk: r.Disk}
	}
	h.Status.Agent.Written = nil
	if r := st.Written; r != nil {
		h.Status.Agent.Written = &basaltv1.AgentRoot{Image: r.Image, Disk: r.Disk}
	}
	h.Status.Agent.Wiped = nil
	if r := st.Wiped; r != nil {
		h.Status.Agent.Wiped = &basaltv1.AgentRoot{Image: r.Image, Disk: r.Disk}
	}
	if st.Hardware != nil {
		h.Status.Hardware = convertHardware(st.Hardware)
		if st.Hardware.OS != nil {
			h.Status.OS = convertOS(st.Hardware.OS)
		}
	}
	now := s.Now()
	last := h.Status.Agent.LastSeen
	if !apiequality.Semantic.DeepEqual(before, &h.Status) || last == nil || now.Sub(last.Time) >= s.StatusWriteInterval {
		t := metav1.NewTime(now.Truncate(time.Second))
		h.Status.Agent.LastSeen = &t
	}
}

// updateHost applies mutate to the latest Host of id and patches its status with an optimistic
// lock, retrying on conflict. It returns errHostGone when the Host is missing or has another UID.
func (s *Server) updateHost(ctx context.Context, id agentIdentity, mutate func(*basaltv1.Host)) (*basaltv1.Host, error) {
	var out *basaltv1.Host
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		h := &basaltv1.Host{}
		if err := s.APIReader.Get(ctx, client.ObjectKey{Namespace: id.Namespace, Name: id.Host}, h); err != nil {
			if apierrors.IsNotFound(err) {
				return errHostGone
			}
			return err
		}
		if h.UID != id.UID {
			return errHostGone
		}
		before := h.DeepCopy()
		mutate(h)
		out = h
		if apiequality.Semantic.DeepEqual(before.Status, h.Status) {
			return nil
		}
		return s.Client.Status().Patch(ctx, h, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
	})
	return out, err
}

// updateMachine records the applied Plan hash, the hash being applied, the failed steps of the
// last apply and component health on the Machine consuming the Host, if that Machine still names
// the Host. Every report is a full report: one whose steps all succeeded (or that has none)
// clears failedSteps, one without an applying hash clears applyingPlanHash.
func (s *Server) updateMachine(ctx context.Context, id agentIdentity, name string, st *protocol.Status) error {
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		m := &basaltv1.Machine{}
		err := s.APIReader.Get(ctx, client.ObjectKey{Namespace: id.Namespace, Name: name}, m)
		if apierrors.IsNotFound(err) {
			return nil // the consumer is gone; the Host controller releases the Host
		}
		if err != nil {
			return err
		}
		if m.Spec.HostRef == nil || m.Spec.HostRef.Name != id.Host {
			return nil // status.consumerRef is stale: this Machine is not on this Host
		}
		before := m.DeepCopy()
		m.Status.PlanHash = st.PlanHash
		m.Status.ApplyingPlanHash = st.ApplyingHash
		m.Status.FailedSteps = convertFailedSteps(st.Steps)
		components := convertComponents(st.Components)
		if !onlyProbeTimesChanged(m.Status.Components, components, s.Now(), s.StatusWriteInterval) {
			m.Status.Components = components
		}
		if apiequality.Semantic.DeepEqual(before.Status, m.Status) {
			return nil
		}
		return s.Client.Status().Patch(ctx, m, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
	})
}

// onlyProbeTimesChanged is true when next differs from cur only in probe times that are younger
// than interval, so rewriting them would only churn the object.
func onlyProbeTimesChanged(cur, next []basaltv1.ComponentHealth, now time.Time, interval time.Duration) bool {
	if len(cur) != len(next) {
		return false
	}
	for i := range cur {
		a, b := cur[i], next[i]
		if a.Name != b.Name || a.Healthy != b.Healthy || a.Message != b.Message {
			return false
		}
		if (a.LastProbeTime == nil) != (b.LastProbeTime == nil) {
			return false
		}
		if a.LastProbeTime != nil && now.Sub(a.LastProbeTime.Time) >= interval {
			return false
		}
	}
	return true
}

// convertHardware maps the agent's facts to the API type. A negative NIC speed (Linux reports -1
// when unknown) is left out.
func convertHardware(h *protocol.Hardware) *basaltv1.Hardware {
	out := &basaltv1.Hardware{
		CPUs:   h.CPUs,
		System: basaltv1.SystemInfo{Vendor: h.System.Vendor, Product: h.System.Product, Serial: h.System.Serial},
	}
	if h.MemoryBytes > 0 {
		out.Memory = resource.NewQuantity(h.MemoryBytes, resource.BinarySI)
	}
	for _, d := range h.Disks {
		disk := basaltv1.Disk{Name: d.Name, Model: d.Model, Serial: d.Serial, WWN: d.WWN, ByPath: d.ByPath, Rotational: d.Rotational}
		if d.SizeBytes > 0 {
			disk.Size = resource.NewQuantity(d.SizeBytes, resource.BinarySI)
		}
		out.Disks = append(out.Disks, disk)
	}
	for _, n := range h.NICs {
		out.NICs = append(out.NICs, basaltv1.NIC{
			Name: n.Name, MAC: strings.ToLower(n.MAC), Addresses: slices.Clone(n.Addresses), SpeedMbps: max(n.SpeedMbps, 0),
		})
	}
	return out
}

// convertOS maps the agent's OS facts to the API type; an unknown cgroup version (0) is left out.
func convertOS(o *protocol.OSFacts) *basaltv1.OSFacts {
	return &basaltv1.OSFacts{Container: ptr.To(o.Container), SystemdPID1: ptr.To(o.SystemdPID1), CgroupVersion: int32(o.CgroupVersion),
		Nameservers: slices.Clone(o.Nameservers)}
}

// Limits of Machine.status.failedSteps (see basaltv1.PlanStepError and the CRD).
const (
	maxFailedSteps     = 32
	maxFailedStepName  = 1024
	maxFailedStepError = 4096
)

// convertFailedSteps keeps the failed steps of a report, in the agent's order (the first
// failures are usually the cause of the later ones), at most maxFailedSteps of them, with names
// and error texts cut to the API's limits as valid UTF-8. It returns nil when no step failed.
func convertFailedSteps(steps []protocol.StepResult) []basaltv1.PlanStepError {
	var out []basaltv1.PlanStepError
	for _, s := range steps {
		if s.OK {
			continue
		}
		if len(out) == maxFailedSteps {
			break
		}
		msg := s.Error
		if msg == "" {
			msg = "failed (the agent gave no error text)"
		}
		out = append(out, basaltv1.PlanStepError{Step: protocol.Clip(s.Step, maxFailedStepName), Error: protocol.Clip(msg, maxFailedStepError)})
	}
	return out
}

// convertComponents maps component health, sorted by name (the list is a map keyed by name).
func convertComponents(in []protocol.ComponentHealth) []basaltv1.ComponentHealth {
	if len(in) == 0 {
		return nil
	}
	out := make([]basaltv1.ComponentHealth, 0, len(in))
	for _, c := range in {
		h := basaltv1.ComponentHealth{Name: c.Name, Healthy: c.Healthy, Message: c.Message}
		if !c.Time.IsZero() {
			t := metav1.NewTime(c.Time.Truncate(time.Second))
			h.LastProbeTime = &t
		}
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b basaltv1.ComponentHealth) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// planLists says whether the Plan stored for the caller's Host lists the artifact digest.
func (s *Server) planLists(ctx context.Context, id agentIdentity, digest string) bool {
	sec, err := s.storedPlan(ctx, id)
	if err != nil || sec == nil {
		return false
	}
	p := &plan.Plan{}
	if err := json.Unmarshal(sec.Data[planstore.PlanKey], p); err != nil {
		return false
	}
	return slices.ContainsFunc(p.Artifacts, func(a plan.Artifact) bool { return a.SHA256 == digest })
}

// handleArtifact serves /v1/artifacts/<sha256> to the agents of Hosts that still exist (with the
// UID of their certificate): a deleted Host's agent gets no more binaries or images.
func (s *Server) handleArtifact(w http.ResponseWriter, r *http.Request) {
	id, ok := s.authenticate(w, r)
	if !ok || !s.authorizeHost(w, r, id) {
		return
	}
	digest := r.PathValue("digest")
	if !artifacts.IsSHA256(digest) {
		s.reject(w, r, http.StatusBadRequest, "bad_request", artifactcache.ErrInvalidDigest.Error())
		return
	}
	if s.Artifacts == nil {
		s.reject(w, r, http.StatusNotFound, "unknown_artifact", "unknown artifact")
		return
	}
	if ref, ok := s.Artifacts.Lookup(digest); ok && ref.Private && !s.planLists(r.Context(), id, digest) {
		// Another host's etcd snapshot: answered like an artifact that does not exist.
		s.Log.Info("Refused a private artifact the Host's Plan does not list", "host", id.String(), "sha256", digest, "reason", "Forbidden")
		s.reject(w, r, http.StatusNotFound, "unknown_artifact", "unknown artifact")
		return
	}
	if reason := s.Artifacts.Serve(w, r, digest); reason != "" {
		rejectedTotal.WithLabelValues(pathLabel(r.URL.Path), reason).Inc()
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "cannot encode the answer", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func validNamespace(s string) bool { return len(validation.IsDNS1123Label(s)) == 0 }

func validName(s string) bool { return len(validation.IsDNS1123Subdomain(s)) == 0 }
