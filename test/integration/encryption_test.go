package integration

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/bootstrap/plan/builder"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
	"github.com/basalt-dev/basalt/controllers/rotation"
)

// TestEncryptionKeyRotation runs etcd and kube-apiserver from Plans and takes the cluster's
// secrets-at-rest key through a rotation, the steps the Cluster controller makes
// (docs/rotation.md): each key set is applied as a new Plan, which must not restart
// kube-apiserver; the manager's check (rotation.LoadedConfigs) must see the server load it;
// after the rewrite (rotation.RewriteSecrets) etcd, read directly (etcdcluster.StoragePrefixes),
// holds every Secret under the new key, and once the old key is gone every Secret still reads.
func TestEncryptionKeyRotation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env, pkiRes, keys, a := startNode(ctx, t, []string{builder.ServiceEtcd, builder.ServiceAPIServer})
	admin := kubeClient(t, pkiRes.AdminKubeconfig)
	cfg, err := clientcmd.RESTConfigFromKubeConfig(pkiRes.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = 20 * time.Second
	etcd, err := etcdcluster.NewClient(etcdcluster.Config{
		Endpoints: []string{fmt.Sprintf("https://127.0.0.1:%d", env.ports.EtcdClient)},
		CA:        pkiRes.Material[clusterpki.EtcdCA].Cert,
		Cert:      pkiRes.Material[clusterpki.APIServerEtcdClient].Cert, Key: pkiRes.Material[clusterpki.APIServerEtcdClient].Key,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = etcd.Close() }()
	stored := func() map[string]int {
		t.Helper()
		counts, err := etcd.StoragePrefixes(ctx, rotation.SecretsPrefix)
		if err != nil {
			t.Fatal(err)
		}
		return counts
	}
	waitLoaded := func(k clusterpki.EncryptionKeys) time.Duration {
		t.Helper()
		want, err := rotation.ConfigHash(k)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var got []string
		// kube-apiserver reads the file again once a minute.
		for time.Since(start) < 3*time.Minute {
			if got, err = rotation.LoadedConfigs(ctx, cfg); err == nil && slices.Equal(got, []string{want}) {
				return time.Since(start)
			}
			time.Sleep(2 * time.Second)
		}
		t.Fatalf("kube-apiserver never reported keys %v loaded: it reports %v (%v), want %s", keyOrder(k), got, err, want)
		return 0
	}
	waitLoaded(keys)

	// More Secrets than one page of StoragePrefixes (256) and of RewriteSecrets (200).
	const n = 300
	for i := range n {
		if _, err := admin.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s-%03d", i)},
			StringData: map[string]string{"v": fmt.Sprint(i)},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	before := stored()
	if before["k8s:enc:secretbox:v1:key-1"] < n || len(before) != 1 {
		t.Fatalf("before the rotation etcd holds %v, want every Secret under key-1", before)
	}
	apiPID := a.pid(builder.ServiceAPIServer)
	step := func(name string, move func() (clusterpki.EncryptionKeys, error)) clusterpki.EncryptionKeys {
		t.Helper()
		next, err := move()
		if err != nil {
			t.Fatal(err)
		}
		restarted, err := a.apply(ctx, env.build(t, pkiRes.Material, next))
		if err != nil {
			t.Fatal(err)
		}
		if len(restarted) > 0 || a.pid(builder.ServiceAPIServer) != apiPID {
			t.Fatalf("%s: the Plan restarted %v (kube-apiserver pid %d, was %d); the key change must be reloaded", name, restarted, a.pid(builder.ServiceAPIServer), apiPID)
		}
		took := waitLoaded(next)
		t.Logf("MEASURE %s: keys %v applied, kube-apiserver reported them loaded after %s (it looks every minute)", name, keyOrder(next), took.Round(time.Second))
		return next
	}
	keys = step("add", func() (clusterpki.EncryptionKeys, error) { return keys.Begin("r1") })
	if got := stored(); !maps.Equal(got, before) {
		t.Errorf("adding a read-only key changed what etcd holds: %v", got)
	}
	keys = step("promote", keys.Promote)
	if _, err := admin.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "after-promote"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mixed := stored()
	if mixed["k8s:enc:secretbox:v1:key-2"] != 1 || mixed["k8s:enc:secretbox:v1:key-1"] < n {
		t.Fatalf("after the promotion etcd holds %v, want the new Secret alone under key-2", mixed)
	}
	start := time.Now()
	res, err := rotation.RewriteSecrets(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	after := stored()
	t.Logf("MEASURE rewrite: %d Secrets rewritten (%d changed meanwhile) in %s; etcd holds %v", res.Rewritten, res.Changed, time.Since(start).Round(time.Millisecond), after)
	if res.Rewritten < n+1 || len(after) != 1 || after["k8s:enc:secretbox:v1:key-2"] < n+1 {
		t.Fatalf("after the rewrite etcd holds %v (rewritten %d), want every Secret under key-2", after, res.Rewritten)
	}
	keys = step("retire", keys.Retire)
	list, err := admin.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing Secrets with key-1 removed: %v", err)
	}
	read := 0
	for _, s := range list.Items {
		if len(s.Data["v"]) > 0 {
			read++
		}
	}
	if read != n {
		t.Errorf("read back %d Secrets with key-1 removed, want %d", read, n)
	}
	if got := stored(); len(got) != 1 || got["k8s:enc:secretbox:v1:key-2"] < n+1 {
		t.Errorf("at the end etcd holds %v", got)
	}
}

func keyOrder(k clusterpki.EncryptionKeys) []string {
	var out []string
	for _, key := range k.Ordered() {
		out = append(out, key.Name)
	}
	return out
}
