package httpboot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/basalt-dev/basalt/agents/httpstatus"
	"github.com/basalt-dev/basalt/agents/protocol"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// Paths served.
const (
	// PathScripts is the prefix of the per-MAC scripts: /boot/52:54:00:12:34:56.ipxe.
	PathScripts = "/boot/"
	// ScriptSuffix ends a script path.
	ScriptSuffix = ".ipxe"
	// PathKernel serves KernelPath.
	PathKernel = "/boot/kernel"
	// PathInitramfs serves InitramfsPath.
	PathInitramfs = "/boot/initramfs"
)

// Defaults of Server.
const (
	// DefaultAddr is where the server listens.
	DefaultAddr = ":8080"
	// scriptTimeout bounds one Scripts call (it may issue a token).
	scriptTimeout = 10 * time.Second
)

// DefaultKernelArgs go on every agent kernel command line: the console on screen and on the
// first serial port (the last console= is /dev/console: the serial port, which BMCs expose), and
// quiet, which keeps the kernel from printing its command line, and so the token, on consoles
// that a BMC may record (warnings and errors still show). Drop quiet to debug a boot.
var DefaultKernelArgs = []string{"console=tty0", "console=ttyS0,115200n8", "quiet"}

// macRE is the only accepted form of a MAC address in a path: Host spec.boot.macAddresses',
// and what pxe/dhcp and iPXE's ${mac} write.
var macRE = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)

// Scripts tells the server what a MAC address should boot. The Host controller implements it: it
// finds the Host by spec.boot.macAddresses, and for a host that must boot the agent returns an
// AgentBoot whose NewBootstrap issues a bootstrap with agents/agentserver's Server.Bootstrap (a
// new one-time token each time the server calls it). Discovery, if any, lives there too:
// answering an unknown MAC with a new Host in Registering makes it known.
type Scripts interface {
	// Target returns what the machine with mac (lowercase, colon-separated) boots. An error is
	// a failed lookup: the host is told to ask again a little later.
	Target(ctx context.Context, mac string) (Target, error)
}

// Target is what one MAC address boots; blank cells match anything:
//
//	Known  State        Root  Diskless  Agent  boots
//	false                                      nothing: exit to the next boot device
//	true   LocalDisk set                       the local disk's boot loader
//	true   Provisioned                  nil    the local disk's boot loader
//	true   Provisioned  set             set    the agent with basalt.root: /init switches to Root
//	true   Provisioned  ""    true      set    the agent, which is the host's installed system
//	true   Provisioned  ""    false            the local disk's boot loader
//	true   other                        set    the agent, with basalt.root when Root is set
//	true   other                        nil    nothing yet: wait and ask again
type Target struct {
	// Known is true when a Host has the MAC address.
	Known bool
	// Host is "<namespace>/<name>", for the script's messages and the logs.
	Host string
	// State is the Host's status.state. A Provisioned host boots its local disk unless Agent is
	// set and the host has Root set or is Diskless.
	State basaltv1.HostState
	// Agent, when set, boots the agent: always when the host is not Provisioned, and when a
	// Provisioned host has Root set or is Diskless.
	Agent *AgentBoot
	// Diskless says the host's installed system runs from the network (the agent image and its
	// Plan) because nothing was written to its local disk: a Provisioned Diskless host boots
	// Agent again, which is its installed system, rather than a blank disk. Without Diskless (and
	// without Root) a Provisioned host always boots the local disk.
	Diskless bool
	// Root is the label of the host's root filesystem on its local disk, written by
	// provisioning (usually RootLabel); it must pass CheckRootLabel, else the script fails. When
	// set, every agent boot passes basalt.root=<Root> (ArgRoot), and a Provisioned host boots
	// the agent image, which switches to that filesystem, instead of its local disk's boot
	// loader. The agent installed there already has its identity, so a Provisioned host needs
	// no bootstrap: Agent.Bootstrap may then be zero. While the host is provisioned or
	// deprovisioned its script carries both a bootstrap and basalt.root: /init uses the disk
	// when it holds a finished install, else runs the agent from RAM with the token.
	Root string
	// LocalDisk boots the local disk's boot loader whatever the state: the host's system is a
	// whole-disk image already written there (it may still be Provisioning: the agent
	// reported the image written and rebooted into it).
	LocalDisk bool
	// Address is the Host's reserved IPv4 address on the provisioning network
	// (spec.boot.address), if it has one. A script with a bootstrap token then goes only to a
	// request from that address; without one, only to the address Server.Clients knows for the
	// MAC address.
	Address netip.Addr
}

