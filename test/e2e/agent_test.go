package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/ssh"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/agents/planstore"
	"github.com/basalt-dev/basalt/agents/protocol"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/artifacts"
	"github.com/basalt-dev/basalt/bootstrap/plan"
	"github.com/basalt-dev/basalt/controllers/hostclaim"
	"github.com/basalt-dev/basalt/test/e2e/bed"
	"github.com/basalt-dev/basalt/test/e2e/framework"
	"github.com/basalt-dev/basalt/test/envtest"
)

// TestAgentsOverSSH is the agent's end-to-end proof on the test bed: the manager installs the
// agent over SSH on three hosts (two with pinned host keys, one trusted on first use), each agent
// registers with a one-time token and reports its hardware, and each applies a Plan that runs one
// TLS etcd member; the three form a healthy cluster. Changing one etcd flag restarts etcd and
// nothing else, on every host; killing an agent with SIGKILL in the middle of an apply converges;
// a host that presents another host key is refused with a condition naming both fingerprints.
func TestAgentsOverSSH(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: needs Docker and the test bed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	setDir := artifactSet(t, etcdTestVersion)
	manifest, err := artifacts.Load(setDir)
	if err != nil {
		t.Fatal(err)
	}

	b := framework.NewBed(ctx, t, bed.Options{Hosts: 3, Name: "agent"})
	m := framework.StartManagement(t, framework.StartManagementInput{Bed: b, ArtifactSets: []string{setDir}})
	c := m.Env.Client
	ns := m.Env.Namespace(t)
	// agent-1 and agent-2 pinned, agent-3 trusted on first use.
	m.CreateSSHHosts(ctx, t, framework.SSHHostsInput{Namespace: ns, Bed: b, TrustOnFirstUse: 1})
	start := time.Now()
	m.WaitHostsAvailable(ctx, t, ns, hostNames(b), 5*time.Minute)
	t.Logf("Three hosts from SSH to Available (agent installed, registered, inspected) in %s", time.Since(start).Round(time.Millisecond))
	h3 := &basaltv1.Host{}
	if err := c.Get(ctx, framework.ObjectKey(ns, b.Hosts[2].Name), h3); err != nil {
		t.Fatal(err)
	}
	if want := framework.AuthorizedKey(b.Hosts[2].HostKey); h3.Status.SSHHostKey != want {
		t.Fatalf("host key recorded on first contact %q, want %q", h3.Status.SSHHostKey, want)
	}

	t.Run("host key mismatch is refused naming both fingerprints", func(t *testing.T) {
		// An impostor: host-1's address, but pinned to host-2's key.
		imp := framework.SSHHost(ns, "impostor", b.Hosts[0].IP)
		imp.Spec.SSH.HostKeys = []string{framework.AuthorizedKey(b.Hosts[1].HostKey)}
		if err := c.Create(ctx, imp); err != nil {
			t.Fatal(err)
		}
		presented, expected := ssh.FingerprintSHA256(b.Hosts[0].HostKey), ssh.FingerprintSHA256(b.Hosts[1].HostKey)
		framework.Eventually(t, time.Minute, func() error {
			got := &basaltv1.Host{}
			if err := c.Get(ctx, framework.ObjectKey(ns, "impostor"), got); err != nil {
				return err
			}
			cond, err := envtest.Condition(got.Status.Conditions, basaltv1.HostKeyVerified)
			if err != nil {
				return err
			}
			if cond.Status != metav1.ConditionFalse || cond.Reason != basaltv1.ReasonHostKeyMismatch ||
				!strings.Contains(cond.Message, presented) || !strings.Contains(cond.Message, expected) {
				return fmt.Errorf("HostKeyVerified %s/%s %q, want False/HostKeyMismatch naming %s and %s", cond.Status, cond.Reason, cond.Message, presented, expected)
			}
			if got.Status.State != basaltv1.HostStateRegistering || got.Status.Agent.LastSeen != nil {
				return fmt.Errorf("refused host moved on: %s, agent %+v", got.Status.State, got.Status.Agent)
			}
			return nil
		})
	})

	// Plans: one TLS etcd member per host, plus a bystander service that must never restart.
	caKP, clientKP, members := etcdPKI(t, b.Hosts)
	etcdArtifact, ok := manifest.Get("etcd")
	if !ok {
		t.Fatal("the artifact set has no etcd")
	}
	var initial []string
	for _, h := range b.Hosts {
		initial = append(initial, h.Name+"=https://"+net.JoinHostPort(h.IP, "2380"))
	}
	plans := make([]*plan.Plan, len(b.Hosts))
	for i, h := range b.Hosts {
		plans[i] = etcdPlan(etcdPlanInput{host: h, initialCluster: strings.Join(initial, ","), token: "agent-" + b.RunID,
			ca: caKP.Cert, server: members[i].server.Cert, serverKey: members[i].server.Key, peer: members[i].peer.Cert, peerKey: members[i].peer.Key,
			etcd: etcdArtifact})
	}
	storeAll := func() {
		t.Helper()
		for i, h := range b.Hosts {
			if _, _, err := planstore.StorePlan(ctx, c, ns, h.Name, plans[i]); err != nil {
				t.Fatalf("storing the Plan of %s: %v", h.Name, err)
			}
		}
	}
	storeAll()
	var endpoints []string
	for _, h := range b.Hosts {
		endpoints = append(endpoints, "https://"+net.JoinHostPort(h.IP, "2379"))
	}
	tlsCfg := etcdTLS(t, caKP, clientKP)
	var clients []*clientv3.Client
	for _, ep := range endpoints {
		clients = append(clients, etcdClient(t, []string{ep}, tlsCfg))
	}
	framework.Eventually(t, 5*time.Minute, func() error {
		return etcdFormed(ctx, endpoints, clients, 3)
	})
	t.Logf("etcd formed from three agent-applied Plans in %s", time.Since(start).Round(time.Millisecond))

	t.Run("one flag changed restarts only etcd, on every host", func(t *testing.T) {
		before := pids(ctx, t, b.Hosts, "basalt-etcd", "basalt-bystander")
		for _, p := range plans {
			setFlag(p, "etcd", "--heartbeat-interval=", "150")
		}
		storeAll()
		framework.Eventually(t, 3*time.Minute, func() error {
			now := pids(ctx, t, b.Hosts, "basalt-etcd", "basalt-bystander")
			for _, h := range b.Hosts {
				if now[h.Name]["basalt-etcd"] == before[h.Name]["basalt-etcd"] || now[h.Name]["basalt-etcd"] == "0" {
					return fmt.Errorf("etcd on %s not restarted yet (pid %s)", h.Name, now[h.Name]["basalt-etcd"])
				}
				if now[h.Name]["basalt-bystander"] != before[h.Name]["basalt-bystander"] {
					t.Fatalf("the bystander on %s restarted (pid %s → %s) although nothing it reads changed",
						h.Name, before[h.Name]["basalt-bystander"], now[h.Name]["basalt-bystander"])
				}
			}
			return etcdFormed(ctx, endpoints, clients, 3)
		})
		for _, h := range b.Hosts {
			cmdline, err := h.Run(ctx, "tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value basalt-etcd)/cmdline")
			if err != nil || !strings.Contains(cmdline, "--heartbeat-interval=150") {
				t.Fatalf("etcd on %s runs %q (%v), want the new flag", h.Name, cmdline, err)
			}
		}
	})

	t.Run("agent killed with SIGKILL mid-apply converges", func(t *testing.T) {
		h := b.Hosts[0]
		// A large artifact makes the apply long enough to be cut in the middle.
		big, ok := manifest.Get("kube-apiserver")
		if !ok {
			t.Fatal("the artifact set has no kube-apiserver")
		}
		plans[0].Artifacts = append(plans[0].Artifacts, plan.Artifact{Name: big.Name, SHA256: big.SHA256, Size: big.Size, Path: "/opt/basalt/bin/kube-apiserver", Mode: 0o755})
		setFlag(plans[0], "etcd", "--election-timeout=", "1500")
		if _, _, err := planstore.StorePlan(ctx, c, ns, h.Name, plans[0]); err != nil {
			t.Fatal(err)
		}
		// Kill the agent as soon as it starts writing the new artifact.
		killed := false
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) && !killed {
			out, _ := h.Run(ctx, "ls -a /opt/basalt/bin/ 2>/dev/null; test -e /opt/basalt/bin/kube-apiserver && echo DONE")
			if strings.Contains(out, "DONE") {
				t.Log("The apply finished before the kill; killing the agent after it instead")
			}
			if strings.Contains(out, ".kube-apiserver") || strings.Contains(out, "tmp") || strings.Contains(out, "DONE") {
				if _, err := h.Run(ctx, "systemctl kill -s KILL basalt-agent.service"); err != nil {
					t.Fatal(err)
				}
				killed = true
				t.Logf("Killed the agent on %s with SIGKILL mid-apply (saw %q)", h.Name, strings.Join(strings.Fields(out), " "))
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !killed {
			t.Fatal("never saw the apply start")
		}
		framework.Eventually(t, 3*time.Minute, func() error {
			sum, err := h.Run(ctx, "sha256sum /opt/basalt/bin/kube-apiserver | cut -d' ' -f1")
			if err != nil || strings.TrimSpace(sum) != big.SHA256 {
				return fmt.Errorf("kube-apiserver on %s: %q %w", h.Name, sum, err)
			}
			cmdline, err := h.Run(ctx, "tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value basalt-etcd)/cmdline")
			if err != nil || !strings.Contains(cmdline, "--election-timeout=1500") {
				return fmt.Errorf("etcd on %s runs %q (%w)", h.Name, cmdline, err)
			}
			leftovers, _ := h.Run(ctx, "ls -a /opt/basalt/bin/ | grep -v -e '^\\.$' -e '^\\.\\.$' -e '^etcd$' -e '^kube-apiserver$' || true")
			if strings.TrimSpace(leftovers) != "" {
				return fmt.Errorf("temporary files left in /opt/basalt/bin: %q", leftovers)
			}
			return etcdFormed(ctx, endpoints, clients, 3)
		})
	})

	// Last: it takes host-3's etcd member away.
	t.Run("a Host released while its agent is stopped is not claimable until the agent wipes it", func(t *testing.T) {
		h := b.Hosts[2]
		// A Machine (of no Cluster: the Machine controller claims its Host and leaves the Plan
		// as it is) runs on host-3, whose agent applied the etcd Plan.
		ma := &basaltv1.Machine{
			ObjectMeta: metav1.ObjectMeta{Name: "on-" + h.Name, Namespace: ns},
			Spec:       basaltv1.MachineSpec{Cluster: "none", Role: basaltv1.RoleWorker, HostRef: &basaltv1.LocalObjectReference{Name: h.Name}},
		}
		if err := c.Create(ctx, ma); err != nil {
			t.Fatal(err)
		}
		host := &basaltv1.Host{}
		framework.Eventually(t, time.Minute, func() error {
			if err := c.Get(ctx, framework.ObjectKey(ns, h.Name), host); err != nil {
				return err
			}
			if host.Status.State != basaltv1.HostStateProvisioned {
				return fmt.Errorf("host %s is %s", h.Name, host.Status.State)
			}
			return nil
		})
		// The machine goes dark (its agent stopped), and the Machine is deleted with
		// basalt.dev/force-delete: the Host is released with no wipe confirmed.
		if _, err := h.Run(ctx, "systemctl stop basalt-agent.service"); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, framework.ObjectKey(ns, ma.Name), ma); err != nil {
			t.Fatal(err)
		}
		ma.Annotations = map[string]string{basaltv1.AnnotationForceDelete: "true"}
		if err := c.Update(ctx, ma); err != nil {
			t.Fatal(err)
		}
		if err := c.Delete(ctx, ma); err != nil {
			t.Fatal(err)
		}
		released := time.Now()
		framework.Eventually(t, 5*time.Minute, func() error {
			if err := c.Get(ctx, framework.ObjectKey(ns, h.Name), host); err != nil {
				return err
			}
			if hostclaim.Available(host) {
				t.Fatalf("host %s is claimable %s after a release its stopped agent never confirmed", h.Name, time.Since(released).Round(time.Second))
			}
			if host.Status.State != basaltv1.HostStateUnwiped {
				return fmt.Errorf("host %s is %s: %s", h.Name, host.Status.State, framework.ConditionSummary(host.Status.Conditions))
			}
			return nil
		})
		wiped, err := envtest.Condition(host.Status.Conditions, basaltv1.HostWiped)
		if err != nil || wiped.Reason != basaltv1.ReasonWipeNotConfirmed {
			t.Fatalf("Wiped %+v (%v), want reason %s", wiped, err, basaltv1.ReasonWipeNotConfirmed)
		}
		t.Logf("Released with its agent stopped: Unwiped after %s (%s)", time.Since(released).Round(time.Second), wiped.Message)
		if out, _ := h.Run(ctx, "test -d "+etcdDataDir+"/member && echo present"); strings.TrimSpace(out) != "present" {
			t.Fatalf("the old member's data is already gone (%q): the test would prove nothing", out)
		}

		// The agent is back: it is served the empty Plan, stops etcd, removes its data and
		// says so; only then is the Host Available.
		if _, err := h.Run(ctx, "systemctl start basalt-agent.service"); err != nil {
			t.Fatal(err)
		}
		back := time.Now()
		m.WaitHostsAvailable(ctx, t, ns, []string{h.Name}, 3*time.Minute)
		if err := c.Get(ctx, framework.ObjectKey(ns, h.Name), host); err != nil {
			t.Fatal(err)
		}
		if wiped, err := envtest.Condition(host.Status.Conditions, basaltv1.HostWiped); err != nil || wiped.Reason != basaltv1.ReasonWipeConfirmed || wiped.Status != metav1.ConditionTrue {
			t.Fatalf("Wiped %+v (%v), want True/%s", wiped, err, basaltv1.ReasonWipeConfirmed)
		}
		if want := plan.Empty(h.Name).Hash(); host.Status.Agent.PlanHash != want {
			t.Errorf("the Host reports Plan %s, want the empty Plan %s", host.Status.Agent.PlanHash, want)
		}
		out, err := h.Run(ctx, "test -e "+etcdDataDir+" && echo left; systemctl is-active basalt-etcd.service || true")
		if err != nil || strings.Contains(out, "left") || strings.TrimSpace(out) == "active" {
			t.Fatalf("after the confirmed wipe host-3 still has: %q (%v)", out, err)
		}
		t.Logf("Agent back → wiped and Available in %s", time.Since(back).Round(time.Second))
	})
}

