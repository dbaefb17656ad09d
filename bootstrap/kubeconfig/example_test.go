package kubeconfig_test

import (
	"fmt"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/kubeconfig"
	"github.com/basalt-dev/basalt/bootstrap/pki"
)

// The admin kubeconfig is built from the cluster CA and the admin client certificate, and read
// back with Verify.
func Example() {
	now := time.Now()
	ca, _, _ := pki.EnsureCA(nil, pki.ClusterCARequest(), now)
	admin, _, _ := pki.EnsureCertificate(nil, ca, pki.AdminCert(), now)

	data, err := kubeconfig.Admin(kubeconfig.Params{
		ClusterName: "prod",
		Server:      "https://api.example.com:6443",
		CA:          ca.Cert,
		ClientCert:  admin.Cert,
		ClientKey:   admin.Key,
	})
	if err != nil {
		panic(err)
	}
	info, err := kubeconfig.Verify(data, now)
	if err != nil {
		panic(err)
	}
	fmt.Println(info.Context, info.Server)
	// Output: basalt-admin@prod https://api.example.com:6443
}
