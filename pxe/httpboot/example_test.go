package httpboot_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/pxe/httpboot"
)

// hosts is a Scripts implementation with one provisioned Host. The Host controller's
// implementation finds Hosts by spec.boot.macAddresses and issues bootstraps for the others.
type hosts struct{}

func (hosts) Target(_ context.Context, mac string) (httpboot.Target, error) {
	if mac == "52:54:00:12:34:56" {
		return httpboot.Target{Known: true, Host: "default/node-1", State: basaltv1.HostStateProvisioned}, nil
	}
	return httpboot.Target{}, nil
}

// A provisioned host boots its local disk; an unknown MAC exits to the next boot device. The
// manager runs the server with ListenAndServe(ctx); here it is an http.Handler.
func Example() {
	srv := &httpboot.Server{BaseURL: "http://192.168.10.1:8080", Scripts: hosts{}}
	for _, mac := range []string{"52:54:00:12:34:56", "52:54:00:ff:ff:ff"} {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest("GET", "/boot/"+mac+".ipxe", nil))
		fmt.Println(w.Code, strings.Split(w.Body.String(), "\n")[1])
	}
	// Output:
	// 200 # Basalt: default/node-1 (Provisioned) boots the installed system from its local disk.
	// 200 # Basalt: no Host has the MAC address 52:54:00:ff:ff:ff: leave it to the next boot device.
}
