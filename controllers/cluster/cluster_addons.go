package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/addons"
	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/bootstrap/plan/builder"
)

// addonFieldOwner is the server-side apply field manager of everything the add-ons apply.
const addonFieldOwner = "basalt-addons"

// addonResync is how often an add-on whose revision did not change is applied again, so that
// what was changed or deleted in the cluster by hand comes back.
const addonResync = 10 * time.Minute

// addonRecheck is how often a Cluster with user add-ons is looked at again for changed
// ConfigMaps and Secrets (they are read straight from the API server, not watched).
const addonRecheck = time.Minute

// addonWait is how soon add-ons that failed, or DNS that is not ready yet, are looked at again.
const addonWait = 5 * time.Second

// The artifacts of a set holding the built-in add-ons' images.
const (
	imageCoreDNS       = "image-coredns"
	imageMetricsServer = "image-metrics-server"
	imageLocalPath     = "image-local-path-provisioner"
	imageVolumeHelper  = "image-volume-helper"
)

// desiredAddon is one add-on as this reconcile wants it applied.
type desiredAddon struct {
	name  string
	objs  []*unstructured.Unstructured
	prune bool
	// chart is set for a chart add-on, which Helm installs instead of objs.
	chart *chartAddon
	// err says why the add-on could not be read or rendered; objs is nil then.
	err error
}

