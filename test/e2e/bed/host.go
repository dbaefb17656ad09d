package bed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Host is one machine of the bed: a container with its own address, systemd and sshd.
type Host struct {
	// Name is the hostname, also the host's DNS name for the other hosts on the network.
	Name string
	// Container is the Docker container's name.
	Container string
	// IP is the host's address on the bed's network; it survives Stop/Start and
	// Disconnect/Reconnect.
	IP string
	// HostKey is the host's SSH host key, generated for this run; SSH pins it.
	HostKey ssh.PublicKey
	// User is the account Signer logs in as ("root").
	User string
	// Signer is the client key the host accepts for User (the bed's ClientKey).
	Signer ssh.Signer

	bed *Bed
}

// create makes the host's volume and container (not started) and installs its SSH host key and
// authorized client key, so that sshd starts with them on the first boot.
func (h *Host) create(ctx context.Context) error {
	b := h.bed
	hostKey, err := NewKeyPair("root@" + h.Name)
	if err != nil {
		return err
	}
	h.HostKey = hostKey.Public
	labels := append(b.labels(), LabelHost+"="+h.Name)
	var mounts []string
	for _, dir := range b.opts.Volumes {
		volume := h.Container + "-" + strings.ReplaceAll(strings.TrimPrefix(dir, "/"), "/", "-")
		args := []string{"volume", "create"}
		for _, l := range labels {
			args = append(args, "--label", l)
		}
		if _, err := docker(ctx, append(args, volume)...); err != nil {
			return err
		}
		mounts = append(mounts, "--volume", volume+":"+dir)
	}
	args := []string{"create", "--name", h.Container, "--hostname", h.Name,
		"--network", b.Network, "--ip", h.IP, "--network-alias", h.Name,
		// What --privileged would give, but for the capabilities this machine's engine cannot
		// grant (see hack/node-image/rootfs/usr/local/sbin/basalt-init).
		"--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
		"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
		"--security-opt", "systempaths=unconfined",
		"--device-cgroup-rule", "a *:* rwm", "--device", "/dev/kmsg",
		// The host's own cgroup tree (its namespace root is the container's cgroup) for systemd
		// and, later, kubelet and containerd.
		"--cgroupns", "private",
		"--tmpfs", "/run:rw,nosuid,nodev,exec,mode=755",
		"--tmpfs", "/tmp:rw,nosuid,nodev,exec,mode=1777",
		"--env", "container=docker",
		"--stop-signal", "SIGRTMIN+3", "--stop-timeout", "30",
	}
	args = append(args, mounts...)
	if hasDir(hostModules) {
		args = append(args, "--volume", hostModules+":"+hostModules+":ro")
	}
	for _, l := range labels {
		args = append(args, "--label", l)
	}
	if _, err := docker(ctx, append(args, b.Image)...); err != nil {
		return err
	}
	err = putFiles(ctx, h.Container, "/", []tarEntry{
		{Name: "etc/ssh/ssh_host_ed25519_key", Mode: 0o600, Data: hostKey.PrivatePEM},
		{Name: "etc/ssh/ssh_host_ed25519_key.pub", Mode: 0o644, Data: hostKey.AuthorizedKey},
		{Name: "root/.ssh", Mode: 0o700, Dir: true},
		{Name: "root/.ssh/authorized_keys", Mode: 0o600, Data: b.ClientKey.AuthorizedKey},
	})
	if err != nil {
		return fmt.Errorf("%s: install SSH keys: %w", h.Name, err)
	}
	return nil
}

// Addr is the host's SSH address, IP:22.
func (h *Host) Addr() string { return net.JoinHostPort(h.IP, "22") }

// ClientConfig is the SSH client configuration for the host: User with Signer, and only the
// host's own ed25519 key accepted (ssh.FixedHostKey). Tests may change a copy.
func (h *Host) ClientConfig() *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:              h.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(h.Signer)},
		HostKeyCallback:   ssh.FixedHostKey(h.HostKey),
		HostKeyAlgorithms: []string{h.HostKey.Type()},
		Timeout:           10 * time.Second,
	}
}

// SSH connects to the host, verifying its pinned host key. The caller closes the client.
func (h *Host) SSH(ctx context.Context) (*ssh.Client, error) {
	c, err := DialSSH(ctx, h.Addr(), h.ClientConfig())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.Name, err)
	}
	return c, nil
}

