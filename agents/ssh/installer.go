package ssh

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/crypto/ssh"

	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/agents/tokens"
	"github.com/basalt-dev/basalt/bootstrap/artifacts"
)

// Defaults of Installer.
const (
	// DefaultDialTimeout bounds the TCP connect and the SSH handshake.
	DefaultDialTimeout = 15 * time.Second
	// DefaultCommandTimeout bounds each command run on the host, uploads included.
	DefaultCommandTimeout = 5 * time.Minute
	// DefaultPort is the SSH port when Target.Port is zero.
	DefaultPort = 22
	// DefaultUser is the login when Target.User is empty.
	DefaultUser = "root"
)

// Init systems Install can leave the agent under.
const (
	// InitSystemd means the agent runs as the systemd unit protocol.AgentUnit.
	InitSystemd = "systemd"
	// InitSupervisor means systemd is not PID 1 and the agent runs detached (setsid nohup) with a
	// pidfile, supervising its own services.
	InitSupervisor = "supervisor"
)

// Installer installs and removes the agent over SSH. The zero value is ready to use.
type Installer struct {
	// DialTimeout bounds the TCP connect and the SSH handshake. Default DefaultDialTimeout.
	DialTimeout time.Duration
	// CommandTimeout bounds each command on the host, including the upload of the binary.
	// Default DefaultCommandTimeout. The context passed to Install bounds the whole call.
	CommandTimeout time.Duration
	// AgentArgs are extra arguments for the agent, in the unit's ExecStart and the detached
	// command line. Default none: the agent reads protocol.BootstrapPath and protocol.StateDir.
	AgentArgs []string
	// Root is prepended to every path the installer reads, writes, runs or removes on the host,
	// including the systemd check. Empty (the default) means "/". It relocates a whole
	// installation, e.g. into a scratch folder in tests; the agent itself is not told.
	Root string
	// Log receives progress at V(1). Default: discard.
	Log logr.Logger
	// Now is the clock a registered agent's certificate is checked against; default time.Now.
	Now func() time.Time
}

// Target is a host reachable over SSH and the host keys it may present.
type Target struct {
	// Address is an IP address or DNS name.
	Address string
	// Port of the SSH server. Default DefaultPort.
	Port int
	// User to log in as: root, or a user with password-less sudo. Default DefaultUser.
	User string
	// Signer authenticates the login (see SignerFromSecretData). Required.
	Signer ssh.Signer
	// PinnedKeys, when non-empty, are the only host keys accepted (spec.ssh.hostKeys).
	PinnedKeys []ssh.PublicKey
	// RecordedKey, when set and PinnedKeys is empty, is the only host key accepted
	// (status.sshHostKey, recorded on first contact). When neither is set, any key is accepted
	// and returned for recording.
	RecordedKey ssh.PublicKey
}

// Binary is the agent executable to install.
type Binary struct {
	// SHA256 of the executable, lowercase hex. Required: it decides whether to upload and is
	// checked on the host before the file is put in place.
	SHA256 string
	// Arch is the GOARCH the binary is built for (amd64, arm64, ...). When set, Install refuses a
	// host of another architecture.
	Arch string
	// Open returns the bytes. It is called only when the host does not have them yet.
	Open func() (io.ReadCloser, error)
}

// BinaryFromFile hashes the file at path and returns a Binary that reads it.
func BinaryFromFile(path, arch string) (Binary, error) {
	sum, _, err := artifacts.HashFile(path)
	if err != nil {
		return Binary{}, fmt.Errorf("agent binary: %w", err)
	}
	return Binary{SHA256: sum, Arch: arch, Open: func() (io.ReadCloser, error) { return os.Open(path) }}, nil
}

// BinaryFromBytes returns a Binary holding b.
func BinaryFromBytes(b []byte, arch string) Binary {
	h := sha256.Sum256(b)
	return Binary{SHA256: hex.EncodeToString(h[:]), Arch: arch, Open: func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}}
}

// InstallInput is what Install needs.
type InstallInput struct {
	Target
	// Agent is the executable to install at protocol.AgentBinaryPath.
	Agent Binary
	// Bootstrap is written to protocol.BootstrapPath while the agent has not registered.
	Bootstrap protocol.Bootstrap
}

