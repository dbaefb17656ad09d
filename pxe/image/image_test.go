package image

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/pxe/httpboot"
	"github.com/basalt-dev/basalt/pxe/internal/testenv"
)

const testToken = "abc123.0123456789abcdef"

func testBootstrap(t *testing.T) protocol.Bootstrap {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "pxe", "httpboot", "testdata", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return protocol.Bootstrap{Server: "https://10.0.2.2:9443", CA: ca, Token: testToken}
}

// initBootstrap runs /init's bootstrap_json on cmdline with busybox sh.
func initBootstrap(t *testing.T, cmdline string) (string, bool) {
	t.Helper()
	init := filepath.Join(testenv.RepoRoot(), "pxe", "image", "init")
	cmd := exec.Command("busybox", "sh", "-c", `BASALT_INIT_LIB=1 . "$0"; bootstrap_json "$1"`, init, cmdline)
	out, err := cmd.Output()
	return string(out), err == nil
}

// TestInitReadsBootstrap holds /init's shell reader to httpboot.ParseBootstrapArgs: the same
// command lines are accepted, and the file /init writes is json.Marshal of the Bootstrap.
func TestInitReadsBootstrap(t *testing.T) {
	ensureBusybox(t)
	b := testBootstrap(t)
	args, err := httpboot.BootstrapArgs(b)
	if err != nil {
		t.Fatal(err)
	}
	good := strings.Join(args, " ")
	cases := map[string]string{
		"agent script":      "BOOT_IMAGE=vmlinuz initrd=initramfs console=tty0 console=ttyS0,115200n8 quiet BOOTIF=01-52-54-00-12-34-56 " + good,
		"trailing slash":    strings.Replace(good, "https://10.0.2.2:9443", "https://10.0.2.2:9443/", 1),
		"IPv6 server":       strings.Replace(good, "https://10.0.2.2:9443", "https://[fd00::1]:9443", 1),
		"DNS name":          strings.Replace(good, "https://10.0.2.2:9443", "https://basalt.example.com", 1),
		"server with path":  strings.Replace(good, "https://10.0.2.2:9443", "https://10.0.2.2:9443/api", 1),
		"http server":       strings.Replace(good, "https://", "http://", 1),
		"quote in server":   strings.Replace(good, "10.0.2.2", `10.0.2.2"`, 1),
		"missing token":     strings.Replace(good, args[2], "", 1),
		"twice":             good + " " + args[2],
		"glob in token":     strings.Replace(good, testToken, "abc*.0123", 1),
		"uppercase token":   strings.Replace(good, testToken, "ABC123.0123456789abcdef", 1),
		"token without dot": strings.Replace(good, testToken, "abc1230123456789abcdef", 1),
		"base64url CA":      strings.ReplaceAll(good, "+", "-"),
		"CA bad padding":    strings.Replace(good, args[1], args[1]+"=", 1),
		"CA quote":          strings.Replace(good, args[1], args[1][:20]+`"`+args[1][21:], 1),
		"empty":             "",
	}
	for name, cmdline := range cases {
		goB, goErr := httpboot.ParseBootstrapArgs(cmdline)
		sh, shOK := initBootstrap(t, cmdline)
		if (goErr == nil) != shOK {
			t.Errorf("%s: Go accepts: %v (%v), /init accepts: %v", name, goErr == nil, goErr, shOK)
			continue
		}
		if goErr != nil {
			continue
		}
		want, _ := json.Marshal(goB)
		if sh != string(want) {
			t.Errorf("%s: /init wrote\n%s\nwant\n%s", name, sh, want)
		}
	}
}

// initRootLabel runs /init's root_label on cmdline with busybox sh.
func initRootLabel(t *testing.T, cmdline string) (stdout, stderr string, ok bool) {
	t.Helper()
	init := filepath.Join(testenv.RepoRoot(), "pxe", "image", "init")
	cmd := exec.Command("busybox", "sh", "-c", `BASALT_INIT_LIB=1 . "$0"; root_label "$1"`, init, cmdline)
	var e strings.Builder
	cmd.Stderr = &e
	out, err := cmd.Output()
	return string(out), e.String(), err == nil
}

