package cluster_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/test/envtest"
)

func addonStatus(c *basaltv1.Cluster, name string) *basaltv1.AddonStatus {
	for i := range c.Status.Addons {
		if c.Status.Addons[i].Name == name {
			return &c.Status.Addons[i]
		}
	}
	return nil
}

func managedBy(obj client.Object, manager string) bool {
	return slices.ContainsFunc(obj.GetManagedFields(), func(f metav1.ManagedFieldsEntry) bool { return f.Manager == manager })
}

// TestAddons drives the add-on path against a real API server, which also plays the workload
// cluster: the built-in CoreDNS is applied with the image of the artifact set and the control
// plane Host's nameservers as upstreams, Ready waits for a ready DNS endpoint, and user add-ons
// from a ConfigMap and a Secret are applied, reported, re-applied on change, pruned, and refused
// with a message naming the document when they are broken.
func TestAddons(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	h := startControllers(t, ns)
	runAgents(t, ns, h.etcd)
	cp := createHost(t, ns, hostInput{name: "cp-0", labels: cpLabels, address: "10.0.7.10", inspected: true})
	env.UpdateHostStatus(t, cp, func(h *basaltv1.Host) {
		h.Status.OS = &basaltv1.OSFacts{Nameservers: []string{"192.0.2.53", "2001:db8::53"}}
	})
	c := newCluster(ns, "dns", 1, 0)
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	got := waitClusterReady(t, c, wait)
	if err := conditionIs(got.Status.Conditions, basaltv1.ClusterAddonsReady, metav1.ConditionTrue, basaltv1.ReasonAddonsApplied); err != nil {
		t.Fatal(err)
	}
	st := addonStatus(got, basaltv1.AddonDNS)
	if st == nil || st.Revision == "" || st.LastError != "" || st.AppliedAt == nil || len(st.Objects) != 7 {
		t.Fatalf("status.addons dns: %+v", st)
	}

	// What landed in the workload cluster.
	dep := &appsv1.Deployment{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "coredns"}, dep); err != nil {
		t.Fatal(err)
	}
	if img := dep.Spec.Template.Spec.Containers[0].Image; !strings.HasPrefix(img, "basalt.dev/coredns:") || *dep.Spec.Replicas != 2 || !managedBy(dep, "basalt-addons") {
		t.Errorf("coredns Deployment: image %s, %d replicas, managers %v", img, *dep.Spec.Replicas, dep.ManagedFields)
	}
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "coredns"}, cm); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cm.Data["Corefile"], "forward . 192.0.2.53 2001:db8::53 {") || !strings.Contains(cm.Data["Corefile"], "kubernetes cluster.local in-addr.arpa") {
		t.Errorf("Corefile does not forward to the control-plane Host's nameservers:\n%s", cm.Data["Corefile"])
	}
	svc := &corev1.Service{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "kube-dns"}, svc); err != nil || svc.Spec.ClusterIP != "10.96.0.10" {
		t.Errorf("kube-dns Service: %v %v", svc.Spec.ClusterIP, err)
	}

	// DNS not answering: the Cluster is not Ready, and says why.
	setDNSReady(t, false)
	touch(t, c)
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if err := conditionIs(got.Status.Conditions, basaltv1.ClusterAddonsReady, metav1.ConditionFalse, basaltv1.ReasonDNSNotReady); err != nil {
			return err
		}
		return conditionIs(got.Status.Conditions, basaltv1.ConditionReady, metav1.ConditionFalse, basaltv1.ReasonDNSNotReady)
	})
	setDNSReady(t, true)
	waitClusterReady(t, c, wait)

	// metrics-server: applied with a serving certificate of the cluster CA for its Service name,
	// the APIService verifies it with that CA, and the Cluster waits for the API to be Available
	// (never, on the test API server: no metrics-server runs behind it).
	updateCluster(t, c, func(c *basaltv1.Cluster) { c.Spec.Addons.Metrics.Disabled = false })
	t.Cleanup(func() {
		api := &unstructured.Unstructured{}
		api.SetAPIVersion("apiregistration.k8s.io/v1")
		api.SetKind("APIService")
		api.SetName("v1beta1.metrics.k8s.io")
		_ = env.Client.Delete(context.Background(), api)
	})
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if st := addonStatus(got, basaltv1.AddonMetrics); st == nil || st.Revision == "" || st.LastError != "" {
			return fmt.Errorf("status.addons metrics: %+v", st)
		}
		return conditionIs(got.Status.Conditions, basaltv1.ClusterAddonsReady, metav1.ConditionFalse, basaltv1.ReasonMetricsNotReady)
	})
	checkMetricsServing(t, ns, c.Name)
	updateCluster(t, c, func(c *basaltv1.Cluster) { c.Spec.Addons.Metrics.Disabled = true })
	waitClusterReady(t, c, wait)

	// Local storage: the provisioner and the default StorageClass are applied, and the Cluster
	// waits for the provisioner (never available here: no pods run on the test API server).
	updateCluster(t, c, func(c *basaltv1.Cluster) { c.Spec.Addons.Storage.Disabled = false })
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if st := addonStatus(got, basaltv1.AddonStorage); st == nil || st.Revision == "" || st.LastError != "" {
			return fmt.Errorf("status.addons storage: %+v", st)
		}
		return conditionIs(got.Status.Conditions, basaltv1.ClusterAddonsReady, metav1.ConditionFalse, basaltv1.ReasonStorageNotReady)
	})
	sc := &storagev1.StorageClass{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "local-path"}, sc); err != nil {
		t.Fatal(err)
	}
	if sc.Annotations["storageclass.kubernetes.io/is-default-class"] != "true" || sc.VolumeBindingMode == nil || *sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
		t.Errorf("StorageClass local-path: %v %v", sc.Annotations, sc.VolumeBindingMode)
	}
	updateCluster(t, c, func(c *basaltv1.Cluster) { c.Spec.Addons.Storage.Disabled = true })
	waitClusterReady(t, c, wait)

	// spec.addons.dns.upstreams wins over the Hosts' nameservers; a new Corefile rolls the pods.
	digest := dep.Spec.Template.Annotations["basalt.dev/corefile-digest"]
	updateCluster(t, c, func(c *basaltv1.Cluster) { c.Spec.Addons.DNS.Upstreams = []string{"198.51.100.53:5353"} })
	envtest.Eventually(t, wait, func() error {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "coredns"}, cm); err != nil {
			return err
		}
		if !strings.Contains(cm.Data["Corefile"], "forward . 198.51.100.53:5353 {") {
			return fmt.Errorf("Corefile:\n%s", cm.Data["Corefile"])
		}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "coredns"}, dep); err != nil {
			return err
		}
		if dep.Spec.Template.Annotations["basalt.dev/corefile-digest"] == digest {
			return fmt.Errorf("the pod template still has the old Corefile digest")
		}
		return nil
	})

	// User add-ons: one from a ConfigMap, one from a Secret.
	demoNS := "addon-" + ns
	manifests := func(objs ...string) string {
		y := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + demoNS + "\n"
		for _, o := range objs {
			y += "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + o + "\n  namespace: " + demoNS + "\ndata:\n  from: addon\n"
		}
		return y
	}
	src := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}, Data: map[string]string{"b.yaml": manifests("one", "two")}}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"},
		Data: map[string][]byte{"s.yaml": []byte("apiVersion: v1\nkind: Secret\nmetadata:\n  name: token\n  namespace: " + demoNS + "\nstringData:\n  token: s3cret\n")}}
	for _, o := range []client.Object{src, sec} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	updateCluster(t, c, func(c *basaltv1.Cluster) {
		c.Spec.Addons.Manifests = []basaltv1.ManifestAddon{
			{Name: "app", ConfigMapRef: &basaltv1.LocalObjectReference{Name: "app"}, Prune: true},
			{Name: "creds", SecretRef: &basaltv1.LocalObjectReference{Name: "creds"}},
		}
	})
	var appRev string
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		for _, name := range []string{"app", "creds"} {
			if st := addonStatus(got, name); st == nil || st.Revision == "" || st.LastError != "" {
				return fmt.Errorf("status.addons %s: %+v", name, st)
			}
		}
		if names := addonNames(got); names != "dns app creds" {
			return fmt.Errorf("status.addons in order %s", names)
		}
		appRev = addonStatus(got, "app").Revision
		for _, n := range []string{"one", "two"} {
			o := &corev1.ConfigMap{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: demoNS, Name: n}, o); err != nil {
				return err
			}
			if !managedBy(o, "basalt-addons") {
				return fmt.Errorf("ConfigMap %s not applied by basalt-addons", n)
			}
		}
		s := &corev1.Secret{}
		return env.Client.Get(ctx, client.ObjectKey{Namespace: demoNS, Name: "token"}, s)
	})

	// A broken document: the add-on reports where, the Cluster is not Ready, nothing else moves.
	src.Data["b.yaml"] = manifests("one") + "---\napiVersion: v1\nmetadata:\n  name: nokind\n"
	if err := env.Client.Update(ctx, src); err != nil {
		t.Fatal(err)
	}
	touch(t, c)
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		st := addonStatus(got, "app")
		if st == nil || !strings.Contains(st.LastError, "ConfigMap app key b.yaml, document 3: an object needs apiVersion and kind") || st.Revision != appRev {
			return fmt.Errorf("status.addons app: %+v", st)
		}
		if err := conditionIs(got.Status.Conditions, basaltv1.ClusterAddonsReady, metav1.ConditionFalse, basaltv1.ReasonAddonApplyFailed); err != nil {
			return err
		}
		return conditionIs(got.Status.Conditions, basaltv1.ConditionReady, metav1.ConditionFalse, basaltv1.ReasonAddonApplyFailed)
	})
	notes, err := clusterEventNotes(ctx, c, "AddonFailed")
	if err != nil || len(notes) == 0 || !strings.Contains(notes[0], "document 3") {
		t.Errorf("AddonFailed events %q (%v)", notes, err)
	}

	// Fixed, with "two" dropped: applied again and "two" pruned.
	src.Data["b.yaml"] = manifests("one")
	if err := env.Client.Update(ctx, src); err != nil {
		t.Fatal(err)
	}
	touch(t, c)
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if st := addonStatus(got, "app"); st == nil || st.LastError != "" || st.Revision == appRev || len(st.Objects) != 2 {
			return fmt.Errorf("status.addons app: %+v", st)
		}
		err = env.Client.Get(ctx, client.ObjectKey{Namespace: demoNS, Name: "two"}, &corev1.ConfigMap{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("ConfigMap two, which the add-on dropped: %w", err)
		}
		return conditionIs(got.Status.Conditions, basaltv1.ConditionReady, metav1.ConditionTrue, "")
	})

	// Removed from the list: the pruning add-on takes its objects along, the other leaves them;
	// DNS turned off: nothing of it is deleted.
	updateCluster(t, c, func(c *basaltv1.Cluster) {
		c.Spec.Addons.Manifests = nil
		c.Spec.Addons.DNS.Disabled = true
	})
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if len(got.Status.Addons) != 0 {
			return fmt.Errorf("status.addons %s", addonNames(got))
		}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: demoNS, Name: "one"}, &corev1.ConfigMap{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("ConfigMap one of the removed pruning add-on: %w", err)
		}
		return conditionIs(got.Status.Conditions, basaltv1.ConditionReady, metav1.ConditionTrue, "")
	})
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: demoNS, Name: "token"}, &corev1.Secret{}); err != nil {
		t.Errorf("the Secret of the removed add-on without prune: %v", err)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "coredns"}, &appsv1.Deployment{}); err != nil {
		t.Errorf("CoreDNS after dns.disabled: %v", err)
	}
}

