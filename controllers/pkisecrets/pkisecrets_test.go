package pkisecrets_test

import (
	"context"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/controllers/pkisecrets"
)

func ensure(t *testing.T, stored clusterpki.Material, workers ...string) *clusterpki.Result {
	t.Helper()
	in := clusterpki.Input{ClusterName: "prod", Endpoint: "10.0.0.11", ServiceCIDR: "10.96.0.0/12", DNSDomain: "cluster.local",
		ControlPlane: []clusterpki.Node{{Name: "prod-cp-1", IPs: []net.IP{net.ParseIP("10.0.0.11")}}}}
	for i, w := range workers {
		in.Workers = append(in.Workers, clusterpki.Node{Name: w, IPs: []net.IP{{10, 0, 0, byte(21 + i)}}})
	}
	res, err := clusterpki.Ensure(stored, in, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestSyncLoadRoundTrip: what Sync stores, Load and LoadNode read back; a second Sync of the same
// material writes nothing; a node that leaves loses its Secret.
func TestSyncLoadRoundTrip(t *testing.T) {
	ctx := context.Background()
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(basaltv1.AddToScheme(scheme))
	c := fake.NewClientBuilder().WithScheme(scheme).Build()
	cl := &basaltv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "prod", Namespace: "ns", UID: "uid-1"}}
	key, _, err := clusterpki.EnsureEncryptionKeys(clusterpki.EncryptionKeys{})
	if err != nil {
		t.Fatal(err)
	}
	// A rotation in its rewriting phase: both keys and the request are stored.
	if key, err = key.Begin("r1"); err == nil {
		key, err = key.Promote()
	}
	if err != nil {
		t.Fatal(err)
	}

	res := ensure(t, nil, "prod-w-1", "prod-w-2")
	st, err := pkisecrets.Load(ctx, c, cl)
	if err != nil {
		t.Fatal(err)
	}
	nodes := []string{"prod-cp-1", "prod-w-1", "prod-w-2"}
	written, deleted, err := st.Sync(ctx, c, cl, res.Material, key, nodes)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"prod-pki", "prod-pki-prod-cp-1", "prod-pki-prod-w-1", "prod-pki-prod-w-2"}; !slices.Equal(written, want) || len(deleted) > 0 {
		t.Fatalf("written %v deleted %v, want %v", written, deleted, want)
	}
	sec := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "prod-pki-prod-w-1"}, sec); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range sec.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"kubelet-client-prod-w-1.crt", "kubelet-client-prod-w-1.key", "kubelet-serving-prod-w-1.crt", "kubelet-serving-prod-w-1.key"}; !slices.Equal(keys, want) {
		t.Errorf("node Secret keys %v, want %v", keys, want)
	}
	if sec.Labels[pkisecrets.LabelKind] != pkisecrets.KindNodePKI || sec.Annotations[pkisecrets.AnnotationNode] != "prod-w-1" || sec.OwnerReferences[0].UID != "uid-1" {
		t.Errorf("node Secret metadata %+v", sec.ObjectMeta)
	}

	st, err = pkisecrets.Load(ctx, c, cl)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Material) != len(res.Material) || !reflect.DeepEqual(st.Encryption, key) {
		t.Fatalf("loaded %d entries (want %d), keys %+v, want %+v", len(st.Material), len(res.Material), st.Encryption, key)
	}
	for name, kp := range res.Material {
		if string(st.Material[name].Cert) != string(kp.Cert) || string(st.Material[name].Key) != string(kp.Key) {
			t.Errorf("%s differs after the round trip", name)
		}
	}
	again := ensure(t, st.Material, "prod-w-1", "prod-w-2")
	if len(again.Changed) > 0 {
		t.Fatalf("Ensure on the loaded material changed %v", again.Changed)
	}
	if written, deleted, err := st.Sync(ctx, c, cl, again.Material, key, nodes); err != nil || len(written)+len(deleted) > 0 {
		t.Fatalf("a second Sync wrote %v and deleted %v (%v)", written, deleted, err)
	}

	m, k, err := pkisecrets.LoadNode(ctx, c, cl, "prod-w-2")
	if err != nil || !reflect.DeepEqual(k, key) {
		t.Fatalf("LoadNode: keys %+v, %v", k, err)
	}
	if _, err := m.ForNode("prod-w-2", false); err != nil {
		t.Error(err)
	}
	if _, err := m.ForNode("prod-w-1", false); err == nil {
		t.Error("LoadNode of prod-w-2 returned prod-w-1's certificates")
	}

	// prod-w-2 leaves.
	smaller := ensure(t, st.Material, "prod-w-1")
	if written, deleted, err := st.Sync(ctx, c, cl, smaller.Material, key, nodes[:2]); err != nil || len(written) > 0 || !slices.Equal(deleted, []string{"prod-pki-prod-w-2"}) {
		t.Fatalf("written %v deleted %v (%v)", written, deleted, err)
	}

	// A Cluster re-created under the same name does not adopt the old one's Secrets.
	other := cl.DeepCopy()
	other.UID = "uid-2"
	if _, err := pkisecrets.Load(ctx, c, other); err == nil || !strings.Contains(err.Error(), "not owned by this Cluster") {
		t.Errorf("Load by another Cluster: %v", err)
	}
}