// TestInitRootLabel holds /init's reader of basalt.root=<label> to ^[a-z0-9-]{1,16}$, once.
func TestInitRootLabel(t *testing.T) {
	ensureBusybox(t)
	b := testBootstrap(t)
	args, err := httpboot.BootstrapArgs(b)
	if err != nil {
		t.Fatal(err)
	}
	boot := "BOOT_IMAGE=vmlinuz initrd=initramfs console=ttyS0,115200n8 quiet BOOTIF=01-52-54-00-12-34-56"
	for _, c := range []struct{ name, cmdline, want string }{
		{"absent", boot, ""},
		{"absent, bootstrap", boot + " " + strings.Join(args, " "), ""},
		{"other parameters", boot + " basalt.rootfs=x basalt.root_label=y", ""},
		{"the image's label", boot + " basalt.root=" + RootLabel, RootLabel},
		{"with bootstrap", boot + " " + strings.Join(args, " ") + " basalt.root=" + RootLabel, RootLabel},
		{"without token", boot + " " + args[0] + " " + args[1] + " basalt.root=" + RootLabel, RootLabel},
		{"first", "basalt.root=disk0 " + boot, "disk0"},
		{"16 characters", boot + " basalt.root=abcdefghij-01234", "abcdefghij-01234"},
		{"one character", boot + " basalt.root=a", "a"},
		{"digits and hyphens", boot + " basalt.root=0-9", "0-9"},
	} {
		out, errOut, ok := initRootLabel(t, c.cmdline)
		if !ok || strings.TrimSuffix(out, "\n") != c.want || errOut != "" {
			t.Errorf("%s: /init's root_label gave %q (stderr %q, ok %v), want %q", c.name, out, errOut, ok, c.want)
		}
	}
	bad := map[string]string{
		"empty":         "basalt.root=",
		"bare":          "basalt.root",
		"17 characters": "basalt.root=abcdefghij-012345",
		"uppercase":     "basalt.root=Basalt-root",
		"underscore":    "basalt.root=basalt_root",
		"dot":           "basalt.root=basalt.root",
		"slash":         "basalt.root=../root",
		"glob":          "basalt.root=*",
		"equals":        "basalt.root==root",
		"quote":         `basalt.root=root"`,
		"LABEL=":        "basalt.root=LABEL=root",
		"twice":         "basalt.root=" + RootLabel + " basalt.root=" + RootLabel,
		"twice, differ": "basalt.root=a basalt.root=b",
		"twice, empty":  "basalt.root=a basalt.root=",
	}
	for name, param := range bad {
		out, errOut, ok := initRootLabel(t, boot+" "+param+" "+strings.Join(args, " "))
		if ok || out != "" || !strings.Contains(errOut, "basalt.root is ") {
			t.Errorf("%s: /init's root_label accepted %q: %q (stderr %q, ok %v)", name, param, out, errOut, ok)
		}
	}
	if !regexp.MustCompile(`^[a-z0-9-]{1,16}$`).MatchString(RootLabel) {
		t.Errorf("RootLabel %q is not a valid basalt.root", RootLabel)
	}
	script, err := os.ReadFile(Script())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), "\nroot_label="+RootLabel+"\n") {
		t.Errorf("build.sh does not label the root image %s", RootLabel)
	}
}

// TestParseOutput reads build.sh's last lines.
func TestParseOutput(t *testing.T) {
	out := "VMLINUZ=/c/k/vmlinuz\nINITRAMFS=/c/k/initramfs\nKERNEL_VERSION=6.1.0-56-amd64\nROOT_IMAGE=/c/k/root.img.gz\n"
	img, err := parseOutput(out)
	if err != nil {
		t.Fatal(err)
	}
	want := Image{Kernel: "/c/k/vmlinuz", Initramfs: "/c/k/initramfs", KernelVersion: "6.1.0-56-amd64", RootImage: "/c/k/root.img.gz"}
	if img != want {
		t.Errorf("parseOutput = %+v, want %+v", img, want)
	}
	if _, err := parseOutput(strings.Replace(out, "ROOT_IMAGE=/c/k/root.img.gz\n", "", 1)); err == nil {
		t.Error("parseOutput accepted an output without ROOT_IMAGE")
	}
}

// registrar is a stand-in for the agent API's registration: HTTPS with a serving certificate
// for 10.0.2.100 signed by its own CA, on host loopback. QEMU forwards the guest's connections to
// 10.0.2.100:9443 to it (guestfwd, one busybox nc per connection), which works although the
// user network is restricted. It records the tokens it receives and refuses them all.
type registrar struct {
	ca     []byte
	addr   string
	tokens chan string
}

func newRegistrar(t *testing.T) *registrar {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test serving CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "agent API"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(10, 0, 2, 100)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	r := &registrar{ca: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), tokens: make(chan string, 16)}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body protocol.RegisterRequest
		if req.URL.Path == protocol.PathRegister && json.NewDecoder(req.Body).Decode(&body) == nil {
			select {
			case r.tokens <- body.Token:
			default:
			}
		}
		http.Error(w, "not in this test", http.StatusServiceUnavailable)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	r.addr = srv.Listener.Addr().String()
	return r
}

