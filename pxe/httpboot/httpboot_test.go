package httpboot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"

	"github.com/basalt-dev/basalt/agents/protocol"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden scripts in testdata/")

const (
	testToken = "abc123.0123456789abcdef"
	baseURL   = "http://192.168.10.1:8080"
)

// remote is where httptest.NewRequest's requests come from: the fixture's Hosts have it
// reserved, so their scripts carry their tokens.
var remote = netip.MustParseAddr("192.0.2.1")

func testCA(t testing.TB) []byte {
	t.Helper()
	ca, err := os.ReadFile("testdata/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func testBootstrap(t testing.TB) protocol.Bootstrap {
	return protocol.Bootstrap{Server: "https://192.168.10.1:9443", CA: testCA(t), Token: testToken}
}

// fakeScripts is a table of targets by MAC; err, when set, fails every lookup.
type fakeScripts struct {
	targets map[string]Target
	err     error
}

func (f fakeScripts) Target(_ context.Context, mac string) (Target, error) {
	if f.err != nil {
		return Target{}, f.err
	}
	return f.targets[mac], nil
}

func fixture(t *testing.T) fakeScripts {
	b := testBootstrap(t)
	return fakeScripts{targets: map[string]Target{
		"52:54:00:00:00:01": {Known: true, Address: remote, Host: "default/node-1", State: basaltv1.HostStateInspecting, Agent: &AgentBoot{Bootstrap: b}},
		"52:54:00:00:00:02": {Known: true, Address: remote, Host: "default/node-2", State: basaltv1.HostStateProvisioned, Agent: &AgentBoot{Bootstrap: b}},
		"52:54:00:00:00:03": {Known: true, Address: remote, Host: "default/node-3", State: basaltv1.HostStateError},
		"52:54:00:00:00:04": {Known: true, Address: remote, Host: "lab/node-4", State: basaltv1.HostStateProvisioning, Agent: &AgentBoot{
			Bootstrap: b, KernelURL: "http://10.0.0.5/images/vmlinuz", InitramfsURL: "http://10.0.0.5/images/initramfs.cpio.gz",
			ExtraArgs: []string{"basalt.disk=/dev/sda"},
		}},
		"52:54:00:00:00:06": {Known: true, Address: remote, Host: "default/node-6", State: basaltv1.HostStateProvisioned, Diskless: true, Agent: &AgentBoot{Bootstrap: b}},
		"52:54:00:00:00:07": {Known: true, Address: remote, Host: "default/node-7", State: basaltv1.HostStateProvisioned, Diskless: true},
		"52:54:00:00:00:08": {Known: true, Address: remote, Host: "default/node-8", State: basaltv1.HostStateProvisioned, Root: RootLabel, Agent: &AgentBoot{}},
		"52:54:00:00:00:09": {Known: true, Address: remote, Host: "default/node-9", State: basaltv1.HostStateProvisioning, Root: RootLabel, Agent: &AgentBoot{Bootstrap: b}},
		"52:54:00:00:00:05": {Known: true, Address: remote, Host: "default/node-5", State: basaltv1.HostStateInspecting, Agent: &AgentBoot{
			Bootstrap: protocol.Bootstrap{Server: "https://192.168.10.1:9443", CA: b.CA, Token: "bad token with spaces"},
		}},
	}}
}

// logSink collects every log line, at every verbosity.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 10})
}

