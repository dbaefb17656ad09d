// Package kubeconfig builds the kubeconfig files of a workload cluster: the admin kubeconfig users
// fetch from the Cluster's Secret, and the ones of kube-controller-manager, kube-scheduler,
// kube-proxy and every kubelet. Each embeds the server URL, the cluster CA and a client
// certificate and key (all PEM), so a file is self-contained and needs no other file on the host.
//
// Build writes any kubeconfig; Admin, ControllerManager, Scheduler, KubeProxy and Kubelet also
// check that the client certificate carries the identity that component must have (for example
// CN=system:node:<name>, O=system:nodes for a kubelet), which catches a certificate wired to the
// wrong file before a host ever sees it. Output is deterministic: the same inputs give the same
// bytes, so the Cluster controller can compare before it writes a Secret.
//
// Parse and Verify read a kubeconfig back: Verify checks that its client certificate chains to
// the CA it embeds, holds the clientAuth usage and matches its key.
package kubeconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/basalt-dev/basalt/bootstrap/pki"
)

// Params are the inputs of one kubeconfig.
type Params struct {
	// ClusterName names the cluster entry, e.g. the Cluster object's name.
	ClusterName string
	// Server is the API server URL, https://host:port. Admin kubeconfigs use the cluster
	// endpoint; components on a node use the node-local load balancer.
	Server string
	// CA is the PEM cluster CA the client trusts for the server.
	CA []byte
	// ClientCert and ClientKey are the PEM client certificate and key.
	ClientCert []byte
	ClientKey  []byte
}

// Identity is who a client certificate must say it is.
type Identity struct {
	// User is the expected CN.
	User string
	// Groups are the expected O values, in any order.
	Groups []string
}

// Admin builds the admin kubeconfig (user basalt-admin, group system:masters).
func Admin(p Params) ([]byte, error) {
	return build(p, Identity{User: pki.AdminUser, Groups: []string{pki.ClusterAdminsGroup}}, true)
}

// ControllerManager builds the kubeconfig of kube-controller-manager.
func ControllerManager(p Params) ([]byte, error) {
	return build(p, Identity{User: pki.ControllerManagerUser}, true)
}

// Scheduler builds the kubeconfig of kube-scheduler.
func Scheduler(p Params) ([]byte, error) {
	return build(p, Identity{User: pki.SchedulerUser}, true)
}

// KubeProxy builds the kubeconfig of kube-proxy.
func KubeProxy(p Params) ([]byte, error) {
	return build(p, Identity{User: pki.KubeProxyUser}, true)
}

// Kubelet builds the kubeconfig of the kubelet of node nodeName.
func Kubelet(nodeName string, p Params) ([]byte, error) {
	if errs := validation.IsDNS1123Subdomain(nodeName); len(errs) > 0 {
		return nil, fmt.Errorf("kubeconfig: nodeName: %q: %s", nodeName, strings.Join(errs, "; "))
	}
	return build(p, Identity{User: pki.NodeUserPrefix + nodeName, Groups: []string{pki.NodesGroup}}, true)
}

// Build builds a kubeconfig for whatever identity the client certificate carries, e.g. for a
// client Basalt has no named function for. It checks the inputs like the named functions.
func Build(p Params) ([]byte, error) {
	return build(p, Identity{}, false)
}

