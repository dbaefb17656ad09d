// Package pkisecrets stores a workload cluster's PKI (bootstrap/clusterpki.Material), its
// secrets-at-rest encryption key and its admin kubeconfig in Secrets owned by the Cluster.
//
// Layout, in the Cluster's namespace, every Secret of type Opaque with an owner reference to the
// Cluster and the labels basalt.dev/cluster=<cluster> and basalt.dev/cluster-secret=<kind>:
//
//	<cluster>-pki              kind pki: the CAs (ca, etcd-ca, front-proxy-ca: .crt and .key), the
//	                           service-account key pair (sa.key, sa.pub), the cluster-wide leaves
//	                           (admin, apiserver-etcd-client, kube-proxy, ...: .crt and .key) and
//	                           the encryption keys (data keys encryption-key, 32 raw bytes, and
//	                           encryption-key-name; during a rotation encryption-key-next or
//	                           encryption-key-retired with their -name; encryption-rotation-request)
//	<cluster>-pki-<node>       kind node-pki, annotation basalt.dev/node=<node>: that node's leaves
//	                           (apiserver-<node>, etcd-server-<node>, etcd-peer-<node>,
//	                           kubelet-client-<node>, kubelet-serving-<node>: .crt and .key)
//	<cluster>-kubeconfig       kind kubeconfig: the admin kubeconfig under data key "value"
//
// Every data key of a PKI Secret is <material name>.crt or .key (sa.pub for the service-account
// public key), so `kubectl get secret prod-pki -o jsonpath='{.data.ca\.crt}'` reads the cluster CA.
// The split by node keeps each Secret a few kilobytes whatever the cluster size: one Secret for
// every node's certificates would pass the API server's 1 MiB object limit at about 400 nodes.
//
// Readers go straight to the API server (a client.Reader that is not the manager's cache): the
// manager does not cache Secrets, which hold every key of every cluster.
package pkisecrets

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/bootstrap/pki"
)

// Labels, annotations and keys of the Secrets.
const (
	// LabelKind says which of the Cluster's Secrets this is: KindPKI, KindNodePKI or
	// KindKubeconfig. The Cluster's name is in basaltv1.LabelClusterName.
	LabelKind = "basalt.dev/cluster-secret"
	// KindPKI, KindNodePKI and KindKubeconfig are the values of LabelKind.
	KindPKI        = "pki"
	KindNodePKI    = "node-pki"
	KindKubeconfig = "kubeconfig"
	// AnnotationNode holds the node name of a KindNodePKI Secret.
	AnnotationNode = "basalt.dev/node"
	// KubeconfigKey is the data key of the admin kubeconfig (Cluster API's convention).
	KubeconfigKey = "value"
	// EncryptionKeyKey is the data key of the 32-byte secrets-at-rest key that encrypts writes;
	// EncryptionKeyKey+NameSuffix holds its name in kube-apiserver's EncryptionConfiguration
	// (absent: clusterpki.FirstEncryptionKeyName, how clusters made before rotation stored it).
	EncryptionKeyKey = "encryption-key"
	// EncryptionNextKey and EncryptionRetiredKey hold the key a rotation adds or retires
	// (clusterpki.EncryptionKeys), with their names under the same key + NameSuffix.
	EncryptionNextKey    = "encryption-key-next"
	EncryptionRetiredKey = "encryption-key-retired"
	// NameSuffix ends the data key of a key's name.
	NameSuffix = "-name"
	// EncryptionRequestKey holds the rotation request the keys answer.
	EncryptionRequestKey = "encryption-rotation-request"
)

// PKISecretName is the name of the Secret with the cluster-wide PKI.
func PKISecretName(cluster string) string { return cluster + "-pki" }

// KubeconfigSecretName is the name of the Secret with the admin kubeconfig.
func KubeconfigSecretName(cluster string) string { return cluster + "-kubeconfig" }

// NodePKISecretName is the name of the Secret with one node's leaves. Names that would be too
// long are shortened with a hash of the node name.
func NodePKISecretName(cluster, node string) string {
	name := cluster + "-pki-" + node
	if len(name) <= validation.DNS1123SubdomainMaxLength {
		return name
	}
	sum := sha256.Sum256([]byte(node))
	keep := strings.TrimRight(name[:validation.DNS1123SubdomainMaxLength-11], ".-")
	return keep + "-" + hex.EncodeToString(sum[:])[:10]
}

// nodeNames are the Material names of one node's leaves.
func nodeNames(node string) []string {
	return []string{clusterpki.APIServerName(node), clusterpki.EtcdServerName(node), clusterpki.EtcdPeerName(node),
		clusterpki.KubeletClientName(node), clusterpki.KubeletServingName(node)}
}

