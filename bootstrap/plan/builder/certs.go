package builder

import (
	"crypto/tls"
	"crypto/x509"

	"github.com/basalt-dev/basalt/bootstrap/pki"
)

// checkCertificates checks that every certificate the node needs is present, matches its key,
// was signed by the right CA and, for serving certificates, is valid for the addresses the
// component is reached at. It catches a certificate of another node or a pair wired to the wrong
// field before a host sees it. It does not look at validity dates (Build reads no clock;
// renewal is bootstrap/clusterpki's job).
func (r *resolved) checkCertificates() error {
	c := r.Certificates
	ca, err := parseCA("certificates.ca", c.CA)
	if err != nil {
		return err
	}
	ip := r.nodeIP.String()
	checks := []struct {
		field string
		kp    pki.KeyPair
		ca    *x509.Certificate
		hosts []string
	}{
		{"kubeletClient", c.KubeletClient, ca, nil},
		{"kubeletServing", c.KubeletServing, ca, []string{ip}},
		{"kubeProxy", c.KubeProxy, ca, nil},
	}
	if r.cp {
		etcdCA, err := parseCA("certificates.etcdCA", c.EtcdCA)
		if err != nil {
			return err
		}
		checks = append(checks, []struct {
			field string
			kp    pki.KeyPair
			ca    *x509.Certificate
			hosts []string
		}{
			{"etcdServer", c.EtcdServer, etcdCA, []string{ip, r.loopback}},
			{"etcdPeer", c.EtcdPeer, etcdCA, []string{ip}},
			{"etcdHealthcheckClient", c.EtcdHealthcheckClient, etcdCA, nil},
		}...)
		if r.apiUp {
			frontProxyCA, err := parseCA("certificates.frontProxyCA", c.FrontProxyCA)
			if err != nil {
				return err
			}
			if _, err := pki.ServiceAccountPublicKey(c.ServiceAccount.Key); err != nil {
				return fieldErr("certificates.serviceAccount.key", "%v", err)
			}
			checks = append(checks, []struct {
				field string
				kp    pki.KeyPair
				ca    *x509.Certificate
				hosts []string
			}{
				{"apiServer", c.APIServer, ca, []string{ip, r.loopback}},
				{"apiServerKubeletClient", c.APIServerKubeletClient, ca, nil},
				{"apiServerEtcdClient", c.APIServerEtcdClient, etcdCA, nil},
				{"frontProxyClient", c.FrontProxyClient, frontProxyCA, nil},
				{"controllerManager", c.ControllerManager, ca, nil},
				{"scheduler", c.Scheduler, ca, nil},
				{"controllerManagerServing", c.ControllerManagerServing, ca, []string{r.loopback}},
				{"schedulerServing", c.SchedulerServing, ca, []string{r.loopback}},
			}...)
		}
	}
	for _, ch := range checks {
		if err := checkPair("certificates."+ch.field, ch.kp, ch.ca, ch.hosts); err != nil {
			return err
		}
	}
	return nil
}

func parseCA(field string, pemBytes []byte) (*x509.Certificate, error) {
	if len(pemBytes) == 0 {
		return nil, fieldErr(field, "required")
	}
	cert, err := pki.ParseCertificate(pemBytes)
	if err != nil {
		return nil, fieldErr(field, "%v", err)
	}
	if !cert.IsCA {
		return nil, fieldErr(field, "not a CA certificate")
	}
	return cert, nil
}

func checkPair(field string, kp pki.KeyPair, ca *x509.Certificate, hosts []string) error {
	if len(kp.Cert) == 0 || len(kp.Key) == 0 {
		return fieldErr(field, "required: a certificate and its key")
	}
	pair, err := tls.X509KeyPair(kp.Cert, kp.Key)
	if err != nil {
		return fieldErr(field, "%v", err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fieldErr(field, "%v", err)
		}
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil || leaf.IsCA {
		return fieldErr(field, "not a leaf signed by the CA %q", ca.Subject.CommonName)
	}
	for _, h := range hosts {
		if err := leaf.VerifyHostname(h); err != nil {
			return fieldErr(field, "not valid for %s (a certificate of another node?)", h)
		}
	}
	return nil
}