// reconcileAddons applies the Cluster's add-ons into its workload cluster once an API server is
// up: the built-in dns, metrics and storage (each unless disabled), then spec.addons.manifests
// and spec.addons.charts in order. Manifests are applied with server-side apply when their
// rendered revision changed, when they failed before, and every addonResync; objects a pruning
// add-on no longer holds are deleted. Charts are installed or upgraded with the Helm SDK when
// their revision changed or they failed (applyChart). It records status.addons and what
// updateStatus needs for AddonsReady.
func (r *Reconciler) reconcileAddons(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	if r.Workload == nil || s.material == nil {
		return ctrl.Result{}, nil
	}
	s.addonsRan = true
	if !s.apiServerUp() {
		s.addonsReason, s.addonsMessage = basaltv1.ReasonWaitingForAPIServer, "no kube-apiserver of the cluster is up yet"
		return ctrl.Result{}, nil
	}
	wc, err := r.Workload.For(ctx, c)
	if err != nil {
		// Reported in AddonsReady and looked at again soon; not an error of the reconcile.
		s.addonsReason, s.addonsMessage = basaltv1.ReasonAddonApplyFailed, err.Error()
		return ctrl.Result{RequeueAfter: addonWait}, nil //nolint:nilerr // the error is the condition's message
	}
	wanted := r.desiredAddons(ctx, s)
	prev := map[string]basaltv1.AddonStatus{}
	for _, st := range c.Status.Addons {
		prev[st.Name] = st
	}
	now := r.now()
	var out []basaltv1.AddonStatus
	var failed []string
	for _, a := range wanted {
		st := prev[a.name]
		delete(prev, a.name)
		st.Name = a.name
		st = r.applyAddon(ctx, wc, c, a, st, now)
		if st.LastError != "" {
			failed = append(failed, fmt.Sprintf("%s: %s", st.Name, st.LastError))
		}
		out = append(out, st)
	}
	// Add-ons no longer wanted: a pruning one has its objects deleted first (its entry stays
	// until they are gone); the others are forgotten and their objects left in place.
	for _, name := range addons.SortedKeys(prev) {
		st := prev[name]
		// Turning a built-in add-on off leaves it running: the cluster's pods depend on the DNS
		// until the user's own takes the address over, autoscalers on the metrics API.
		if !st.Prune || name == basaltv1.AddonDNS || name == basaltv1.AddonMetrics || name == basaltv1.AddonStorage {
			continue
		}
		if st.Release != nil {
			if err := r.helmUninstall(ctx, c, name, st.Release); err != nil {
				st.LastError = "uninstalling the removed add-on: " + err.Error()
				failed = append(failed, fmt.Sprintf("%s: %s", st.Name, st.LastError))
				out = append(out, st)
				continue
			}
			r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, "AddonRemoved", "Uninstall", "Uninstalled the Helm release of removed add-on %s", name)
			continue
		}
		if len(st.Objects) == 0 {
			continue
		}
		left, err := deleteObjects(ctx, wc, st.Objects)
		st.Objects = left
		if err != nil {
			st.LastError = "pruning the removed add-on: " + err.Error()
			failed = append(failed, fmt.Sprintf("%s: %s", st.Name, st.LastError))
		}
		if len(left) > 0 {
			out = append(out, st)
		} else {
			r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, "AddonRemoved", "Prune", "Deleted the objects of removed add-on %s", name)
		}
	}
	c.Status.Addons = out

	// Looked at again to apply every addonResync, and sooner to notice changed sources.
	res := ctrl.Result{RequeueAfter: addonResync}
	if len(c.Spec.Addons.Manifests) > 0 || len(c.Spec.Addons.Charts) > 0 {
		res.RequeueAfter = addonRecheck
	}
	if len(failed) > 0 {
		s.addonsReason, s.addonsMessage = basaltv1.ReasonAddonApplyFailed, strings.Join(failed, "; ")
		return ctrl.Result{RequeueAfter: addonWait}, nil
	}
	var ready []string
	if !c.Spec.Addons.DNS.Disabled {
		if msg := dnsReady(ctx, wc); msg != "" {
			s.addonsReason, s.addonsMessage = basaltv1.ReasonDNSNotReady, msg
			return ctrl.Result{RequeueAfter: addonWait}, nil
		}
		ready = append(ready, "cluster DNS")
	}
	if !c.Spec.Addons.Metrics.Disabled {
		if msg := metricsReady(ctx, wc); msg != "" {
			s.addonsReason, s.addonsMessage = basaltv1.ReasonMetricsNotReady, msg
			return ctrl.Result{RequeueAfter: addonWait}, nil
		}
		ready = append(ready, "metrics API")
	}
	if !c.Spec.Addons.Storage.Disabled {
		if msg := deploymentAvailable(ctx, wc, "local-path-storage", "local-path-provisioner"); msg != "" {
			s.addonsReason, s.addonsMessage = basaltv1.ReasonStorageNotReady, msg
			return ctrl.Result{RequeueAfter: addonWait}, nil
		}
		ready = append(ready, "storage")
	}
	s.addonsReady = true
	s.addonsMessage = fmt.Sprintf("%d add-ons applied", len(out))
	if len(ready) > 0 {
		s.addonsMessage += "; " + strings.Join(ready, " and ") + " ready"
	}
	return res, nil
}

// applyAddon applies a when it is due and returns its new status.
func (r *Reconciler) applyAddon(ctx context.Context, wc client.Client, c *basaltv1.Cluster, a desiredAddon, st basaltv1.AddonStatus, now time.Time) basaltv1.AddonStatus {
	if a.err != nil {
		if st.LastError != a.err.Error() {
			r.Recorder.Eventf(c, nil, corev1.EventTypeWarning, "AddonFailed", "Render", "Add-on %s: %v", a.name, a.err)
		}
		st.LastError = a.err.Error()
		return st
	}
	if a.chart != nil {
		return r.applyChart(ctx, c, a, st, now)
	}
	revision := addons.Revision(a.objs)
	due := st.Revision != revision || st.LastError != "" || st.AppliedAt == nil || now.Sub(st.AppliedAt.Time) >= addonResync || st.Prune != a.prune
	if !due {
		return st
	}
	if err := applyObjects(ctx, wc, a.objs); err != nil {
		if st.LastError != err.Error() {
			r.Recorder.Eventf(c, nil, corev1.EventTypeWarning, "AddonFailed", "Apply", "Add-on %s: %v", a.name, err)
		}
		st.LastError = err.Error()
		return st
	}
	applied := make([]basaltv1.AddonObject, 0, len(a.objs))
	for _, u := range a.objs {
		applied = append(applied, basaltv1.AddonObject{APIVersion: u.GetAPIVersion(), Kind: u.GetKind(), Namespace: u.GetNamespace(), Name: u.GetName()})
	}
	if a.prune {
		var gone []basaltv1.AddonObject
		for _, o := range st.Objects {
			if !slices.Contains(applied, o) {
				gone = append(gone, o)
			}
		}
		if left, err := deleteObjects(ctx, wc, gone); err != nil {
			st.LastError = "pruning: " + err.Error()
			// Keep what could not be deleted in the list, so the next try deletes it.
			st.Objects = append(applied, left...)
			return st
		}
	}
	if st.Revision != revision {
		r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, "AddonApplied", "Apply", "Applied add-on %s revision %s (%d objects)", a.name, revision, len(a.objs))
	}
	st.Revision, st.Objects, st.Prune, st.LastError = revision, applied, a.prune, ""
	st.AppliedAt = &metav1.Time{Time: now}
	return st
}