func build(p Params, want Identity, checkIdentity bool) ([]byte, error) {
	if err := validateParams(p); err != nil {
		return nil, err
	}
	cert, err := clientCert(p.ClientCert, p.ClientKey)
	if err != nil {
		return nil, err
	}
	got := Identity{User: cert.Subject.CommonName, Groups: cert.Subject.Organization}
	if checkIdentity && !sameIdentity(got, want) {
		return nil, fmt.Errorf("kubeconfig: clientCert: identity is CN=%q O=%q, want CN=%q O=%q",
			got.User, got.Groups, want.User, want.Groups)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[p.ClusterName] = &clientcmdapi.Cluster{Server: p.Server, CertificateAuthorityData: p.CA}
	cfg.AuthInfos[got.User] = &clientcmdapi.AuthInfo{ClientCertificateData: p.ClientCert, ClientKeyData: p.ClientKey}
	context := got.User + "@" + p.ClusterName
	cfg.Contexts[context] = &clientcmdapi.Context{Cluster: p.ClusterName, AuthInfo: got.User}
	cfg.CurrentContext = context
	if err := clientcmd.ConfirmUsable(*cfg, context); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return clientcmd.Write(*cfg)
}

func validateParams(p Params) error {
	if errs := validation.IsDNS1123Subdomain(p.ClusterName); len(errs) > 0 {
		return fmt.Errorf("kubeconfig: clusterName: %q: %s", p.ClusterName, strings.Join(errs, "; "))
	}
	if err := validateServer(p.Server); err != nil {
		return fmt.Errorf("kubeconfig: server: %w", err)
	}
	if _, err := pki.ParseCertificate(p.CA); err != nil {
		return fmt.Errorf("kubeconfig: ca: %w", err)
	}
	return nil
}

// validateServer accepts https://host[:port] where host is an IP or a DNS name.
func validateServer(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("%q is not https://host[:port]", s)
	}
	host := u.Hostname()
	if net.ParseIP(host) == nil && len(validation.IsDNS1123Subdomain(host)) > 0 {
		return fmt.Errorf("host %q is neither an IP nor a DNS name", host)
	}
	return nil
}

// clientCert parses the client pair and checks that the key matches.
func clientCert(certPEM, keyPEM []byte) (*x509.Certificate, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: clientCert/clientKey: %w", err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("kubeconfig: clientCert: %w", err)
		}
	}
	return pair.Leaf, nil
}

func sameIdentity(a, b Identity) bool {
	ga, gb := slices.Clone(a.Groups), slices.Clone(b.Groups)
	slices.Sort(ga)
	slices.Sort(gb)
	return a.User == b.User && slices.Equal(ga, gb)
}

// Info is what a kubeconfig's current context holds.
type Info struct {
	Context     string
	ClusterName string
	Server      string
	CA          []byte
	User        string
	ClientCert  []byte
	ClientKey   []byte
}

// Parse loads a kubeconfig with clientcmd.Load and returns its current context's cluster and
// credentials. Only embedded data is accepted: a file reference would not travel in a Secret.
func Parse(data []byte) (*Info, error) {
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, err
	}
	ctx, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok {
		return nil, fmt.Errorf("current context %q not found", cfg.CurrentContext)
	}
	cluster, ok := cfg.Clusters[ctx.Cluster]
	if !ok {
		return nil, fmt.Errorf("cluster %q not found", ctx.Cluster)
	}
	user, ok := cfg.AuthInfos[ctx.AuthInfo]
	if !ok {
		return nil, fmt.Errorf("user %q not found", ctx.AuthInfo)
	}
	if len(cluster.CertificateAuthorityData) == 0 || len(user.ClientCertificateData) == 0 || len(user.ClientKeyData) == 0 {
		return nil, errors.New("CA, client certificate and client key must be embedded")
	}
	return &Info{
		Context: cfg.CurrentContext, ClusterName: ctx.Cluster, Server: cluster.Server,
		CA: cluster.CertificateAuthorityData, User: ctx.AuthInfo,
		ClientCert: user.ClientCertificateData, ClientKey: user.ClientKeyData,
	}, nil
}

// Verify parses a kubeconfig and checks at now that its server URL is well-formed, that its
// client certificate matches its key and chains to the embedded CA with the clientAuth usage.
func Verify(data []byte, now time.Time) (*Info, error) {
	info, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if err := validateServer(info.Server); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if _, err := clientCert(info.ClientCert, info.ClientKey); err != nil {
		return nil, err
	}
	if err := pki.Verify(info.ClientCert, info.CA, x509.ExtKeyUsageClientAuth, now); err != nil {
		return nil, fmt.Errorf("client certificate is not trusted by the embedded CA: %w", err)
	}
	return info, nil
}