func hostNames(b *bed.Bed) []string {
	names := make([]string, len(b.Hosts))
	for i, h := range b.Hosts {
		names[i] = h.Name
	}
	return names
}

// artifactSet returns the folder of the complete artifact set of version, building what is
// missing (it fails, never skips, when it cannot).
func artifactSet(t *testing.T, version string) string {
	t.Helper()
	dir := filepath.Join(bed.CacheDir(), "artifacts", version)
	if _, err := artifacts.Load(dir); err != nil {
		t.Fatalf("artifact set %s is incomplete (%v): build it with hack/build-artifacts.sh %s", version, err, version)
	}
	return dir
}

type etcdPlanInput struct {
	host                                 *bed.Host
	initialCluster, token                string
	ca, server, serverKey, peer, peerKey []byte
	etcd                                 artifacts.Artifact
}

// etcdPlan is a Plan that runs one TLS etcd member of a statically bootstrapped cluster, and a
// bystander service that reads nothing of etcd's.
// etcdDataDir is the etcd member's data dir in etcdPlan, a state dir of its service.
const etcdDataDir = "/var/lib/basalt/etcd"

func etcdPlan(in etcdPlanInput) *plan.Plan {
	const pkiDir = "/etc/basalt/pki/etcd"
	ip := in.host.IP
	return &plan.Plan{
		Host: in.host.Name,
		Files: []plan.File{
			{Path: pkiDir + "/ca.crt", Mode: 0o644, Content: in.ca},
			{Path: pkiDir + "/server.crt", Mode: 0o644, Content: in.server},
			{Path: pkiDir + "/server.key", Mode: 0o600, Content: in.serverKey},
			{Path: pkiDir + "/peer.crt", Mode: 0o644, Content: in.peer},
			{Path: pkiDir + "/peer.key", Mode: 0o600, Content: in.peerKey},
		},
		Artifacts: []plan.Artifact{{Name: "etcd", SHA256: in.etcd.SHA256, Size: in.etcd.Size, Path: "/opt/basalt/bin/etcd", Mode: 0o755}},
		Services: []plan.Service{
			{
				Name: "etcd",
				Argv: []string{"/opt/basalt/bin/etcd",
					"--name=" + in.host.Name, "--data-dir=" + etcdDataDir,
					"--listen-peer-urls=https://" + net.JoinHostPort(ip, "2380"), "--initial-advertise-peer-urls=https://" + net.JoinHostPort(ip, "2380"),
					"--listen-client-urls=https://" + net.JoinHostPort(ip, "2379") + ",https://127.0.0.1:2379",
					"--advertise-client-urls=https://" + net.JoinHostPort(ip, "2379"),
					"--initial-cluster=" + in.initialCluster, "--initial-cluster-state=new", "--initial-cluster-token=" + in.token,
					"--cert-file=" + pkiDir + "/server.crt", "--key-file=" + pkiDir + "/server.key",
					"--trusted-ca-file=" + pkiDir + "/ca.crt", "--client-cert-auth",
					"--peer-cert-file=" + pkiDir + "/peer.crt", "--peer-key-file=" + pkiDir + "/peer.key",
					"--peer-trusted-ca-file=" + pkiDir + "/ca.crt", "--peer-client-cert-auth",
				},
				Reads:     []string{"/opt/basalt/bin/etcd", pkiDir + "/ca.crt", pkiDir + "/server.crt", pkiDir + "/server.key", pkiDir + "/peer.crt", pkiDir + "/peer.key"},
				Probe:     &plan.Probe{TCP: &plan.TCPProbe{Address: net.JoinHostPort(ip, "2379")}},
				StateDirs: []string{etcdDataDir},
			},
			{Name: "bystander", Argv: []string{"/usr/bin/sleep", "infinity"}},
		},
	}
}

