package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/basalt-dev/basalt/bootstrap/pki"
	"github.com/basalt-dev/basalt/test/e2e/bed"
)

// etcdTestVersion is the Kubernetes version whose artifact set provides etcd.
const etcdTestVersion = "v1.37.2"

// etcdMemberPKI is what one member needs on disk.
type etcdMemberPKI struct {
	server, peer *pki.KeyPair
}

// etcdPKI issues the etcd CA, every member's server and peer certificate and the health-check
// client certificate with bootstrap/pki, as the Cluster controller will.
func etcdPKI(t *testing.T, hosts []*bed.Host) (ca, client *pki.KeyPair, members []etcdMemberPKI) {
	t.Helper()
	now := time.Now()
	ca, _, err := pki.EnsureCA(nil, pki.EtcdCARequest(), now)
	if err != nil {
		t.Fatalf("etcd CA: %v", err)
	}
	issue := func(req pki.CertRequest, err error) *pki.KeyPair {
		t.Helper()
		if err != nil {
			t.Fatalf("Certificate request: %v", err)
		}
		kp, _, err := pki.EnsureCertificate(nil, ca, req, now)
		if err != nil {
			t.Fatalf("Issue %s: %v", req.Name, err)
		}
		return kp
	}
	for _, h := range hosts {
		ip := net.ParseIP(h.IP)
		members = append(members, etcdMemberPKI{
			server: issue(pki.EtcdServerCert(h.Name, ip)),
			peer:   issue(pki.EtcdPeerCert(h.Name, ip)),
		})
	}
	client = issue(pki.EtcdHealthcheckClientCert(), nil)
	return ca, client, members
}