// InstallResult says what Install found and did.
type InstallResult struct {
	// HostKey is the key the host presented. It is set whenever the handshake got as far as the
	// host key check, also when Install returns an error, so that a key seen on first contact can
	// be reported; the Host controller records a key seen on first contact only after a successful
	// install.
	HostKey ssh.PublicKey
	// Init is InitSystemd or InitSupervisor.
	Init string
	// Uploaded is true when the binary was sent (the host did not have this sha256).
	Uploaded bool
	// Registered is true when the agent had already registered (protocol.CertFile present).
	Registered bool
	// BootstrapWritten is true when the bootstrap, and so its token, was written. When false the
	// token was not used and should be revoked.
	BootstrapWritten bool
	// Restarted is true when a running agent was restarted, or a stopped one started.
	Restarted bool
}

// UninstallResult says what Uninstall found.
type UninstallResult struct {
	// HostKey is the key the host presented (see InstallResult.HostKey).
	HostKey ssh.PublicKey
	// Stopped is true when an agent was running and has been stopped.
	Stopped bool
}

// Install puts the agent on the host and starts it. It may be called again at any time: it
// converges, uploading and restarting only what changed. A host key that does not satisfy the
// policy (see the package doc) fails with a *HostKeyMismatchError before anything is sent.
func (in *Installer) Install(ctx context.Context, input InstallInput) (InstallResult, error) {
	var res InstallResult
	if err := validateInstall(input); err != nil {
		return res, err
	}
	conn, hostKey, err := in.dial(ctx, input.Target)
	res.HostKey = hostKey
	if err != nil {
		return res, err
	}
	defer func() { _ = conn.Close() }()
	log := in.Log.WithValues("address", conn.addr)

	facts, err := conn.probe(ctx)
	if err != nil {
		return res, err
	}
	res.Init = facts.init
	if facts.registered {
		now := time.Now
		if in.Now != nil {
			now = in.Now
		}
		if why := facts.certExpired(now()); why != "" {
			// Registered once, but the agent cannot talk to the manager any more (it was off
			// past its renewal): a new bootstrap token registers it again with a new key.
			log.Info("Registering the agent again", "reason", "CertificateUnusable", "detail", why)
			facts.registered = false
		}
	}
	res.Registered = facts.registered
	if input.Agent.Arch != "" && facts.arch != "" && facts.arch != input.Agent.Arch {
		return res, fmt.Errorf("ssh %s: the host is %s, the agent binary is built for %s", conn.addr, facts.arch, input.Agent.Arch)
	}

	if facts.binarySHA256 != input.Agent.SHA256 {
		log.V(1).Info("Uploading the agent", "sha256", input.Agent.SHA256, "reason", "BinaryChanged")
		if err := conn.uploadBinary(ctx, input.Agent); err != nil {
			return res, err
		}
		res.Uploaded = true
	}
	if !facts.registered {
		b, err := json.Marshal(input.Bootstrap)
		if err != nil {
			return res, err
		}
		log.V(1).Info("Writing the bootstrap", "reason", "NotRegistered")
		if _, err := conn.run(ctx, "write bootstrap", conn.preamble+scriptWriteBootstrap, bytes.NewReader(b)); err != nil {
			return res, err
		}
		res.BootstrapWritten = true
	}

	restart := res.Uploaded || res.BootstrapWritten
	switch facts.init {
	case InitSystemd:
		unit := in.unit()
		unitChanged := facts.unitSHA256 != sha256Hex(unit)
		script := conn.preamble + fmt.Sprintf("WRITE_UNIT=%d\nRESTART=%d\n", b2i(unitChanged), b2i(restart || unitChanged)) + scriptStartSystemd
		var stdin io.Reader
		if unitChanged {
			stdin = bytes.NewReader(unit)
		}
		out, err := conn.run(ctx, "start systemd unit", script, stdin)
		if err != nil {
			return res, err
		}
		res.Restarted = strings.Contains(out, "started=yes")
	default:
		script := conn.preamble + fmt.Sprintf("RESTART=%d\n", b2i(restart)) + in.supervisorScript()
		out, err := conn.run(ctx, "start agent", script, nil)
		if err != nil {
			return res, err
		}
		res.Restarted = strings.Contains(out, "started=yes")
	}
	log.V(1).Info("Agent installed", "init", res.Init, "uploaded", res.Uploaded, "bootstrapWritten", res.BootstrapWritten, "restarted", res.Restarted)
	return res, nil
}

