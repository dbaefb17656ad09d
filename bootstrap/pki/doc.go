// Package pki issues and checks the certificates of one workload cluster. It is the only package
// of Basalt that imports cfssl: key generation, CA initialisation and signing go through
// github.com/cloudflare/cfssl, and every certificate is parsed back with crypto/x509.
//
// # Store model
//
// The package never touches Secrets or files. Every function takes what the caller has stored
// (PEM bytes, possibly nil) and returns what should be stored, plus a changed flag that says
// whether the bytes differ from the input. The Cluster controller maps the results to Secrets
// and writes them only when changed is true, so every Ensure function may be called again after
// a crash, on every reconcile, with the same result.
//
// A cluster has three CAs and one service-account key:
//
//	cluster CA      (ClusterCARequest)     signs apiserver, kubelet, admin, controller-manager, ...
//	etcd CA         (EtcdCARequest)        signs etcd server/peer, etcd health-check and apiserver-etcd-client
//	front-proxy CA  (FrontProxyCARequest)  signs front-proxy-client only
//	SA key          (EnsureServiceAccountKey) signs service-account tokens
//
// # Guarantees
//
//   - EnsureCA keeps an existing CA as long as it parses, is a CA, matches its key and has not
//     expired. It never replaces a CA by itself: a broken or expired CA is an error wrapping
//     ErrCAUnusable, and the caller decides (rotation is an explicit operation).
//   - EnsureServiceAccountKey keeps an existing key whatever its algorithm: replacing it would
//     invalidate every issued token.
//   - EnsureCertificate re-issues a leaf when it is missing or unparsable, when its key does not
//     match, when it was not signed by the given CA, when its subject, SANs, usages or key
//     algorithm differ from the request, and when it is within RenewBefore of expiry (as long as
//     a re-issued certificate would last longer — a leaf never outlives its CA). Otherwise it
//     returns the input unchanged.
//   - All time decisions use the now argument, so tests inject a clock.
//
// # Request builders
//
// ClusterCARequest, APIServerCert, EtcdPeerCert, KubeletServingCert and friends return the
// requests for every certificate a cluster needs, with the subjects and SANs kubeadm uses (see
// docs/pki.md for the few places Basalt differs). The caller may adjust Validity and RenewBefore
// from spec.certificates before calling EnsureCertificate.
package pki