// applyChart installs or upgrades a chart add-on's release when its revision changed or the last
// try failed. Unlike manifests, a chart is not applied again every addonResync: each Helm upgrade
// is a new release revision, and Helm's own three-way merge is what keeps a release's objects.
func (r *Reconciler) applyChart(ctx context.Context, c *basaltv1.Cluster, a desiredAddon, st basaltv1.AddonStatus, now time.Time) basaltv1.AddonStatus {
	if st.Revision == a.chart.revision && st.LastError == "" && st.Release != nil && st.Release.Namespace == a.chart.namespace {
		st.Prune = a.prune
		return st
	}
	rel, err := r.helmRelease(ctx, c, a.name, a.chart)
	if err != nil {
		if st.LastError != err.Error() {
			r.Recorder.Eventf(c, nil, corev1.EventTypeWarning, "AddonFailed", "Helm", "Add-on %s: %v", a.name, err)
		}
		st.LastError = err.Error()
		return st
	}
	r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, "AddonApplied", "Helm", "Applied add-on %s revision %s as Helm release %s version %d (chart %s)",
		a.name, a.chart.revision, a.name, rel.Version, rel.Chart)
	st.Revision, st.Release, st.Prune, st.LastError, st.Objects = a.chart.revision, rel, a.prune, "", nil
	st.AppliedAt = &metav1.Time{Time: now}
	return st
}

// desiredAddons renders the built-in add-ons and reads the user's, in the order they apply.
func (r *Reconciler) desiredAddons(ctx context.Context, s *scope) []desiredAddon {
	c := s.cluster
	var out []desiredAddon
	if !c.Spec.Addons.DNS.Disabled {
		a := desiredAddon{name: basaltv1.AddonDNS, prune: true}
		a.objs, a.err = r.dnsAddon(ctx, c, dnsUpstreams(s))
		out = append(out, a)
	}
	if !c.Spec.Addons.Metrics.Disabled {
		a := desiredAddon{name: basaltv1.AddonMetrics, prune: true}
		a.objs, a.err = r.metricsAddon(ctx, c, s.material)
		out = append(out, a)
	}
	if !c.Spec.Addons.Storage.Disabled {
		a := desiredAddon{name: basaltv1.AddonStorage, prune: true}
		a.objs, a.err = r.storageAddon(ctx, c)
		out = append(out, a)
	}
	for _, m := range s.cluster.Spec.Addons.Manifests {
		a := desiredAddon{name: m.Name, prune: m.Prune}
		a.objs, a.err = r.readManifests(ctx, c.Namespace, m)
		out = append(out, a)
	}
	for _, ch := range c.Spec.Addons.Charts {
		a := desiredAddon{name: ch.Name, prune: ch.Prune}
		a.chart, a.err = r.readChart(ctx, c.Namespace, ch)
		out = append(out, a)
	}
	return out
}

