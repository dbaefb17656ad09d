package setup

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	hostcontroller "github.com/basalt-dev/basalt/controllers/host"
	"github.com/basalt-dev/basalt/pxe/dhcp"
)

func TestParsePool(t *testing.T) {
	p, err := ParsePool("192.168.10.100-192.168.10.199/24", "192.168.10.1")
	if err != nil {
		t.Fatal(err)
	}
	want := dhcp.Pool{
		Subnet: netip.MustParsePrefix("192.168.10.0/24"),
		Start:  netip.MustParseAddr("192.168.10.100"), End: netip.MustParseAddr("192.168.10.199"),
		Gateway: netip.MustParseAddr("192.168.10.1"),
	}
	if *p != want {
		t.Errorf("got %+v, want %+v", *p, want)
	}
	for _, bad := range []string{"", "192.168.10.100/24", "192.168.10.100-192.168.10.199", "a-b/24", "192.168.10.100-192.168.10.199/40"} {
		if _, err := ParsePool(bad, ""); err == nil || !strings.Contains(err.Error(), "FIRST-LAST/PREFIXLEN") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, err := ParsePool("192.168.10.100-192.168.10.199/24", "gw"); err == nil {
		t.Error("a bad gateway was accepted")
	}
}

// TestPXEConfig: flags become the three services, and every mistake is reported before anything
// listens.
func TestPXEConfig(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"vmlinuz", "initramfs", "undionly.kpxe"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	good := func() *PXEOptions {
		return &PXEOptions{
			Interface: "eth1", ServerIP: "192.168.10.1", DHCPMode: DHCPModeFull,
			Pool: "192.168.10.100-192.168.10.199/24", Discovery: true, TFTPRoot: dir,
			KernelPath: filepath.Join(dir, "vmlinuz"), InitramfsPath: filepath.Join(dir, "initramfs"),
			HTTPAddr: ":8081",
		}
	}
	nb := &hostcontroller.NetBoot{}
	cfg, err := pxeConfig(good(), nb)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DHCP == nil || cfg.DHCP.Mode != dhcp.ModeFull || cfg.DHCP.Pool == nil || !cfg.DHCP.Discovery || cfg.DHCP.Reservations != nb {
		t.Errorf("DHCP %+v", cfg.DHCP)
	}
	if cfg.HTTP.BaseURL != "http://192.168.10.1:8081" || cfg.HTTP.Scripts != nb || cfg.DHCP.HTTPBaseURL != cfg.HTTP.BaseURL {
		t.Errorf("HTTP base %q, DHCP's %q", cfg.HTTP.BaseURL, cfg.DHCP.HTTPBaseURL)
	}
	if cfg.TFTP == nil || cfg.TFTP.Root != dir || cfg.TFTP.Addr != "192.168.10.1:69" {
		t.Errorf("TFTP %+v, want it on the server IP", cfg.TFTP)
	}
	// An explicit address is kept (":8081": every interface); HTTP boot asks the DHCP server
	// where each MAC address is.
	if cfg.HTTP.Addr != ":8081" || cfg.HTTP.Clients != cfg.DHCP {
		t.Errorf("HTTP on %q, clients from %v", cfg.HTTP.Addr, cfg.HTTP.Clients)
	}
	// By default HTTP boot listens on the server IP only.
	def := good()
	def.HTTPAddr = ""
	if cfg, err := pxeConfig(def, nb); err != nil || cfg.HTTP.Addr != "192.168.10.1:8080" || cfg.HTTP.BaseURL != "http://192.168.10.1:8080" {
		t.Errorf("default HTTP address %q, base %q (%v)", cfg.HTTP.Addr, cfg.HTTP.BaseURL, err)
	}

	off := good()
	off.DHCPMode, off.Pool, off.TFTPRoot = DHCPModeOff, "", "-"
	if cfg, err := pxeConfig(off, nb); err != nil || cfg.DHCP != nil || cfg.TFTP != nil {
		t.Errorf("DHCP off, no TFTP: %+v %v", cfg, err)
	}

	for _, tt := range []struct {
		name   string
		change func(*PXEOptions)
		want   string
	}{
		{"no interface", func(o *PXEOptions) { o.Interface = "" }, "interface is required"},
		{"bad server IP", func(o *PXEOptions) { o.ServerIP = "fd00::1" }, "must be the manager's IPv4 address"},
		{"no kernel", func(o *PXEOptions) { o.KernelPath = "" }, "make pxe-image"},
		{"missing kernel file", func(o *PXEOptions) { o.KernelPath = filepath.Join(dir, "nope") }, "is not a file"},
		{"bad mode", func(o *PXEOptions) { o.DHCPMode = "half" }, `DHCP mode "half"`},
		{"pool in proxy mode", func(o *PXEOptions) { o.DHCPMode = DHCPModeProxy }, "needs DHCP mode full"},
		{"pool outside its subnet", func(o *PXEOptions) { o.Pool = "192.168.10.100-192.168.11.5/24" }, "not inside"},
		{"no iPXE binaries", func(o *PXEOptions) { o.TFTPRoot = t.TempDir() }, "tftp"},
	} {
		o := good()
		tt.change(o)
		_, err := pxeConfig(o, nb)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error with %q", tt.name, err, tt.want)
		}
	}
}