func addonNames(c *basaltv1.Cluster) string {
	var names []string
	for _, a := range c.Status.Addons {
		names = append(names, a.Name)
	}
	return strings.Join(names, " ")
}

// TestAddonsAdmission: what cannot work is refused with a message that says what to change.
func TestAddonsAdmission(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	for name, tc := range map[string]struct {
		mutate func(*basaltv1.Cluster)
		want   string
	}{
		"reserved name": {func(c *basaltv1.Cluster) {
			c.Spec.Addons.Manifests = []basaltv1.ManifestAddon{{Name: "dns", ConfigMapRef: &basaltv1.LocalObjectReference{Name: "x"}}}
		}, "the names dns, metrics and storage are the built-in add-ons"},
		"two sources": {func(c *basaltv1.Cluster) {
			c.Spec.Addons.Manifests = []basaltv1.ManifestAddon{{Name: "a", ConfigMapRef: &basaltv1.LocalObjectReference{Name: "x"}, SecretRef: &basaltv1.LocalObjectReference{Name: "y"}}}
		}, "exactly one of configMapRef and secretRef"},
		"no source": {func(c *basaltv1.Cluster) {
			c.Spec.Addons.Manifests = []basaltv1.ManifestAddon{{Name: "a"}}
		}, "exactly one of configMapRef and secretRef"},
		"upstream name":     {func(c *basaltv1.Cluster) { c.Spec.Addons.DNS.Upstreams = []string{"dns.example.com"} }, "upstreams must be IP addresses"},
		"upstream bad port": {func(c *basaltv1.Cluster) { c.Spec.Addons.DNS.Upstreams = []string{"192.0.2.1:"} }, "upstreams must be IP addresses"},
		"zero replicas":     {func(c *basaltv1.Cluster) { c.Spec.Addons.DNS.Replicas = 0; c.Spec.Addons.DNS.Upstreams = nil }, ""},
	} {
		c := newCluster(ns, "adm", 1, 0)
		tc.mutate(c)
		err := env.Client.Create(ctx, c)
		if tc.want == "" {
			// replicas 0 is omitted and defaulted to 2.
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if c.Spec.Addons.DNS.Replicas != 2 {
				t.Errorf("%s: replicas defaulted to %d", name, c.Spec.Addons.DNS.Replicas)
			}
			_ = env.Client.Delete(ctx, c)
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
			_ = env.Client.Delete(ctx, c)
		}
	}
	for _, ok := range [][]string{{"192.0.2.1"}, {"192.0.2.1:5353", "[2001:db8::1]:53", "2001:db8::2"}} {
		c := newCluster(ns, "adm-ok", 1, 0)
		c.Spec.Addons.DNS.Upstreams = ok
		if err := env.Client.Create(ctx, c); err != nil {
			t.Errorf("upstreams %v refused: %v", ok, err)
			continue
		}
		_ = env.Client.Delete(ctx, c)
	}
}