// dnsAddon renders CoreDNS with the image of the artifact set (addonImage).
func (r *Reconciler) dnsAddon(ctx context.Context, c *basaltv1.Cluster, upstreams []string) ([]*unstructured.Unstructured, error) {
	image, err := r.addonImage(ctx, c, imageCoreDNS, "CoreDNS")
	if err != nil {
		return nil, err
	}
	ip, err := clusterDNSIP(c.Spec.Network.ServiceCIDR)
	if err != nil {
		return nil, err
	}
	y, err := addons.CoreDNS(addons.DNSParams{Image: image, ClusterIP: ip, Domain: c.Spec.Network.DNSDomain,
		Replicas: c.Spec.Addons.DNS.Replicas, Upstreams: upstreams})
	if err != nil {
		return nil, err
	}
	return addons.Decode([]addons.Source{{Key: "coredns", Data: y}})
}

// dnsUpstreams are the servers the cluster DNS forwards other names to: spec.addons.dns.upstreams,
// else the nameservers of the control-plane Hosts (spec.os over status.os, as the agents
// reported them), in Machine order, without duplicates, at most three. None means CoreDNS
// answers the cluster's names only (a bed or an air-gapped site without a resolver).
func dnsUpstreams(s *scope) []string {
	if ups := s.cluster.Spec.Addons.DNS.Upstreams; len(ups) > 0 {
		return ups
	}
	var out []string
	for _, m := range s.activeMachines(basaltv1.RoleControlPlane) {
		if m.Spec.HostRef == nil {
			continue
		}
		h := s.host(m.Spec.HostRef.Name)
		if h == nil {
			continue
		}
		ns := []string(nil)
		for _, os := range []*basaltv1.OSFacts{h.Status.OS, h.Spec.OS} { // later wins
			if os != nil && len(os.Nameservers) > 0 {
				ns = os.Nameservers
			}
		}
		for _, a := range ns {
			if !slices.Contains(out, a) && len(out) < 3 {
				out = append(out, a)
			}
		}
	}
	return out
}

// metricsAddon renders metrics-server with the image of the artifact set (as dnsAddon) and its
// serving certificate from the cluster's PKI.
func (r *Reconciler) metricsAddon(ctx context.Context, c *basaltv1.Cluster, material clusterpki.Material) ([]*unstructured.Unstructured, error) {
	image, err := r.addonImage(ctx, c, imageMetricsServer, "metrics-server")
	if err != nil {
		return nil, err
	}
	ca, serving := material[clusterpki.ClusterCA], material[clusterpki.MetricsServerServing]
	y, err := addons.MetricsServer(addons.MetricsParams{Image: image, CA: ca.Cert, Cert: serving.Cert, Key: serving.Key})
	if err != nil {
		return nil, err
	}
	return addons.Decode([]addons.Source{{Key: "metrics-server", Data: y}})
}

// storageAddon renders local-path-provisioner and the local-path StorageClass, with the images
// of the artifact set (as dnsAddon).
func (r *Reconciler) storageAddon(ctx context.Context, c *basaltv1.Cluster) ([]*unstructured.Unstructured, error) {
	provisioner, err := r.addonImage(ctx, c, imageLocalPath, "local-path-provisioner")
	if err != nil {
		return nil, err
	}
	helper, err := r.addonImage(ctx, c, imageVolumeHelper, "volume-helper")
	if err != nil {
		return nil, err
	}
	y, err := addons.LocalStorage(addons.StorageParams{ProvisionerImage: provisioner, HelperImage: helper,
		Path: builder.LocalVolumesDir, Default: c.Spec.Addons.Storage.DefaultClass == nil || *c.Spec.Addons.Storage.DefaultClass})
	if err != nil {
		return nil, err
	}
	return addons.Decode([]addons.Source{{Key: "local-storage", Data: y}})
}