// Uninstall stops the agent and removes everything the installer wrote (protocol.InstalledPaths).
// It may be called again at any time; on a clean host it does nothing. The host key policy is the
// same as Install's.
func (in *Installer) Uninstall(ctx context.Context, t Target) (UninstallResult, error) {
	var res UninstallResult
	if t.Signer == nil {
		return res, errors.New("ssh: uninstall: a Signer is required")
	}
	conn, hostKey, err := in.dial(ctx, t)
	res.HostKey = hostKey
	if err != nil {
		return res, err
	}
	defer func() { _ = conn.Close() }()
	out, err := conn.run(ctx, "uninstall", conn.preamble+uninstallScript(), nil)
	if err != nil {
		return res, err
	}
	res.Stopped = strings.Contains(out, "stopped=yes")
	return res, nil
}

func validateInstall(in InstallInput) error {
	var errs []error
	if in.Address == "" {
		errs = append(errs, errors.New("address is empty"))
	}
	if in.Signer == nil {
		errs = append(errs, errors.New("a Signer is required"))
	}
	if !artifacts.IsSHA256(in.Agent.SHA256) {
		errs = append(errs, fmt.Errorf("agent sha256 %q is not 64 lowercase hex digits", in.Agent.SHA256))
	}
	if in.Agent.Open == nil {
		errs = append(errs, errors.New("agent binary: Open is nil"))
	}
	if u, err := url.Parse(in.Bootstrap.Server); err != nil || u.Scheme != "https" || u.Host == "" {
		errs = append(errs, fmt.Errorf("bootstrap server %q must be an https URL", in.Bootstrap.Server))
	}
	if block, _ := pem.Decode(in.Bootstrap.CA); block == nil || block.Type != "CERTIFICATE" {
		errs = append(errs, errors.New("bootstrap CA is not a PEM certificate"))
	} else if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		errs = append(errs, fmt.Errorf("bootstrap CA: %w", err))
	}
	if _, _, err := tokens.Parse(in.Bootstrap.Token); err != nil {
		errs = append(errs, errors.New("bootstrap token is malformed"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ssh: install input: %w", err)
	}
	return nil
}

// conn is one SSH connection to a host.
type conn struct {
	client *ssh.Client
	addr   string
	// sudo runs commands through `sudo -n` (the login is not root).
	sudo    bool
	timeout time.Duration
	// preamble defines the shell variables and functions every script uses.
	preamble string
}

func (c *conn) Close() error { return c.client.Close() }

// dial connects and authenticates, applying the host key policy during the handshake. It
// returns the presented host key whenever the handshake reached the check.
func (in *Installer) dial(ctx context.Context, t Target) (*conn, ssh.PublicKey, error) {
	port := t.Port
	if port == 0 {
		port = DefaultPort
	}
	user := t.User
	if user == "" {
		user = DefaultUser
	}
	timeout := in.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	addr := net.JoinHostPort(t.Address, strconv.Itoa(port))

	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("ssh %s: %w", addr, err)
	}
	deadline := time.Now().Add(timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = nc.SetDeadline(deadline)

	policy := hostKeyPolicy{pinned: t.PinnedKeys, recorded: t.RecordedKey}
	var presented ssh.PublicKey
	var mismatch *HostKeyMismatchError
	cfg := &ssh.ClientConfig{
		User:              user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(t.Signer)},
		HostKeyCallback:   policy.callback(&presented, &mismatch),
		HostKeyAlgorithms: policy.algorithms(),
		Timeout:           timeout,
	}
	sc, chans, reqs, err := ssh.NewClientConn(nc, addr, cfg)
	if err != nil {
		_ = nc.Close()
		if mismatch != nil {
			return nil, presented, mismatch
		}
		return nil, presented, fmt.Errorf("ssh %s: %w", addr, err)
	}
	_ = nc.SetDeadline(time.Time{})
	cmdTimeout := in.CommandTimeout
	if cmdTimeout <= 0 {
		cmdTimeout = DefaultCommandTimeout
	}
	return &conn{
		client:   ssh.NewClient(sc, chans, reqs),
		addr:     addr,
		sudo:     user != "root",
		timeout:  cmdTimeout,
		preamble: in.preamble(),
	}, presented, nil
}

