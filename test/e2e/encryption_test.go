package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/test/e2e/bed"
	"github.com/basalt-dev/basalt/test/e2e/framework"
)

// rotateCredentials rotates the Cluster's secrets-at-rest key (basalt.dev/rotate-encryption-key)
// and renews every certificate (basalt.dev/renew-certificates) at once, while a client reads the
// API and Secrets twice a second through the virtual IP: the rotation goes through its phases to
// Completed and etcd (read with etcdctl on a control-plane host) holds every Secret encrypted
// with the new key and none with the old one; the renewal is Completed with every API server
// serving a certificate issued after the request; each kube-apiserver was restarted exactly once
// (by the renewal: the key rotation restarts none), never two of them unready at once; no read
// fails.
func rotateCredentials(ctx context.Context, t *testing.T, m *framework.Management, cpHosts []*bed.Host, ns, cluster string, wc kubernetes.Interface) {
	c := m.Env.Client
	const n = 20
	for i := range n {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("rotation-%02d", i), Namespace: "default"}, StringData: map[string]string{"v": fmt.Sprint(i)}}
		if _, err := wc.CoreV1().Secrets("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	before := secretClasses(ctx, t, cpHosts)
	cur := &basaltv1.Cluster{}
	if err := c.Get(ctx, framework.ObjectKey(ns, cluster), cur); err != nil {
		t.Fatal(err)
	}
	if cur.Status.Encryption == nil || cur.Status.Encryption.KeyName == "" {
		t.Fatalf("status.encryption %+v names no key", cur.Status.Encryption)
	}
	oldKey := cur.Status.Encryption.KeyName
	if want := "k8s:enc:secretbox:v1:" + oldKey; before[want] < n || len(before) != 1 {
		t.Fatalf("before the rotation etcd holds %v, want every Secret under %s", before, oldKey)
	}
	pids := apiServerPIDs(ctx, t, cpHosts)
	var servers []*bed.Host
	for _, h := range cpHosts {
		if pids[h.Name] != "" {
			servers = append(servers, h)
		}
	}
	if len(servers) != 3 {
		t.Fatalf("kube-apiserver runs on %v, want three control-plane hosts", pids)
	}

	w := watchAPI(ctx, wc)
	reads := readSecrets(ctx, wc, n)
	sampler := sampleAPIServers(ctx, servers)
	request := "e2e-" + time.Now().UTC().Format("150405")
	framework.Eventually(t, time.Minute, func() error {
		got := &basaltv1.Cluster{}
		if err := c.Get(ctx, framework.ObjectKey(ns, cluster), got); err != nil {
			return err
		}
		if got.Annotations == nil {
			got.Annotations = map[string]string{}
		}
		got.Annotations[basaltv1.AnnotationRotateEncryptionKey] = request
		got.Annotations[basaltv1.AnnotationRenewCertificates] = request
		return c.Update(ctx, got)
	})
	began := time.Now()
	var seen []string
	var final *basaltv1.EncryptionRotationStatus
	framework.Eventually(t, 12*time.Minute, func() error {
		got := &basaltv1.Cluster{}
		if err := c.Get(ctx, framework.ObjectKey(ns, cluster), got); err != nil {
			return err
		}
		e := got.Status.Encryption
		if e == nil || e.Rotation == nil || e.Rotation.Request != request {
			return fmt.Errorf("status.encryption %+v", e)
		}
		if p := e.Rotation.Phase; len(seen) == 0 || !strings.HasSuffix(seen[len(seen)-1], " "+p) {
			seen = append(seen, fmt.Sprintf("%s %s", time.Since(began).Round(time.Second), p))
		}
		if e.Rotation.Phase != basaltv1.EncryptionPhaseCompleted {
			return fmt.Errorf("rotation %s: %s", e.Rotation.Phase, e.Rotation.Message)
		}
		final = e.Rotation
		return nil
	})
	took := time.Since(began)
	var renewal *basaltv1.CertificateRenewalStatus
	framework.Eventually(t, 10*time.Minute, func() error {
		got := &basaltv1.Cluster{}
		if err := c.Get(ctx, framework.ObjectKey(ns, cluster), got); err != nil {
			return err
		}
		r := got.Status.CertificateRenewal
		if r == nil || r.Request != request || r.Phase != basaltv1.RenewalPhaseCompleted || r.CompletedAt == nil {
			return fmt.Errorf("status.certificateRenewal %+v", r)
		}
		renewal = r
		return nil
	})
	failedReads := reads()
	overlaps, worst, notReady, seenPIDs, samples := sampler.finish()
	w.check(t, "the credential rotation", 2)
	t.Logf("MEASURE encryption key rotation: Completed %s after the annotation (phases %s); %d Secrets rewritten; Secret reads failed: %d",
		took.Round(time.Second), strings.Join(seen, ", "), final.Rewritten, len(failedReads))
	t.Logf("MEASURE certificate renewal: Completed %s after the request (%d nodes); API servers not ready per host (of %d samples, 0.5 s apart): %v; samples with two or more not ready: %d (at most %d in a row) %v",
		renewal.CompletedAt.Sub(renewal.RequestedAt.Time), renewal.Nodes, samples, notReady, len(overlaps), worst, overlaps)
	if worst > 1 {
		t.Errorf("two or more kube-apiservers were not ready at once, %d samples in a row, during the renewal: %v", worst, overlaps)
	}
	for _, h := range servers {
		if l := seenPIDs[h.Name]; len(l) != 2 || l[0] != pids[h.Name] {
			t.Errorf("kube-apiserver processes on %s during the rotations: %v (before: %s); want exactly one restart, by the certificate renewal", h.Name, l, pids[h.Name])
		}
		at, err := servingCertIssuedAt(ctx, h.IP)
		if err != nil {
			t.Errorf("%s: %v", h.Name, err)
		} else if at.Before(renewal.RequestedAt.Time) {
			t.Errorf("%s serves a certificate issued at %s, before the renewal request at %s", h.Name, at, renewal.RequestedAt.Time)
		}
	}
	// A Secret an API server cannot decrypt is what a wrong step order would show; a read lost
	// to something else (the virtual IP moving) is tolerated twice.
	for _, f := range failedReads {
		if strings.Contains(f, "data ") || strings.Contains(f, "decrypt") || strings.Contains(f, "transform") || strings.Contains(f, "prefix") {
			t.Errorf("a Secret read failed in a way only keys can explain: %s", f)
		}
	}
	if len(failedReads) > 2 {
		t.Errorf("Secret reads failed during the rotation: %s", strings.Join(failedReads[:min(len(failedReads), 10)], "; "))
	}
	after := secretClasses(ctx, t, cpHosts)
	got := &basaltv1.Cluster{}
	if err := c.Get(ctx, framework.ObjectKey(ns, cluster), got); err != nil {
		t.Fatal(err)
	}
	newKey := got.Status.Encryption.KeyName
	if newKey == oldKey || len(got.Status.Encryption.Keys) != 1 {
		t.Fatalf("after the rotation status.encryption is %+v (the old key was %s)", got.Status.Encryption, oldKey)
	}
	if want := "k8s:enc:secretbox:v1:" + newKey; len(after) != 1 || after[want] < n {
		t.Fatalf("after the rotation etcd holds %v, want every Secret under %s", after, newKey)
	}
	t.Logf("etcd before the rotation: %v; after: %v", before, after)
	for i := range n {
		s, err := wc.CoreV1().Secrets("default").Get(ctx, fmt.Sprintf("rotation-%02d", i), metav1.GetOptions{})
		if err != nil || string(s.Data["v"]) != fmt.Sprint(i) {
			t.Errorf("Secret rotation-%02d after the rotation: %v", i, err)
		}
	}
}

