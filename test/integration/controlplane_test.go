// Package integration runs a real control plane on the local machine from a Plan built by
// bootstrap/plan/builder, with the PKI of bootstrap/clusterpki and the binaries of the artifact
// set, applied by a small test-only applier (the node agent's job on real hosts).
package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/basalt-dev/basalt/bootstrap/artifacts"
	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/bootstrap/components"
	"github.com/basalt-dev/basalt/bootstrap/pki"
	"github.com/basalt-dev/basalt/bootstrap/plan"
	"github.com/basalt-dev/basalt/bootstrap/plan/builder"
	"github.com/basalt-dev/basalt/controllers/rotation"
	"github.com/basalt-dev/basalt/test/ports"
)

// kubeVersion is the artifact set the test runs.
const kubeVersion = "v1.37.2"

// controlPlane are the services this test runs. The node services of the same Plan (containerd,
// kubelet, kube-proxy) are not started here: they change the host's cgroups, iptables and mounts
// and are exercised on container hosts by test/e2e.
var controlPlane = []string{builder.ServiceEtcd, builder.ServiceAPIServer, builder.ServiceControllerManager, builder.ServiceScheduler}

// artifactSet returns the folder and manifest of the full artifact set, or fails the test with
// the command that builds it.
func artifactSet(t *testing.T) (string, *artifacts.Manifest) {
	t.Helper()
	cache := os.Getenv("BASALT_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatalf("BASALT_CACHE is unset and there is no home directory: %v", err)
		}
		cache = filepath.Join(home, ".cache", "basalt")
	}
	dir := filepath.Join(cache, "artifacts", kubeVersion)
	build := fmt.Sprintf("build it with `hack/build-artifacts.sh %s` (or `make artifacts`), then rerun", kubeVersion)
	m, err := artifacts.Load(dir)
	if err != nil {
		t.Fatalf("The artifact set %s is missing or incomplete (%v): %s", dir, err, build)
	}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		a, ok := m.Get(name)
		if !ok {
			t.Fatalf("The artifact set %s has no %s: %s", dir, name, build)
		}
		if _, err := os.Stat(filepath.Join(dir, a.Path)); err != nil {
			t.Fatalf("The artifact set %s lacks %s (%v): %s", dir, a.Path, err, build)
		}
	}
	return dir, m
}

// node is one control-plane node on 127.0.0.1 under a temp root: the artifact set, free ports,
// the PKI input, and the Plans built for it.
type node struct {
	setDir, root, logDir string
	manifest             *artifacts.Manifest
	ports                builder.Ports
	pkiIn                clusterpki.Input
}

