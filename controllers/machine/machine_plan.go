package machine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/agents/planstore"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/components"
	"github.com/basalt-dev/basalt/bootstrap/plan"
	"github.com/basalt-dev/basalt/bootstrap/plan/builder"
	"github.com/basalt-dev/basalt/controllers/artifactsource"
	"github.com/basalt-dev/basalt/controllers/pkisecrets"
	"github.com/basalt-dev/basalt/controllers/rotation"
	"github.com/basalt-dev/basalt/controllers/topology"
)

// planWaitRequeue is how soon a Machine whose Plan misses an input is looked at again.
const planWaitRequeue = 10 * time.Second

// reconcilePlan builds the Plan of the Machine's node from the Cluster's spec, the Host's facts,
// the node's certificates, the artifact set of its version, its pod range, its etcd record and
// its peers, and stores it for the Host's agent (agents/planstore.StorePlan writes only when the hash
// changes). It is rebuilt on every reconcile, so a renewed certificate, a new peer route or a
// promoted etcd learner reaches the node without any other bookkeeping.
//
// When an input is missing it stores nothing and records why (s.planReason), in the order the
// inputs become available. The kubelet is left out of the Plan until the workload cluster has
// the Node object with the pod range Basalt chose (see reconcileNode), so the kubelet adopts
// that Node instead of registering one that kube-controller-manager would give another range.
func (r *Reconciler) reconcilePlan(ctx context.Context, s *scope) (ctrl.Result, error) {
	m, h, c := s.machine, s.host, s.cluster
	if c == nil || !s.hostBound() {
		return ctrl.Result{}, nil
	}
	wait := func(reason, format string, args ...any) (ctrl.Result, error) {
		s.planReason, s.planMessage = reason, fmt.Sprintf(format, args...)
		// Most inputs come with a watch event (the Host, this Machine, the Cluster, a peer);
		// Secrets are not watched, so look again in a while in any case.
		return ctrl.Result{RequeueAfter: planWaitRequeue}, nil
	}
	if h.Status.Agent.LastSeen == nil || h.Status.Hardware == nil {
		return wait(basaltv1.ReasonWaitingForAgent, "the agent of Host %s has not registered and reported its hardware yet", h.Name)
	}
	if h.Status.Provisioning != nil && h.Status.State != basaltv1.HostStateProvisioned {
		// The Host controller owns the Plan while the root image goes on the disk.
		return wait(basaltv1.ReasonWaitingForHost, "Host %s is %s: its agent writes the root image to %s and reboots into it", h.Name, h.Status.State, h.Status.Provisioning.Disk)
	}
	if s.nodeIPErr != nil {
		return wait(basaltv1.ReasonInvalidHostAddress, "%v", s.nodeIPErr)
	}
	if m.Status.PodCIDR == "" {
		return wait(basaltv1.ReasonWaitingForPodCIDR, "the Cluster controller has not allocated a range of %s to this Machine yet", c.Spec.Network.PodCIDR)
	}
	version := topology.MachineVersion(c, m)
	manifest, err := r.artifacts().Manifest(ctx, c.Spec.Artifacts.Mirror, version)
	if err != nil {
		var nf *artifactsource.NotFoundError
		if errors.As(err, &nf) {
			return wait(basaltv1.ReasonArtifactSetNotFound, "%v", err)
		}
		return ctrl.Result{}, err
	}
	cp := m.Spec.Role == basaltv1.RoleControlPlane
	material, keys, err := pkisecrets.LoadNode(ctx, r.apiReader(), c, m.Name)
	if err != nil {
		return wait(basaltv1.ReasonWaitingForCertificates, "%v", err)
	}
	certs, err := material.ForNode(m.Name, cp)
	if err != nil || len(keys.Write.Secret) == 0 {
		return wait(basaltv1.ReasonWaitingForCertificates, "the Cluster controller has not issued this node's certificates and keys yet")
	}
	regs, err := registries(ctx, r.apiReader(), c)
	if err != nil {
		var rse *registrySecretError
		if errors.As(err, &rse) {
			return wait(basaltv1.ReasonRegistrySecretInvalid, "%v", err)
		}
		return ctrl.Result{}, err
	}
	in := builder.Input{
		ClusterName: c.Name,
		Version:     version,
		Role:        builder.RoleWorker,
		Host:        h.Name,
		Node:        builder.Node{Name: m.Name, IP: s.nodeIP.String(), PodCIDR: m.Status.PodCIDR},
		Network: builder.Network{
			PodCIDR: c.Spec.Network.PodCIDR, ServiceCIDR: c.Spec.Network.ServiceCIDR,
			NodeCIDRMaskSize: int(c.Spec.Network.NodeCIDRMaskSize), DNSDomain: c.Spec.Network.DNSDomain,
			CNI: builder.CNI(c.Spec.Network.CNI),
		},
		Encryption:   rotation.EncryptionParams(keys),
		Certificates: certs,
		Artifacts:    manifest,
		HostFacts:    topology.HostFacts(h),
		APIServers:   topology.APIServers(s.peers),
		Registries:   regs,
	}
	if ep := c.Status.ControlPlaneEndpoint; ep != nil {
		in.Endpoint = topology.Endpoint(ep)
	}
	if v := c.Spec.ControlPlane.VirtualIP; v != nil {
		in.VirtualIP = v.Address
	}
	if in.Network.CNI == builder.CNIBridge || in.Network.CNI == "" {
		in.Routes = topology.Routes(s.nodeIP, m.Status.PodCIDR, s.peers)
	}
	fenced := false
	if cp {
		in.Role = builder.RoleControlPlane
		e := m.Status.Etcd
		switch {
		case e == nil && restoreFences(c, m):
			// An etcd restore took this Machine out of the cluster before the restored one
			// starts: its node runs no etcd and no API server (as a worker's) until it joins
			// the restored etcd as a learner.
			fenced, in.Role = true, builder.RoleWorker
		case e == nil:
			return wait(basaltv1.ReasonWaitingForEtcdMember, "waiting for the Cluster controller to make this Machine the first etcd member or add it to etcd as a learner")
		}
	}
	if cp && !fenced {
		e := m.Status.Etcd
		in.Etcd = builder.Etcd{Join: e.Join, Learner: e.Learner, QuotaBackendBytes: topology.EtcdQuota(s.cluster), Epoch: e.Epoch}
		if rs := e.Restore; rs != nil {
			in.Etcd.Restore = &builder.EtcdRestore{SnapshotSHA256: rs.SnapshotSHA256, SnapshotSize: rs.SnapshotSize,
				FetchSnapshot: !rs.Done && !rs.FromMemberData, FromMemberData: rs.FromMemberData, DataEpoch: rs.DataEpoch}
		}
		for _, p := range e.InitialCluster {
			in.Etcd.Members = append(in.Etcd.Members, components.EtcdMember{Name: p.Name, PeerURL: p.PeerURL})
		}
	}
	if len(in.APIServers) == 0 && (!cp || fenced || in.Etcd.Learner) {
		return wait(basaltv1.ReasonWaitingForControlPlane, "no control-plane Machine runs kube-apiserver yet, so the node-local load balancer has no backend")
	}
	p, err := builder.Build(in)
	if err != nil {
		return wait(basaltv1.ReasonPlanInvalid, "%v", err)
	}
	p.OS = topology.OSImage(h)
	p.Cluster = &plan.ClusterRef{Namespace: c.Namespace, Name: c.Name, UID: string(c.UID)}
	if !s.nodeRegistered {
		// Once a Plan with the kubelet is stored the kubelet stays, even while the workload
		// cluster cannot be asked about the Node (an API server down must not stop kubelets).
		stored, _, err := planstore.LoadPlan(ctx, r.apiReader(), m.Namespace, h.Name)
		if err != nil && !errors.Is(err, planstore.ErrNoPlan) {
			return ctrl.Result{}, err
		}
		if stored == nil || !slices.ContainsFunc(stored.Services, func(svc plan.Service) bool { return svc.Name == builder.ServiceKubelet }) {
			p.Services = slices.DeleteFunc(p.Services, func(svc plan.Service) bool { return svc.Name == builder.ServiceKubelet })
		}
	}
	var restarts []string
	if cp && !fenced {
		ro, err := r.holdRollout(ctx, s, p)
		if err != nil {
			return ctrl.Result{}, err
		}
		defer ro.unlock()
		if ro.wait != "" {
			// The node keeps running the stored Plan, applied and healthy, until its turn.
			s.planHash, s.learner = ro.storedHash, !hasService(ro.stored, builder.ServiceAPIServer)
			for _, svc := range ro.stored.Services {
				s.planServices = append(s.planServices, svc.Name)
			}
			s.rolloutWait = rolloutMessage(ro.restarts, ro.wait)
			return ctrl.Result{RequeueAfter: rolloutRequeue}, nil
		}
		restarts = ro.restarts
	}
	hash, changed, err := planstore.StorePlan(ctx, r.planClient(), m.Namespace, h.Name, p)
	if err != nil {
		var status apierrors.APIStatus
		switch {
		case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err):
			return ctrl.Result{RequeueAfter: conflictRequeue}, nil // a concurrent write: read again
		case errors.As(err, &status):
			return ctrl.Result{}, err
		}
		return wait(basaltv1.ReasonPlanInvalid, "%v", err) // refused before any write: invalid or too large
	}
	s.planHash = hash
	s.learner = cp && in.Etcd.Learner
	for _, svc := range p.Services {
		s.planServices = append(s.planServices, svc.Name)
	}
	if changed {
		ctrl.LoggerFrom(ctx).Info("Stored the node's Plan", "machine", klog.KObj(m), "host", klog.KObj(h), "hash", hash,
			"services", s.planServices, "kubelet", s.nodeRegistered, "restarts", restarts)
		r.Recorder.Eventf(m, h, corev1.EventTypeNormal, "PlanStored", "StorePlan", "Stored Plan %s for Host %s (%s)%s", short(hash), h.Name,
			strings.Join(s.planServices, ", "), restartNote(restarts))
	}
	return ctrl.Result{}, nil
}