// run executes script with sh on the host as root, feeding stdin, and returns its stdout. The
// error carries the step name, the exit status and the end of stderr.
func (c *conn) run(ctx context.Context, step, script string, stdin io.Reader) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	sess, err := c.client.NewSession()
	if err != nil {
		return "", fmt.Errorf("ssh %s: %s: opening a session: %w", c.addr, step, err)
	}
	defer func() { _ = sess.Close() }()
	var stdout, stderr limitedBuffer
	stdout.max, stderr.max = 64<<10, 8<<10
	sess.Stdout, sess.Stderr = &stdout, &stderr
	if stdin != nil {
		sess.Stdin = stdin
	}
	cmd := "sh -c " + shellQuote(script)
	if c.sudo {
		cmd = "sudo -n " + cmd
	}
	done := make(chan error, 1)
	go func() { done <- sess.Run(cmd) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGKILL)
		_ = sess.Close()
		return "", fmt.Errorf("ssh %s: %s: %w", c.addr, step, ctx.Err())
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		var exit *ssh.ExitError
		if errors.As(err, &exit) {
			return stdout.String(), fmt.Errorf("ssh %s: %s: exit status %d: %s", c.addr, step, exit.ExitStatus(), msg)
		}
		return stdout.String(), fmt.Errorf("ssh %s: %s: %w: %s", c.addr, step, err, msg)
	}
	return stdout.String(), nil
}

// hostFacts is what the probe found.
type hostFacts struct {
	arch         string
	init         string
	binarySHA256 string
	unitSHA256   string
	registered   bool
	// certDER is the agent's certificate, base64 DER, when registered.
	certDER string
	running bool
}

// certExpired says why a registered agent's certificate can no longer identify it (expired,
// or unreadable), or "" when it can.
func (f hostFacts) certExpired(now time.Time) string {
	der, err := base64.StdEncoding.DecodeString(f.certDER)
	if err != nil {
		return "its certificate is not PEM"
	}
	cert, err := x509.ParseCertificate(der)
	switch {
	case err != nil:
		return "its certificate does not parse: " + err.Error()
	case !now.Before(cert.NotAfter):
		return "its certificate expired at " + cert.NotAfter.UTC().Format(time.RFC3339)
	}
	return ""
}

// probe reads the host's state; it changes nothing.
func (c *conn) probe(ctx context.Context) (hostFacts, error) {
	out, err := c.run(ctx, "probe", c.preamble+scriptProbe, nil)
	if err != nil {
		return hostFacts{}, err
	}
	f := hostFacts{init: InitSupervisor}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch k {
		case "arch":
			f.arch = goArch(v)
		case "init":
			if v == InitSystemd {
				f.init = InitSystemd
			}
		case "binary":
			f.binarySHA256 = v
		case "unit":
			f.unitSHA256 = v
		case "registered":
			f.registered = v == "yes"
		case "cert":
			f.certDER = v
		case "running":
			f.running = v == "yes"
		}
	}
	return f, nil
}

// uploadBinary streams the agent to a temporary file beside its final path, checks its sha256
// on the host and renames it into place.
func (c *conn) uploadBinary(ctx context.Context, b Binary) error {
	r, err := b.Open()
	if err != nil {
		return fmt.Errorf("agent binary: %w", err)
	}
	defer r.Close()
	_, err = c.run(ctx, "upload agent", c.preamble+"SHA="+shellQuote(b.SHA256)+"\n"+scriptUploadBinary, r)
	return err
}

// goArch maps `uname -m` to GOARCH.
func goArch(m string) string {
	switch m {
	case "x86_64", "amd64":
		return "amd64"
	case "aarch64", "arm64":
		return "arm64"
	case "armv7l", "armv6l":
		return "arm"
	case "ppc64le":
		return "ppc64le"
	case "s390x":
		return "s390x"
	case "riscv64":
		return "riscv64"
	}
	return m
}

// limitedBuffer keeps the first max bytes written to it and discards the rest.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		if len(p) > room {
			b.Buffer.Write(p[:room])
		} else {
			b.Buffer.Write(p)
		}
	}
	return len(p), nil
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
