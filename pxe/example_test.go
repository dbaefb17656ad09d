package pxe_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/basalt-dev/basalt/pxe"
	"github.com/basalt-dev/basalt/pxe/dhcp"
	"github.com/basalt-dev/basalt/pxe/httpboot"
	"github.com/basalt-dev/basalt/pxe/tftp"
)

type noHosts struct{}

func (noHosts) Target(context.Context, string) (httpboot.Target, error) {
	return httpboot.Target{}, nil
}

// Start runs DHCP (proxy mode beside the site's DHCP server), TFTP and HTTP until its context
// ends. Here on loopback, for a moment; the manager passes its own context and real addresses
// (Interface "eth1", ServerIP and BaseURL on the provisioning network, default ports).
func Example() {
	ipxe, _ := os.MkdirTemp("", "ipxe")
	defer os.RemoveAll(ipxe)
	_ = os.WriteFile(filepath.Join(ipxe, "ipxe.efi"), []byte("iPXE"), 0o644) // Debian: /usr/lib/ipxe

	cfg := pxe.Config{
		DHCP: &dhcp.Server{
			Interface: "lo", Addr: "127.0.0.1:0", ProxyAddr: "-", Mode: dhcp.ModeProxy,
			ServerIP: netip.MustParseAddr("127.0.0.1"), Reservations: dhcp.StaticReservations{},
		},
		TFTP: &tftp.Server{Addr: "127.0.0.1:0", Root: ipxe},
		HTTP: &httpboot.Server{Addr: "127.0.0.1:0", BaseURL: "http://127.0.0.1:8080", Scripts: noHosts{}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := pxe.Start(ctx, cfg)
	fmt.Println("stopped:", err, "; DHCP sends iPXE to", cfg.DHCP.HTTPBaseURL)
	// Output: stopped: <nil> ; DHCP sends iPXE to http://127.0.0.1:8080
}
