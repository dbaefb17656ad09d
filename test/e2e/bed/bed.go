package bed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Options say what bed New starts. The zero value means three hosts from the current node image.
type Options struct {
	// Hosts is how many hosts to start; 0 means 3.
	Hosts int
	// Name prefixes the hosts' names: <Name>-1, <Name>-2, ... (a DNS label, at most 40
	// characters); "" means "host". It also appears in container names, for docker ps readers.
	Name string
	// Image is the node image to start; "" means EnsureImage's, built when missing.
	Image string
	// Volumes are directories that each get a named volume of their own per host (an ext4 or
	// whatever the engine's volumes are, not the image's fuse-overlayfs or overlay root), e.g. for
	// containerd's snapshots or etcd's data. nil means /var/lib/containerd and /var/lib/kubelet (cAdvisor
	// cannot size a fuse-overlayfs root, so kubelet's root dir must be on a volume).
	Volumes []string
	// BootTimeout bounds the wait for every host to finish booting with sshd up; 0 means 3 minutes.
	BootTimeout time.Duration
	// Persistent keeps the run's hosts after this process exits: no lease ties them to it, so
	// New's cleanup of dead runs leaves them alone. Remove them with RemoveRun (the demo does) or
	// hack/testbed-clean.sh.
	Persistent bool
	// Logf, if set, receives progress lines (t.Logf fits).
	Logf func(format string, args ...any)
}