func (l *logSink) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func get(t *testing.T, h http.Handler, method, path string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestScripts(t *testing.T) {
	logs := &logSink{}
	s := &Server{BaseURL: baseURL, Scripts: fixture(t), Log: logs.logger()}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		mac, golden string
		action      Action
	}{
		{"52:54:00:00:00:01", "agent.ipxe", ActionAgent},
		{"52:54:00:00:00:02", "local_disk.ipxe", ActionLocalDisk},
		{"52:54:00:00:00:03", "wait.ipxe", ActionWait},
		{"52:54:00:00:00:06", "agent_diskless.ipxe", ActionAgent},
		{"52:54:00:00:00:07", "local_disk_diskless_no_agent.ipxe", ActionLocalDisk},
		{"52:54:00:00:00:08", "agent_root.ipxe", ActionAgent},
		{"52:54:00:00:00:09", "agent_root_provisioning.ipxe", ActionAgent},
		{"52:54:00:00:00:04", "agent_custom_urls.ipxe", ActionAgent},
		{"52:54:00:99:99:99", "unknown.ipxe", ActionExit},
		{"52:54:00:00:00:05", "bad_bootstrap.ipxe", ActionWait},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			w := get(t, s, http.MethodGet, "/boot/"+tt.mac+".ipxe")
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if ct, cc := w.Header().Get("Content-Type"), w.Header().Get("Cache-Control"); ct != "text/plain; charset=utf-8" || cc != "no-store" {
				t.Errorf("Content-Type %q, Cache-Control %q", ct, cc)
			}
			golden(t, tt.golden, w.Body.Bytes())
			if !bytes.HasPrefix(w.Body.Bytes(), []byte("#!ipxe\n")) {
				t.Error("script does not start with #!ipxe")
			}
		})
	}
	// A lookup failure makes the host ask again.
	failing := &Server{BaseURL: baseURL, Scripts: fakeScripts{err: errors.New("informer not synced")}, Log: logs.logger()}
	w := get(t, failing, http.MethodGet, "/boot/52:54:00:00:00:01.ipxe")
	if w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	golden(t, "lookup_failed.ipxe", w.Body.Bytes())

	if strings.Contains(logs.text(), testToken) || strings.Contains(logs.text(), "0123456789abcdef") || strings.Contains(logs.text(), "bad token") {
		t.Errorf("a token reached the logs:\n%s", logs.text())
	}
	if !strings.Contains(logs.text(), `"action"="agent"`) {
		t.Errorf("the logs do not say what was served:\n%s", logs.text())
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./pxe/httpboot -update to write it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-golden +got):\n%s", name, diff)
	}
}

// TestAgentCommandLine checks the agent script's kernel line: what it carries and that
// ParseBootstrapArgs reads the bootstrap back.
func TestAgentCommandLine(t *testing.T) {
	s := &Server{BaseURL: baseURL, Scripts: fixture(t)}
	body := get(t, s, http.MethodGet, "/boot/52:54:00:00:00:01.ipxe").Body.String()
	var kernel string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "kernel ") {
			kernel = l
		}
	}
	fields := strings.Fields(kernel)
	if len(fields) < 5 || fields[3] != baseURL+PathKernel {
		t.Fatalf("kernel line: %q", kernel)
	}
	cmdline := strings.Join(fields[4:len(fields)-3], " ") // less "|| goto retry"
	for _, want := range []string{"initrd=initramfs", "console=ttyS0,115200n8", "BOOTIF=01-52-54-00-00-00-01", "basalt.token=" + testToken} {
		if !strings.Contains(cmdline, want) {
			t.Errorf("command line lacks %q: %s", want, cmdline)
		}
	}
	got, err := ParseBootstrapArgs(cmdline)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(testBootstrap(t), got); diff != "" {
		t.Errorf("bootstrap read back (-want +got):\n%s", diff)
	}
	t.Logf("kernel command line: %d bytes (limit %d)", len(cmdline), MaxCommandLine)
}

// kernelLine returns the command line of an agent script's kernel line ("" if it has none).
func kernelLine(script []byte) string {
	for _, l := range strings.Split(string(script), "\n") {
		if f := strings.Fields(l); len(f) >= 7 && f[0] == "kernel" {
			return strings.Join(f[4:len(f)-3], " ") // less "kernel --name vmlinuz <url>" and "|| goto retry"
		}
	}
	return ""
}

