package addons

import (
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

func dnsParams() DNSParams {
	return DNSParams{Image: "basalt.dev/coredns:v1.14.7", ClusterIP: "10.96.0.10", Domain: "cluster.local", Replicas: 2}
}

func TestCorefile(t *testing.T) {
	p := dnsParams()
	got, err := Corefile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kubernetes cluster.local in-addr.arpa ip6.arpa {", "ready\n", "health {", "loop\n", "cache 30"} {
		if !strings.Contains(got, want) {
			t.Errorf("Corefile lacks %q:\n%s", want, got)
		}
	}
	// No upstream: no forward at all, never to the node's resolv.conf (a loopback stub there is
	// CoreDNS itself inside its pod).
	if strings.Contains(got, "forward") || strings.Contains(got, "resolv.conf") {
		t.Errorf("Corefile without upstreams forwards:\n%s", got)
	}
	p.Domain = "k8s.example.org"
	p.Upstreams = []string{"192.0.2.53", "192.0.2.54:5353", "[2001:db8::53]:53"}
	got, err = Corefile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kubernetes k8s.example.org in-addr.arpa", "forward . 192.0.2.53 192.0.2.54:5353 [2001:db8::53]:53 {"} {
		if !strings.Contains(got, want) {
			t.Errorf("Corefile lacks %q:\n%s", want, got)
		}
	}
}

func TestCorefileRefusesBadInput(t *testing.T) {
	for name, mut := range map[string]func(*DNSParams){
		"no image":         func(p *DNSParams) { p.Image = "" },
		"image with space": func(p *DNSParams) { p.Image = "a b" },
		"bad cluster IP":   func(p *DNSParams) { p.ClusterIP = "10.96.0" },
		"bad domain":       func(p *DNSParams) { p.Domain = "Cluster.Local" },
		"domain injection": func(p *DNSParams) { p.Domain = "cluster.local {\n}\n" },
		"zero replicas":    func(p *DNSParams) { p.Replicas = 0 },
		"upstream name":    func(p *DNSParams) { p.Upstreams = []string{"dns.example.com"} },
		"upstream port 0":  func(p *DNSParams) { p.Upstreams = []string{"192.0.2.1:0"} },
		"upstream newline": func(p *DNSParams) { p.Upstreams = []string{"192.0.2.1\n}"} },
	} {
		p := dnsParams()
		mut(&p)
		if _, err := Corefile(p); err == nil {
			t.Errorf("%s: no error", name)
		}
		if _, err := CoreDNS(p); err == nil {
			t.Errorf("%s: CoreDNS rendered", name)
		}
	}
}

// TestCoreDNSManifests decodes the rendered add-on into typed objects: the parts the cluster
// relies on are there and carry the inputs.
func TestCoreDNSManifests(t *testing.T) {
	p := dnsParams()
	p.Replicas = 3
	y, err := CoreDNS(p)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode([]Source{{Key: "coredns", Data: y}})
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	kinds := map[string]bool{}
	for _, u := range objs {
		kinds[u.GetKind()] = true
		switch u.GetKind() {
		case "Deployment":
			d := &appsv1.Deployment{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, d, true); err != nil {
				t.Fatal(err)
			}
			if *d.Spec.Replicas != 3 || d.Spec.Template.Spec.Containers[0].Image != p.Image {
				t.Errorf("Deployment replicas %d image %s", *d.Spec.Replicas, d.Spec.Template.Spec.Containers[0].Image)
			}
			if d.Spec.Template.Spec.DNSPolicy != corev1.DNSDefault {
				t.Errorf("dnsPolicy %s: CoreDNS must not resolve through itself", d.Spec.Template.Spec.DNSPolicy)
			}
			tolerates := false
			for _, tol := range d.Spec.Template.Spec.Tolerations {
				tolerates = tolerates || tol.Key == "node-role.kubernetes.io/control-plane"
			}
			if !tolerates || len(d.Spec.Template.Spec.TopologySpreadConstraints) == 0 {
				t.Errorf("CoreDNS must tolerate the control-plane taint and spread over nodes: %+v", d.Spec.Template.Spec)
			}
			if d.Spec.Template.Annotations["basalt.dev/corefile-digest"] == "" {
				t.Error("no Corefile digest on the pod template: a new Corefile would not roll the pods")
			}
		case "Service":
			s := &corev1.Service{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, s, true); err != nil {
				t.Fatal(err)
			}
			if s.Name != "kube-dns" || s.Spec.ClusterIP != "10.96.0.10" || len(s.Spec.Ports) != 3 {
				t.Errorf("Service %s %s %v", s.Name, s.Spec.ClusterIP, s.Spec.Ports)
			}
		case "ConfigMap":
			cm := &corev1.ConfigMap{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, cm, true); err != nil {
				t.Fatal(err)
			}
			want, _ := Corefile(p)
			if cm.Data["Corefile"] != want {
				t.Errorf("ConfigMap Corefile:\n%s\nwant:\n%s", cm.Data["Corefile"], want)
			}
		}
	}
	for _, k := range []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "PodDisruptionBudget", "Service"} {
		if !kinds[k] {
			t.Errorf("no %s", k)
		}
	}
	// Another Corefile, another digest: the pods roll.
	p.Upstreams = []string{"192.0.2.53"}
	y2, _ := CoreDNS(p)
	objs2, _ := Decode([]Source{{Key: "coredns", Data: y2}})
	if Revision(objs) == Revision(objs2) {
		t.Error("a new upstream left the revision unchanged")
	}
	again, _ := Decode([]Source{{Key: "coredns", Data: y}})
	if Revision(objs) != Revision(again) {
		t.Error("the same manifests gave two revisions")
	}
}

func TestDecode(t *testing.T) {
	objs, err := Decode([]Source{
		{Key: "a.yaml", Data: []byte("# a comment\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: shop\ndata:\n  k: v\n")},
		{Key: "b.json", Data: []byte(`{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "shop"}}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, u := range objs {
		ids = append(ids, ObjectID(u))
	}
	if got := strings.Join(ids, " "); got != "v1/Namespace//shop v1/ConfigMap/shop/settings v1/ServiceAccount//shop" {
		t.Errorf("decoded %s", got)
	}

	for name, tc := range map[string]struct{ data, want string }{
		"no kind":          {"apiVersion: v1\nmetadata:\n  name: x\n", "a.yaml, document 1: an object needs apiVersion and kind"},
		"no name":          {"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: x-\n", "a.yaml, document 1: ConfigMap needs metadata.name"},
		"bad yaml":         {"apiVersion: v1\nkind: [\n", "a.yaml, document 1:"},
		"list":             {"apiVersion: v1\nkind: List\nmetadata:\n  name: x\nitems: []\n", "is a list"},
		"duplicate":        {"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n", "a.yaml, document 2: v1/ConfigMap//x is also in a.yaml, document 1"},
		"resource version": {"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  resourceVersion: \"5\"\n", "resourceVersion"},
		"bad name":         {"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a/b\n", "not a valid object name"},
		"bad namespace":    {"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: Shop\n", "namespace \"Shop\""},
	} {
		_, err := Decode([]Source{{Key: "a.yaml", Data: []byte(tc.data)}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one with %q", name, err, tc.want)
		}
	}
	big := strings.Repeat("#", MaxBytes+1)
	if _, err := Decode([]Source{{Key: "big", Data: []byte(big)}}); err == nil {
		t.Error("more than MaxBytes decoded")
	}
	var many strings.Builder
	for i := range MaxObjects + 1 {
		many.WriteString("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c" + strconv.Itoa(i) + "\n")
	}
	if _, err := Decode([]Source{{Key: "many", Data: []byte(many.String())}}); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("more than MaxObjects: %v", err)
	}
}

// FuzzDecode: whatever a user puts in a ConfigMap, Decode returns objects that pass its checks or
// an error; it never panics.
func FuzzDecode(f *testing.F) {
	y, _ := CoreDNS(dnsParams())
	f.Add(y)
	f.Add([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"))
	f.Add([]byte(`{"apiVersion":"v1","kind":"List","items":[{}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Decode([]Source{{Key: "k", Data: data}})
		if err != nil {
			return
		}
		for _, u := range objs {
			if err := check(u); err != nil {
				t.Fatalf("Decode returned an object its checks refuse: %v", err)
			}
		}
		_ = Revision(objs)
	})
}

// TestMetricsAndStorageManifests: both built-ins render into valid objects, carry their inputs,
// and refuse what would break their YAML.
func TestMetricsAndStorageManifests(t *testing.T) {
	pemBlock := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	y, err := MetricsServer(MetricsParams{Image: "basalt.dev/metrics-server:v0.8.0", CA: pemBlock, Cert: pemBlock, Key: pemBlock})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode([]Source{{Key: "metrics", Data: y}})
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	var kinds []string
	for _, u := range objs {
		kinds = append(kinds, u.GetKind())
	}
	if got := strings.Join(kinds, " "); got != "ServiceAccount ClusterRole ClusterRole RoleBinding ClusterRoleBinding ClusterRoleBinding Secret Service Deployment APIService" {
		t.Errorf("metrics-server kinds: %s", got)
	}
	if _, err := MetricsServer(MetricsParams{Image: "x y", CA: pemBlock, Cert: pemBlock, Key: pemBlock}); err == nil {
		t.Error("an image with a space rendered")
	}
	if _, err := MetricsServer(MetricsParams{Image: "i", CA: []byte("not pem"), Cert: pemBlock, Key: pemBlock}); err == nil {
		t.Error("a CA that is not PEM rendered")
	}

	y, err = LocalStorage(StorageParams{ProvisionerImage: "p:1", HelperImage: "h:1", Path: "/var/lib/basalt-volumes", Default: true})
	if err != nil {
		t.Fatal(err)
	}
	objs, err = Decode([]Source{{Key: "storage", Data: y}})
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	for _, u := range objs {
		if u.GetKind() == "StorageClass" && u.GetAnnotations()["storageclass.kubernetes.io/is-default-class"] != "true" {
			t.Errorf("StorageClass annotations %v", u.GetAnnotations())
		}
		if u.GetKind() == "ConfigMap" {
			data, _, _ := unstructured.NestedStringMap(u.Object, "data")
			if !strings.Contains(data["config.json"], `"/var/lib/basalt-volumes"`) || !strings.Contains(data["config.json"], `"setupCommand": "/volume-helper"`) ||
				!strings.Contains(data["helperPod.yaml"], `image: "h:1"`) {
				t.Errorf("local-path-config: %v", data)
			}
		}
	}
	for _, bad := range []StorageParams{{ProvisionerImage: "p", HelperImage: "h", Path: "/data"}, {ProvisionerImage: "p", HelperImage: "h", Path: "var/x/y"},
		{ProvisionerImage: "", HelperImage: "h", Path: "/var/lib/v"}, {ProvisionerImage: "p", HelperImage: "h\n", Path: "/var/lib/v"}} {
		if _, err := LocalStorage(bad); err == nil {
			t.Errorf("%+v rendered", bad)
		}
	}
}
