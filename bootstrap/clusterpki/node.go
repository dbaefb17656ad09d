package clusterpki

import (
	"fmt"

	"github.com/basalt-dev/basalt/bootstrap/pki"
)

// NodeCertificates are the certificates and keys one node's Plan carries. Control-plane fields
// are empty on a worker. No CA private key is ever part of it: Basalt signs every certificate in
// the manager.
type NodeCertificates struct {
	// CA is the cluster CA certificate (every node).
	CA []byte
	// KubeletClient, KubeletServing and KubeProxy are the node's kubelet client certificate (in
	// its kubeconfig), kubelet serving certificate, and kube-proxy's client certificate.
	KubeletClient  pki.KeyPair
	KubeletServing pki.KeyPair
	KubeProxy      pki.KeyPair

	// Control-plane nodes only.
	EtcdCA                   []byte
	FrontProxyCA             []byte
	ServiceAccount           pki.KeyPair // Key: private key, Cert: PEM public key
	APIServer                pki.KeyPair
	APIServerKubeletClient   pki.KeyPair
	APIServerEtcdClient      pki.KeyPair
	FrontProxyClient         pki.KeyPair
	EtcdServer               pki.KeyPair
	EtcdPeer                 pki.KeyPair
	EtcdHealthcheckClient    pki.KeyPair
	ControllerManager        pki.KeyPair
	Scheduler                pki.KeyPair
	ControllerManagerServing pki.KeyPair
	SchedulerServing         pki.KeyPair
	// VirtualIP is the client certificate the agent holds the control-plane virtual IP's Lease
	// with.
	VirtualIP pki.KeyPair
}

// ForNode picks what node needs from the cluster's material. An error names the missing entry
// (call Ensure with the node in its Input first).
func (m Material) ForNode(node string, controlPlane bool) (NodeCertificates, error) {
	var nc NodeCertificates
	var missing []string
	get := func(name string, certOnly bool) pki.KeyPair {
		kp, ok := m[name]
		if !ok || len(kp.Cert) == 0 || (!certOnly && len(kp.Key) == 0) {
			missing = append(missing, name)
		}
		if certOnly {
			kp.Key = nil // a CA key never leaves the manager
		}
		return kp
	}
	nc.CA = get(ClusterCA, true).Cert
	nc.KubeletClient = get(KubeletClientName(node), false)
	nc.KubeletServing = get(KubeletServingName(node), false)
	nc.KubeProxy = get(KubeProxy, false)
	if controlPlane {
		nc.EtcdCA = get(EtcdCA, true).Cert
		nc.FrontProxyCA = get(FrontProxyCA, true).Cert
		nc.ServiceAccount = get(ServiceAccount, false)
		nc.APIServer = get(APIServerName(node), false)
		nc.APIServerKubeletClient = get(APIServerKubeletClient, false)
		nc.APIServerEtcdClient = get(APIServerEtcdClient, false)
		nc.FrontProxyClient = get(FrontProxyClient, false)
		nc.EtcdServer = get(EtcdServerName(node), false)
		nc.EtcdPeer = get(EtcdPeerName(node), false)
		nc.EtcdHealthcheckClient = get(EtcdHealthcheckClient, false)
		nc.ControllerManager = get(ControllerManager, false)
		nc.Scheduler = get(Scheduler, false)
		nc.ControllerManagerServing = get(ControllerManagerServing, false)
		nc.SchedulerServing = get(SchedulerServing, false)
		nc.VirtualIP = get(VirtualIP, false)
	}
	if len(missing) > 0 {
		return NodeCertificates{}, fmt.Errorf("clusterpki: node %s: no %q in the material", node, missing)
	}
	return nc, nil
}
