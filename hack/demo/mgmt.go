package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/kubeconfig"
	"github.com/basalt-dev/basalt/bootstrap/pki"
)

// Ports of the local management plane, all on 127.0.0.1.
const (
	etcdClientPort = 23790
	etcdPeerPort   = 23800
	apiServerPort  = 16443
	managerProbe   = 18081
	managerMetrics = 18443
	// agentAPIPort is where the manager serves agents, on the hosts' network gateway.
	agentAPIPort = 19443
)

// mgmtPKI is the management plane's certificates, written under dir/pki.
type mgmtPKI struct {
	ca, etcdCA, apiserver, etcdServer, etcdClient, admin *pki.KeyPair
	sa                                                   *pki.ServiceAccountKey
}

// ensurePKI creates (or keeps) the management plane's CAs and leaves in dir/pki.
func ensurePKI(dir string) (*mgmtPKI, error) {
	now := time.Now()
	load := func(name string) *pki.KeyPair {
		crt, err1 := os.ReadFile(filepath.Join(dir, "pki", name+".crt"))
		key, err2 := os.ReadFile(filepath.Join(dir, "pki", name+".key"))
		if err1 != nil || err2 != nil {
			return nil
		}
		return &pki.KeyPair{Cert: crt, Key: key}
	}
	save := func(name string, kp *pki.KeyPair) error {
		if err := os.MkdirAll(filepath.Join(dir, "pki"), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "pki", name+".crt"), kp.Cert, 0o644); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "pki", name+".key"), kp.Key, 0o600)
	}
	p := &mgmtPKI{}
	var err error
	for _, ca := range []struct {
		name string
		req  pki.CARequest
		out  **pki.KeyPair
	}{{"ca", pki.ClusterCARequest(), &p.ca}, {"etcd-ca", pki.EtcdCARequest(), &p.etcdCA}} {
		if *ca.out, _, err = pki.EnsureCA(load(ca.name), ca.req, now); err != nil {
			return nil, fmt.Errorf("%s: %w", ca.name, err)
		}
		if err := save(ca.name, *ca.out); err != nil {
			return nil, err
		}
	}
	loopback := net.ParseIP("127.0.0.1")
	apiReq, err := pki.APIServerCert(pki.APIServerNames{NodeNames: []string{"localhost"}, NodeIPs: []net.IP{loopback}, ServiceCIDR: "10.0.0.0/24", DNSDomain: "cluster.local"})
	if err != nil {
		return nil, err
	}
	etcdReq, err := pki.EtcdServerCert("localhost", loopback)
	if err != nil {
		return nil, err
	}
	for _, leaf := range []struct {
		name string
		ca   *pki.KeyPair
		req  pki.CertRequest
		out  **pki.KeyPair
	}{
		{"apiserver", p.ca, apiReq, &p.apiserver},
		{"admin", p.ca, pki.AdminCert(), &p.admin},
		{"etcd-server", p.etcdCA, etcdReq, &p.etcdServer},
		{"apiserver-etcd-client", p.etcdCA, pki.APIServerEtcdClientCert(), &p.etcdClient},
	} {
		if *leaf.out, _, err = pki.EnsureCertificate(load(leaf.name), leaf.ca, leaf.req, now); err != nil {
			return nil, fmt.Errorf("%s: %w", leaf.name, err)
		}
		if err := save(leaf.name, *leaf.out); err != nil {
			return nil, err
		}
	}
	saKey, _ := os.ReadFile(filepath.Join(dir, "pki", "sa.key"))
	if p.sa, _, err = pki.EnsureServiceAccountKey(saKey, pki.ECDSAP256); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "pki", "sa.key"), p.sa.PrivateKey, 0o600); err != nil {
		return nil, err
	}
	return p, os.WriteFile(filepath.Join(dir, "pki", "sa.pub"), p.sa.PublicKey, 0o644)
}