// TestBootInQEMU builds the image (or takes it from the cache) and boots it in QEMU with TCG, on
// two machines: virtio-net with a virtio disk, and e1000 with an AHCI disk. The bootstrap is on
// the kernel command line as an agent script passes it; the NIC is on QEMU's user network
// (restricted: the guest reaches nothing but the forwarded registrar). It checks on the serial
// console that the disk is found, that DHCP configures the NIC named by BOOTIF, that the bootstrap
// is written and the agent starts, then that the agent presents its token to the registrar over
// TLS pinned to the CA from the command line, and that the token never appears on the console.
func TestBootInQEMU(t *testing.T) {
	if err := testenv.EnsureDebs("qemu-system-x86", "cpio", "xz-utils"); err != nil {
		t.Fatal(err)
	}
	ensureBusybox(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	buildStart := time.Now()
	img, err := Build(ctx, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image ready in %v: %s (%d bytes), %s (%d bytes)", time.Since(buildStart).Round(time.Millisecond),
		img.Initramfs, size(t, img.Initramfs), img.Kernel, size(t, img.Kernel))
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal(err)
	}

	for _, m := range []struct {
		name, disk string
		devices    []string
	}{
		{"virtio", "vda", []string{"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56", "-drive", "if=virtio,format=raw,file=DISK"}},
		{"e1000+ahci", "sda", []string{"-device", "e1000,netdev=n0,mac=52:54:00:12:34:56",
			"-device", "ahci,id=ahci", "-drive", "if=none,id=d0,format=raw,file=DISK", "-device", "ide-hd,drive=d0,bus=ahci.0"}},
	} {
		t.Run(m.name, func(t *testing.T) {
			reg := newRegistrar(t)
			boot := protocol.Bootstrap{Server: "https://10.0.2.100:9443", CA: reg.ca, Token: testToken}
			args, err := httpboot.BootstrapArgs(boot)
			if err != nil {
				t.Fatal(err)
			}
			disk := filepath.Join(t.TempDir(), "disk.raw")
			if err := os.WriteFile(disk, make([]byte, 16<<20), 0o600); err != nil {
				t.Fatal(err)
			}
			cmdline := append([]string{"console=ttyS0,115200n8", "quiet", "panic=-1", "BOOTIF=01-52-54-00-12-34-56"}, args...)
			qargs := []string{
				"-accel", "tcg", "-m", "768", "-smp", "1", "-nographic", "-no-reboot",
				"-kernel", img.Kernel, "-initrd", img.Initramfs, "-append", strings.Join(cmdline, " "),
				"-netdev", "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:9443-cmd:" + busybox + " nc " + strings.Replace(reg.addr, ":", " ", 1),
			}
			for _, d := range m.devices {
				qargs = append(qargs, strings.Replace(d, "DISK", disk, 1))
			}
			qctx, qcancel := context.WithTimeout(ctx, 5*time.Minute)
			defer qcancel()
			cmd := exec.CommandContext(qctx, "qemu-system-x86_64", qargs...)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = cmd.Stdout
			start := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				_ = cmd.Process.Kill() // the QEMU process this test started
				_ = cmd.Wait()
			}()

			var mu sync.Mutex
			var console []string
			seen := map[string]time.Duration{}
			want := map[string]string{
				"disk":      "basalt-init: disks: " + m.disk,
				"dhcp":      "basalt-init: eth0 has 10.0.2.15/24",
				"bootstrap": "basalt-init: bootstrap written to " + protocol.BootstrapPath,
				"agent":     `"msg":"Starting basalt-agent"`,
			}
			consoleDone := make(chan struct{})
			go func() {
				defer close(consoleDone)
				sc := bufio.NewScanner(stdout)
				sc.Buffer(make([]byte, 64<<10), 1<<20)
				for sc.Scan() {
					line := strings.TrimRight(sc.Text(), "\r")
					mu.Lock()
					console = append(console, line)
					for k, w := range want {
						if _, ok := seen[k]; !ok && strings.Contains(line, w) {
							seen[k] = time.Since(start)
						}
					}
					mu.Unlock()
				}
			}()
			var token string
			var registered time.Duration
			select {
			case token = <-reg.tokens:
				registered = time.Since(start)
			case <-qctx.Done():
			case <-consoleDone:
			}
			time.Sleep(time.Second) // the agent logs the refusal
			qcancel()
			<-consoleDone
			mu.Lock()
			defer mu.Unlock()
			text := strings.Join(console, "\n")
			for k, w := range want {
				if _, ok := seen[k]; !ok {
					t.Errorf("the console never showed %s (%q)", k, w)
				}
			}
			if token != testToken {
				t.Errorf("the registrar got token %q, want the one from the command line", token)
			}
			if strings.Contains(text, testToken) || strings.Contains(text, "0123456789abcdef") {
				t.Error("the token appeared on the console")
			}
			if t.Failed() {
				t.Fatalf("serial console:\n%s", text)
			}
			t.Logf("QEMU (TCG), %s: disk at %v, DHCP lease at %v, bootstrap at %v, agent's first log line at %v, registration at %v",
				m.name, seen["disk"].Round(time.Millisecond), seen["dhcp"].Round(time.Millisecond),
				seen["bootstrap"].Round(time.Millisecond), seen["agent"].Round(time.Millisecond), registered.Round(time.Millisecond))
		})
	}
}

// ensureBusybox makes sure a busybox is on PATH (the dynamic busybox package does as well as
// busybox-static, which conflicts with it).
func ensureBusybox(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("busybox"); err == nil {
		return
	}
	if err := testenv.EnsureDebs("busybox-static"); err != nil {
		t.Fatal(err)
	}
}

func size(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