// Stored is what Load found: the material and key merged from every PKI Secret of the Cluster,
// and the Secrets themselves for Sync.
type Stored struct {
	// Material is every key pair stored.
	Material clusterpki.Material
	// Encryption is the stored encryption key set; its Write.Secret is nil when none is stored.
	Encryption clusterpki.EncryptionKeys
	// secrets are the Cluster's PKI Secrets by name.
	secrets map[string]*corev1.Secret
}

// Load reads every PKI Secret of c. A Secret of the Cluster's name owned by another object (a
// Cluster deleted and re-created under the same name whose Secrets the garbage collector has not
// removed yet) is an error: adopting its CAs would silently revive an old cluster's identity.
func Load(ctx context.Context, r client.Reader, c *basaltv1.Cluster) (*Stored, error) {
	l := &corev1.SecretList{}
	if err := r.List(ctx, l, client.InNamespace(c.Namespace), client.MatchingLabels{basaltv1.LabelClusterName: c.Name},
		client.HasLabels{LabelKind}); err != nil {
		return nil, fmt.Errorf("listing the PKI Secrets of Cluster %s: %w", c.Name, err)
	}
	st := &Stored{Material: clusterpki.Material{}, secrets: map[string]*corev1.Secret{}}
	for i := range l.Items {
		sec := &l.Items[i]
		kind := sec.Labels[LabelKind]
		if kind != KindPKI && kind != KindNodePKI {
			continue
		}
		if !ownedBy(sec, c.UID) {
			return nil, foreign(sec)
		}
		st.secrets[sec.Name] = sec
		addData(st.Material, sec.Data)
		if kind == KindPKI {
			st.Encryption = encryptionOf(sec.Data)
		}
	}
	return st, nil
}

// LoadNode reads the cluster-wide PKI Secret and the Secret of node, and returns their material
// and the encryption keys. Missing Secrets give an empty result, not an error: the Cluster
// controller has not issued them yet, and Material.ForNode says what is missing.
func LoadNode(ctx context.Context, r client.Reader, c *basaltv1.Cluster, node string) (clusterpki.Material, clusterpki.EncryptionKeys, error) {
	m := clusterpki.Material{}
	var keys clusterpki.EncryptionKeys
	for _, name := range []string{PKISecretName(c.Name), NodePKISecretName(c.Name, node)} {
		sec := &corev1.Secret{}
		err := r.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, sec)
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return nil, keys, fmt.Errorf("reading Secret %s: %w", name, err)
		case !ownedBy(sec, c.UID):
			return nil, keys, foreign(sec)
		}
		addData(m, sec.Data)
		if name == PKISecretName(c.Name) {
			keys = encryptionOf(sec.Data)
		}
	}
	return m, keys, nil
}

// encryptionOf reads the encryption key set from a PKI Secret's data.
func encryptionOf(data map[string][]byte) clusterpki.EncryptionKeys {
	key := func(k string) *clusterpki.EncryptionKey {
		if len(data[k]) == 0 {
			return nil
		}
		name := string(data[k+NameSuffix])
		if name == "" && k == EncryptionKeyKey {
			name = clusterpki.FirstEncryptionKeyName
		}
		return &clusterpki.EncryptionKey{Name: name, Secret: bytes.Clone(data[k])}
	}
	keys := clusterpki.EncryptionKeys{Next: key(EncryptionNextKey), Retired: key(EncryptionRetiredKey), Request: string(data[EncryptionRequestKey])}
	if w := key(EncryptionKeyKey); w != nil {
		keys.Write = *w
	}
	return keys
}

// putEncryption writes keys into a PKI Secret's data, the inverse of encryptionOf.
func putEncryption(data map[string][]byte, keys clusterpki.EncryptionKeys) {
	put := func(k string, key *clusterpki.EncryptionKey) {
		if key == nil || len(key.Secret) == 0 {
			return
		}
		data[k], data[k+NameSuffix] = key.Secret, []byte(key.Name)
	}
	put(EncryptionKeyKey, &keys.Write)
	put(EncryptionNextKey, keys.Next)
	put(EncryptionRetiredKey, keys.Retired)
	if keys.Request != "" {
		data[EncryptionRequestKey] = []byte(keys.Request)
	}
}

func foreign(sec *corev1.Secret) error {
	return fmt.Errorf("secret %s is not owned by this Cluster (a Cluster of the same name was deleted and its Secrets are not garbage-collected yet?); delete it to let this Cluster issue its own", sec.Name)
}

