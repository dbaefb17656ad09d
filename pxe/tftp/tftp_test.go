package tftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/basalt-dev/basalt/pxe/internal/testenv"
)

func TestCleanPath(t *testing.T) {
	ok := map[string]string{
		"ipxe.efi":         "ipxe.efi",
		"./ipxe.efi":       "ipxe.efi",
		"efi//ipxe.efi":    "efi/ipxe.efi",
		"%2e%2e%2fpasswd":  "%2e%2e%2fpasswd", // nothing is URL-decoded: a name like any other
		"..%2f..%2fpasswd": "..%2f..%2fpasswd",
		"...":              "...",
	}
	for in, want := range ok {
		got, err := CleanPath(in)
		if err != nil || got != want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{
		"", ".", "..", "/", "../../etc/passwd", "/etc/passwd", "ipxe.efi/../x", "ipxe.efi/..",
		"a/../../b", `..\..\windows\win.ini`, `ipxe.efi\..\x`, "ipxe.efi\x00.png", "ipxe\n.efi",
		"ipxe\x7f.efi", "./", "./.", "//etc/passwd", strings.Repeat("a", MaxNameLength+1),
	}
	for _, in := range bad {
		if got, err := CleanPath(in); err == nil {
			t.Errorf("CleanPath(%q) = %q, want a refusal", in, got)
		}
	}
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"ipxe.efi", "../../etc/passwd", "/etc/passwd", "ipxe.efi/../x", `a\b`, "a\x00b", "./a//b/", "%2e%2e/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		clean, err := CleanPath(name)
		if err != nil {
			return
		}
		if clean == "" || clean == "." || !filepath.IsLocal(clean) || strings.HasPrefix(clean, "/") {
			t.Fatalf("CleanPath(%q) = %q escapes", name, clean)
		}
		if strings.ContainsAny(clean, "\\\x00") {
			t.Fatalf("CleanPath(%q) = %q holds a backslash or NUL", name, clean)
		}
		for _, el := range strings.Split(clean, "/") {
			if el == ".." || el == "." || el == "" {
				t.Fatalf("CleanPath(%q) = %q has element %q", name, clean, el)
			}
		}
		if again, err := CleanPath(clean); err != nil || again != clean {
			t.Fatalf("CleanPath is not idempotent: %q → %q → %q, %v", name, clean, again, err)
		}
		root := "/srv/tftp"
		if j := filepath.Join(root, clean); !strings.HasPrefix(j, root+"/") {
			t.Fatalf("joined %q leaves the root: %s", clean, j)
		}
	})
}

// start runs s on a loopback socket it opens itself (no window between choosing a port and
// binding it, which another test's UDP client could take) and returns the address; the server
// stops with the test.
func start(t *testing.T, s *Server) string {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := conn.LocalAddr().String()
	s.Addr = addr
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	// Wait until it answers (a refused name is the cheapest request).
	for range 100 {
		c := client(t, addr, 0)
		c.SetTimeout(50 * time.Millisecond)
		c.SetRetries(1)
		if _, err := c.Receive("probe", "octet"); err != nil && strings.Contains(err.Error(), "not found") {
			return addr
		}
		select {
		case err := <-done:
			done <- nil // the cleanup waits for it
			t.Fatalf("server stopped: %v", err)
		default:
		}
	}
	t.Fatal("the TFTP server never answered")
	return ""
}

func client(t *testing.T, addr string, blksize int) *tftp.Client {
	t.Helper()
	c, err := tftp.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(time.Second)
	c.SetRetries(3)
	if blksize > 0 {
		c.SetBlockSize(blksize)
	}
	c.RequestTSize(true)
	return c
}

// fetch downloads name and returns its bytes.
func fetch(t *testing.T, addr, name string, blksize int) ([]byte, error) {
	t.Helper()
	wt, err := client(t, addr, blksize).Receive(name, "octet")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 300 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("timed out waiting for %s", what)
}

func result(r string) float64 { return testutil.ToFloat64(requestsTotal.WithLabelValues(r)) }

