package framework

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/controllers/setup"
	"github.com/basalt-dev/basalt/pxe/image"
	"github.com/basalt-dev/basalt/test/e2e/bed"
	"github.com/basalt-dev/basalt/test/e2e/pxenet"
	"github.com/basalt-dev/basalt/test/envtest"
)

// OSImage builds (or takes from $BASALT_CACHE) the whole-disk OS image of bare-metal Hosts with
// hack/os-image.sh, as make os-image does, and returns its gzip-compressed file.
func OSImage(ctx context.Context, t *testing.T) string {
	t.Helper()
	start := time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(envtest.RepoRoot(), "hack", "os-image.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/os-image.sh: %v\n%s", err, tail(stderr.String(), 30))
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "OS_IMAGE_GZ="); ok {
			if _, err := os.Stat(v); err != nil {
				t.Fatal(err)
			}
			t.Logf("OS disk image %s (%s)", v, time.Since(start).Round(time.Second))
			return v
		}
	}
	t.Fatalf("hack/os-image.sh printed no OS_IMAGE_GZ=:\n%s", out)
	return ""
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// BedBridge is the Linux bridge of the bed's Docker network (bed's createNetwork names it).
func BedBridge(b *bed.Bed) string { return "btb-" + b.RunID }

// NewBedPXENetwork puts a VM tap on the bed's own bridge, so a network-booted VM shares the L2
// segment (and the subnet) of the bed's SSH hosts, with the manager serving at the bed's gateway;
// the tap goes when the test ends.
func NewBedPXENetwork(ctx context.Context, t *testing.T, b *bed.Bed) *pxenet.Network {
	t.Helper()
	gw, err := netip.ParseAddr(b.Gateway)
	if err != nil {
		t.Fatal(err)
	}
	n, err := pxenet.OnBridge(ctx, BedBridge(b), b.Subnet, gw, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("removing the VM tap: %v", err)
		}
	})
	return n
}

// BedAddress is the address with the last octet last in the bed's subnet, e.g. 200 for a
// network-booted Host's spec.boot.address (the bed's containers take .11 upwards).
func BedAddress(b *bed.Bed, last byte) netip.Addr {
	a := b.Subnet.Addr().As4()
	a[3] = last
	return netip.AddrFrom4(a)
}

// BedPXEOptions are the manager's PXE services on the bed's bridge: full DHCP with a pool of
// .200-.219 (above the bed's containers), HTTP boot on a free port of the gateway, TFTP on its
// port 69, the agent kernel and initramfs of img, and osImage written to the disks of the
// network-booted Hosts it provisions.
func BedPXEOptions(t *testing.T, b *bed.Bed, img image.Image, osImage string) *setup.PXEOptions {
	t.Helper()
	port, err := freePort(b.Gateway)
	if err != nil {
		t.Fatal(err)
	}
	return &setup.PXEOptions{
		Interface:     BedBridge(b),
		ServerIP:      b.Gateway,
		DHCPMode:      setup.DHCPModeFull,
		Pool:          fmt.Sprintf("%s-%s/%d", BedAddress(b, 200), BedAddress(b, 219), b.Subnet.Bits()),
		KernelPath:    img.Kernel,
		InitramfsPath: img.Initramfs,
		HTTPAddr:      net.JoinHostPort(b.Gateway, strconv.Itoa(port)),
		TFTPAddr:      net.JoinHostPort(b.Gateway, "69"),
		RootImagePath: osImage,
	}
}