// addData adds the key pairs of a Secret's data to m.
func addData(m clusterpki.Material, data map[string][]byte) {
	for k, v := range data {
		name, ext, ok := cutExt(k)
		if !ok {
			continue
		}
		kp := m[name]
		switch ext {
		case ".crt", ".pub":
			kp.Cert = bytes.Clone(v)
		case ".key":
			kp.Key = bytes.Clone(v)
		}
		m[name] = kp
	}
}

// cutExt splits a data key into material name and extension.
func cutExt(k string) (string, string, bool) {
	for _, ext := range []string{".crt", ".key", ".pub"} {
		if name, ok := strings.CutSuffix(k, ext); ok && name != "" {
			if ext == ".pub" && name != clusterpki.ServiceAccount {
				return "", "", false
			}
			return name, ext, true
		}
	}
	return "", "", false
}

// putData adds the key pair of name to data.
func putData(data map[string][]byte, name string, kp pki.KeyPair) {
	certExt := ".crt"
	if name == clusterpki.ServiceAccount {
		certExt = ".pub"
	}
	if len(kp.Cert) > 0 {
		data[name+certExt] = kp.Cert
	}
	if len(kp.Key) > 0 {
		data[name+".key"] = kp.Key
	}
}

// SetEncryption replaces the encryption keys in the Cluster's PKI Secret with to, if it still
// holds from (else it fails: another writer moved the keys since they were read). The write
// carries the resourceVersion read, so a concurrent change makes it fail rather than be lost.
func SetEncryption(ctx context.Context, r client.Reader, w client.Client, c *basaltv1.Cluster, from, to clusterpki.EncryptionKeys) error {
	sec := &corev1.Secret{}
	name := PKISecretName(c.Name)
	if err := r.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, sec); err != nil {
		return fmt.Errorf("reading Secret %s: %w", name, err)
	}
	if !ownedBy(sec, c.UID) {
		return foreign(sec)
	}
	if !sameKeys(encryptionOf(sec.Data), from) {
		return fmt.Errorf("secret %s: its encryption keys changed since they were read", name)
	}
	for _, k := range []string{EncryptionKeyKey, EncryptionNextKey, EncryptionRetiredKey} {
		delete(sec.Data, k)
		delete(sec.Data, k+NameSuffix)
	}
	delete(sec.Data, EncryptionRequestKey)
	if sec.Data == nil {
		sec.Data = map[string][]byte{}
	}
	putEncryption(sec.Data, to)
	if err := w.Update(ctx, sec); err != nil {
		return fmt.Errorf("updating Secret %s: %w", name, err)
	}
	return nil
}

// sameKeys compares two key sets.
func sameKeys(a, b clusterpki.EncryptionKeys) bool {
	da, db := map[string][]byte{}, map[string][]byte{}
	putEncryption(da, a)
	putEncryption(db, b)
	return sameData(da, db)
}

