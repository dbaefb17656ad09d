// Package access hands out revocable, short-lived administrator kubeconfigs of a workload
// cluster (basaltctl get kubeconfig --user): instead of the cluster's admin kubeconfig, whose
// certificate is in system:masters and can be neither revoked nor narrowed, a user gets a client
// certificate signed by the cluster CA, valid for a bounded time, for the Kubernetes user
// basalt-admin:<name>:<grant> in no group. The request travels through the workload cluster's
// CertificateSigningRequest API with the signer basalt.dev/admin-access: the caller (a cluster
// admin) creates and approves it, and the Basalt manager, which alone holds the CA key (it never
// goes to the hosts, so kube-controller-manager cannot sign), signs what a grant may be and
// fails anything else (SignApproved). Each grant has its own ClusterRoleBinding of that name → cluster-admin, labelled
// basalt.dev/admin-access and basalt.dev/admin-user=<name>: deleting a user's bindings
// (RevokeAccess) makes every kubeconfig granted to that user useless at once, although the
// certificates stay valid until they expire, and a later grant does not bring them back. The
// bindings of expired grants are deleted by the next grant or list.
package access

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/basalt-dev/basalt/bootstrap/kubeconfig"
)

const (
	// UserPrefix starts the user name (certificate CN) of every kubeconfig Grant makes.
	UserPrefix = "basalt-admin:"
	// LabelAdminAccess marks the ClusterRoleBindings GrantAccess makes; LabelAdminUser holds the
	// user name, AnnotationExpiresAt when the grant's certificate expires (RFC 3339).
	LabelAdminAccess    = "basalt.dev/admin-access"
	LabelAdminUser      = "basalt.dev/admin-user"
	AnnotationExpiresAt = "basalt.dev/expires-at"
	// DefaultTTL is a granted kubeconfig's lifetime when none is asked for.
	DefaultTTL = 8 * time.Hour
	// MinTTL is the shortest lifetime the CertificateSigningRequest API grants.
	MinTTL = 10 * time.Minute
	// MaxTTL bounds a granted kubeconfig's lifetime: access that outlives a week should be a
	// real identity provider's.
	MaxTTL = 7 * 24 * time.Hour
	// SignerName is the CSR signer the Basalt manager implements for grants.
	SignerName = "basalt.dev/admin-access"
	// signTimeout bounds the wait for the manager to sign.
	signTimeout = time.Minute
)

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$`)

// ValidateName checks a user name: lowercase letters, digits, '-' and '.', at most 63
// characters, so it fits the binding's name.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("user name %q: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 63 characters", name)
	}
	return nil
}

// Subject is the Kubernetes user name (certificate CN, binding name) of one grant to user.
func Subject(user, grant string) string { return UserPrefix + user + ":" + grant }

// Grant is one kubeconfig Grant made.
type Grant struct {
	// Kubeconfig is the kubeconfig: the server and CA of admin, the new certificate and key.
	Kubeconfig []byte
	// User is the Kubernetes user name it authenticates as, Subject(user, grant).
	User string
	// NotAfter is when its certificate expires.
	NotAfter time.Time
}

// GrantAccess returns a kubeconfig for user valid for ttl (0: DefaultTTL), signed through the
// CSR API of the cluster admin (an admin REST config of the workload cluster) reaches, and
// makes the ClusterRoleBinding of that grant. nudge is called once the request is approved: it
// tells the manager to sign (basaltctl changes an annotation of the Cluster). clusterName names
// the kubeconfig's cluster entry.
func GrantAccess(ctx context.Context, admin *rest.Config, clusterName, user string, ttl time.Duration, nudge func(context.Context) error) (*Grant, error) {
	if err := ValidateName(user); err != nil {
		return nil, err
	}
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < MinTTL || ttl > MaxTTL {
		return nil, fmt.Errorf("lifetime %s: choose between %s and %s", ttl, MinTTL, MaxTTL)
	}
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return nil, err
	}
	if _, err := pruneExpired(ctx, cs); err != nil {
		return nil, err
	}
	id := make([]byte, 4)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	subject := Subject(user, hex.EncodeToString(id))
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: subject}}, key)
	if err != nil {
		return nil, err
	}
	certPEM, err := sign(ctx, cs, user, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), ttl, nudge)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, errors.New("the signed certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the signed certificate: %w", err)
	}
	if cert.Subject.CommonName != subject || len(cert.Subject.Organization) > 0 {
		return nil, fmt.Errorf("the signer issued CN=%q O=%q, want CN=%q in no group", cert.Subject.CommonName, cert.Subject.Organization, subject)
	}
	// The binding comes last: a grant that failed before leaves nothing that authorizes.
	if err := createBinding(ctx, cs, user, subject, cert.NotAfter); err != nil {
		return nil, err
	}
	ca := admin.CAData
	if len(ca) == 0 {
		return nil, errors.New("the admin config carries no CA data")
	}
	kc, err := kubeconfig.Build(kubeconfig.Params{ClusterName: clusterName, Server: admin.Host, CA: ca,
		ClientCert: certPEM, ClientKey: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})})
	if err != nil {
		return nil, err
	}
	return &Grant{Kubeconfig: kc, User: subject, NotAfter: cert.NotAfter}, nil
}

// createBinding makes the ClusterRoleBinding of one grant.
func createBinding(ctx context.Context, cs kubernetes.Interface, user, subject string, notAfter time.Time) error {
	b := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: subject,
			Labels:      map[string]string{LabelAdminAccess: "true", LabelAdminUser: user},
			Annotations: map[string]string{AnnotationExpiresAt: notAfter.UTC().Format(time.RFC3339)}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: subject}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, b, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("ClusterRoleBinding %s: %w", subject, err)
	}
	return nil
}

// bindings lists the grants' ClusterRoleBindings (of user, or of everyone when user is "").
func bindings(ctx context.Context, cs kubernetes.Interface, user string) ([]rbacv1.ClusterRoleBinding, error) {
	sel := LabelAdminAccess + "=true"
	if user != "" {
		sel += "," + LabelAdminUser + "=" + user
	}
	l, err := cs.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

// deleteBinding deletes one grant's binding (gone already is fine).
func deleteBinding(ctx context.Context, cs kubernetes.Interface, b *rbacv1.ClusterRoleBinding) error {
	uid := b.UID
	err := cs.RbacV1().ClusterRoleBindings().Delete(ctx, b.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting ClusterRoleBinding %s: %w", b.Name, err)
	}
	return nil
}

// pruneExpired deletes the bindings of grants whose certificates expired, and returns the others.
func pruneExpired(ctx context.Context, cs kubernetes.Interface) ([]rbacv1.ClusterRoleBinding, error) {
	all, err := bindings(ctx, cs, "")
	if err != nil {
		return nil, err
	}
	var live []rbacv1.ClusterRoleBinding
	for i := range all {
		exp, err := time.Parse(time.RFC3339, all[i].Annotations[AnnotationExpiresAt])
		if err == nil && time.Now().After(exp) {
			if err := deleteBinding(ctx, cs, &all[i]); err != nil {
				return nil, err
			}
			continue
		}
		live = append(live, all[i])
	}
	return live, nil
}

// sign has the manager issue a client certificate for csr: it creates the request, approves it
// (the caller is the cluster's admin), nudges the manager, waits for the certificate and
// deletes the request.
func sign(ctx context.Context, cs kubernetes.Interface, user string, csr []byte, ttl time.Duration, nudge func(context.Context) error) ([]byte, error) {
	req := &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "basalt-admin-" + user + "-", Labels: map[string]string{LabelAdminAccess: "true"}},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:           csr,
			SignerName:        SignerName,
			ExpirationSeconds: ptr(int32(ttl / time.Second)),
			Usages:            []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
		},
	}
	created, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, req, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating a CertificateSigningRequest: %w", err)
	}
	defer func() {
		_ = cs.CertificatesV1().CertificateSigningRequests().Delete(context.WithoutCancel(ctx), created.Name, metav1.DeleteOptions{})
	}()
	created.Status.Conditions = append(created.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue,
		Reason: "BasaltAdminAccess", Message: "basaltctl get kubeconfig --user " + user,
	})
	if _, err := cs.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, created.Name, created, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("approving CertificateSigningRequest %s: %w", created.Name, err)
	}
	if nudge != nil {
		if err := nudge(ctx); err != nil {
			return nil, fmt.Errorf("asking the manager to sign: %w", err)
		}
	}
	deadline := time.Now().Add(signTimeout)
	for {
		got, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, created.Name, metav1.GetOptions{})
		if err == nil && len(got.Status.Certificate) > 0 {
			return got.Status.Certificate, nil
		}
		if err == nil {
			for _, c := range got.Status.Conditions {
				if c.Type == certificatesv1.CertificateFailed || c.Type == certificatesv1.CertificateDenied {
					return nil, fmt.Errorf("CertificateSigningRequest %s: %s: %s", created.Name, c.Reason, c.Message)
				}
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("CertificateSigningRequest %s was not signed within %s (is the Basalt manager running and the Cluster not paused?)", created.Name, signTimeout)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// RevokeAccess deletes the bindings of every grant to user: each kubeconfig granted to user is
// refused from then on, and a later grant does not bring it back. It returns how many it
// deleted; a user without grants is not an error.
func RevokeAccess(ctx context.Context, admin *rest.Config, user string) (int, error) {
	if err := ValidateName(user); err != nil {
		return 0, err
	}
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return 0, err
	}
	bs, err := bindings(ctx, cs, user)
	if err != nil {
		return 0, err
	}
	for i := range bs {
		if err := deleteBinding(ctx, cs, &bs[i]); err != nil {
			return i, err
		}
	}
	return len(bs), nil
}

// Access is one grant that has not expired.
type Access struct {
	User, Subject string
	ExpiresAt     time.Time
}

// ListAccess lists the grants that have not expired (deleting the bindings of those that have).
func ListAccess(ctx context.Context, admin *rest.Config) ([]Access, error) {
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		return nil, err
	}
	live, err := pruneExpired(ctx, cs)
	if err != nil {
		return nil, err
	}
	var out []Access
	for _, b := range live {
		exp, _ := time.Parse(time.RFC3339, b.Annotations[AnnotationExpiresAt])
		out = append(out, Access{User: b.Labels[LabelAdminUser], Subject: b.Name, ExpiresAt: exp})
	}
	return out, nil
}

func ptr[T any](v T) *T { return &v }