// checkMetricsServing: the metrics-server Secret holds a certificate that the APIService's
// caBundle (the cluster CA) verifies for the Service's DNS name.
func checkMetricsServing(t *testing.T, ns, cluster string) {
	t.Helper()
	ctx := context.Background()
	sec := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "metrics-server-tls"}, sec); err != nil {
		t.Fatal(err)
	}
	api := &unstructured.Unstructured{}
	api.SetAPIVersion("apiregistration.k8s.io/v1")
	api.SetKind("APIService")
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "v1beta1.metrics.k8s.io"}, api); err != nil {
		t.Fatal(err)
	}
	bundle, _, _ := unstructured.NestedString(api.Object, "spec", "caBundle")
	ca, err := base64.StdEncoding.DecodeString(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if want := pkiData(t, ns, cluster+"-pki")["ca.crt"]; want != nil && !bytes.Equal(ca, want) {
		t.Errorf("the APIService caBundle is not the cluster CA")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("caBundle holds no certificate")
	}
	blk, _ := pem.Decode(sec.Data["tls.crt"])
	if blk == nil {
		t.Fatal("tls.crt is not PEM")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "metrics-server.kube-system.svc", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Errorf("metrics-server's certificate: %v", err)
	}
	if _, err := tls.X509KeyPair(sec.Data["tls.crt"], sec.Data["tls.key"]); err != nil {
		t.Errorf("metrics-server's key pair: %v", err)
	}
}