// secretClasses reads every Secret's value in etcd with etcdctl on the first control-plane host
// that answers and counts them by storage header (k8s:enc:secretbox:v1:key-N, or "plain").
func secretClasses(ctx context.Context, t *testing.T, hosts []*bed.Host) map[string]int {
	t.Helper()
	var errs []string
	for _, h := range hosts {
		out, err := h.Run(ctx, "ETCDCTL_API=3 /opt/basalt/bin/etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/basalt/pki/etcd/ca.crt "+
			"--cert=/etc/basalt/pki/etcd/healthcheck-client.crt --key=/etc/basalt/pki/etcd/healthcheck-client.key --command-timeout=10s "+
			"get /registry/secrets/ --prefix -w json")
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", h.Name, err))
			continue
		}
		var resp struct {
			Kvs []struct {
				Value string `json:"value"`
			} `json:"kvs"`
		}
		if err := json.Unmarshal([]byte(out), &resp); err != nil {
			t.Fatalf("etcdctl on %s: %v", h.Name, err)
		}
		counts := map[string]int{}
		for _, kv := range resp.Kvs {
			v, err := base64.StdEncoding.DecodeString(kv.Value)
			if err != nil {
				t.Fatal(err)
			}
			class := "plain"
			if parts := strings.SplitN(string(v), ":", 6); len(parts) == 6 && parts[0] == "k8s" && parts[1] == "enc" {
				class = strings.Join(parts[:5], ":")
			}
			counts[class]++
		}
		return counts
	}
	t.Fatalf("etcdctl answered on no control-plane host: %s", strings.Join(errs, "; "))
	return nil
}

// apiServerPIDs maps each control-plane host that runs kube-apiserver to its process ID.
func apiServerPIDs(ctx context.Context, t *testing.T, hosts []*bed.Host) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, h := range hosts {
		pid, err := h.Run(ctx, "pgrep -x kube-apiserver || true")
		if err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		if p := strings.TrimSpace(pid); p != "" {
			out[h.Name] = p
		}
	}
	return out
}

// readSecrets reads the n rotation Secrets, one every half second, until the returned func is
// called; that returns the failed reads.
func readSecrets(ctx context.Context, wc kubernetes.Interface, n int) func() []string {
	stop := make(chan struct{})
	done := make(chan struct{})
	var mu sync.Mutex
	var failed []string
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			name := fmt.Sprintf("rotation-%02d", i%n)
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			s, err := wc.CoreV1().Secrets("default").Get(rctx, name, metav1.GetOptions{})
			cancel()
			if err == nil && string(s.Data["v"]) != fmt.Sprint(i%n) {
				err = fmt.Errorf("data %q", s.Data["v"])
			}
			if err != nil {
				mu.Lock()
				failed = append(failed, fmt.Sprintf("%s %s: %v", time.Now().UTC().Format("15:04:05.0"), name, err))
				mu.Unlock()
			}
		}
	}()
	return func() []string {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return failed
	}
}