// AgentBoot is how a host boots the agent.
type AgentBoot struct {
	// Bootstrap is passed on the kernel command line (ArgServer, ArgCA, ArgToken; see
	// BootstrapArgs). It may be zero (empty Server, CA and Token) only when Target.Root is set:
	// the command line then has no bootstrap and the agent on the root filesystem uses the
	// identity it already has. A zero Bootstrap without Root, or a partial one, fails the script.
	Bootstrap protocol.Bootstrap
	// NewBootstrap, when set, issues the bootstrap (a new one-time token) in place of Bootstrap.
	// The server calls it at most once per script, and only when it serves the agent script to
	// a request it admits (see Server): the right address, within the rate limit. Scripts
	// implementations should issue tokens this way rather than in Bootstrap, so that a refused
	// request issues nothing.
	NewBootstrap func(ctx context.Context) (protocol.Bootstrap, error)
	// KernelURL and InitramfsURL default to the server's own PathKernel and PathInitramfs.
	KernelURL, InitramfsURL string
	// ExtraArgs are appended to the kernel command line, after the server's KernelArgs. They
	// may not set ArgServer, ArgCA, ArgToken or ArgRoot, which come from Bootstrap and Root.
	ExtraArgs []string
}

// Server serves iPXE scripts, the agent kernel and the initramfs over HTTP. It is an
// http.Handler; ListenAndServe runs it on Addr.
//
// A script that carries a bootstrap token (an agent script whose AgentBoot has NewBootstrap or a
// token) is served only to a request from the MAC address's own address: Target.Address when the
// Host has one reserved, else the address Clients knows for the MAC. Even then at most
// TokenBurst such scripts go to one MAC address at once, then one every TokenInterval. Any other
// request gets the refused script: no token, a message that says why, and, after a pause, DHCP
// again and the same script (so a host whose address the server forgot, after a restart, is
// known again). Refusals are logged and counted in basalt_pxe_http_scripts_refused_total{reason}.
//
// Fields must not change after the first request.
type Server struct {
	// Addr is the TCP address to listen on. Default DefaultAddr (every interface); the
	// manager binds it to its address on the provisioning network.
	Addr string
	// BaseURL is how hosts reach this server, e.g. http://192.168.10.1:8080: scripts chain back
	// to it and point the kernel and initramfs at it. Required.
	BaseURL string
	// Scripts decides what each MAC boots. Required.
	Scripts Scripts
	// KernelPath and InitramfsPath are the files served at PathKernel and PathInitramfs (built
	// by pxe/image). Empty answers 404.
	KernelPath, InitramfsPath string
	// KernelArgs start every agent kernel command line (after initrd=initramfs). Default
	// DefaultKernelArgs; set an empty non-nil slice for none.
	KernelArgs []string
	// Clients knows the address of each MAC address that the manager's DHCP server leased or
	// saw; pxe.Start sets it to the DHCP server. nil: only Target.Address admits a script with
	// a token.
	Clients ClientAddresses
	// TokenBurst and TokenInterval rate-limit scripts with a token per MAC address: TokenBurst
	// at once, then one every TokenInterval. Defaults DefaultTokenBurst, DefaultTokenInterval.
	TokenBurst    int
	TokenInterval time.Duration
	// Log receives the server's logs. Default ctrl.Log.WithName("pxe-http").
	Log logr.Logger
	// Now is the clock of the rate limit. Default time.Now.
	Now func() time.Time

	limitOnce sync.Once
	limit     *limiter
}

// Validate reports whether the fields make a working server.
func (s *Server) Validate() error {
	var errs []error
	if s.Scripts == nil {
		errs = append(errs, errors.New("httpboot: Scripts is required"))
	}
	if err := checkURL(strings.TrimRight(s.BaseURL, "/") + PathKernel); s.BaseURL == "" || err != nil {
		errs = append(errs, fmt.Errorf("httpboot: BaseURL %q must be an http(s) URL such as http://192.168.10.1:8080", s.BaseURL))
	}
	for _, a := range s.kernelArgs() {
		if !argRE.MatchString(a) {
			errs = append(errs, fmt.Errorf("httpboot: kernel argument %q has characters that are not allowed", a))
		}
	}
	for _, p := range []string{s.KernelPath, s.InitramfsPath} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
			errs = append(errs, fmt.Errorf("httpboot: %s is not a file (build it with pxe/image)", p))
		}
	}
	return errors.Join(errs...)
}

func (s *Server) kernelArgs() []string {
	if s.KernelArgs == nil {
		return DefaultKernelArgs
	}
	return s.KernelArgs
}

func (s *Server) log() logr.Logger {
	if s.Log.GetSink() == nil {
		return ctrl.Log.WithName("pxe-http")
	}
	return s.Log
}

func (s *Server) scriptURL(mac string) string {
	return strings.TrimRight(s.BaseURL, "/") + PathScripts + mac + ScriptSuffix
}

var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "basalt", Subsystem: "pxe_http", Name: "requests_total",
		Help: "HTTP boot requests by path (script, kernel, initramfs, other) and status code.",
	}, []string{"path", "code"})
	scriptsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "basalt", Subsystem: "pxe_http", Name: "scripts_total",
		Help: "iPXE scripts served by action: agent, local_disk, exit, wait, refused.",
	}, []string{"action"})
	refusedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "basalt", Subsystem: "pxe_http", Name: "scripts_refused_total",
		Help: "Scripts with a bootstrap token that were refused (and served without one), by reason: wrong_address, no_address, rate_limited.",
	}, []string{"reason"})
)

