// Package tftp is Basalt's read-only TFTP server for the iPXE binaries, built on
// github.com/pin/tftp/v3. A PXE ROM loads iPXE from it (the boot file pxe/dhcp names); iPXE then
// fetches everything else over HTTP (pxe/httpboot), so TFTP serves a handful of files of about
// 1 MiB and nothing else.
//
// # What it serves
//
// Only the files of Files (default ipxe.efi, snponly.efi, undionly.kpxe) that are regular files in
// Root (default /usr/lib/ipxe, Debian's ipxe package) when ListenAndServe starts. A request name
// goes through CleanPath first: empty names, NUL and control bytes, backslashes, absolute paths
// and any ".." element are refused; what is left is cleaned and looked up in the allow-list, a
// table of name → file built at start; a request name is never joined to a folder. (Symbolic links
// in Root are followed at start: Debian's /usr/lib/ipxe/ipxe.efi links to /boot/ipxe.efi.) Write
// requests are refused. Nothing is URL-decoded: "%2e%2e%2f" is a file name like any
// other, and not in the allow-list.
//
// # Options
//
// The blksize (RFC 2348) and tsize (RFC 2349) options are negotiated by pin/tftp; MaxBlockSize
// caps blksize (by default the interface MTU less the IP and UDP headers). pin/tftp v3.1.0 does not
// negotiate RFC 7440's windowsize option: a client that asks for it is answered without it and
// falls back to lockstep, as RFC 7440 prescribes. WindowSize instead turns on pin/tftp's
// sender-side window ("anticipate"): the server sends WindowSize blocks before it waits for their
// acknowledgements, which every lockstep client accepts (it acknowledges each block in turn), and
// resends the whole window on a timeout. It is off by default (1).
//
// # Metrics
//
// basalt_pxe_tftp_requests_total{result}: ok, failed (timeout, client error), bad_path (refused by
// CleanPath), not_allowed (clean but not in the allow-list), write_refused, malformed (not a TFTP
// request). basalt_pxe_tftp_sent_bytes_total counts the bytes of completed transfers.
package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Defaults of Server.
const (
	// DefaultAddr is where the server listens.
	DefaultAddr = "0.0.0.0:69"
	// DefaultRoot is where Debian's ipxe package puts the binaries.
	DefaultRoot = "/usr/lib/ipxe"
	// DefaultTimeout is how long the server waits for an acknowledgement before resending.
	DefaultTimeout = 5 * time.Second
	// DefaultRetries is how many times a block is sent before the transfer fails.
	DefaultRetries = 5
	// MaxNameLength bounds a request's file name.
	MaxNameLength = 255
)

// DefaultFiles are the iPXE binaries served: x86-64 UEFI with iPXE's drivers, x86-64 UEFI
// through the firmware's network stack, and BIOS through the NIC's PXE ROM (UNDI).
var DefaultFiles = []string{"ipxe.efi", "snponly.efi", "undionly.kpxe"}

// Results, the values of the result label of basalt_pxe_tftp_requests_total.
const (
	ResultOK           = "ok"
	ResultFailed       = "failed"
	ResultBadPath      = "bad_path"
	ResultNotAllowed   = "not_allowed"
	ResultWriteRefused = "write_refused"
	ResultMalformed    = "malformed"
)

var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "basalt", Subsystem: "pxe_tftp", Name: "requests_total",
		Help: "TFTP requests by result: ok, failed, bad_path, not_allowed, write_refused, malformed.",
	}, []string{"result"})
	sentBytesTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "basalt", Subsystem: "pxe_tftp", Name: "sent_bytes_total",
		Help: "Bytes sent in completed TFTP transfers.",
	})
)

func init() {
	metrics.Registry.MustRegister(requestsTotal, sentBytesTotal)
}

