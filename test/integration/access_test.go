package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/bootstrap/plan/builder"
	"github.com/basalt-dev/basalt/controllers/access"
)

// TestRevocableAdminAccess runs etcd, kube-apiserver and kube-controller-manager from a Plan and
// grants a kubeconfig the way basaltctl get kubeconfig --user does, the manager's signer
// (access.SignApproved, what the Cluster controller runs when nudged) signing it with the
// cluster CA for the requested time: it authenticates as basalt-admin:alice:<grant> in no group
// (not system:masters) and may act through its ClusterRoleBinding alone; revoked, it is
// refused, and a new grant does not bring it back. An approved request for another identity
// (a group) is failed, not signed.
func TestRevocableAdminAccess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, pkiRes, _, _ := startNode(ctx, t, []string{builder.ServiceEtcd, builder.ServiceAPIServer, builder.ServiceControllerManager})
	admin, err := clientcmd.RESTConfigFromKubeConfig(pkiRes.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ca := pkiRes.Material[clusterpki.ClusterCA]
	// The manager's part: sign what is approved when nudged.
	nudge := func(ctx context.Context) error {
		res, err := access.SignApproved(ctx, admin, ca.Cert, ca.Key, time.Now())
		t.Logf("The signer signed %d, refused %d", res.Signed, res.Refused)
		return err
	}

	for _, bad := range []struct {
		user string
		ttl  time.Duration
	}{{"Alice", time.Hour}, {"alice:root", time.Hour}, {"alice", time.Minute}, {"alice", 30 * 24 * time.Hour}} {
		if _, err := access.GrantAccess(ctx, admin, "it", bad.user, bad.ttl, nudge); err == nil {
			t.Errorf("GrantAccess(%q, %s) succeeded", bad.user, bad.ttl)
		} else {
			t.Logf("GrantAccess(%q, %s): %v", bad.user, bad.ttl, err)
		}
	}

	start := time.Now()
	g, err := access.GrantAccess(ctx, admin, "it", "alice", 15*time.Minute, nudge)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MEASURE grant: CSR created, approved, signed, kubeconfig built in %s; expires %s",
		time.Since(start).Round(time.Millisecond), g.NotAfter.UTC().Format(time.RFC3339))
	if life := time.Until(g.NotAfter); life < 13*time.Minute || life > 16*time.Minute {
		t.Errorf("the certificate lives %s, want about 15m", life.Round(time.Second))
	}
	alice := kubeClient(t, g.Kubeconfig)
	review, err := alice.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ui := review.Status.UserInfo
	t.Logf("The granted kubeconfig authenticates as %s, groups %v", ui.Username, ui.Groups)
	if ui.Username != g.User || !strings.HasPrefix(ui.Username, "basalt-admin:alice:") || strings.Contains(strings.Join(ui.Groups, ","), "system:masters") {
		t.Fatalf("authenticated as %s in %v", ui.Username, ui.Groups)
	}
	if _, err := alice.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("the granted kubeconfig cannot list Secrets: %v", err)
	}
	if grants, err := access.ListAccess(ctx, admin); err != nil || len(grants) != 1 || grants[0].User != "alice" || grants[0].Subject != g.User {
		t.Errorf("ListAccess: %+v, %v", grants, err)
	}

	if n, err := access.RevokeAccess(ctx, admin, "alice"); err != nil || n != 1 {
		t.Fatalf("RevokeAccess: %d, %v", n, err)
	}
	revoked := time.Now()
	for {
		_, err := alice.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
		if apierrors.IsForbidden(err) {
			t.Logf("MEASURE revoke: the kubeconfig is refused %s after the binding was deleted", time.Since(revoked).Round(time.Millisecond))
			break
		}
		if time.Since(revoked) > time.Minute {
			t.Fatalf("a minute after the revocation the kubeconfig still gets %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n, err := access.RevokeAccess(ctx, admin, "alice"); err != nil || n != 0 {
		t.Errorf("revoking twice: %d, %v", n, err)
	}
	// A new grant to the same user works, and does not bring the revoked kubeconfig back.
	g2, err := access.GrantAccess(ctx, admin, "it", "alice", access.MinTTL, nudge)
	if err != nil {
		t.Fatal(err)
	}
	alice2 := kubeClient(t, g2.Kubeconfig)
	for deadline := time.Now().Add(time.Minute); ; {
		if _, err := alice2.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the new grant gets %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := alice.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("after a new grant the revoked kubeconfig gets %v, want forbidden", err)
	}

	// An approved request of the signer for a group is failed, never signed.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "basalt-admin:mallory:0a1b2c3d", Organization: []string{"system:masters"}}}, key)
	if err != nil {
		t.Fatal(err)
	}
	cs := kubeClient(t, pkiRes.AdminKubeconfig)
	csr, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "mallory"},
		Spec: certificatesv1.CertificateSigningRequestSpec{Request: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: access.SignerName, Usages: []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	csr.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "Test"}}
	if _, err := cs.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := nudge(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, csr.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	failed := ""
	for _, c := range got.Status.Conditions {
		if c.Type == certificatesv1.CertificateFailed {
			failed = c.Message
		}
	}
	if len(got.Status.Certificate) > 0 || failed == "" {
		t.Fatalf("a request with group system:masters: certificate %d bytes, failed %q", len(got.Status.Certificate), failed)
	}
	t.Logf("A request with a group is failed: %s", failed)
}
