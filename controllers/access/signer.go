package access

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// SignResult counts what SignApproved did.
type SignResult struct {
	Signed, Refused int
}

// SignApproved signs, with the cluster CA (caCert, caKey: PEM), every approved and unsigned
// CertificateSigningRequest of SignerName in the workload cluster cfg reaches, for
// min(expirationSeconds, MaxTTL) (DefaultTTL when unset) from now, and marks Failed each one
// that asks for anything but a grant: a CN other than basalt-admin:<name>:<grant>, a group, a
// SAN, or a usage other than client auth and digital signature. It is the manager's side of
// GrantAccess.
func SignApproved(ctx context.Context, cfg *rest.Config, caCert, caKey []byte, now time.Time) (SignResult, error) {
	var res SignResult
	ca, err := tls.X509KeyPair(caCert, caKey)
	if err != nil {
		return res, fmt.Errorf("the cluster CA: %w", err)
	}
	caX509, err := x509.ParseCertificate(ca.Certificate[0])
	if err != nil {
		return res, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return res, err
	}
	l, err := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{FieldSelector: "spec.signerName=" + SignerName})
	if err != nil {
		return res, fmt.Errorf("listing CertificateSigningRequests: %w", err)
	}
	for i := range l.Items {
		csr := &l.Items[i]
		if len(csr.Status.Certificate) > 0 || !approved(csr) {
			continue
		}
		req, problem := checkRequest(csr)
		if problem != "" {
			csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
				Type: certificatesv1.CertificateFailed, Status: corev1.ConditionTrue, Reason: "NotAGrant", Message: problem,
				LastUpdateTime: metav1.NewTime(now),
			})
			if _, err := cs.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, csr, metav1.UpdateOptions{}); err != nil {
				return res, fmt.Errorf("failing CertificateSigningRequest %s: %w", csr.Name, err)
			}
			res.Refused++
			continue
		}
		ttl := DefaultTTL
		if e := csr.Spec.ExpirationSeconds; e != nil {
			ttl = min(max(time.Duration(*e)*time.Second, MinTTL), MaxTTL)
		}
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		if err != nil {
			return res, err
		}
		notAfter := now.Add(ttl).Truncate(time.Second)
		if notAfter.After(caX509.NotAfter) {
			notAfter = caX509.NotAfter
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial, Subject: req.Subject,
			NotBefore: now.Add(-time.Minute).Truncate(time.Second), NotAfter: notAfter,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			BasicConstraintsValid: true,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caX509, req.PublicKey, ca.PrivateKey)
		if err != nil {
			return res, fmt.Errorf("signing CertificateSigningRequest %s: %w", csr.Name, err)
		}
		csr.Status.Certificate = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		if _, err := cs.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, csr, metav1.UpdateOptions{}); err != nil {
			return res, fmt.Errorf("storing the certificate of CertificateSigningRequest %s: %w", csr.Name, err)
		}
		res.Signed++
	}
	return res, nil
}

func approved(csr *certificatesv1.CertificateSigningRequest) bool {
	ok := false
	for _, c := range csr.Status.Conditions {
		switch c.Type {
		case certificatesv1.CertificateDenied, certificatesv1.CertificateFailed:
			return false
		case certificatesv1.CertificateApproved:
			ok = c.Status == corev1.ConditionTrue
		}
	}
	return ok
}

// checkRequest parses a CSR and says what about it is not a grant ("" when it is one).
func checkRequest(csr *certificatesv1.CertificateSigningRequest) (*x509.CertificateRequest, string) {
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, "the request is not a PEM CERTIFICATE REQUEST"
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err == nil {
		err = req.CheckSignature()
	}
	if err != nil {
		return nil, "the request does not parse or its signature is wrong: " + err.Error()
	}
	var problems []string
	cn := req.Subject.CommonName
	rest, ok := strings.CutPrefix(cn, UserPrefix)
	user, grant, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || ValidateName(user) != nil || len(grant) != 8 || strings.Trim(grant, "0123456789abcdef") != "" {
		problems = append(problems, fmt.Sprintf("CN %q is not %s<user>:<8 hex digits>", cn, UserPrefix))
	}
	s := req.Subject
	if len(s.Organization)+len(s.OrganizationalUnit)+len(s.Country)+len(s.Locality)+len(s.Province)+len(s.StreetAddress)+len(s.PostalCode) > 0 || s.SerialNumber != "" {
		problems = append(problems, "the subject has more than a CN (a group would widen the grant)")
	}
	if len(req.DNSNames)+len(req.IPAddresses)+len(req.EmailAddresses)+len(req.URIs) > 0 {
		problems = append(problems, "the request has subject alternative names")
	}
	for _, u := range csr.Spec.Usages {
		if u != certificatesv1.UsageClientAuth && u != certificatesv1.UsageDigitalSignature && u != certificatesv1.UsageKeyEncipherment {
			problems = append(problems, fmt.Sprintf("usage %q", u))
		}
	}
	if len(problems) > 0 {
		return nil, strings.Join(problems, "; ")
	}
	return req, ""
}