// Server is the read-only TFTP server of the iPXE binaries.
//
// Fields must not change after ListenAndServe is called.
type Server struct {
	// Addr is the UDP address to listen on. Default DefaultAddr.
	Addr string
	// Root is the folder of the binaries. Default DefaultRoot.
	Root string
	// Files is the allow-list: plain file names in Root. Default DefaultFiles. Those missing at
	// start are skipped; ListenAndServe fails when none is there.
	Files []string
	// MaxBlockSize caps the blksize option (512 to 65464). Default 0: the interface MTU less
	// the IP and UDP headers (1472 on Ethernet).
	MaxBlockSize int
	// WindowSize is how many blocks pin/tftp sends before waiting for their acknowledgements
	// (2 to 60; see the package documentation). Default 1: lockstep.
	WindowSize int
	// Timeout is how long to wait for an acknowledgement. Default DefaultTimeout.
	Timeout time.Duration
	// Retries is how many times a block is sent. Default DefaultRetries.
	Retries int
	// Log receives the server's logs. Default ctrl.Log.WithName("pxe-tftp").
	Log logr.Logger
}

// Validate reports whether the fields make a working server, at least one allowed file in Root
// included.
func (s *Server) Validate() error {
	var errs []error
	if s.MaxBlockSize != 0 && (s.MaxBlockSize < 512 || s.MaxBlockSize > 65464) {
		errs = append(errs, fmt.Errorf("tftp: MaxBlockSize %d is outside 512-65464", s.MaxBlockSize))
	}
	if s.WindowSize < 0 || s.WindowSize > 60 {
		errs = append(errs, fmt.Errorf("tftp: WindowSize %d is outside 1-60", s.WindowSize))
	}
	if s.Timeout < 0 || s.Retries < 0 {
		errs = append(errs, errors.New("tftp: Timeout and Retries must not be negative"))
	}
	for _, f := range s.files() {
		if c, err := CleanPath(f); err != nil || c != f || strings.Contains(f, "/") {
			errs = append(errs, fmt.Errorf("tftp: Files entry %q is not a plain file name", f))
		}
	}
	if len(errs) == 0 {
		if _, err := s.openCatalog(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Server) files() []string {
	if s.Files == nil {
		return DefaultFiles
	}
	return s.Files
}

func (s *Server) root() string {
	if s.Root == "" {
		return DefaultRoot
	}
	return s.Root
}

func (s *Server) log() logr.Logger {
	if s.Log.GetSink() == nil {
		return ctrl.Log.WithName("pxe-tftp")
	}
	return s.Log
}

// errBadPath, errNotAllowed and errReadOnly are refusals; their text goes to the client in a
// TFTP ERROR packet, so it says nothing about the server's files.
var (
	errBadPath    = errors.New("access violation")
	errNotAllowed = errors.New("file not found")
	errReadOnly   = errors.New("read-only server")
)

// CleanPath turns a requested file name into a clean relative path, or refuses it: empty or longer
// than MaxNameLength, NUL or control bytes, backslashes, absolute paths, and any ".." element
// ("ipxe.efi/../x" too, although it would clean to "x"). The result is never "." or ".." and
// never leaves the folder it is joined to; CleanPath(result) == result.
func CleanPath(name string) (string, error) {
	if name == "" || len(name) > MaxNameLength {
		return "", errBadPath
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "", errBadPath
		}
	}
	if strings.HasPrefix(name, "/") {
		return "", errBadPath
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", errBadPath
		}
	}
	clean := path.Clean(name)
	if clean == "." || !filepath.IsLocal(clean) {
		return "", errBadPath
	}
	return clean, nil
}

// catalog is the set of files served: allow-listed name → path in Root. Request names are only
// ever looked up in it, never joined to Root.
type catalog struct {
	paths map[string]string
}

// openCatalog finds which of the allowed files are in the root folder. Symbolic links are followed
// here, in the operator's folder (Debian's /usr/lib/ipxe/ipxe.efi is a link to /boot/ipxe.efi).
func (s *Server) openCatalog() (*catalog, error) {
	c := &catalog{paths: map[string]string{}}
	for _, f := range s.files() {
		p := filepath.Join(s.root(), f)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			c.paths[f] = p
		}
	}
	if len(c.paths) == 0 {
		return nil, fmt.Errorf("tftp: none of %v is a file in %s (Debian: apt-get install ipxe)", s.files(), s.root())
	}
	return c, nil
}

