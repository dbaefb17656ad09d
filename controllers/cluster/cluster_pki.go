package cluster

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/controllers/pkisecrets"
	"github.com/basalt-dev/basalt/controllers/topology"
)

// certificateRetry is how soon a Cluster whose PKI could not be ensured is looked at again.
const certificateRetry = time.Minute

// node is a bound Machine with its Host and node IP.
type node struct {
	machine *basaltv1.Machine
	host    *basaltv1.Host
	ip      string
}

// boundNodes returns every Machine of the Cluster bound to a Host with a usable IP, oldest first
// within each role, Machines being deleted included (they keep their certificates until gone).
func (s *scope) boundNodes() (cp, workers []node) {
	for _, g := range s.groupsWithMachines() {
		for _, m := range s.machines[g] {
			if m.Spec.HostRef == nil {
				continue
			}
			h := s.host(m.Spec.HostRef.Name)
			if h == nil || h.Status.ConsumerRef == nil || h.Status.ConsumerRef.Name != m.Name {
				continue
			}
			ip, err := topology.NodeIP(h)
			if err != nil {
				continue // the Machine says why (InvalidHostAddress)
			}
			n := node{machine: m, host: h, ip: ip.String()}
			if m.Spec.Role == basaltv1.RoleControlPlane {
				cp = append(cp, n)
			} else {
				workers = append(workers, n)
			}
		}
	}
	return cp, workers
}

// groupsWithMachines lists the groups that have Machines, the control plane first, then worker
// pools by name.
func (s *scope) groupsWithMachines() []groupKey {
	var keys []groupKey
	for k := range s.machines {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b groupKey) int {
		if a.role != b.role {
			if a.role == basaltv1.RoleControlPlane {
				return -1
			}
			return 1
		}
		return strings.Compare(a.pool, b.pool)
	})
	return keys
}

// host returns the Host of that name from the scope, or nil.
func (s *scope) host(name string) *basaltv1.Host {
	for i := range s.hosts {
		if s.hosts[i].Name == name {
			return &s.hosts[i]
		}
	}
	return nil
}

// reconcileCertificates keeps the cluster's PKI in its Secrets: it loads what is stored, lets
// clusterpki.Ensure issue what is missing, due for renewal or no longer matching the nodes, and
// writes back only the Secrets whose content changed, then the admin kubeconfig. It is safe to
// run after a crash at any point: Ensure keeps everything still valid, so a second run writes
// nothing. The Cluster is looked at again when the first certificate enters its renewal window.
func (r *Reconciler) reconcileCertificates(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	s.endpoint = endpoint(s)
	if s.endpoint == nil {
		s.pkiReason, s.pkiMessage = basaltv1.ReasonWaitingForEndpoint,
			"spec.controlPlane.endpoint is empty and no control-plane Machine has a Host yet; its address will be the endpoint"
		return ctrl.Result{}, nil
	}
	fail := func(err error) (ctrl.Result, error) {
		s.pkiReason, s.pkiMessage = basaltv1.ReasonCertificatesFailed, err.Error()
		ctrl.LoggerFrom(ctx).Error(err, "Cannot ensure the cluster's PKI", "cluster", klog.KObj(c))
		return ctrl.Result{RequeueAfter: certificateRetry}, nil
	}
	stored, err := pkisecrets.Load(ctx, r.apiReader(), c)
	if err != nil {
		return fail(err)
	}
	cp, workers := s.boundNodes()
	in := clusterpki.Input{
		ClusterName: c.Name,
		Endpoint:    topology.Endpoint(s.endpoint),
		ServiceCIDR: c.Spec.Network.ServiceCIDR,
		DNSDomain:   c.Spec.Network.DNSDomain,
		Validity:    days(c.Spec.Certificates.ValidityDays),
		RenewBefore: days(c.Spec.Certificates.RenewBeforeDays),
		// A renewal asked with basalt.dev/renew-certificates (cluster_renewal.go).
		RenewIssuedBefore: r.acceptRenewalRequest(s),
	}
	if v := c.Spec.ControlPlane.VirtualIP; v != nil && s.endpoint.Host != v.Address {
		// endpoint names a DNS name for the virtual IP: clients may use either.
		in.ExtraSANs = append(in.ExtraSANs, v.Address)
	}
	var names []string
	for _, n := range cp {
		in.ControlPlane = append(in.ControlPlane, clusterpki.Node{Name: n.machine.Name, IPs: []net.IP{net.ParseIP(n.ip)}})
		names = append(names, n.machine.Name)
	}
	for _, n := range workers {
		in.Workers = append(in.Workers, clusterpki.Node{Name: n.machine.Name, IPs: []net.IP{net.ParseIP(n.ip)}})
		names = append(names, n.machine.Name)
	}
	now := r.now()
	res, err := clusterpki.Ensure(stored.Material, in, now)
	if err != nil {
		return fail(err)
	}
	keys, keyChanged, err := clusterpki.EnsureEncryptionKeys(stored.Encryption)
	if err != nil {
		return fail(err)
	}
	written, deleted, err := stored.Sync(ctx, r.Client, c, res.Material, keys, names)
	if err != nil {
		return fail(err)
	}
	if len(written) > 0 || len(deleted) > 0 {
		var why []string
		for _, ch := range res.Changed {
			why = append(why, ch.Name+" ("+ch.Reason+")")
		}
		if keyChanged {
			why = append(why, "encryption key (missing)")
		}
		ctrl.LoggerFrom(ctx).Info("Stored the cluster's PKI", "cluster", klog.KObj(c), "written", written, "deleted", deleted, "reason", strings.Join(why, ", "))
		if len(res.Changed) > 0 {
			r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, "CertificatesIssued", "EnsurePKI", "Issued %d certificate(s) or key(s): %s", len(why), clip(strings.Join(why, ", "), 900))
		}
	}
	if _, err := pkisecrets.SyncKubeconfig(ctx, r.apiReader(), r.Client, c, res.AdminKubeconfig); err != nil {
		return fail(err)
	}
	s.material, s.encryption = res.Material, keys
	c.Status.KubeconfigSecretRef = &basaltv1.LocalObjectReference{Name: pkisecrets.KubeconfigSecretName(c.Name)}
	expiry := metav1.NewTime(res.NextExpiry.Truncate(time.Second))
	c.Status.CertificatesExpireAt = &expiry
	s.pkiMessage = fmt.Sprintf("%d node(s); the first leaf to expire is %s at %s, renewed from %s; the CAs expire at %s",
		len(names), res.NextExpiryName, res.NextExpiry.UTC().Format(time.RFC3339), res.RenewAt.UTC().Format(time.RFC3339),
		res.CAExpiry.UTC().Format(time.RFC3339))
	return ctrl.Result{RequeueAfter: max(res.RenewAt.Sub(now), time.Second)}, nil
}

// days converts a number of days from the spec; zero stays zero (the pki defaults).
func days(n int32) time.Duration { return time.Duration(n) * 24 * time.Hour }

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
