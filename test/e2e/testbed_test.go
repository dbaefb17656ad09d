package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/basalt-dev/basalt/test/e2e/bed"
)

// startBed starts a test bed for t and removes it when t ends, failing t if anything of the run
// is left. It skips only under -short: without Docker or the node image it fails (the image is
// built when missing).
func startBed(ctx context.Context, t *testing.T, opts bed.Options) *bed.Bed {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: the test bed starts containers")
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	start := time.Now()
	b, err := bed.New(ctx, opts)
	if err != nil {
		t.Fatalf("Start the test bed: %v", err)
	}
	t.Logf("Test bed %s: %d hosts up in %s", b.RunID, len(b.Hosts), time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("Close the test bed: %v", err)
		}
	})
	return b
}

// pings reports whether from reaches ip with ICMP echo. It fails t when the question cannot be
// asked (from itself unreachable), so that false always means "no answer".
func pings(ctx context.Context, t *testing.T, from *bed.Host, ip string) bool {
	t.Helper()
	_, err := from.Run(ctx, "ping -n -q -c 2 -i 0.2 -W 1 "+ip)
	if err == nil {
		return true
	}
	var re *bed.RunError
	if errors.As(err, &re) && re.ExitStatus == 1 { // ping: no reply
		return false
	}
	t.Fatalf("Ping %s from %s: %v", ip, from.Name, err)
	return false
}

// checkReach asserts which of the bed's hosts reach which: every ordered pair among up reaches
// each other, and no host of up reaches one of down.
func checkReach(ctx context.Context, t *testing.T, up, down []*bed.Host) {
	t.Helper()
	for _, from := range up {
		for _, to := range up {
			if from != to && !pings(ctx, t, from, to.IP) {
				t.Errorf("%s does not reach %s (%s)", from.Name, to.Name, to.IP)
			}
		}
		for _, to := range down {
			if pings(ctx, t, from, to.IP) {
				t.Errorf("%s still reaches %s (%s), which should be unreachable", from.Name, to.Name, to.IP)
			}
		}
	}
}

func without(hosts []*bed.Host, h *bed.Host) []*bed.Host {
	var out []*bed.Host
	for _, x := range hosts {
		if x != h {
			out = append(out, x)
		}
	}
	return out
}