// TestRoot checks Target.Root: basalt.root on every agent boot, the agent instead of the local
// disk for a Provisioned host, and a bootstrap that may be left out only with Root.
func TestRoot(t *testing.T) {
	s := &Server{BaseURL: baseURL, Scripts: fakeScripts{}}
	b := testBootstrap(t)
	const mac = "52:54:00:00:00:08"
	prov, provisioning := basaltv1.HostStateProvisioned, basaltv1.HostStateProvisioning
	tests := []struct {
		name   string
		target Target
		action Action // when the script is made
		err    bool   // the script fails (the host gets the wait script)
		root   bool   // basalt.root=basalt-root is on the command line
		token  bool   // the bootstrap is on the command line
	}{
		{"provisioned, root, no bootstrap", Target{State: prov, Root: RootLabel, Agent: &AgentBoot{}}, ActionAgent, false, true, false},
		{"provisioned, root, bootstrap", Target{State: prov, Root: RootLabel, Agent: &AgentBoot{Bootstrap: b}}, ActionAgent, false, true, true},
		{"provisioned diskless, root", Target{State: prov, Diskless: true, Root: RootLabel, Agent: &AgentBoot{}}, ActionAgent, false, true, false},
		{"provisioned, root, no agent", Target{State: prov, Root: RootLabel}, ActionLocalDisk, false, false, false},
		{"provisioned, no root", Target{State: prov, Agent: &AgentBoot{Bootstrap: b}}, ActionLocalDisk, false, false, false},
		{"provisioning, root, bootstrap", Target{State: provisioning, Root: RootLabel, Agent: &AgentBoot{Bootstrap: b}}, ActionAgent, false, true, true},
		{"deprovisioning, root, bootstrap", Target{State: basaltv1.HostStateDeprovisioning, Root: RootLabel, Agent: &AgentBoot{Bootstrap: b}}, ActionAgent, false, true, true},
		{"provisioning, root, no bootstrap", Target{State: provisioning, Root: RootLabel, Agent: &AgentBoot{}}, ActionAgent, false, true, false},
		{"provisioning, root, no agent", Target{State: provisioning, Root: RootLabel}, ActionWait, false, false, false},
		{"provisioning, whole-disk image written", Target{State: provisioning, LocalDisk: true}, ActionLocalDisk, false, false, false},
		{"local disk wins over an agent", Target{State: provisioning, LocalDisk: true, Agent: &AgentBoot{Bootstrap: b}}, ActionLocalDisk, false, false, false},
		{"zero bootstrap without root", Target{State: provisioning, Agent: &AgentBoot{}}, "", true, false, false},
		{"provisioned diskless, zero bootstrap without root", Target{State: prov, Diskless: true, Agent: &AgentBoot{}}, "", true, false, false},
		{"partial bootstrap with root", Target{State: provisioning, Root: RootLabel, Agent: &AgentBoot{Bootstrap: protocol.Bootstrap{Token: testToken}}}, "", true, false, false},
		{"bad token with root", Target{State: prov, Root: RootLabel, Agent: &AgentBoot{Bootstrap: protocol.Bootstrap{Server: b.Server, CA: b.CA, Token: "bad token"}}}, "", true, false, false},
		{"label with a space", Target{State: prov, Root: "Bad Label", Agent: &AgentBoot{Bootstrap: b}}, "", true, false, false},
		{"label with a command", Target{State: provisioning, Root: "x;reboot", Agent: &AgentBoot{Bootstrap: b}}, "", true, false, false},
		{"17-character label", Target{State: prov, Root: "abcdefghij1234567", Agent: &AgentBoot{}}, "", true, false, false},
		{"bad label, no agent", Target{State: prov, Root: "Bad Label"}, "", true, false, false},
		{"root in ExtraArgs", Target{State: provisioning, Agent: &AgentBoot{Bootstrap: b, ExtraArgs: []string{"basalt.root=other"}}}, "", true, false, false},
		{"token in ExtraArgs", Target{State: prov, Root: RootLabel, Agent: &AgentBoot{ExtraArgs: []string{"basalt.token=" + testToken}}}, "", true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.target.Known, tt.target.Host = true, "default/node-8"
			action, script, err := s.script(mac, tt.target)
			if tt.err {
				if err == nil {
					t.Fatalf("script = %s, want an error", action)
				}
				if strings.Contains(err.Error(), testToken) {
					t.Errorf("the error quotes the token: %v", err)
				}
				if script != nil {
					t.Errorf("a failed script still has a body:\n%s", script)
				}
				// Served, it is the wait script: nothing of the target leaks.
				logs := &logSink{}
				tt.target.Address = remote
				srv := &Server{BaseURL: baseURL, Log: logs.logger(), Scripts: fakeScripts{targets: map[string]Target{mac: tt.target}}}
				body := get(t, srv, http.MethodGet, "/boot/"+mac+".ipxe").Body.Bytes()
				if !bytes.Equal(body, srv.waitScript(mac)) {
					t.Errorf("served, not the wait script:\n%s", body)
				}
				if strings.Contains(logs.text(), testToken) {
					t.Errorf("the token reached the logs:\n%s", logs.text())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if action != tt.action {
				t.Errorf("action %s, want %s", action, tt.action)
			}
			cmdline := kernelLine(script)
			if (cmdline != "") != (action == ActionAgent) {
				t.Fatalf("kernel command line %q in a %s script:\n%s", cmdline, action, script)
			}
			if got := strings.Count(cmdline, ArgRoot+"="); got != map[bool]int{true: 1}[tt.root] {
				t.Errorf("%d basalt.root= on %q", got, cmdline)
			}
			if tt.root && !strings.Contains(" "+cmdline+" ", " basalt.root=basalt-root ") {
				t.Errorf("command line lacks basalt.root=basalt-root: %s", cmdline)
			}
			for _, k := range []string{ArgServer, ArgCA, ArgToken} {
				if strings.Contains(cmdline, k+"=") != tt.token {
					t.Errorf("%s= on the command line: %v, want %v: %s", k, !tt.token, tt.token, cmdline)
				}
			}
			if !tt.token {
				if strings.Contains(string(script), testToken) {
					t.Errorf("the script has the token:\n%s", script)
				}
				if _, err := ParseBootstrapArgs(cmdline); err == nil && action == ActionAgent {
					t.Error("ParseBootstrapArgs found a bootstrap where none was given")
				}
				return
			}
			got, err := ParseBootstrapArgs(cmdline)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(b, got); diff != "" {
				t.Errorf("bootstrap read back (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckRootLabel(t *testing.T) {
	for label, ok := range map[string]bool{
		RootLabel:           true,
		"a":                 true,
		"0":                 true,
		"-":                 true,
		"abcdefghij123456":  true, // 16, an ext4 label's limit
		"":                  false,
		"abcdefghij1234567": false, // 17
		"Bad Label":         false,
		"x;reboot":          false,
		"BASALT-ROOT":       false,
		"basalt_root":       false,
		"basalt.root":       false,
		"a/b":               false,
		"${root}":           false,
		"a\n":               false,
		"root\x00":          false,
		"é":                 false,
	} {
		if err := CheckRootLabel(label); (err == nil) != ok {
			t.Errorf("CheckRootLabel(%q) = %v, want ok %v", label, err, ok)
		}
	}
}

func TestBadRequests(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, []byte("kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &Server{BaseURL: baseURL, Scripts: fixture(t), KernelPath: kernel}
	for _, tc := range []struct {
		method, path string
		code         int
	}{
		{http.MethodGet, "/boot/52:54:00:00:00:0G.ipxe", http.StatusBadRequest},
		{http.MethodGet, "/boot/52:54:00:00:00:AB.ipxe", http.StatusBadRequest}, // uppercase
		{http.MethodGet, "/boot/52-54-00-00-00-01.ipxe", http.StatusBadRequest},
		{http.MethodGet, "/boot/525400000001.ipxe", http.StatusBadRequest},
		{http.MethodGet, "/boot/52:54:00:00:00:01:02.ipxe", http.StatusBadRequest},
		{http.MethodGet, "/boot/.ipxe", http.StatusBadRequest},
		{http.MethodGet, "/boot/..%2f..%2fetc%2fpasswd.ipxe", http.StatusBadRequest},
		{http.MethodGet, "/boot/x/52:54:00:00:00:01.ipxe", http.StatusBadRequest},
		{http.MethodGet, "/boot/52:54:00:00:00:01.ipxe.bak", http.StatusNotFound},
		{http.MethodGet, "/boot/", http.StatusNotFound},
		{http.MethodGet, "/etc/passwd", http.StatusNotFound},
		{http.MethodGet, "/boot/initramfs", http.StatusNotFound}, // not configured
		{http.MethodPost, "/boot/52:54:00:00:00:01.ipxe", http.StatusMethodNotAllowed},
		{http.MethodHead, "/boot/52:54:00:00:00:01.ipxe", http.StatusMethodNotAllowed},
		{http.MethodPut, "/boot/kernel", http.StatusMethodNotAllowed},
	} {
		if w := get(t, s, tc.method, tc.path); w.Code != tc.code {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, w.Code, tc.code)
		}
	}
}

func TestKernelAndInitramfs(t *testing.T) {
	dir := t.TempDir()
	kernel, initramfs := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initramfs")
	kbytes := bytes.Repeat([]byte("K"), 100000)
	ibytes := bytes.Repeat([]byte("0123456789"), 50000)
	if err := os.WriteFile(kernel, kbytes, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(initramfs, ibytes, 0o644); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	_ = os.Chtimes(initramfs, mtime, mtime)
	s := &Server{BaseURL: baseURL, Scripts: fixture(t), KernelPath: kernel, InitramfsPath: initramfs}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	// Over a real loopback listener, as iPXE would.
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()

	type answer struct {
		StatusCode int
		Header     http.Header
	}
	fetch := func(path string, hdr ...string) (answer, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, resp.Header}, b
	}
	if resp, b := fetch(PathKernel); resp.StatusCode != 200 || !bytes.Equal(b, kbytes) || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("kernel: %d, %d bytes, %s", resp.StatusCode, len(b), resp.Header.Get("Content-Type"))
	}
	if resp, b := fetch(PathInitramfs); resp.StatusCode != 200 || !bytes.Equal(b, ibytes) {
		t.Errorf("initramfs: %d, %d bytes", resp.StatusCode, len(b))
	}
	if resp, b := fetch(PathInitramfs, "Range", "bytes=10-19"); resp.StatusCode != http.StatusPartialContent || string(b) != "0123456789" {
		t.Errorf("range: %d %q", resp.StatusCode, b)
	}
	if resp, _ := fetch(PathInitramfs, "If-Modified-Since", mtime.Add(time.Hour).Format(http.TimeFormat)); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-Modified-Since: %d", resp.StatusCode)
	}
	if resp, b := fetch("/boot/52:54:00:00:00:02.ipxe"); resp.StatusCode != 200 || !strings.Contains(string(b), "sanboot") {
		t.Errorf("script over TCP: %d %s", resp.StatusCode, b)
	}
	head, err := http.Head(base + PathKernel)
	if err != nil {
		t.Fatal(err)
	}
	_ = head.Body.Close()
	if head.StatusCode != 200 || head.ContentLength != int64(len(kbytes)) {
		t.Errorf("HEAD kernel: %d, length %d", head.StatusCode, head.ContentLength)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if resp, err := http.Get(base + PathKernel); err == nil {
		_ = resp.Body.Close()
		t.Error("the server still answers after cancel")
	}
}

func TestValidate(t *testing.T) {
	for _, s := range []*Server{
		{BaseURL: baseURL},
		{Scripts: fakeScripts{}},
		{Scripts: fakeScripts{}, BaseURL: "ftp://x"},
		{Scripts: fakeScripts{}, BaseURL: "http://x/${evil}"},
		{Scripts: fakeScripts{}, BaseURL: baseURL, KernelPath: "/nonexistent/vmlinuz"},
		{Scripts: fakeScripts{}, BaseURL: baseURL, KernelArgs: []string{"console=tty0 && reboot"}},
	} {
		if err := s.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", s)
		}
	}
}

func TestBootstrapArgs(t *testing.T) {
	b := testBootstrap(t)
	args, err := BootstrapArgs(b)
	if err != nil {
		t.Fatal(err)
	}
	// basalt.ca is exactly the JSON encoding of Bootstrap.CA: /init copies it unchanged.
	js, _ := json.Marshal(b)
	ca := strings.TrimPrefix(args[1], ArgCA+"=")
	if !strings.Contains(string(js), `"ca":"`+ca+`"`) {
		t.Errorf("basalt.ca differs from the JSON encoding of the CA")
	}
	bad := []protocol.Bootstrap{
		{Server: "http://192.168.10.1:9443", CA: b.CA, Token: testToken},
		{Server: "https://x:9443/api", CA: b.CA, Token: testToken},
		{Server: `https://x"y`, CA: b.CA, Token: testToken},
		{Server: "https://x", CA: []byte("not PEM"), Token: testToken},
		{Server: "https://x", CA: append(append([]byte{}, b.CA...), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")...), Token: testToken},
		{Server: "https://x", CA: b.CA, Token: "ABC.def"},
		{Server: "https://x", CA: b.CA, Token: "abc.def ghi"},
		{Server: "https://x", CA: b.CA, Token: ""},
	}
	for _, x := range bad {
		if _, err := BootstrapArgs(x); err == nil {
			t.Errorf("BootstrapArgs(%q, %q) = nil error", x.Server, x.Token)
		} else if x.Token != "" && strings.Contains(err.Error(), x.Token) {
			t.Errorf("the error quotes the token: %v", err)
		}
	}
	cmd := "BOOT_IMAGE=vmlinuz " + strings.Join(args, " ") + " quiet"
	for name, c := range map[string]string{
		"missing token":   strings.ReplaceAll(cmd, args[2], ""),
		"duplicate token": cmd + " " + args[2],
		"url-safe base64": strings.ReplaceAll(strings.ReplaceAll(cmd, "+", "-"), "/", "_") + " ",
		"bad padding":     strings.Replace(cmd, args[1], args[1]+"=", 1),
	} {
		if _, err := ParseBootstrapArgs(c); err == nil {
			t.Errorf("%s: ParseBootstrapArgs accepted it", name)
		}
	}
}

func FuzzParseBootstrapArgs(f *testing.F) {
	args, err := BootstrapArgs(testBootstrap(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(strings.Join(args, " "))
	f.Add("console=ttyS0 " + strings.Join(args, "  ") + " BOOTIF=01-52-54-00-00-00-01")
	f.Add("basalt.server=https://x basalt.ca=AAAA basalt.token=a.b")
	f.Add("")
	f.Fuzz(func(t *testing.T, cmdline string) {
		b, err := ParseBootstrapArgs(cmdline)
		if err != nil {
			return
		}
		// What is accepted encodes back and reads back the same.
		again, err := BootstrapArgs(b)
		if err != nil {
			t.Fatalf("accepted %q but cannot encode it: %v", cmdline, err)
		}
		b2, err := ParseBootstrapArgs(strings.Join(again, " "))
		if err != nil || b2.Server != b.Server || b2.Token != b.Token || !bytes.Equal(b2.CA, b.CA) {
			t.Fatalf("round trip of %q failed: %v", cmdline, err)
		}
	})
}