// startManagementPlane starts etcd and kube-apiserver as detached processes (they outlive this
// program; `down` stops them) and writes the admin kubeconfig. It returns once /readyz is ok.
func startManagementPlane(ctx context.Context, dir, binDir string) (string, error) {
	p, err := ensurePKI(dir)
	if err != nil {
		return "", fmt.Errorf("certificates: %w", err)
	}
	f := func(name string) string { return filepath.Join(dir, "pki", name) }
	etcdURL := "https://127.0.0.1:" + strconv.Itoa(etcdClientPort)
	if err := startDetached(dir, "etcd", filepath.Join(binDir, "etcd"),
		"--name=mgmt", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls=http://127.0.0.1:"+strconv.Itoa(etcdPeerPort),
		"--initial-advertise-peer-urls=http://127.0.0.1:"+strconv.Itoa(etcdPeerPort),
		"--initial-cluster=mgmt=http://127.0.0.1:"+strconv.Itoa(etcdPeerPort),
		"--cert-file="+f("etcd-server.crt"), "--key-file="+f("etcd-server.key"),
		"--client-cert-auth", "--trusted-ca-file="+f("etcd-ca.crt"),
	); err != nil {
		return "", err
	}
	if err := startDetached(dir, "kube-apiserver", filepath.Join(binDir, "kube-apiserver"),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(apiServerPort),
		"--etcd-servers="+etcdURL, "--etcd-cafile="+f("etcd-ca.crt"),
		"--etcd-certfile="+f("apiserver-etcd-client.crt"), "--etcd-keyfile="+f("apiserver-etcd-client.key"),
		"--tls-cert-file="+f("apiserver.crt"), "--tls-private-key-file="+f("apiserver.key"),
		"--client-ca-file="+f("ca.crt"), "--authorization-mode=RBAC", "--anonymous-auth=false",
		"--service-account-issuer=https://kubernetes.default.svc", "--service-account-key-file="+f("sa.pub"),
		"--service-account-signing-key-file="+f("sa.key"), "--service-cluster-ip-range=10.0.0.0/24",
		"--cert-dir="+filepath.Join(dir, "apiserver-certs"), "--profiling=false",
		// The management plane is one API server on loopback: no kubernetes Service endpoints.
		"--endpoint-reconciler-type=none",
	); err != nil {
		return "", err
	}
	server := "https://127.0.0.1:" + strconv.Itoa(apiServerPort)
	kc, err := kubeconfig.Admin(kubeconfig.Params{ClusterName: "basalt-demo-management", Server: server, CA: p.ca.Cert, ClientCert: p.admin.Cert, ClientKey: p.admin.Key})
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		return "", err
	}
	if err := waitReady(ctx, server+"/readyz", p, 2*time.Minute, func() error { return alive(dir, "kube-apiserver") }); err != nil {
		return "", fmt.Errorf("kube-apiserver did not become ready: %w", err)
	}
	return path, nil
}

// waitReady polls url with the admin certificate until it answers 200, failing at once when
// check reports the process gone.
func waitReady(ctx context.Context, url string, p *mgmtPKI, timeout time.Duration, check func() error) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.ca.Cert)
	cert, err := tls.X509KeyPair(p.admin.Cert, p.admin.Key)
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}}
	return poll(ctx, timeout, func() error {
		if err := check(); err != nil {
			return stop{err}
		}
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	})
}

// startDetached starts a process in its own session, logging to dir/logs/name.log, and records
// its pid in dir/run/name.pid. A process already running under that pid file is kept.
func startDetached(dir, name, bin string, args ...string) error {
	if pid, ok := running(dir, name); ok {
		logf("%s is already running (pid %d)", name, pid)
		return nil
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	for _, d := range []string{"logs", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	log, err := os.OpenFile(filepath.Join(dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	logf("Started %s (pid %d, log %s)", name, cmd.Process.Pid, log.Name())
	if err := os.WriteFile(filepath.Join(dir, "run", name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	return cmd.Process.Release()
}

// running says whether the process recorded in dir/run/name.pid is alive.
func running(dir, name string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "run", name+".pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, syscall.Kill(pid, 0) == nil
}

// stopDetached sends SIGTERM to a process started by startDetached, then SIGKILL after 10s.
func stopDetached(dir, name string) error {
	pid, ok := running(dir, name)
	if !ok {
		return nil
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, ok := running(dir, name); !ok {
			logf("Stopped %s (pid %d)", name, pid)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing %s (pid %d): %w", name, pid, err)
	}
	logf("Killed %s (pid %d)", name, pid)
	return nil
}

// alive returns an error carrying the end of name's log when its process is gone.
func alive(dir, name string) error {
	if _, ok := running(dir, name); ok {
		return nil
	}
	log := filepath.Join(dir, "logs", name+".log")
	b, _ := os.ReadFile(log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return fmt.Errorf("%s exited; the end of %s:\n%s", name, log, strings.Join(lines, "\n"))
}

// stop wraps an error that poll must not retry.
type stop struct{ error }

// poll calls check every 250ms until it returns nil or a stop error, ctx ends or timeout passes.
func poll(ctx context.Context, timeout time.Duration, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := check()
		if err == nil {
			return nil
		}
		var s stop
		if errors.As(err, &s) {
			return s.error
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