func (c *catalog) names() []string {
	out := make([]string, 0, len(c.paths))
	for n := range c.paths {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// open returns the file behind a requested name, or a refusal and its result label.
func (c *catalog) open(name string) (*os.File, string, error) {
	clean, err := CleanPath(name)
	if err != nil {
		return nil, ResultBadPath, errBadPath
	}
	p, ok := c.paths[clean]
	if !ok {
		return nil, ResultNotAllowed, errNotAllowed
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, ResultNotAllowed, errNotAllowed
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, ResultNotAllowed, errNotAllowed
	}
	return f, "", nil
}

// refusal is a request refused before any transfer; the hook counts it by result.
type refusal struct {
	result string
	err    error
}

func (r *refusal) Error() string { return r.err.Error() }

// hook counts transfers: successes, refusals, failures, malformed requests.
type hook struct{ log logr.Logger }

// OnSuccess logs; the read handler counts successes (pin/tftp does not call OnSuccess when
// WindowSize > 1).
func (h hook) OnSuccess(st tftp.TransferStats) {
	h.log.V(1).Info("Sent", "file", st.Filename, "client", st.RemoteAddr.String(), "duration", st.Duration.String(), "blocks", st.DatagramsSent)
}

func (h hook) OnFailure(st tftp.TransferStats, err error) {
	var r *refusal
	switch {
	case errors.As(err, &r):
		requestsTotal.WithLabelValues(r.result).Inc()
		h.log.V(1).Info("Refused", "file", fmt.Sprintf("%q", st.Filename), "client", st.RemoteAddr.String(), "reason", r.result)
	case st.Filename == "" && st.RemoteAddr == nil:
		// The serving loop reports requests that do not parse with empty stats.
		requestsTotal.WithLabelValues(ResultMalformed).Inc()
		h.log.V(1).Info("Dropped a malformed request", "reason", ResultMalformed, "error", err.Error())
	default:
		requestsTotal.WithLabelValues(ResultFailed).Inc()
		h.log.Info("Transfer failed", "file", st.Filename, "client", st.RemoteAddr.String(), "error", err.Error())
	}
}

// ListenAndServe serves the files until ctx ends; then it stops taking requests, lets running
// transfers finish or time out, closes the socket and returns nil. It fails when the fields do
// not validate, no allowed file is in Root, or the socket cannot be opened (port 69 needs
// CAP_NET_BIND_SERVICE).
func (s *Server) ListenAndServe(ctx context.Context) error {
	if err := s.Validate(); err != nil {
		return err
	}
	addr := s.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	conn, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return fmt.Errorf("tftp: %w", err)
	}
	return s.Serve(ctx, conn)
}

// Serve is ListenAndServe on a socket the caller opened; it closes conn before returning.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	defer func() { _ = conn.Close() }()
	if err := s.Validate(); err != nil {
		return err
	}
	cat, err := s.openCatalog()
	if err != nil {
		return err
	}
	log := s.log().WithValues("addr", conn.LocalAddr().String())

	read := func(name string, rf io.ReaderFrom) error {
		f, result, err := cat.open(name)
		if err != nil {
			return &refusal{result: result, err: err}
		}
		defer func() { _ = f.Close() }()
		n, err := rf.ReadFrom(f) // the file is an io.Seeker: tsize is answered
		if err == nil {
			requestsTotal.WithLabelValues(ResultOK).Inc()
			sentBytesTotal.Add(float64(n))
		}
		return err
	}
	write := func(string, io.WriterTo) error {
		return &refusal{result: ResultWriteRefused, err: errReadOnly}
	}
	srv := tftp.NewServer(read, write)
	srv.SetHook(hook{log: log})
	if s.MaxBlockSize > 0 {
		srv.SetBlockSize(s.MaxBlockSize)
	}
	if s.WindowSize > 1 {
		srv.SetAnticipate(uint(s.WindowSize))
	}
	srv.SetTimeout(orDuration(s.Timeout, DefaultTimeout))
	srv.SetRetries(orInt(s.Retries, DefaultRetries))

	var once sync.Once
	shutdown := func() { once.Do(srv.Shutdown) }
	stop := context.AfterFunc(ctx, shutdown)
	defer stop()
	log.Info("Serving TFTP", "root", s.root(), "files", cat.names())
	err = srv.Serve(conn)
	if ctx.Err() != nil {
		shutdown() // wait for running transfers
		return nil
	}
	if err != nil {
		return fmt.Errorf("tftp: %w", err)
	}
	return nil
}

func orDuration(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func orInt(i, def int) int {
	if i <= 0 {
		return def
	}
	return i
}