// TestChartAddon: a Helm chart from a ConfigMap is installed as a release with its values,
// upgraded when the values or the chart change, reported (release version, chart), a broken
// archive is reported without touching the release, and the release is uninstalled when the
// pruning add-on is removed.
func TestChartAddon(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	h := startControllers(t, ns)
	runAgents(t, ns, h.etcd)
	createHost(t, ns, hostInput{name: "cp-0", labels: cpLabels, address: "10.0.9.10", inspected: true})
	relNS := "chart-" + ns
	src := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "greeter-chart"},
		BinaryData: map[string][]byte{"greeter.tgz": envtest.GreeterChart(t, "0.1.0")}}
	if err := env.Client.Create(ctx, src); err != nil {
		t.Fatal(err)
	}
	c := newCluster(ns, "charts", 1, 0)
	c.Spec.Addons.Charts = []basaltv1.ChartAddon{{Name: "greeter", Namespace: relNS, Prune: true,
		Chart:  basaltv1.ChartSource{ConfigMapRef: &basaltv1.LocalObjectReference{Name: src.Name}, Key: "greeter.tgz"},
		Values: &runtime.RawExtension{Raw: []byte(`{"msg":"hi from values"}`)}}}
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	waitRelease := func(version int32, msg, chartVersion string) string {
		t.Helper()
		var rev string
		envtest.Eventually(t, wait, func() error {
			got, err := get(ctx, c)
			if err != nil {
				return err
			}
			st := addonStatus(got, "greeter")
			if st == nil || st.LastError != "" || st.Release == nil || st.Release.Version != version || st.Release.Namespace != relNS || st.Release.Chart != "greeter-"+chartVersion {
				if st != nil {
					return fmt.Errorf("status.addons greeter: %+v (release %+v)", st, st.Release)
				}
				return fmt.Errorf("status.addons %s", addonNames(got))
			}
			cm := &corev1.ConfigMap{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: relNS, Name: "greeter-greeting"}, cm); err != nil {
				return err
			}
			if cm.Data["msg"] != msg || cm.Data["chart"] != chartVersion {
				return fmt.Errorf("the release's ConfigMap: %v", cm.Data)
			}
			rev = st.Revision
			return conditionIs(got.Status.Conditions, basaltv1.ConditionReady, metav1.ConditionTrue, "")
		})
		return rev
	}
	first := waitRelease(1, "hi from values", "0.1.0")

	// New values: an upgrade, release version 2.
	updateCluster(t, c, func(c *basaltv1.Cluster) {
		c.Spec.Addons.Charts[0].Values = &runtime.RawExtension{Raw: []byte(`{"msg":"changed"}`)}
	})
	second := waitRelease(2, "changed", "0.1.0")
	if second == first {
		t.Error("new values, same revision")
	}
	// A new chart version in the ConfigMap: another upgrade.
	src.BinaryData["greeter.tgz"] = envtest.GreeterChart(t, "0.2.0")
	if err := env.Client.Update(ctx, src); err != nil {
		t.Fatal(err)
	}
	touch(t, c)
	waitRelease(3, "changed", "0.2.0")

	// A broken archive: reported, the release left as it is.
	src.BinaryData["greeter.tgz"] = []byte("not a chart")
	if err := env.Client.Update(ctx, src); err != nil {
		t.Fatal(err)
	}
	touch(t, c)
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		st := addonStatus(got, "greeter")
		if st == nil || !strings.Contains(st.LastError, "loading the chart archive greeter.tgz") || st.Release == nil || st.Release.Version != 3 {
			return fmt.Errorf("status.addons greeter: %+v", st)
		}
		return conditionIs(got.Status.Conditions, basaltv1.ClusterAddonsReady, metav1.ConditionFalse, basaltv1.ReasonAddonApplyFailed)
	})

	// Removed from the list: uninstalled.
	updateCluster(t, c, func(c *basaltv1.Cluster) { c.Spec.Addons.Charts = nil })
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if addonStatus(got, "greeter") != nil {
			return fmt.Errorf("status.addons %s", addonNames(got))
		}
		err = env.Client.Get(ctx, client.ObjectKey{Namespace: relNS, Name: "greeter-greeting"}, &corev1.ConfigMap{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("the uninstalled release's ConfigMap: %w", err)
		}
		return nil
	})
}