func newNode(t *testing.T) *node {
	t.Helper()
	setDir, manifest := artifactSet(t)
	root := t.TempDir()
	logDir := filepath.Join(root, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := ports.FreeLoopback(t, 7)
	ps := builder.Ports{APIServer: p[0], LoadBalancer: p[1], Ports: components.Ports{
		EtcdClient: p[2], EtcdPeer: p[3], EtcdMetrics: p[4], ControllerManager: p[5], Scheduler: p[6]}}
	t.Logf("Root %s; ports %+v", root, ps)
	return &node{setDir: setDir, root: root, logDir: logDir, manifest: manifest, ports: ps, pkiIn: clusterpki.Input{
		ClusterName: "it", Endpoint: net.JoinHostPort("127.0.0.1", strconv.Itoa(ps.APIServer)),
		ServiceCIDR: "10.96.0.0/12", DNSDomain: "cluster.local",
		ControlPlane: []clusterpki.Node{{Name: "cp-1", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}},
	}}
}

// build is the node's control-plane Plan with material m and encryption keys.
func (n *node) build(t *testing.T, m clusterpki.Material, keys clusterpki.EncryptionKeys) *plan.Plan {
	t.Helper()
	certs, err := m.ForNode("cp-1", true)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := builder.Build(builder.Input{
		ClusterName: "it", Version: kubeVersion, Role: builder.RoleControlPlane,
		Node:         builder.Node{Name: "cp-1", IP: "127.0.0.1", PodCIDR: "10.244.0.0/24"},
		Network:      builder.Network{PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12"},
		Endpoint:     n.pkiIn.Endpoint,
		Ports:        n.ports,
		Encryption:   rotation.EncryptionParams(keys),
		Certificates: certs,
		Artifacts:    n.manifest,
		HostFacts:    builder.HostFacts{},
		Root:         n.root,
	})
	if err != nil {
		t.Fatal(err)
	}
	return pl
}

// startNode runs services of a control-plane node with a new PKI and encryption key set, and
// waits until kube-apiserver answers /readyz with the admin kubeconfig.
func startNode(ctx context.Context, t *testing.T, services []string) (*node, *clusterpki.Result, clusterpki.EncryptionKeys, *applier) {
	t.Helper()
	env := newNode(t)
	pkiRes, err := clusterpki.Ensure(nil, env.pkiIn, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keys, _, err := clusterpki.EnsureEncryptionKeys(clusterpki.EncryptionKeys{})
	if err != nil {
		t.Fatal(err)
	}
	a := newApplier(t, env.setDir, env.manifest, env.logDir, services)
	if _, err := a.apply(ctx, env.build(t, pkiRes.Material, keys)); err != nil {
		t.Fatal(err)
	}
	waitReadyz(ctx, t, kubeClient(t, pkiRes.AdminKubeconfig))
	return env, pkiRes, keys, a
}

// TestControlPlaneFromPlan builds the PKI and the Plan of a single control-plane node at
// 127.0.0.1 under a temp root and runs etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler from it. It checks /readyz with the admin kubeconfig, the leader Leases, that a
// Secret is encrypted in etcd, and then renews every leaf certificate: the new Plan restarts the
// components, which come back and accept the renewed admin kubeconfig.
func TestControlPlaneFromPlan(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	env := newNode(t)
	setDir, manifest, ports, pkiIn, logDir := env.setDir, env.manifest, env.ports, env.pkiIn, env.logDir

	// PKI: leaves valid one hour, renewed in their last 30 minutes, issued 45 minutes ago, so the
	// second Ensure (at now) is inside the renewal window.
	pkiIn.Validity, pkiIn.RenewBefore = time.Hour, 30*time.Minute
	first, err := clusterpki.Ensure(nil, pkiIn, time.Now().Add(-45*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	encKeys, _, err := clusterpki.EnsureEncryptionKeys(clusterpki.EncryptionKeys{})
	if err != nil {
		t.Fatal(err)
	}
	build := func(m clusterpki.Material) *plan.Plan { return env.build(t, m, encKeys) }
	plan1 := build(first.Material)

	a := newApplier(t, setDir, manifest, logDir, controlPlane)
	started, err := a.apply(ctx, plan1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(started, controlPlane) {
		t.Fatalf("Started %v, want %v", started, controlPlane)
	}
	admin := kubeClient(t, first.AdminKubeconfig)
	waitReadyz(ctx, t, admin)
	t.Logf("MEASURE control plane: first process start to /readyz ok with the admin kubeconfig: %s",
		time.Since(a.FirstStart).Round(10*time.Millisecond))

	holders := waitLeases(ctx, t, admin, nil)

	// A Secret written through the API is encrypted in etcd.
	const plaintext = "basalt-integration-plaintext-6f1d"
	_, err = admin.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "it-secret"},
		StringData: map[string]string{"password": plaintext},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw := etcdGet(ctx, t, first.Material, ports.EtcdClient, "/registry/secrets/default/it-secret")
	if !bytes.HasPrefix(raw, []byte("k8s:enc:secretbox:v1:key-1:")) {
		t.Errorf("Secret in etcd starts with %q, want k8s:enc:secretbox:v1:key-1:", raw[:min(len(raw), 40)])
	}
	if bytes.Contains(raw, []byte(plaintext)) {
		t.Error("Secret in etcd contains the plaintext")
	}

	// Renewal: every leaf is inside its renewal window now.
	second, err := clusterpki.Ensure(first.Material, pkiIn, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var changed []string
	for _, c := range second.Changed {
		changed = append(changed, c.Name)
		if !strings.HasPrefix(c.Reason, "expires at ") {
			t.Errorf("%s renewed because %q", c.Name, c.Reason)
		}
	}
	for _, ca := range []string{clusterpki.ClusterCA, clusterpki.EtcdCA, clusterpki.FrontProxyCA, clusterpki.ServiceAccount} {
		if slices.Contains(changed, ca) || !ptr(second.Material[ca]).Equal(ptr(first.Material[ca])) {
			t.Errorf("%s changed on renewal", ca)
		}
	}
	if len(changed) != len(first.Material)-4 {
		t.Errorf("Renewed %d leaves %v, want all %d", len(changed), changed, len(first.Material)-4)
	}
	if again, err := clusterpki.Ensure(second.Material, pkiIn, time.Now()); err != nil || len(again.Changed) != 0 {
		t.Errorf("Ensure after renewal: changed %v, err %v; want nothing", again.Changed, err)
	}
	plan2 := build(second.Material)
	if plan2.Hash() == plan1.Hash() {
		t.Fatal("Renewed certificates did not change the Plan's hash")
	}
	pids := map[string]int{}
	for _, s := range controlPlane {
		pids[s] = a.pid(s)
	}
	restartedAt := time.Now()
	restarted, err := a.apply(ctx, plan2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MEASURE renewal: restart of %v until every probe passed: %s", restarted, time.Since(restartedAt).Round(10*time.Millisecond))
	if !slices.Equal(restarted, controlPlane) {
		t.Errorf("Restarted %v, want %v (each reads a renewed certificate)", restarted, controlPlane)
	}
	for _, s := range controlPlane {
		if a.pid(s) == pids[s] {
			t.Errorf("%s was not restarted", s)
		}
	}
	renewedAdmin := kubeClient(t, second.AdminKubeconfig)
	waitReadyz(ctx, t, renewedAdmin)
	checkServingCert(t, ports.APIServer, second.Material)
	// The restarted processes take the Leases over once the old holders' leases expire (15s).
	waitLeases(ctx, t, renewedAdmin, holders)
	got, err := renewedAdmin.CoreV1().Secrets("default").Get(ctx, "it-secret", metav1.GetOptions{})
	if err != nil || string(got.Data["password"]) != plaintext {
		t.Errorf("Secret after the restart: %v, err %v", got, err)
	}
	if again, err := a.apply(ctx, plan2); err != nil || len(again) != 0 {
		t.Errorf("Applying the same Plan again restarted %v (err %v), want nothing", again, err)
	}
}

func ptr[T any](v T) *T { return &v }

func kubeClient(t *testing.T, kubeconfig []byte) *kubernetes.Clientset {
	t.Helper()
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Timeout = 10 * time.Second
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitReadyz waits until GET /readyz answers ok with the client's credentials.
func waitReadyz(ctx context.Context, t *testing.T, c *kubernetes.Clientset) {
	t.Helper()
	var last error
	for ctx.Err() == nil {
		body, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			return
		}
		last = fmt.Errorf("%w: %s", err, body)
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("/readyz never answered ok: %v", last)
}

// waitLeases waits until kube-controller-manager and kube-scheduler hold their leader Leases,
// with holders other than the given ones (the processes before a restart), and returns the holders.
func waitLeases(ctx context.Context, t *testing.T, c *kubernetes.Clientset, before map[string]string) map[string]string {
	t.Helper()
	holders := map[string]string{}
	start := time.Now()
	for _, name := range []string{"kube-controller-manager", "kube-scheduler"} {
		for {
			l, err := c.CoordinationV1().Leases("kube-system").Get(ctx, name, metav1.GetOptions{})
			if err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" && *l.Spec.HolderIdentity != before[name] {
				holders[name] = *l.Spec.HolderIdentity
				t.Logf("Lease kube-system/%s held by %s (waited %s)", name, holders[name], time.Since(start).Round(10*time.Millisecond))
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("Lease kube-system/%s is not held by a new holder (last error %v)", name, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	return holders
}

// etcdGet reads a raw key from etcd with the API server's etcd client certificate.
func etcdGet(ctx context.Context, t *testing.T, m clusterpki.Material, port int, key string) []byte {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(m[clusterpki.EtcdCA].Cert)
	client := m[clusterpki.APIServerEtcdClient]
	pair, err := tls.X509KeyPair(client.Cert, client.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))},
		TLS:         &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
		DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	resp, err := c.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("etcd has %d values at %s", len(resp.Kvs), key)
	}
	return resp.Kvs[0].Value
}

// checkServingCert checks that kube-apiserver serves the renewed certificate.
func checkServingCert(t *testing.T, port int, m clusterpki.Material) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(m[clusterpki.ClusterCA].Cert)
	conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	want, err := pki.ParseCertificate(m[clusterpki.APIServerName("cp-1")].Cert)
	if err != nil {
		t.Fatal(err)
	}
	if got := conn.ConnectionState().PeerCertificates[0]; got.SerialNumber.Cmp(want.SerialNumber) != 0 {
		t.Errorf("kube-apiserver serves certificate %s, want the renewed %s", got.SerialNumber, want.SerialNumber)
	}
}