// TestBedHosts brings up three hosts and checks what every e2e suite relies on: SSH with a
// pinned host key (and a wrong key refused), each host reaching the others, a stopped or
// disconnected host unreachable until it is started or reconnected, and nothing left after Close.
func TestBedHosts(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b := startBed(ctx, t, bed.Options{Hosts: 3, Name: "reach"})
	hosts := b.Hosts

	t.Run("SSH", func(t *testing.T) {
		for _, h := range hosts {
			out, err := h.Run(ctx, "hostname; ip -4 -o addr show dev eth0; systemctl is-system-running; id -u")
			if err != nil {
				t.Fatalf("SSH to %s: %v", h.Name, err)
			}
			f := strings.Fields(out)
			if len(f) < 1 || f[0] != h.Name || !strings.Contains(out, " "+h.IP+"/") ||
				!strings.Contains(out, "\nrunning\n") || !strings.HasSuffix(out, "\n0\n") {
				t.Errorf("%s: unexpected answer to hostname/ip/systemd/id:\n%s", h.Name, out)
			}
		}
		// Every host has a host key of its own.
		seen := map[string]string{}
		for _, h := range hosts {
			fp := ssh.FingerprintSHA256(h.HostKey)
			if other, dup := seen[fp]; dup {
				t.Errorf("%s and %s share host key %s", h.Name, other, fp)
			}
			seen[fp] = h.Name
		}
	})

	// Nothing leaves the bed: an address outside it (TEST-NET-2, owned by nobody) is refused by
	// the machine at once, while the gateway (this machine) and the other hosts stay reachable.
	t.Run("Isolated", func(t *testing.T) {
		out, err := hosts[0].Run(ctx, "curl -sS --max-time 5 -o /dev/null http://198.51.100.7/ 2>&1; echo rc=$?")
		if err != nil || !strings.Contains(out, "rc=7") {
			t.Errorf("%s to 198.51.100.7:80: %q (%v), want curl's exit 7 (connection refused by the bed's rule)", hosts[0].Name, out, err)
		}
		out, err = hosts[0].Run(ctx, "ping -c1 -W2 "+b.Gateway+" >/dev/null && echo gw-ok; ping -c1 -W2 "+hosts[1].IP+" >/dev/null && echo peer-ok")
		if err != nil || !strings.Contains(out, "gw-ok") || !strings.Contains(out, "peer-ok") {
			t.Errorf("%s to the gateway and %s: %q (%v)", hosts[0].Name, hosts[1].Name, out, err)
		}
	})

	t.Run("WrongHostKeyRefused", func(t *testing.T) {
		target := hosts[0]
		other, err := bed.NewKeyPair("not-the-host")
		if err != nil {
			t.Fatal(err)
		}
		for name, key := range map[string]ssh.PublicKey{
			"another host's key": hosts[1].HostKey,
			"a fresh key":        other.Public,
		} {
			cfg := target.ClientConfig()
			cfg.HostKeyCallback = ssh.FixedHostKey(key)
			c, err := bed.DialSSH(ctx, target.Addr(), cfg)
			if err == nil {
				_ = c.Close()
				t.Errorf("SSH to %s pinned to %s: connected, want the host key refused", target.Name, name)
			} else if !strings.Contains(err.Error(), "host key mismatch") {
				t.Errorf("SSH to %s pinned to %s: %v, want a host key mismatch", target.Name, name, err)
			}
		}
		// And the host refuses a client key it was not given.
		cfg := target.ClientConfig()
		cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(other.Signer)}
		if c, err := bed.DialSSH(ctx, target.Addr(), cfg); err == nil {
			_ = c.Close()
			t.Errorf("SSH to %s with an unknown client key: connected, want refused", target.Name)
		} else if !strings.Contains(err.Error(), "unable to authenticate") {
			t.Errorf("SSH to %s with an unknown client key: %v, want an authentication failure", target.Name, err)
		}
	})

	t.Run("Reach", func(t *testing.T) {
		checkReach(ctx, t, hosts, nil)
		// Hosts also know each other by name.
		out, err := hosts[0].Run(ctx, "getent hosts "+hosts[1].Name)
		if err != nil || !strings.HasPrefix(out, hosts[1].IP+" ") {
			t.Errorf("%s resolves %s to %q (%v), want %s", hosts[0].Name, hosts[1].Name, out, err, hosts[1].IP)
		}
	})

	t.Run("StopStart", func(t *testing.T) {
		h := hosts[2]
		start := time.Now()
		if err := h.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s stopped in %s", h.Name, time.Since(start).Round(time.Millisecond))
		checkReach(ctx, t, without(hosts, h), []*bed.Host{h})
		start = time.Now()
		if err := h.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s started and ready in %s", h.Name, time.Since(start).Round(time.Millisecond))
		checkReach(ctx, t, hosts, nil)
		// Same address, same host key: Start waited on an SSH connection pinned to it.
		if out, err := h.Run(ctx, "hostname"); err != nil || strings.TrimSpace(out) != h.Name {
			t.Errorf("SSH to %s after restart: %q, %v", h.Name, out, err)
		}
	})

	t.Run("KillStart", func(t *testing.T) {
		h := hosts[2]
		if err := h.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		checkReach(ctx, t, without(hosts, h), []*bed.Host{h})
		if err := h.Start(ctx); err != nil {
			t.Fatal(err)
		}
		checkReach(ctx, t, hosts, nil)
	})

	t.Run("DisconnectReconnect", func(t *testing.T) {
		h := hosts[1]
		if err := h.Disconnect(ctx); err != nil {
			t.Fatal(err)
		}
		checkReach(ctx, t, without(hosts, h), []*bed.Host{h})
		// Cut off from the test process too, while it keeps running.
		dctx, dcancel := context.WithTimeout(ctx, 3*time.Second)
		if _, err := h.Run(dctx, "true"); err == nil {
			t.Errorf("SSH to disconnected %s succeeded", h.Name)
		}
		dcancel()
		if running, err := h.Running(ctx); err != nil || !running {
			t.Errorf("Disconnected %s: running=%v, %v; want it running", h.Name, running, err)
		}
		if out, err := h.Exec(ctx, "ping", "-n", "-q", "-c", "1", "-W", "1", hosts[0].IP); err == nil {
			t.Errorf("Disconnected %s reaches %s: %s", h.Name, hosts[0].Name, out)
		}
		if err := h.Reconnect(ctx); err != nil {
			t.Fatal(err)
		}
		checkReach(ctx, t, hosts, nil)
	})

	t.Run("CloseLeavesNothing", func(t *testing.T) {
		if err := b.Close(ctx); err != nil {
			t.Fatal(err)
		}
		left, err := bed.List(ctx, b.RunID)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range left {
			t.Errorf("Left after Close: %s", r)
		}
		for _, h := range hosts {
			if _, err := h.Running(ctx); err == nil {
				t.Errorf("Container %s still exists", h.Container)
			}
		}
		lease := fmt.Sprintf("%s/testbed/runs/%s.lock", bed.CacheDir(), b.RunID)
		if _, err := os.Stat(lease); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Lease file %s still there (%v)", lease, err)
		}
	})
}

