package framework

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/setup"
	"github.com/basalt-dev/basalt/pxe/image"
	"github.com/basalt-dev/basalt/test/e2e/pxenet"
	"github.com/basalt-dev/basalt/test/envtest"
)

// PXEDebs are the Debian packages the PXE suite needs: QEMU, its iPXE option ROMs (the VM's
// firmware PXE), Debian's iPXE binaries (served over TFTP) and iproute2.
var PXEDebs = []string{"qemu-system-x86", "ipxe-qemu", "ipxe", "iproute2"}

// EnsurePXEDebs installs the missing PXEDebs and extra packages with pxe/image/ensure-debs.sh
// (idempotent; needs root when something is missing), failing the test loudly when it cannot.
func EnsurePXEDebs(t *testing.T, extra ...string) {
	t.Helper()
	pkgs := append(append([]string{}, PXEDebs...), extra...)
	cmd := exec.Command(filepath.Join(envtest.RepoRoot(), "pxe", "image", "ensure-debs.sh"), pkgs...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("installing %v: %v\n%s", pkgs, err, out)
	}
}

// PXEImage builds (or takes from $BASALT_CACHE) the agent kernel and initramfs, with the agent
// AgentBinary builds, as make pxe-image does.
func PXEImage(ctx context.Context, t *testing.T) image.Image {
	t.Helper()
	img, err := image.Build(ctx, image.BuildOptions{Agent: AgentBinary(t)})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// NewPXENetwork creates a provisioning network (pxenet) and removes it, with any VM on it, when
// the test ends, whether it passed or not.
func NewPXENetwork(ctx context.Context, t *testing.T) *pxenet.Network {
	t.Helper()
	n, err := pxenet.New(ctx, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("removing the PXE network: %v", err)
		}
	})
	return n
}

// StartPXEVMInput describes a VM to boot on a provisioning network.
type StartPXEVMInput struct {
	Network *pxenet.Network
	pxenet.VMOptions
}

// StartPXEVM creates and powers on a VM; it is powered off when the test ends, and its serial
// console is logged if the test failed.
func StartPXEVM(t *testing.T, in StartPXEVMInput) *pxenet.VM {
	t.Helper()
	if in.Dir == "" {
		in.Dir = t.TempDir()
	}
	vm, err := in.Network.NewVM(in.VMOptions)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := vm.Stop(); err != nil {
			t.Errorf("stopping the VM: %v", err)
		}
		if t.Failed() {
			t.Logf("VM %s serial console (last 80 lines):\n%s", in.MAC, vm.Tail(80))
		}
	})
	return vm
}

// PXEManagementInput configures StartPXEManagement.
type PXEManagementInput struct {
	// Network is where the manager serves: DHCP on its HostIf, everything on its ServerIP.
	Network *pxenet.Network
	// Image is the agent kernel and initramfs.
	Image image.Image
	// Namespace is created for the test's Hosts; with Discovery, Hosts of unknown MACs are
	// created there.
	Namespace string
	Discovery bool
	// RootOnDisk has the manager write the image's root filesystem (Image.RootImage) to the
	// disk of every network-booted Host it provisions (--pxe-root-image).
	RootOnDisk bool
}

// StartPXEManagement starts the management plane with the PXE services in full DHCP mode on the
// network: pool .100-.199, HTTP boot on a free port of ServerIP, TFTP of Debian's iPXE on
// ServerIP:69.
func StartPXEManagement(t *testing.T, in PXEManagementInput) *Management {
	t.Helper()
	ip := in.Network.ServerIP.String()
	port, err := freePort(ip)
	if err != nil {
		t.Fatal(err)
	}
	a := in.Network.Subnet.Addr().As4()
	first, last := a, a
	first[3], last[3] = 100, 199
	opts := &setup.PXEOptions{
		Interface:          in.Network.HostIf,
		ServerIP:           ip,
		DHCPMode:           setup.DHCPModeFull,
		Pool:               fmt.Sprintf("%s-%s/%d", net.IP(first[:]), net.IP(last[:]), in.Network.Subnet.Bits()),
		Discovery:          in.Discovery,
		DiscoveryNamespace: in.Namespace,
		KernelPath:         in.Image.Kernel,
		InitramfsPath:      in.Image.Initramfs,
		HTTPAddr:           net.JoinHostPort(ip, strconv.Itoa(port)),
		TFTPAddr:           net.JoinHostPort(ip, "69"),
	}
	if in.RootOnDisk {
		if in.Image.RootImage == "" {
			t.Fatal("RootOnDisk needs an image with a root filesystem image (make pxe-image)")
		}
		opts.RootImagePath = in.Image.RootImage
	}
	m := StartManagement(t, StartManagementInput{Address: ip, PXE: opts})
	if in.Namespace != "" {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: in.Namespace}}
		if err := m.Env.Client.Create(context.Background(), ns); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// WaitForHostInput says what WaitForHost waits for.