// etcdTLS is the client TLS configuration of the test process.
func etcdTLS(t *testing.T, ca, client *pki.KeyPair) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca.Cert) {
		t.Fatal("etcd CA: no certificate in PEM")
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if client != nil {
		cert, err := tls.X509KeyPair(client.Cert, client.Key)
		if err != nil {
			t.Fatalf("Client key pair: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}

func etcdClient(t *testing.T, endpoints []string, tlsCfg *tls.Config) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         tlsCfg,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcd client for %v: %v", endpoints, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestBedEtcdTLS runs a three-member etcd cluster with TLS for peers and clients (client
// certificates required) on three bed hosts, started by hand over SSH as no agent exists yet,
// with the etcd binary of the artifact set and certificates from bootstrap/pki. From the test
// process it checks the member list and the health of every endpoint, and that a client without
// a certificate is refused.
func TestBedEtcdTLS(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if testing.Short() {
		t.Skip("-short: the test bed starts containers")
	}
	set, err := bed.Artifacts(ctx, bed.ArtifactsInput{Version: etcdTestVersion, Names: []string{"etcd"}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	b := startBed(ctx, t, bed.Options{Hosts: 3, Name: "etcd",
		Volumes: []string{"/var/lib/containerd", "/var/lib/etcd"}})
	ca, client, members := etcdPKI(t, b.Hosts)

	var initial, endpoints []string
	for _, h := range b.Hosts {
		initial = append(initial, fmt.Sprintf("%s=https://%s", h.Name, net.JoinHostPort(h.IP, "2380")))
		endpoints = append(endpoints, "https://"+net.JoinHostPort(h.IP, "2379"))
	}
	start := time.Now()
	for i, h := range b.Hosts {
		if err := bed.CopyFile(ctx, bed.CopyFileInput{Host: h, Src: filepath.Join(set, "bin", "etcd"),
			Dst: "/usr/local/bin/etcd", Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
		for _, f := range []struct {
			path string
			data []byte
		}{
			{"ca.crt", ca.Cert},
			{"server.crt", members[i].server.Cert}, {"server.key", members[i].server.Key},
			{"peer.crt", members[i].peer.Cert}, {"peer.key", members[i].peer.Key},
		} {
			mode := os.FileMode(0o644)
			if strings.HasSuffix(f.path, ".key") {
				mode = 0o600
			}
			if err := bed.WriteFile(ctx, bed.WriteFileInput{Host: h, Path: "/etc/etcd/pki/" + f.path,
				Content: f.data, Mode: mode}); err != nil {
				t.Fatal(err)
			}
		}
		peer := "https://" + net.JoinHostPort(h.IP, "2380")
		client := "https://" + net.JoinHostPort(h.IP, "2379")
		args := []string{
			"systemd-run", "--unit=etcd", "--property=Restart=on-failure", "--",
			"/usr/local/bin/etcd",
			"--name=" + h.Name,
			"--data-dir=/var/lib/etcd/data",
			"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
			"--listen-client-urls=" + client + ",https://127.0.0.1:2379", "--advertise-client-urls=" + client,
			"--initial-cluster=" + strings.Join(initial, ","),
			"--initial-cluster-state=new", "--initial-cluster-token=basalt-testbed-" + b.RunID,
			"--cert-file=/etc/etcd/pki/server.crt", "--key-file=/etc/etcd/pki/server.key",
			"--trusted-ca-file=/etc/etcd/pki/ca.crt", "--client-cert-auth",
			"--peer-cert-file=/etc/etcd/pki/peer.crt", "--peer-key-file=/etc/etcd/pki/peer.key",
			"--peer-trusted-ca-file=/etc/etcd/pki/ca.crt", "--peer-client-cert-auth",
			"--listen-metrics-urls=http://127.0.0.1:2381",
		}
		if out, err := h.Run(ctx, strings.Join(args, " ")); err != nil {
			t.Fatalf("Start etcd on %s: %v %s", h.Name, err, out)
		}
	}

	tlsCfg := etcdTLS(t, ca, client)
	cli := etcdClient(t, endpoints, tlsCfg)
	perEndpoint := make([]*clientv3.Client, len(endpoints))
	for i, ep := range endpoints {
		perEndpoint[i] = etcdClient(t, []string{ep}, tlsCfg)
	}
	// Wait for the cluster: every endpoint answers a linearizable read (what `etcdctl endpoint
	// health` does), which needs a leader and a quorum.
	deadline := time.Now().Add(90 * time.Second)
	for {
		err := etcdHealthy(ctx, endpoints, perEndpoint)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			for _, h := range b.Hosts {
				out, _ := h.Exec(ctx, "journalctl", "-u", "etcd", "--no-pager", "-n", "15")
				t.Logf("%s etcd log:\n%s", h.Name, out)
			}
			t.Fatalf("etcd cluster not healthy after 90s: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("etcd cluster of %d members healthy %s after the first start", len(b.Hosts), time.Since(start).Round(time.Millisecond))

	t.Run("MemberList", func(t *testing.T) {
		resp, err := cli.MemberList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got, want []string
		for _, m := range resp.Members {
			if m.IsLearner {
				t.Errorf("Member %s is a learner", m.Name)
			}
			got = append(got, fmt.Sprintf("%s %v %v", m.Name, m.PeerURLs, m.ClientURLs))
		}
		for i, h := range b.Hosts {
			want = append(want, fmt.Sprintf("%s [https://%s:2380] [%s]", h.Name, h.IP, endpoints[i]))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("Members:\n got %q\nwant %q", got, want)
		}
	})

	t.Run("EndpointHealth", func(t *testing.T) {
		var leaders []uint64
		for i, ep := range endpoints {
			one := perEndpoint[i]
			st, err := one.Status(ctx, ep)
			if err != nil {
				t.Errorf("Status %s: %v", ep, err)
				continue
			}
			if len(st.Errors) > 0 {
				t.Errorf("Status %s: errors %v", ep, st.Errors)
			}
			leaders = append(leaders, st.Leader)
			if _, err := one.Put(ctx, "/basalt-testbed/"+ep, "ok"); err != nil {
				t.Errorf("Put through %s: %v", ep, err)
			}
		}
		for _, l := range leaders {
			if l == 0 || l != leaders[0] {
				t.Errorf("Members disagree on the leader or have none: %v", leaders)
				break
			}
		}
		resp, err := cli.Get(ctx, "/basalt-testbed/", clientv3.WithPrefix())
		if err != nil || resp.Count != int64(len(endpoints)) {
			t.Errorf("Read back %v keys (%v), want %d", resp, err, len(endpoints))
		}
	})

	t.Run("ClientCertificateRequired", func(t *testing.T) {
		// A TLS connection without a client certificate is refused by every member, on the
		// client and on the peer port; the same with the certificate is accepted.
		for _, h := range b.Hosts {
			for _, port := range []string{"2379", "2380"} {
				addr := net.JoinHostPort(h.IP, port)
				if err := tlsExchange(addr, etcdTLS(t, ca, client)); err != nil {
					t.Errorf("%s with a client certificate: %v", addr, err)
				}
				err := tlsExchange(addr, etcdTLS(t, ca, nil))
				if err == nil || !strings.Contains(err.Error(), "certificate required") {
					t.Errorf("%s without a client certificate: %v, want the certificate required", addr, err)
				}
			}
		}
	})
}

// tlsExchange makes a TLS connection and reads from it briefly: a server that refuses the
// client's certificate (or its absence) says so in an alert that the first read returns.
func tlsExchange(addr string, cfg *tls.Config) error {
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	if err := conn.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil // accepted: the server waits for the client to speak first
	}
	return err
}

// etcdHealthy returns nil when every endpoint answers a linearizable read with a leader.
func etcdHealthy(ctx context.Context, endpoints []string, clients []*clientv3.Client) error {
	for i, c := range clients {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := c.Get(clientv3.WithRequireLeader(cctx), "health")
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", endpoints[i], err)
		}
	}
	return nil
}