// observePeers reads the other Machines of the Cluster and their Hosts' IPs into the scope.
// Machines being deleted stay peers until they are gone: their node may still serve.
func (r *Reconciler) observePeers(ctx context.Context, s *scope) error {
	if s.cluster == nil {
		return nil
	}
	ml := &basaltv1.MachineList{}
	if err := r.Client.List(ctx, ml, client.InNamespace(s.machine.Namespace), client.MatchingLabels{basaltv1.LabelClusterName: s.cluster.Name}); err != nil {
		return err
	}
	hl := &basaltv1.HostList{}
	if err := r.Client.List(ctx, hl, client.InNamespace(s.machine.Namespace)); err != nil {
		return err
	}
	for i := range ml.Items {
		if ml.Items[i].Name == s.machine.Name {
			ml.Items[i] = *s.machine
		}
	}
	s.peers = topology.Peers(ml.Items, hl.Items)
	for i := range s.peers {
		if s.peers[i].Machine.Name == s.machine.Name {
			s.peers[i].Machine = s.machine // this reconcile's view of itself
		}
	}
	return nil
}

// apiServerUp says whether some control-plane Machine of the cluster runs kube-apiserver and its
// agent reports it healthy.
func (s *scope) apiServerUp() bool {
	for _, p := range s.peers {
		if topology.RunsAPIServer(p.Machine) && topology.ComponentHealthy(p.Machine, topology.ComponentAPIServer) {
			return true
		}
	}
	return false
}

// short is the first 12 digits of a hash, for messages.
func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

// restoreFences says whether an etcd restore in progress keeps control-plane Machine m out of
// etcd: the Cluster controller cleared its record (Restoring) and it is not the Machine that
// restores. Once the restore completed, the Machine waits to join as a learner instead, keeping
// the fenced Plan it has.
func restoreFences(c *basaltv1.Cluster, m *basaltv1.Machine) bool {
	st := c.Status.EtcdRestore
	return st != nil && st.Phase == basaltv1.RestorePhaseRestoring && st.Machine != m.Name
}

// restartNote names the rolling services a stored Plan restarts, for the PlanStored event.
func restartNote(restarts []string) string {
	if len(restarts) == 0 {
		return ""
	}
	return "; restarts " + strings.Join(restarts, " and ") + " (this control-plane node's turn)"
}