// DialSSH opens an SSH connection to addr with cfg; ctx and cfg.Timeout bound the TCP connect
// and the handshake.
func DialSSH(ctx context.Context, addr string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ssh %s: %w", addr, err)
	}
	// The handshake ends by cfg.Timeout or when ctx ends, whichever is first.
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("ssh %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if !stop() || err != nil {
		_ = conn.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("ssh %s: %w", addr, err)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("ssh %s: %w", addr, err)
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// RunError is a command that failed on a host.
type RunError struct {
	Host, Cmd string
	// ExitStatus is the command's exit status, or -1 when it has none (connection lost,
	// context ended, killed by a signal).
	ExitStatus     int
	Stdout, Stderr string
	Err            error
}

func (e *RunError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if len(msg) > 2000 {
		msg = "..." + msg[len(msg)-2000:]
	}
	return fmt.Sprintf("%s: %q: %v: %s", e.Host, e.Cmd, e.Err, msg)
}

func (e *RunError) Unwrap() error { return e.Err }

// Run runs a shell command on the host over SSH (a new connection each time, host key pinned)
// and returns its standard output. A non-zero exit is a *RunError carrying stdout and stderr.
// When ctx ends the connection is closed, which ends the command's session.
func (h *Host) Run(ctx context.Context, cmd string) (string, error) {
	client, err := h.SSH(ctx)
	if err != nil {
		return "", err
	}
	defer func() { _ = client.Close() }()
	sess, err := client.NewSession()
	if err != nil {
		return "", fmt.Errorf("%s: ssh session: %w", h.Name, err)
	}
	defer func() { _ = sess.Close() }()
	var stdout, stderr bytes.Buffer
	sess.Stdout = &stdout
	sess.Stderr = &stderr
	done := make(chan error, 1)
	go func() { done <- sess.Run(cmd) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = client.Close() // ends the session, so Run returns
		err = errors.Join(ctx.Err(), <-done)
	}
	if err == nil {
		return stdout.String(), nil
	}
	status := -1
	var ee *ssh.ExitError
	if errors.As(err, &ee) && ee.Signal() == "" {
		status = ee.ExitStatus()
	}
	return stdout.String(), &RunError{Host: h.Name, Cmd: cmd, ExitStatus: status,
		Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
}

// Exec runs argv in the host with docker exec, bypassing SSH and the network: for setting up a
// host and for looking into one that is cut off.
func (h *Host) Exec(ctx context.Context, argv ...string) (string, error) {
	return docker(ctx, append([]string{"exec", h.Container}, argv...)...)
}

// Running reports whether the host's container is running.
func (h *Host) Running(ctx context.Context) (bool, error) {
	s, err := docker(ctx, "container", "inspect", "--format", "{{.State.Running}}", h.Container)
	if err != nil {
		return false, err
	}
	return s == "true", nil
}

// WaitReady waits until the host accepts SSH with its pinned key and systemd has finished
// booting. It fails at once if the container stops, and with the host's state when ctx ends,
// or when the boot finished "degraded" (with the failed units).
func (h *Host) WaitReady(ctx context.Context) error {
	var lastErr error
	for {
		running, err := h.Running(ctx)
		switch {
		case ctx.Err() != nil:
			return h.bootFailure(lastErr)
		case err != nil:
			return err
		case !running:
			return h.bootFailure(errors.New("the container stopped"))
		}
		state, err := h.Run(ctx, "timeout 120 systemctl is-system-running --wait")
		state = strings.TrimSpace(state)
		switch {
		case err == nil && state == "running":
			return nil
		case state == "degraded":
			failed, _ := h.Run(ctx, "systemctl --failed --plain --no-legend")
			return fmt.Errorf("%s: booted degraded; failed units:\n%s", h.Name, failed)
		case err != nil:
			lastErr = err
		default:
			lastErr = fmt.Errorf("systemd state %q", state)
		}
		select {
		case <-ctx.Done():
			return h.bootFailure(lastErr)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// bootFailure describes a host that did not come up, with what its container said.
func (h *Host) bootFailure(cause error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s, %s) did not become ready: %v", h.Name, h.Container, h.IP, cause)
	if s, err := docker(ctx, "container", "inspect", "--format", "{{.State.Status}} exit={{.State.ExitCode}} {{.State.Error}}", h.Container); err == nil {
		fmt.Fprintf(&b, "\ncontainer: %s", s)
	}
	if s, err := docker(ctx, "logs", "--tail", "30", h.Container); err == nil && s != "" {
		fmt.Fprintf(&b, "\ncontainer output:\n%s", s)
	}
	s, err := h.Exec(ctx, "sh", "-c", "{ systemctl is-system-running; systemctl --failed --plain --no-legend; "+
		"systemctl status --no-pager -n 20 ssh.service; } 2>&1; true")
	if err != nil {
		s = err.Error()
	}
	fmt.Fprintf(&b, "\nsystemd:\n%s", s)
	return errors.New(b.String())
}

// Stop shuts the host down (systemd stops its units; docker stop, SIGRTMIN+3). Its address, disk
// and host key stay for Start.
func (h *Host) Stop(ctx context.Context) error {
	_, err := docker(ctx, "stop", h.Container)
	return err
}

// Kill stops the host at once, as a power loss would (SIGKILL to every process).
func (h *Host) Kill(ctx context.Context) error {
	_, err := docker(ctx, "kill", "--signal", "KILL", h.Container)
	return err
}

// Start boots a stopped host again and waits until it is ready (see WaitReady).
func (h *Host) Start(ctx context.Context) error {
	if _, err := docker(ctx, "start", h.Container); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, h.bed.opts.BootTimeout)
	defer cancel()
	return h.WaitReady(wctx)
}

// Disconnect cuts the host off the bed's network: nothing reaches it and it reaches nothing,
// while it keeps running.
func (h *Host) Disconnect(ctx context.Context) error {
	_, err := docker(ctx, "network", "disconnect", h.bed.Network, h.Container)
	return err
}

// Reconnect puts a disconnected host back on the network with its address and name.
func (h *Host) Reconnect(ctx context.Context) error {
	_, err := docker(ctx, "network", "connect", "--ip", h.IP, "--alias", h.Name, h.bed.Network, h.Container)
	return err
}