// setFlag sets flag prefix (e.g. "--heartbeat-interval=") of service svc to value.
func setFlag(p *plan.Plan, svc, prefix, value string) {
	for i := range p.Services {
		if p.Services[i].Name != svc {
			continue
		}
		argv := p.Services[i].Argv[:0:0]
		for _, a := range p.Services[i].Argv {
			if !strings.HasPrefix(a, prefix) {
				argv = append(argv, a)
			}
		}
		p.Services[i].Argv = append(argv, prefix+value)
	}
}

// pids returns, per host, the main PID of each systemd unit ("0" when not running).
func pids(ctx context.Context, t *testing.T, hosts []*bed.Host, units ...string) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, h := range hosts {
		out[h.Name] = map[string]string{}
		for _, u := range units {
			pid, err := h.Run(ctx, "systemctl show -p MainPID --value "+u)
			if err != nil {
				t.Fatalf("%s on %s: %v", u, h.Name, err)
			}
			out[h.Name][u] = strings.TrimSpace(pid)
		}
	}
	return out
}

// etcdFormed checks that every endpoint is healthy and the cluster lists want voting members.
func etcdFormed(ctx context.Context, endpoints []string, clients []*clientv3.Client, want int) error {
	if err := etcdHealthy(ctx, endpoints, clients); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := clients[0].MemberList(cctx)
	if err != nil {
		return err
	}
	voters := 0
	for _, mem := range resp.Members {
		if !mem.IsLearner && len(mem.ClientURLs) > 0 {
			voters++
		}
	}
	if voters != want {
		return fmt.Errorf("%d started voting members, want %d", voters, want)
	}
	return nil
}