// Bed is one run's hosts and network. Close removes them.
type Bed struct {
	// RunID is the value of LabelRun on everything of this run.
	RunID string
	// Network is the Docker network of the run, a bridge of its own.
	Network string
	// Subnet is the network's IPv4 subnet; hosts get .11, .12, ... in it.
	Subnet netip.Prefix
	// Gateway is this machine's address on the network (.1), the source of the test
	// process's connections to the hosts.
	Gateway string
	// Image is the node image the hosts run.
	Image string
	// ClientKey is the key every host accepts for root over SSH.
	ClientKey *KeyPair
	// Hosts in order of their names.
	Hosts []*Host

	opts  Options
	lease *lease
	mu    sync.Mutex
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`)

// New starts a bed: a fresh bridge network on a free /24 of SubnetPool, and Options.Hosts
// containers on it, each with a static address, its hostname, systemd as PID 1, a named volume
// at /var/lib/containerd, tmpfs /run and /tmp, and sshd with an ed25519 host key generated for
// this run and installed before the first boot. It returns when every host accepts SSH with its
// pinned key and systemd reports the boot finished ("running"). First it removes what runs
// whose process has died left behind. On error nothing of the new run is left.
func New(ctx context.Context, opts Options) (*Bed, error) {
	if opts.Hosts == 0 {
		opts.Hosts = 3
	}
	if opts.Hosts < 1 || opts.Hosts > 200 {
		return nil, fmt.Errorf("test bed: Hosts must be between 1 and 200, not %d", opts.Hosts)
	}
	if opts.Name == "" {
		opts.Name = "host"
	}
	if !nameRE.MatchString(opts.Name) {
		return nil, fmt.Errorf("test bed: Name %q is not a DNS label of at most 40 characters", opts.Name)
	}
	if opts.Volumes == nil {
		opts.Volumes = []string{"/var/lib/containerd", "/var/lib/kubelet"}
	}
	for _, v := range opts.Volumes {
		if !path.IsAbs(v) || path.Clean(v) != v || v == "/" {
			return nil, fmt.Errorf("test bed: volume path %q is not a clean absolute directory", v)
		}
	}
	if opts.BootTimeout == 0 {
		opts.BootTimeout = 3 * time.Minute
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if err := CheckDocker(ctx); err != nil {
		return nil, err
	}
	if err := raiseInotifyLimits(opts.Logf); err != nil {
		return nil, err
	}
	if opts.Image == "" {
		img, err := EnsureImage(ctx, opts.Logf)
		if err != nil {
			return nil, err
		}
		opts.Image = img
	} else if _, err := docker(ctx, "image", "inspect", "--format", "{{.Id}}", opts.Image); err != nil {
		return nil, fmt.Errorf("test bed: image %s: %w (build it with hack/node-image.sh)", opts.Image, err)
	}
	if runs, err := CleanupDead(ctx); err != nil {
		opts.Logf("Removing leftovers of dead runs %v failed: %v", runs, err)
	} else if len(runs) > 0 {
		opts.Logf("Removed leftovers of dead test bed runs %v", runs)
	}

	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	b := &Bed{RunID: hex.EncodeToString(id[:]), Image: opts.Image, opts: opts}
	var err error
	if opts.Persistent {
		b.lease = &lease{path: persistentLease}
	} else if b.lease, err = acquireLease(b.RunID); err != nil {
		return nil, fmt.Errorf("test bed: %w", err)
	}
	if err := b.start(ctx); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if cerr := b.Close(cctx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("and cleaning up: %w", cerr))
		}
		return nil, fmt.Errorf("test bed %s: %w", b.RunID, err)
	}
	return b, nil
}

func (b *Bed) labels() []string {
	return []string{LabelRun + "=" + b.RunID, LabelLease + "=" + b.lease.path, LabelOwner + "=" + ownerLabel()}
}

// VirtualIP is an address of the bed's subnet that no host and no Docker container gets (.250):
// hosts take .11 onwards (at most 200 of them), the gateway is .1. A Cluster's
// spec.controlPlane.virtualIP on the bed uses it.
func (b *Bed) VirtualIP() string { return hostAddr(b.Subnet, 250).String() }

func (b *Bed) start(ctx context.Context) error {
	t0 := time.Now()
	b.Network = "basalt-tb-" + b.RunID
	subnet, err := createNetwork(ctx, b.Network, b.RunID, b.labels())
	if err != nil {
		return err
	}
	b.Subnet = subnet
	b.Gateway = hostAddr(subnet, 1).String()
	if b.ClientKey, err = NewKeyPair("basalt-testbed-" + b.RunID); err != nil {
		return err
	}
	for i := range b.opts.Hosts {
		name := fmt.Sprintf("%s-%d", b.opts.Name, i+1)
		h := &Host{
			Name:      name,
			Container: fmt.Sprintf("basalt-tb-%s-%s", b.RunID, name),
			IP:        hostAddr(subnet, byte(11+i)).String(),
			User:      "root",
			Signer:    b.ClientKey.Signer,
			bed:       b,
		}
		if err := h.create(ctx); err != nil {
			return err
		}
		b.Hosts = append(b.Hosts, h)
	}
	args := []string{"start"}
	for _, h := range b.Hosts {
		args = append(args, h.Container)
	}
	if _, err := docker(ctx, args...); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, b.opts.BootTimeout)
	defer cancel()
	g, gctx := errgroup.WithContext(wctx)
	for _, h := range b.Hosts {
		g.Go(func() error { return h.WaitReady(gctx) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	b.opts.Logf("Test bed %s up: %d hosts on %s (network %s) in %s", b.RunID, len(b.Hosts), subnet,
		b.Network, time.Since(t0).Round(time.Millisecond))
	return nil
}

// Host returns the host with the given name, or nil.
func (b *Bed) Host(name string) *Host {
	for _, h := range b.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Close removes every container, network and volume of the run and checks that none is left.
// It may be called more than once.
func (b *Bed) Close(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := RemoveRun(ctx, b.RunID); err != nil {
		return err
	}
	b.lease.release()
	return nil
}

// RemoveRun removes every container, network and volume of run runID and checks that none is
// left. A run already gone is not an error.
func RemoveRun(ctx context.Context, runID string) error {
	rs, err := List(ctx, runID)
	if err != nil {
		return fmt.Errorf("test bed %s: list: %w", runID, err)
	}
	if err := remove(ctx, rs); err != nil {
		return fmt.Errorf("test bed %s: remove: %w", runID, err)
	}
	left, err := List(ctx, runID)
	if err != nil {
		return fmt.Errorf("test bed %s: list: %w", runID, err)
	}
	if len(left) > 0 {
		names := make([]string, len(left))
		for i, r := range left {
			names[i] = r.String()
		}
		return fmt.Errorf("test bed %s: still there after removal: %s", runID, strings.Join(names, ", "))
	}
	return nil
}

// hostModules is mounted read-only into hosts when this machine has it, for modprobe.
const hostModules = "/lib/modules"

func hasDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// inotifyLimits are the kernel's per-user inotify limits the hosts need: every host's kubelet,
// containerd and systemd take instances from one machine-wide budget (128 by default), and a few
// Kubernetes nodes exhaust it ("too many open files" from fsnotify, kubelet crash-looping).
// kind asks for the same.
var inotifyLimits = map[string]int{
	"/proc/sys/fs/inotify/max_user_instances": 8192,
	"/proc/sys/fs/inotify/max_user_watches":   524288,
}

// raiseInotifyLimits raises the machine's inotify limits to inotifyLimits, never lowering one.
func raiseInotifyLimits(logf func(string, ...any)) error {
	for path, want := range inotifyLimits {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("test bed: reading %s: %w", path, err)
		}
		have, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || have >= want {
			continue
		}
		if err := os.WriteFile(path, []byte(strconv.Itoa(want)), 0o644); err != nil {
			return fmt.Errorf("test bed: raising %s from %d to %d (Kubernetes nodes need it; run as root): %w", path, have, want, err)
		}
		logf("Raised %s from %d to %d for the hosts' kubelets", path, have, want)
	}
	return nil
}