func init() {
	metrics.Registry.MustRegister(requestsTotal, scriptsTotal, refusedTotal)
}

// ServeHTTP serves:
//
//	GET       /boot/<mac>.ipxe   the host's iPXE script (text/plain, no-store: it holds a token)
//	GET, HEAD /boot/kernel       KernelPath     (http.ServeContent: ranges, If-Modified-Since)
//	GET, HEAD /boot/initramfs    InitramfsPath
//
// A MAC address that is not six lowercase hex pairs separated by colons is a 400; other paths
// are 404, other methods 405.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := httpstatus.NewRecorder(w)
	label := s.route(rec, r)
	requestsTotal.WithLabelValues(label, strconv.Itoa(rec.Code())).Inc()
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) string {
	p := r.URL.Path
	switch {
	case p == PathKernel:
		s.serveFile(w, r, s.KernelPath)
		return "kernel"
	case p == PathInitramfs:
		s.serveFile(w, r, s.InitramfsPath)
		return "initramfs"
	case strings.HasPrefix(p, PathScripts) && strings.HasSuffix(p, ScriptSuffix):
		s.serveScript(w, r, strings.TrimSuffix(strings.TrimPrefix(p, PathScripts), ScriptSuffix))
		return "script"
	}
	http.NotFound(w, r)
	return "other"
}

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, path string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if path == "" {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		s.log().Error(err, "Cannot open a boot file", "path", path)
		http.NotFound(w, r)
		return
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

func (s *Server) serveScript(w http.ResponseWriter, r *http.Request, mac string) {
	if r.Method != http.MethodGet {
		// Not even HEAD: rendering may issue a token.
		w.Header().Set("Allow", "GET")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !macRE.MatchString(mac) {
		http.Error(w, "the MAC address must be six lowercase hex pairs separated by colons", http.StatusBadRequest)
		return
	}
	log := s.log().WithValues("mac", mac, "remote", r.RemoteAddr)
	ctx, cancel := context.WithTimeout(r.Context(), scriptTimeout)
	defer cancel()
	action, body := ActionWait, []byte(nil)
	t, err := s.Scripts.Target(ctx, mac)
	if err == nil && t.action() == ActionAgent && t.Agent.hasToken() {
		// The remote address is the TCP peer's: never a header a client could write.
		from, _ := netip.ParseAddrPort(r.RemoteAddr)
		if reason := s.admit(mac, t, from.Addr()); reason != "" {
			log.Info("Refused a boot script with a bootstrap token; serving one without", "host", t.Host, "state", t.State, "reason", reason)
			refusedTotal.WithLabelValues(reason).Inc()
			s.writeScript(w, ActionRefused, s.refusedScript(mac, reason, from.Addr()))
			return
		}
		t.Agent, err = issue(ctx, t.Agent)
	}
	if err == nil {
		action, body, err = s.script(mac, t)
	}
	if err != nil {
		// The error may come from a Bootstrap check; those never hold the token.
		log.Error(err, "Cannot make the boot script; the host will ask again", "host", t.Host)
		action, body = ActionWait, s.waitScript(mac)
	} else {
		log.V(1).Info("Served a boot script", "host", t.Host, "state", t.State, "action", action)
	}
	s.writeScript(w, action, body)
}

// hasToken says whether the agent script of a would carry a bootstrap token.
func (a *AgentBoot) hasToken() bool {
	return a != nil && (a.NewBootstrap != nil || a.Bootstrap.Token != "")
}

// issue returns a copy of a with the bootstrap NewBootstrap issues (a itself may be shared).
func issue(ctx context.Context, a *AgentBoot) (*AgentBoot, error) {
	if a.NewBootstrap == nil {
		return a, nil
	}
	b, err := a.NewBootstrap(ctx)
	if err != nil {
		return nil, fmt.Errorf("issuing a bootstrap: %w", err)
	}
	c := *a
	c.Bootstrap, c.NewBootstrap = b, nil
	return &c, nil
}

func (s *Server) writeScript(w http.ResponseWriter, action Action, body []byte) {
	scriptsTotal.WithLabelValues(string(action)).Inc()
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// ListenAndServe listens on Addr and serves until ctx ends; then it stops listening and gives
// running requests (downloads included) 5 seconds to finish before closing them, and returns nil.
func (s *Server) ListenAndServe(ctx context.Context) error {
	if err := s.Validate(); err != nil {
		return err
	}
	addr := s.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("httpboot: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve is ListenAndServe on a listener the caller opened; it closes ln before returning.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := s.Validate(); err != nil {
		_ = ln.Close()
		return err
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout: an initramfs over a slow link takes as long as it takes.
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log().Info("Serving HTTP boot", "addr", ln.Addr().String(), "baseURL", s.BaseURL)
	select {
	case err := <-errc:
		return fmt.Errorf("httpboot: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("httpboot: %w", err)
	}
	return nil
}