type WaitForHostInput struct {
	Namespace, Name string
	// Check returns nil when the Host is as wanted, else why not.
	Check func(*basaltv1.Host) error
	// Timeout bounds the wait.
	Timeout time.Duration
	// Console, when set, is added to the failure message (a VM's serial console tail).
	Console func() string
}

// WaitForHost waits until the Host exists and passes Check, logging each new reason it does not,
// and returns it with how long that took.
func (m *Management) WaitForHost(ctx context.Context, t *testing.T, in WaitForHostInput) (*basaltv1.Host, time.Duration) {
	t.Helper()
	start, last := time.Now(), ""
	got := &basaltv1.Host{}
	deadline := start.Add(in.Timeout)
	for {
		err := m.Env.Client.Get(ctx, ObjectKey(in.Namespace, in.Name), got)
		if err == nil {
			err = in.Check(got)
		}
		if err == nil {
			return got, time.Since(start)
		}
		if msg := err.Error(); msg != last {
			t.Logf("%s: Host %s: %s", time.Since(start).Round(time.Second), in.Name, msg)
			last = msg
		}
		if time.Now().After(deadline) {
			console := ""
			if in.Console != nil {
				console = "\nserial console:\n" + in.Console()
			}
			t.Fatalf("Host %s after %s: %v%s", in.Name, in.Timeout, err, console)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// DnsmasqInput configures StartDnsmasq: the reference DHCP+TFTP server of the PXE benchmark.
type DnsmasqInput struct {
	// Network is where dnsmasq serves, on its bridge at Address (see pxenet.AddBridgeAddress).
	Network *pxenet.Network
	Address netip.Addr
	// Leases maps the only MACs dnsmasq answers to their addresses (every other MAC is ignored,
	// so it never competes with the manager's DHCP server for a Host's machine).
	Leases map[string]netip.Addr
	// TFTPRoot is served over TFTP; BootFile is the file DHCP hands out.
	TFTPRoot, BootFile string
}

// StartDnsmasq runs Debian's dnsmasq (package dnsmasq-base) as DHCP and TFTP server inside the
// network's namespace until the test ends.
func StartDnsmasq(t *testing.T, in DnsmasqInput) {
	t.Helper()
	a := in.Address.As4()
	first, last := a, a
	first[3], last[3] = 150, 199
	args := []string{
		"--conf-file=/dev/null", "--no-daemon", "--port=0", "--user=root", "--pid-file=",
		"--interface=" + in.Network.Bridge, "--bind-interfaces",
		"--dhcp-range=" + netip.AddrFrom4(first).String() + "," + netip.AddrFrom4(last).String() + ",1h",
		"--dhcp-ignore=tag:!known", "--dhcp-leasefile=" + filepath.Join(t.TempDir(), "leases"),
		"--dhcp-boot=" + in.BootFile, "--enable-tftp", "--tftp-root=" + in.TFTPRoot,
	}
	for mac, ip := range in.Leases {
		args = append(args, "--dhcp-host="+mac+","+ip.String())
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "dnsmasq.log"))
	if err != nil {
		t.Fatal(err)
	}
	// With a log file dnsmasq stamps every line with the time: the benchmark's timeline.
	args = append(args, "--log-dhcp", "--log-facility="+logf.Name())
	cmd := in.Network.Command("dnsmasq", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting dnsmasq: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = logf.Close()
		if t.Failed() || os.Getenv("BASALT_PXE_BENCH_LOG") == "1" {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("dnsmasq log:\n%s", b)
		}
	})
	select {
	case <-done:
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("dnsmasq exited at once:\n%s", b)
	case <-time.After(500 * time.Millisecond):
	}
}