// Sync writes m and keys into the Cluster's Secrets so that Load returns them: the node leaves of
// each of nodes into its own Secret, everything else into the cluster-wide one. Only Secrets whose
// data differs from what Load read are written; node Secrets of nodes no longer listed are
// deleted. The cluster-wide Secret is written first, so that a crash part-way leaves the CAs
// stored before anything they signed. It returns the names of the Secrets written and deleted.
// Writes carry the resourceVersion Load read: a concurrent writer makes Sync fail with a
// conflict rather than be overwritten.
func (st *Stored) Sync(ctx context.Context, w client.Client, c *basaltv1.Cluster, m clusterpki.Material, keys clusterpki.EncryptionKeys, nodes []string) (written, deleted []string, err error) {
	clusterData := map[string][]byte{}
	putEncryption(clusterData, keys)
	nodeData := map[string]map[string][]byte{}
	owner := map[string]string{}
	for _, n := range nodes {
		nodeData[n] = map[string][]byte{}
		for _, name := range nodeNames(n) {
			owner[name] = n
		}
	}
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if n, ok := owner[name]; ok {
			putData(nodeData[n], name, m[name])
			continue
		}
		putData(clusterData, name, m[name])
	}
	want := []struct {
		name, kind, node string
		data             map[string][]byte
	}{{PKISecretName(c.Name), KindPKI, "", clusterData}}
	for _, n := range slices.Sorted(maps.Keys(nodeData)) {
		want = append(want, struct {
			name, kind, node string
			data             map[string][]byte
		}{NodePKISecretName(c.Name, n), KindNodePKI, n, nodeData[n]})
	}
	keep := map[string]bool{}
	for _, s := range want {
		keep[s.name] = true
		changed, err := st.put(ctx, w, c, s.name, s.kind, s.node, s.data)
		if err != nil {
			return written, deleted, err
		}
		if changed {
			written = append(written, s.name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(st.secrets)) {
		sec := st.secrets[name]
		if keep[name] || sec.Labels[LabelKind] != KindNodePKI {
			continue
		}
		if err := w.Delete(ctx, sec, client.Preconditions{UID: &sec.UID, ResourceVersion: &sec.ResourceVersion}); err != nil && !apierrors.IsNotFound(err) {
			return written, deleted, fmt.Errorf("deleting Secret %s: %w", name, err)
		}
		delete(st.secrets, name)
		deleted = append(deleted, name)
	}
	return written, deleted, nil
}

// put creates or updates one Secret when its data differs.
func (st *Stored) put(ctx context.Context, w client.Client, c *basaltv1.Cluster, name, kind, node string, data map[string][]byte) (bool, error) {
	cur := st.secrets[name]
	if cur != nil && sameData(cur.Data, data) {
		return false, nil
	}
	if cur == nil {
		sec := newSecret(c, name, kind)
		if node != "" {
			sec.Annotations = map[string]string{AnnotationNode: node}
		}
		sec.Data = data
		if err := w.Create(ctx, sec); err != nil {
			return false, fmt.Errorf("creating Secret %s: %w", name, err)
		}
		st.secrets[name] = sec
		return true, nil
	}
	sec := cur.DeepCopy()
	sec.Data = data
	if err := w.Update(ctx, sec); err != nil {
		return false, fmt.Errorf("updating Secret %s: %w", name, err)
	}
	st.secrets[name] = sec
	return true, nil
}

func sameData(a, b map[string][]byte) bool {
	return maps.EqualFunc(a, b, func(x, y []byte) bool { return bytes.Equal(x, y) })
}

// newSecret returns a Secret of c's with its labels and owner reference.
func newSecret(c *basaltv1.Cluster, name, kind string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: c.Namespace,
			Labels: map[string]string{basaltv1.LabelClusterName: c.Name, LabelKind: kind},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: basaltv1.GroupVersion.String(), Kind: "Cluster", Name: c.Name, UID: c.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Type: corev1.SecretTypeOpaque,
	}
}

// SyncKubeconfig makes the Cluster's kubeconfig Secret hold kubeconfig, writing it only when it
// differs. It reads through r (the API server) and returns whether it wrote.
func SyncKubeconfig(ctx context.Context, r client.Reader, w client.Client, c *basaltv1.Cluster, kubeconfig []byte) (bool, error) {
	name := KubeconfigSecretName(c.Name)
	sec := &corev1.Secret{}
	err := r.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, sec)
	switch {
	case apierrors.IsNotFound(err):
		sec = newSecret(c, name, KindKubeconfig)
		sec.Data = map[string][]byte{KubeconfigKey: kubeconfig}
		if err := w.Create(ctx, sec); err != nil {
			return false, fmt.Errorf("creating Secret %s: %w", name, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading Secret %s: %w", name, err)
	case !ownedBy(sec, c.UID):
		return false, foreign(sec)
	case bytes.Equal(sec.Data[KubeconfigKey], kubeconfig):
		return false, nil
	}
	sec.Data = map[string][]byte{KubeconfigKey: kubeconfig}
	if err := w.Update(ctx, sec); err != nil {
		return false, fmt.Errorf("updating Secret %s: %w", name, err)
	}
	return true, nil
}

// Kubeconfig reads the admin kubeconfig of c.
func Kubeconfig(ctx context.Context, r client.Reader, c *basaltv1.Cluster) ([]byte, error) {
	name := KubeconfigSecretName(c.Name)
	if ref := c.Status.KubeconfigSecretRef; ref != nil {
		name = ref.Name
	}
	sec := &corev1.Secret{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, sec); err != nil {
		return nil, fmt.Errorf("reading the kubeconfig Secret %s: %w", name, err)
	}
	if !ownedBy(sec, c.UID) {
		return nil, foreign(sec)
	}
	kc := sec.Data[KubeconfigKey]
	if len(kc) == 0 {
		return nil, fmt.Errorf("the kubeconfig Secret %s has no %q", name, KubeconfigKey)
	}
	return kc, nil
}

func ownedBy(sec *corev1.Secret, uid types.UID) bool {
	for _, o := range sec.OwnerReferences {
		if o.UID == uid {
			return true
		}
	}
	return false
}
