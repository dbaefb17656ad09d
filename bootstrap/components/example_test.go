package components_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"strings"

	"github.com/basalt-dev/basalt/bootstrap/components"
)

// A Plan builder renders each component of a host from one ClusterParams; the argv goes into a
// service and the files next to it.
func Example() {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		panic(err)
	}
	p := components.ClusterParams{
		ClusterName: "prod",
		Version:     "v1.37.2",
		PodCIDR:     "10.244.0.0/16",
		ServiceCIDR: "10.96.0.0/12",
		Endpoint:    "api.example.com:6443",
		Node: components.NodeParams{
			Name: "cp-1", IP: "192.0.2.11", PodCIDR: "10.244.0.0/24",
			CgroupDriver: components.CgroupDriverFor(true, true),
		},
		Etcd: components.EtcdParams{Members: []components.EtcdMember{
			{Name: "cp-1", PeerURL: components.EtcdPeerURL("192.0.2.11", 0)},
		}},
		APIServer: components.APIServerParams{Encryption: components.EncryptionParams{
			Keys: []components.EncryptionKey{{Name: "key-1", Secret: secret}},
		}},
	}

	etcd, err := components.Etcd(p)
	if err != nil {
		panic(err)
	}
	fmt.Println(etcd.Args[0])
	for _, a := range etcd.Args {
		if strings.HasPrefix(a, "--initial-cluster") {
			fmt.Println(a)
		}
	}

	api, err := components.APIServer(p)
	if err != nil {
		panic(err)
	}
	for _, f := range api.Files {
		fmt.Printf("%s %o secret=%v\n", f.Path, f.Mode, f.Secret)
	}
	kubelet, _ := components.Kubelet(p)
	fmt.Println(bytes.Contains(kubelet.Files[0].Content, []byte("failCgroupV1: false")))

	p.NodeCIDRMaskSize = 8
	_, err = components.Kubelet(p)
	fmt.Println(err)
	// Output:
	// /opt/basalt/bin/etcd
	// --initial-cluster=cp-1=https://192.0.2.11:2380
	// --initial-cluster-state=new
	// --initial-cluster-token=prod
	// /etc/basalt/kube-apiserver/authentication-config.yaml 644 secret=false
	// /etc/basalt/kube-apiserver/encryption-config.yaml 600 secret=true
	// true
	// components: nodeCIDRMaskSize: 8 cannot split podCIDR 10.244.0.0/16 into node ranges (want 17..30)
}
