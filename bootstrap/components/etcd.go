package components

import (
	"path"
	"strconv"
	"strings"
)

// argv builds an ordered command line of --name=value flags.
type argv []string

func newArgv(binDir, binary string) argv { return argv{path.Join(binDir, binary)} }

func (a *argv) flag(name, value string) { *a = append(*a, "--"+name+"="+value) }

// Etcd renders the etcd member of a control-plane host: client and peer TLS with client
// certificate authentication on both, the client port on loopback and the node IP (once, when
// the node IP is a loopback address), metrics on loopback only. The first member initialises the cluster alone (--initial-cluster-state=new);
// every other member was added by the manager as a learner and starts with
// --initial-cluster-state=existing and the member list including itself. etcd reads the
// initial-* flags only when its data directory is empty, so re-rendering a running member with
// the same inputs restarts nothing.
func Etcd(p ClusterParams) (Component, error) {
	r, err := p.resolve()
	if err != nil {
		return Component{}, err
	}
	if err := r.validateEtcd(); err != nil {
		return Component{}, err
	}
	ip := r.nodeIP.String()
	pk := r.Paths
	initial := make([]string, 0, len(r.Etcd.Members))
	for _, m := range r.Etcd.Members {
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	state := "new"
	if r.Etcd.Join {
		state = "existing"
	}
	loopback := loopbackOf(r)
	ports := r.Ports
	listenClients := EtcdClientURL(ip, ports.EtcdClient)
	if !r.nodeIP.IsLoopback() {
		listenClients = EtcdClientURL(loopback, ports.EtcdClient) + "," + listenClients
	}

	a := newArgv(pk.BinDir, "etcd")
	a.flag("name", r.Node.Name)
	a.flag("data-dir", EtcdDataDirOf(pk.EtcdDataDir, r.Etcd.Epoch))
	a.flag("listen-client-urls", listenClients)
	a.flag("advertise-client-urls", EtcdClientURL(ip, ports.EtcdClient))
	a.flag("listen-peer-urls", EtcdPeerURL(ip, ports.EtcdPeer))
	a.flag("initial-advertise-peer-urls", EtcdPeerURL(ip, ports.EtcdPeer))
	a.flag("initial-cluster", strings.Join(initial, ","))
	a.flag("initial-cluster-state", state)
	a.flag("initial-cluster-token", EtcdClusterToken(r.ClusterName, r.Etcd.Epoch))
	a.flag("client-cert-auth", "true")
	a.flag("trusted-ca-file", pk.EtcdCACert())
	a.flag("cert-file", pk.EtcdServer().Cert)
	a.flag("key-file", pk.EtcdServer().Key)
	a.flag("peer-client-cert-auth", "true")
	a.flag("peer-trusted-ca-file", pk.EtcdCACert())
	a.flag("peer-cert-file", pk.EtcdPeer().Cert)
	a.flag("peer-key-file", pk.EtcdPeer().Key)
	a.flag("listen-metrics-urls", "http://"+joinHostPort(loopback, ports.EtcdMetrics))
	a.flag("snapshot-count", "10000")
	if q := r.Etcd.QuotaBackendBytes; q > 0 {
		a.flag("quota-backend-bytes", strconv.FormatInt(q, 10))
	}
	return Component{Name: "etcd", Args: a}, nil
}

// EtcdClusterToken is --initial-cluster-token of a member of epoch.
func EtcdClusterToken(cluster, epoch string) string {
	if epoch == "" {
		return cluster
	}
	return cluster + "-" + epoch
}
