package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/pxe/httpboot"
	"github.com/basalt-dev/basalt/test/e2e/framework"
	"github.com/basalt-dev/basalt/test/e2e/pxenet"
)

// TestPXEBootVsDnsmasq measures, in one run and on one network, the time from power-on until the
// agent has registered and reported the VM's hardware into its Host, for the same VM shape
// booting the same kernel and initramfs two ways:
//
//   - Basalt: the manager's DHCP (full mode), iPXE script and kernel/initramfs over HTTP boot;
//   - reference: Debian's dnsmasq as DHCP and TFTP server (iPXE script, kernel and initramfs over
//     TFTP), with a bootstrap token issued by the same agent API.
//
// Rounds alternate the two (BASALT_PXE_BENCH_ROUNDS, default 2) and the medians and their ratio
// are logged. It is a measurement, not a proof: it runs only with BASALT_PXE_BENCH=1 (hack/bench.sh
// sets it) and asserts only that every boot reached its Host.
func TestPXEBootVsDnsmasq(t *testing.T) {
	if os.Getenv("BASALT_PXE_BENCH") != "1" {
		t.Skip("a benchmark: set BASALT_PXE_BENCH=1 (make bench does)")
	}
	rounds := 2
	if v, err := strconv.Atoi(os.Getenv("BASALT_PXE_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	framework.EnsurePXEDebs(t, "dnsmasq-base")
	img := framework.PXEImage(ctx, t)
	network := framework.NewPXENetwork(ctx, t)
	const ns = "pxe-bench"
	m := framework.StartPXEManagement(t, framework.PXEManagementInput{Network: network, Image: img, Namespace: ns})
	c := m.Env.Client

	// dnsmasq on the bridge, answering only the reference rounds' MACs.
	refIP, err := network.AddBridgeAddress(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	tftpRoot := t.TempDir()
	for name, src := range map[string]string{"vmlinuz": img.Kernel, "initramfs": img.Initramfs} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tftpRoot, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	leases := map[string]netip.Addr{}
	for r := range rounds {
		a := refIP.As4()
		a[3] = byte(150 + r)
		leases[benchMAC("d", r)] = netip.AddrFrom4(a)
	}
	framework.StartDnsmasq(t, framework.DnsmasqInput{Network: network, Address: refIP, Leases: leases, TFTPRoot: tftpRoot, BootFile: "boot.ipxe"})

	boot := func(name, mac string) time.Duration {
		t.Helper()
		start := time.Now()
		vm := framework.StartPXEVM(t, framework.StartPXEVMInput{Network: network, VMOptions: pxenet.VMOptions{
			MAC: mac, CPUs: pxeVMCPUs, MemoryMiB: pxeVMMemoryMiB, DiskBytes: pxeVMDiskBytes,
		}})
		m.WaitForHost(ctx, t, framework.WaitForHostInput{
			Namespace: ns, Name: name, Timeout: 10 * time.Minute, Console: func() string { return vm.Tail(40) },
			Check: func(h *basaltv1.Host) error {
				if h.Status.Hardware == nil || len(h.Status.Hardware.NICs) == 0 {
					return fmt.Errorf("no hardware yet (state %s)", h.Status.State)
				}
				for _, n := range h.Status.Hardware.NICs {
					if n.MAC == mac {
						return nil
					}
				}
				return fmt.Errorf("hardware of another machine: %+v", h.Status.Hardware.NICs)
			},
		})
		took := time.Since(start)
		if err := vm.Stop(); err != nil {
			t.Fatal(err)
		}
		return took
	}
	var basalt, ref []time.Duration
	for r := range rounds {
		// Basalt: a Host that lists the VM's MAC.
		bmac := benchMAC("b", r)
		bh := &basaltv1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("basalt-%d", r)},
			Spec: basaltv1.HostSpec{Boot: &basaltv1.BootSpec{MACAddresses: []string{bmac}, Mode: basaltv1.BootModeBIOS}}}
		if err := c.Create(ctx, bh); err != nil {
			t.Fatal(err)
		}
		d := boot(bh.Name, bmac)
		basalt = append(basalt, d)
		t.Logf("Round %d Basalt: power-on to hardware reported %s", r+1, d.Round(100*time.Millisecond))

		// Reference: a Host whose spec lists no MAC of this VM (so the manager's DHCP ignores
		// the VM), and its token in a script dnsmasq serves over TFTP.
		dmac := benchMAC("d", r)
		rh := &basaltv1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("dnsmasq-%d", r)},
			Spec: basaltv1.HostSpec{Boot: &basaltv1.BootSpec{MACAddresses: []string{benchMAC("f", r)}}}}
		if err := c.Create(ctx, rh); err != nil {
			t.Fatal(err)
		}
		bs, err := m.Parts.AgentAPI.Bootstrap(ctx, rh)
		if err != nil {
			t.Fatal(err)
		}
		args, err := httpboot.BootstrapArgs(bs)
		if err != nil {
			t.Fatal(err)
		}
		cmdline := append([]string{"initrd=initramfs"}, httpboot.DefaultKernelArgs...)
		cmdline = append(append(cmdline, "BOOTIF="+httpboot.BootIf(dmac)), args...)
		script := "#!ipxe\nkernel tftp://" + refIP.String() + "/vmlinuz " + strings.Join(cmdline, " ") +
			"\ninitrd --name initramfs tftp://" + refIP.String() + "/initramfs\nboot\n"
		if err := os.WriteFile(filepath.Join(tftpRoot, "boot.ipxe"), []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		d = boot(rh.Name, dmac)
		ref = append(ref, d)
		t.Logf("Round %d dnsmasq: power-on to hardware reported %s", r+1, d.Round(100*time.Millisecond))
	}
	mb, mr := median(basalt), median(ref)
	t.Logf("PXE power-on to Host inspected, median of %d: Basalt %s, dnsmasq %s, ratio Basalt/dnsmasq %.2f",
		rounds, mb.Round(100*time.Millisecond), mr.Round(100*time.Millisecond), mb.Seconds()/mr.Seconds())
}

// benchMAC is the MAC of round r of a kind ("b" Basalt, "d" dnsmasq, "f" a MAC no VM has).
func benchMAC(kind string, r int) string {
	k := map[string]int{"b": 0xb0, "d": 0xd0, "f": 0xf0}[kind]
	return fmt.Sprintf("52:54:00:ba:%02x:%02x", k, r)
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