// helperEnv makes the test binary run TestBedHelperProcess as a bed owner that a test kills.
const helperEnv = "BASALT_TESTBED_HELPER"

// TestBedHelperProcess is not a test: TestBedLeftovers runs the test binary with helperEnv set,
// and this starts a one-host bed, prints its run ID and waits to be killed.
func TestBedHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		return
	}
	b, err := bed.New(context.Background(), bed.Options{Hosts: 1, Name: "orphan"})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("RUN", b.RunID)
	time.Sleep(10 * time.Minute)
	os.Exit(1)
}

// TestBedLeftovers checks that the leftovers of a run whose process died are removed, and only
// those: a second process owns a bed; while it lives, CleanupDead keeps its run; once it is
// killed (no Close, as with an interrupted go test) CleanupDead removes everything of the run.
func TestBedLeftovers(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("-short: the test bed starts containers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The image first, so that the helper does not build it with nobody watching.
	if _, err := bed.EnsureImage(ctx, t.Logf); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBedHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	var runID string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "RUN "); ok {
			runID = id
			break
		}
		if strings.HasPrefix(sc.Text(), "ERROR") {
			t.Fatalf("Helper: %s", sc.Text())
		}
	}
	if runID == "" {
		t.Fatalf("Helper printed no run ID (%v)", sc.Err())
	}
	kinds := func() []string {
		rs, err := bed.List(ctx, runID)
		if err != nil {
			t.Fatal(err)
		}
		var k []string
		for _, r := range rs {
			k = append(k, r.Kind)
		}
		slices.Sort(k)
		return k
	}
	// One host: its container, the run's network and one volume per default volume path
	// (/var/lib/containerd and /var/lib/kubelet).
	want := []string{"container", "network", "volume", "volume"}
	if got := kinds(); !slices.Equal(got, want) {
		t.Fatalf("Run %s of the live helper has %v, want %v", runID, got, want)
	}
	removed, err := bed.CleanupDead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(removed, runID) || !slices.Equal(kinds(), want) {
		t.Fatalf("CleanupDead removed run %s of a live process (removed %v)", runID, removed)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed = true
	removed, err = bed.CleanupDead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(removed, runID) {
		t.Errorf("CleanupDead removed runs %v, want %s among them", removed, runID)
	}
	if got := kinds(); len(got) != 0 {
		t.Errorf("Left of the dead run %s: %v", runID, got)
	}
}