// addonImage is the reference of an add-on's image in the artifact set of the version every
// Machine runs (status.version; spec.version before the first Machine runs), so an add-on moves
// to a new image once an upgrade has reached every node, whose containerd has it preloaded.
func (r *Reconciler) addonImage(ctx context.Context, c *basaltv1.Cluster, artifact, what string) (string, error) {
	version := c.Status.Version
	if version == "" {
		version = c.Spec.Version
	}
	m, err := r.artifacts().Manifest(ctx, c.Spec.Artifacts.Mirror, version)
	if err != nil {
		return "", fmt.Errorf("no %s image: %w", what, err)
	}
	if a, ok := m.Get(artifact); ok && a.Image != "" {
		return a.Image, nil
	}
	return "", fmt.Errorf("the artifact set of %s has no %s image (%s): rebuild it with hack/build-artifacts.sh %s", version, what, artifact, version)
}

// clusterDNSIP is the tenth address of the service range, the kubelet's clusterDNS.
func clusterDNSIP(serviceCIDR string) (string, error) {
	p, err := netip.ParsePrefix(serviceCIDR)
	if err != nil {
		return "", fmt.Errorf("spec.network.serviceCIDR %q: %w", serviceCIDR, err)
	}
	a := p.Masked().Addr()
	for range 10 {
		a = a.Next()
	}
	if !p.Contains(a) {
		return "", fmt.Errorf("spec.network.serviceCIDR %s is too small for the cluster DNS address", serviceCIDR)
	}
	return a.String(), nil
}

// readManifests reads and decodes the ConfigMap or Secret of a user add-on, straight from the
// API server (they are not cached by the manager).
func (r *Reconciler) readManifests(ctx context.Context, ns string, m basaltv1.ManifestAddon) ([]*unstructured.Unstructured, error) {
	cm, sec, err := r.readSource(ctx, ns, m.ConfigMapRef, m.SecretRef)
	if err != nil {
		return nil, err
	}
	var sources []addons.Source
	if cm != nil {
		for _, k := range addons.SortedKeys(cm.Data) {
			sources = append(sources, addons.Source{Key: "ConfigMap " + cm.Name + " key " + k, Data: []byte(cm.Data[k])})
		}
	} else {
		for _, k := range addons.SortedKeys(sec.Data) {
			sources = append(sources, addons.Source{Key: "Secret " + sec.Name + " key " + k, Data: sec.Data[k]})
		}
	}
	objs, err := addons.Decode(sources)
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("holds no object")
	}
	return objs, nil
}

// readSource reads the ConfigMap or the Secret (exactly one is named) of an add-on, straight
// from the API server: add-on sources are not cached by the manager.
func (r *Reconciler) readSource(ctx context.Context, ns string, cmRef, secRef *basaltv1.LocalObjectReference) (*corev1.ConfigMap, *corev1.Secret, error) {
	switch {
	case cmRef != nil:
		cm := &corev1.ConfigMap{}
		if err := r.apiReader().Get(ctx, client.ObjectKey{Namespace: ns, Name: cmRef.Name}, cm); err != nil {
			return nil, nil, fmt.Errorf("reading ConfigMap %s: %w", cmRef.Name, err)
		}
		return cm, nil, nil
	case secRef != nil:
		sec := &corev1.Secret{}
		if err := r.apiReader().Get(ctx, client.ObjectKey{Namespace: ns, Name: secRef.Name}, sec); err != nil {
			return nil, nil, fmt.Errorf("reading Secret %s: %w", secRef.Name, err)
		}
		return nil, sec, nil
	}
	return nil, nil, errors.New("names neither a ConfigMap nor a Secret")
}