// checkAgentsRenewed checks, on each bed host, that the agent presents a renewed certificate:
// one issued at least a minute after the agent was installed (agents register within seconds
// of the install, and renew at two thirds of a 2-minute certificate), still valid; and that
// every Host's agent is connected: no agent went silent when a certificate ran out. The
// manager's renewal counter grew by at least one per agent.
func checkAgentsRenewed(ctx context.Context, t *testing.T, c client.Client, ns string, hosts []*bed.Host, before float64, since time.Time) {
	t.Helper()
	renewed := counter(t, "basalt_agent_api_renewals_total") - before
	if renewed < float64(len(hosts)) {
		t.Errorf("%.0f agent certificate renewals in %s, want at least one for each of %d agents", renewed, time.Since(since).Round(time.Second), len(hosts))
	}
	for _, bh := range hosts {
		h := &basaltv1.Host{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: bh.Name}, h); err != nil {
			t.Fatal(err)
		}
		if !meta.IsStatusConditionTrue(h.Status.Conditions, basaltv1.HostAgentConnected) {
			t.Errorf("Host %s: agent not connected: %s", h.Name, framework.ConditionSummary(h.Status.Conditions))
		}
		out, err := bh.Run(ctx, "cat "+protocol.StateDir+"/agent.crt")
		if err != nil {
			t.Fatalf("%s: %v", bh.Name, err)
		}
		blk, _ := pem.Decode([]byte(out))
		if blk == nil {
			t.Fatalf("%s: the agent certificate is not PEM", bh.Name)
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		installed := h.Status.Agent.InstalledAt
		if installed == nil || cert.NotBefore.Before(installed.Add(time.Minute)) || time.Now().After(cert.NotAfter) {
			t.Errorf("Host %s: the agent presents a certificate valid %s – %s, installed at %v: want one renewed since", h.Name, cert.NotBefore, cert.NotAfter, installed)
		}
	}
	t.Logf("MEASURE agent certificates: %.0f renewals over mTLS by %d agents in %s (2-minute certificates), every agent connected with a renewed certificate",
		renewed, len(hosts), time.Since(since).Round(time.Second))
}