// testRoot makes a folder like /usr/lib/ipxe with random "binaries", a file that is not
// allow-listed, and an allow-listed name that is a link to a file elsewhere (as Debian does).
func testRoot(t *testing.T) (dir string, files map[string][]byte) {
	t.Helper()
	dir = t.TempDir()
	files = map[string][]byte{}
	for name, size := range map[string]int{"ipxe.efi": 1<<20 + 123, "undionly.kpxe": 70000} {
		b := make([]byte, size)
		_, _ = rand.Read(b)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		files[name] = b
	}
	elsewhere := filepath.Join(t.TempDir(), "snponly.efi")
	snp := bytes.Repeat([]byte("snp"), 5000)
	if err := os.WriteFile(elsewhere, snp, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(dir, "snponly.efi")); err != nil {
		t.Fatal(err)
	}
	files["snponly.efi"] = snp
	if err := os.WriteFile(filepath.Join(dir, "secret.txt"), []byte("not for TFTP"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, files
}

func TestTransferLoopback(t *testing.T) {
	dir, files := testRoot(t)
	for _, tc := range []struct {
		name    string
		window  int
		blksize int
	}{
		{"lockstep, 512-byte blocks", 1, 0},
		{"lockstep, blksize 1468", 1, 1468},
		{"window 8, blksize 1468", 8, 1468},
		{"window 4, blksize 8192", 4, 8192},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := start(t, &Server{Root: dir, WindowSize: tc.window})
			for name, want := range files {
				ok0 := result(ResultOK)
				got, err := fetch(t, addr, name, tc.blksize)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if sha256.Sum256(got) != sha256.Sum256(want) {
					t.Fatalf("%s: %d bytes received, checksum differs from the %d bytes served", name, len(got), len(want))
				}
				// The server counts after the client's last acknowledgement.
				eventually(t, name+" counted as ok", func() bool { return result(ResultOK) == ok0+1 })
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	dir, _ := testRoot(t)
	addr := start(t, &Server{Root: dir})
	refused := map[string]string{
		"../../etc/passwd":               ResultBadPath,
		"/etc/passwd":                    ResultBadPath,
		"ipxe.efi/../x":                  ResultBadPath,
		"ipxe.efi/../secret.txt":         ResultBadPath,
		`..\..\etc\passwd`:               ResultBadPath,
		"..":                             ResultBadPath,
		"%2e%2e%2f%2e%2e%2fetc%2fpasswd": ResultNotAllowed,
		"..%2f..%2fetc%2fpasswd":         ResultNotAllowed,
		"secret.txt":                     ResultNotAllowed,
		"undionly.kkpxe":                 ResultNotAllowed,
		"IPXE.EFI":                       ResultNotAllowed,
	}
	for name, want := range refused {
		before := result(want)
		if b, err := fetch(t, addr, name, 0); err == nil {
			t.Errorf("%q: served %d bytes, want a refusal", name, len(b))
			continue
		}
		if got := result(want); got != before+1 {
			t.Errorf("%q: requests_total{result=%s} went %v → %v, want +1", name, want, before, got)
		}
	}

	// Writes are refused and change nothing.
	before := result(ResultWriteRefused)
	orig, _ := os.ReadFile(filepath.Join(dir, "ipxe.efi"))
	rf, err := client(t, addr, 0).Send("ipxe.efi", "octet")
	if err == nil {
		_, err = rf.ReadFrom(bytes.NewReader([]byte("overwritten")))
	}
	if err == nil {
		t.Error("a write request succeeded")
	}
	if now, _ := os.ReadFile(filepath.Join(dir, "ipxe.efi")); !bytes.Equal(now, orig) {
		t.Error("a write request changed ipxe.efi")
	}
	if got := result(ResultWriteRefused); got != before+1 {
		t.Errorf("requests_total{result=write_refused} went %v → %v, want +1", before, got)
	}

	// Garbage on the port is counted as malformed.
	before = result(ResultMalformed)
	c, err := net.Dial("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if _, err := c.Write([]byte{0, 9, 'x'}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the malformed request counted", func() bool { return result(ResultMalformed) == before+1 })
}

func TestStartFailures(t *testing.T) {
	if err := (&Server{Root: t.TempDir(), Addr: "127.0.0.1:0"}).ListenAndServe(context.Background()); err == nil ||
		!strings.Contains(err.Error(), "apt-get install ipxe") {
		t.Errorf("empty root: %v, want an error that says how to install iPXE", err)
	}
	for _, s := range []*Server{
		{Files: []string{"../x"}},
		{Files: []string{"efi/ipxe.efi"}},
		{MaxBlockSize: 100},
		{WindowSize: 61},
	} {
		if err := s.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", *s)
		}
	}
}

// TestIPXEBinaries serves Debian's real iPXE binaries (installing the ipxe package if needed)
// and reports the throughput of ipxe.efi on loopback.
func TestIPXEBinaries(t *testing.T) {
	if err := testenv.EnsureDebs("ipxe"); err != nil {
		t.Fatal(err)
	}
	for _, window := range []int{1, 8} {
		addr := start(t, &Server{WindowSize: window})
		for _, name := range DefaultFiles {
			want, err := os.ReadFile(filepath.Join(DefaultRoot, name))
			if err != nil {
				t.Fatal(err)
			}
			for _, blksize := range []int{512, 1468} {
				begin := time.Now()
				got, err := fetch(t, addr, name, blksize)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				d := time.Since(begin)
				if sha256.Sum256(got) != sha256.Sum256(want) {
					t.Fatalf("%s: checksum differs", name)
				}
				t.Logf("%s (%d bytes), blksize %d, window %d: %v, %.1f MiB/s", name, len(got), blksize, window, d.Round(time.Microsecond), float64(len(got))/d.Seconds()/(1<<20))
			}
		}
	}
}