// applyObjects applies objs in order with server-side apply, Namespaces and
// CustomResourceDefinitions first so what uses them can follow. A namespaced object without a
// namespace goes to default, as kubectl apply puts it.
func applyObjects(ctx context.Context, wc client.Client, objs []*unstructured.Unstructured) error {
	first := func(u *unstructured.Unstructured) bool {
		return u.GetKind() == "Namespace" || u.GetKind() == "CustomResourceDefinition"
	}
	ordered := slices.Clone(objs)
	slices.SortStableFunc(ordered, func(a, b *unstructured.Unstructured) int {
		switch fa, fb := first(a), first(b); {
		case fa && !fb:
			return -1
		case fb && !fa:
			return 1
		}
		return 0
	})
	for _, u := range ordered {
		if u.GetNamespace() == "" {
			namespaced, err := wc.IsObjectNamespaced(u)
			if err != nil {
				return fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err)
			}
			if namespaced {
				u.SetNamespace(metav1.NamespaceDefault)
			}
		}
		if err := wc.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(addonFieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying %s %s: %w", u.GetKind(), objectName(u.GetNamespace(), u.GetName()), err)
		}
	}
	return nil
}

// deleteObjects deletes objs from the workload cluster and returns those it could not delete.
func deleteObjects(ctx context.Context, wc client.Client, objs []basaltv1.AddonObject) ([]basaltv1.AddonObject, error) {
	var left []basaltv1.AddonObject
	var firstErr error
	for _, o := range objs {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(o.APIVersion)
		u.SetKind(o.Kind)
		u.SetNamespace(o.Namespace)
		u.SetName(o.Name)
		if err := wc.Delete(ctx, u); err != nil && !apierrors.IsNotFound(err) {
			left = append(left, o)
			if firstErr == nil {
				firstErr = fmt.Errorf("deleting %s %s: %w", o.Kind, objectName(o.Namespace, o.Name), err)
			}
		}
	}
	return left, firstErr
}

func objectName(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// dnsReady says why the cluster DNS does not answer yet, or "" when some CoreDNS server is ready
// behind the kube-dns Service: an EndpointSlice of kube-dns has a ready endpoint, which the
// kubelet marks once CoreDNS's /ready says every plugin (the kubernetes one included) is
// serving.
func dnsReady(ctx context.Context, wc client.Client) string {
	list := &discoveryv1.EndpointSliceList{}
	if err := wc.List(ctx, list, client.InNamespace(metav1.NamespaceSystem), client.MatchingLabels{discoveryv1.LabelServiceName: "kube-dns"}); err != nil {
		return "listing the EndpointSlices of kube-dns: " + err.Error()
	}
	for _, sl := range list.Items {
		for _, ep := range sl.Endpoints {
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				return ""
			}
		}
	}
	return "no CoreDNS pod is ready behind the kube-dns Service yet"
}

// metricsReady says why the metrics.k8s.io API is not served yet, or "" when kube-apiserver's
// aggregator reports the APIService Available (it reached metrics-server, whose /readyz needs
// a first scrape of the kubelets).
func metricsReady(ctx context.Context, wc client.Client) string {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("apiregistration.k8s.io/v1")
	u.SetKind("APIService")
	if err := wc.Get(ctx, client.ObjectKey{Name: "v1beta1.metrics.k8s.io"}, u); err != nil {
		return "reading the APIService v1beta1.metrics.k8s.io: " + err.Error()
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Available" {
			if m["status"] == "True" {
				return ""
			}
			return fmt.Sprintf("the metrics.k8s.io API is not available yet: %v (%v)", m["reason"], m["message"])
		}
	}
	return "the metrics.k8s.io API is not available yet"
}

// deploymentAvailable says why a Deployment of the workload cluster has no available replica, or
// "" when it has one.
func deploymentAvailable(ctx context.Context, wc client.Client, ns, name string) string {
	d := &appsv1.Deployment{}
	if err := wc.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
		return fmt.Sprintf("reading Deployment %s/%s: %v", ns, name, err)
	}
	if d.Status.AvailableReplicas < 1 {
		return fmt.Sprintf("Deployment %s/%s has no available replica yet", ns, name)
	}
	return ""
}
