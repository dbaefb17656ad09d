// Package plan defines the Plan: the declarative desired state of one host that the manager
// writes and the node agent converges to.
//
// A Plan lists files (path, mode, owner, content, sha256), artifacts (fetched from the manager's
// sha256-addressed cache, checked, placed and optionally unpacked), services (argv, environment,
// dependencies, health probe, restart policy) and node routes. It has a stable hash: the same
// inputs always give the same hash, whatever the order of maps or of the builder's appends, and
// every relevant change gives a new one. Each service also has its own hash over its definition
// and the files and artifacts it reads, so an agent restarts exactly the services a change
// touches.
//
// The agent applies a Plan idempotently: every file and artifact is written to a temporary file and
// renamed into place, so an agent killed at any point leaves either the old or the new bytes, and
// a re-run of the same Plan converges.
package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/artifacts"
)

// FormatVersion is the version of the Plan encoding. The agent refuses Plans of another version.
const FormatVersion = "basalt.dev/plan/v1"

// Plan is the desired state of one host.
type Plan struct {
	// Format is FormatVersion.
	Format string `json:"format"`
	// Host is the name of the Host the Plan is for; the agent refuses a Plan for another host.
	Host string `json:"host"`
	// Cluster is the Cluster whose node the Plan makes of the host; nil for a Plan that belongs
	// to no Cluster (the empty Plan, the Host's own root-image Plan). An agent whose host still
	// holds the state of another Cluster's Plan (by UID) applies the empty Plan first, so a new
	// Cluster never starts on the old one's etcd data, certificates or kubelet state.
	Cluster *ClusterRef `json:"cluster,omitempty"`
	// Files to write.
	Files []File `json:"files,omitempty"`
	// Artifacts to fetch and place.
	Artifacts []Artifact `json:"artifacts,omitempty"`
	// Services to run.
	Services []Service `json:"services,omitempty"`
	// Routes to program in the host's main routing table (pod CIDRs of other nodes, host-gw).
	Routes []Route `json:"routes,omitempty"`
	// Images are OCI image tarballs (artifact names) to import into containerd's k8s.io namespace
	// once the service named ImageRuntime is healthy.
	Images []string `json:"images,omitempty"`
	// ImageRuntime is the service that must be healthy before Images are imported.
	ImageRuntime string `json:"imageRuntime,omitempty"`
	// LoadBalancers are TCP load balancers the agent runs in its own process, e.g. the
	// node-local load balancer kubelet and kube-proxy reach the API servers through.
	LoadBalancers []LoadBalancer `json:"loadBalancers,omitempty"`
	// VirtualIP is the control-plane address the agent holds while it leads (control-plane
	// hosts of a Cluster with spec.controlPlane.virtualIP).
	VirtualIP *VirtualIP `json:"virtualIP,omitempty"`
	// OS puts the host's root filesystem on a local disk. An agent running from the network
	// (the PXE initramfs, in RAM) writes OS.Image to OS.Disk, carries its identity over and
	// reboots into it; an agent already running from that image on that disk goes on with the
	// rest of the Plan. A Plan without OS given to an agent running from a disk it was written
	// to makes the agent wipe that disk and reboot into the network: what provisioning wrote is
	// gone. Hosts reached over SSH never get OS.
	OS *OSImage `json:"os,omitempty"`
}

// ClusterRef identifies a Cluster object for as long as it exists: a Cluster deleted and
// created again with the same name has another UID.
type ClusterRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
}

// String is namespace/name (uid).
func (c *ClusterRef) String() string {
	if c == nil {
		return "no Cluster"
	}
	return fmt.Sprintf("%s/%s (uid %s)", c.Namespace, c.Name, c.UID)
}

// Empty is the Plan of a host that runs nothing of Basalt's: applying it stops every service
// and removes every file a former Plan wrote. The manager serves it to a host with no Plan
// stored; its hash is the one a wiped host reports.
func Empty(host string) *Plan { return &Plan{Format: FormatVersion, Host: host} }

// IsEmpty says whether p writes, runs and programs nothing (an Empty Plan, perhaps with OS).
func (p *Plan) IsEmpty() bool {
	return len(p.Files) == 0 && len(p.Artifacts) == 0 && len(p.Services) == 0 && len(p.Routes) == 0 &&
		len(p.Images) == 0 && len(p.LoadBalancers) == 0 && p.VirtualIP == nil
}

// OSImage is a root filesystem image and the disk it is written to.
type OSImage struct {
	// Name of the image in the manager's artifact cache, e.g. basalt-root.
	Name string `json:"name"`
	// SHA256 of the image's bytes as served (gzip-compressed): the agent checks it while it
	// streams them to the disk.
	SHA256 string `json:"sha256"`
	// Size of the served bytes; 0 when unknown.
	Size int64 `json:"size,omitempty"`
	// WWN and Serial identify Disk (see osimage_identity.go): the agent writes and wipes only
	// the disk that has them, found by them when its kernel name changed. Empty when the disk
	// reported none.
	WWN    string `json:"wwn,omitempty"`
	Serial string `json:"serial,omitempty"`
	// Erase lets the agent overwrite a disk that holds partitions, filesystems, RAID or LVM
	// (the Host's spec.boot.eraseExistingDisk); without it such a disk is refused.
	Erase bool `json:"erase,omitempty"`
	// Disk is the whole-disk block device written to, e.g. /dev/vda.
	Disk string `json:"disk"`
	// Format is how the image is laid out: FormatFilesystem ("", the default: an ext4
	// filesystem on the whole disk, booted by the network's kernel) or FormatDisk (a whole-disk
	// image with a partition table and its own boot loader; the host boots from its disk).
	Format string `json:"format,omitempty"`
	// Network, for FormatDisk, is the static address the installed system configures on its
	// boot interface, so it keeps its node address with no DHCP server; nil leaves the image's
	// own configuration (DHCP on every Ethernet interface).
	Network *OSNetwork `json:"network,omitempty"`
}

// OSImage formats.
const (
	FormatFilesystem = "filesystem"
	FormatDisk       = "disk"
)

// IsDiskImage says whether the image is a whole-disk image (FormatDisk).
func (o *OSImage) IsDiskImage() bool { return o.Format == FormatDisk }

// OSNetwork is the installed system's address on its boot interface.
type OSNetwork struct {
	// MAC selects the interface, lowercase and colon-separated.
	MAC string `json:"mac"`
	// Address is the IPv4 address with its prefix length, e.g. 192.168.10.21/24.
	Address string `json:"address"`
	// Gateway is the default router, optional; inside Address's subnet.
	Gateway string `json:"gateway,omitempty"`
	// DNS are name servers, optional.
	DNS []string `json:"dns,omitempty"`
}

// macRE is the form of a MAC address in an OSNetwork.
var macRE = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)

// maxDNS bounds OSNetwork.DNS (resolv.conf reads three).
const maxDNS = 3

// Validate reports what makes the network unusable.
func (n *OSNetwork) Validate() error {
	var errs []error
	if !macRE.MatchString(n.MAC) {
		errs = append(errs, fmt.Errorf("os.network.mac %q must be six lowercase hex pairs separated by colons", n.MAC))
	}
	pfx, err := netip.ParsePrefix(n.Address)
	if err != nil || !pfx.Addr().Is4() || pfx.Bits() == 0 {
		errs = append(errs, fmt.Errorf("os.network.address %q must be an IPv4 address with its prefix length, e.g. 192.168.10.21/24", n.Address))
	}
	if n.Gateway != "" {
		gw, err := netip.ParseAddr(n.Gateway)
		switch {
		case err != nil || !gw.Is4():
			errs = append(errs, fmt.Errorf("os.network.gateway %q must be an IPv4 address", n.Gateway))
		case pfx.IsValid() && !pfx.Masked().Contains(gw):
			errs = append(errs, fmt.Errorf("os.network.gateway %s is outside %s", gw, pfx.Masked()))
		}
	}
	if len(n.DNS) > maxDNS {
		errs = append(errs, fmt.Errorf("os.network.dns lists %d servers; at most %d", len(n.DNS), maxDNS))
	}
	for _, d := range n.DNS {
		if a, err := netip.ParseAddr(d); err != nil || a.Zone() != "" {
			errs = append(errs, fmt.Errorf("os.network.dns %q must be an IP address", d))
		}
	}
	return errors.Join(errs...)
}

// diskRE is what OSImage.Disk may be: a whole disk under /dev, by its kernel name.
var diskRE = regexp.MustCompile(`^/dev/[a-z][a-z0-9]{0,31}$`)

// IsDisk says whether s is a disk path an OSImage may name: /dev/ and a kernel name.
func IsDisk(s string) bool { return diskRE.MatchString(s) }

// Validate reports what makes the image unusable.
func (o *OSImage) Validate() error {
	var errs []error
	if !validServiceName(o.Name) {
		errs = append(errs, fmt.Errorf("os.name %q must be lowercase letters, digits and '-'", o.Name))
	}
	if !artifacts.IsSHA256(o.SHA256) {
		errs = append(errs, fmt.Errorf("os.sha256 %q must be 64 lowercase hex digits", o.SHA256))
	}
	if o.Size < 0 {
		errs = append(errs, fmt.Errorf("os.size %d must not be negative", o.Size))
	}
	errs = append(errs, o.validateIdentity()...)
	if !diskRE.MatchString(o.Disk) {
		errs = append(errs, fmt.Errorf("os.disk %q must be a whole disk such as /dev/vda or /dev/nvme0n1", o.Disk))
	}
	switch o.Format {
	case "", FormatFilesystem, FormatDisk:
	default:
		errs = append(errs, fmt.Errorf("os.format %q must be %s or %s", o.Format, FormatFilesystem, FormatDisk))
	}
	if o.Network != nil {
		if !o.IsDiskImage() {
			errs = append(errs, errors.New("os.network is only for a whole-disk image (os.format disk): a filesystem image runs the network's kernel, which takes its address from DHCP"))
		}
		errs = append(errs, o.Network.Validate())
	}
	return errors.Join(errs...)
}

// LoadBalancer is a TCP load balancer the agent runs on the host.
type LoadBalancer struct {
	// Name identifies it, e.g. kube-apiserver; lowercase letters, digits and '-'.
	Name string `json:"name"`
	// Listen is the local address, ip:port, e.g. 127.0.0.1:6444.
	Listen string `json:"listen"`
	// Backends are the ip:port or name:port addresses connections are spread over; a backend
	// that refuses connections is skipped until it accepts again.
	Backends []string `json:"backends"`
}

// File is one file to write.
type File struct {
	// Path is absolute and clean.
	Path string `json:"path"`
	// Mode is the permission bits, e.g. 0o600 for keys.
	Mode uint32 `json:"mode"`
	// Owner is the numeric user and group the file belongs to, "uid:gid", e.g. "0:0" or
	// "65532:65532" for a component that runs unprivileged. Empty means root ("0:0"), the user
	// the agent runs as; it is left out of the encoding, so Plans without owners hash as before.
	Owner string `json:"owner,omitempty"`
	// Content is the file's bytes.
	Content []byte `json:"content"`
	// SHA256 of Content, lowercase hex; filled by Normalize.
	SHA256 string `json:"sha256"`
}

// PrivateArtifactPrefix starts the name of an artifact that holds a cluster's data (the etcd
// snapshot of a restore): the agent API serves it only to the agent whose Plan lists it, and
// the manager's cache keeps it readable by the manager only.
const PrivateArtifactPrefix = "etcd-snapshot-"

// Artifact is a file fetched from the manager's artifact cache.
type Artifact struct {
	// Name in the artifact set, e.g. kube-apiserver.
	Name string `json:"name"`
	// SHA256 of the bytes; the cache is addressed by it and the agent checks it.
	SHA256 string `json:"sha256"`
	// Size in bytes.
	Size int64 `json:"size"`
	// Path is where the artifact is placed, absolute and clean.
	Path string `json:"path"`
	// Mode is the permission bits.
	Mode uint32 `json:"mode"`
}

// RestartPolicy says when a service's process is restarted after it exits.
type RestartPolicy string

const (
	// RestartAlways restarts the process whenever it exits (with backoff).
	RestartAlways RestartPolicy = "Always"
	// RestartOnFailure restarts it only after a non-zero exit.
	RestartOnFailure RestartPolicy = "OnFailure"
)

// Service is one long-running process.
type Service struct {
	// Name is a unique, systemd-unit-safe name, e.g. etcd or kube-apiserver.
	Name string `json:"name"`
	// Argv is the command and its arguments; Argv[0] is an absolute path.
	Argv []string `json:"argv"`
	// Env is the process environment beyond PATH.
	Env map[string]string `json:"env,omitempty"`
	// After names services that must be started (and healthy, if they have a probe) first; they
	// are stopped after this one.
	After []string `json:"after,omitempty"`
	// Reads lists the files and artifact paths the service reads: a change to any of them
	// restarts it.
	Reads []string `json:"reads,omitempty"`
	// StateDirs are directories the service keeps its data in (etcd's data dir). The agent
	// removes them, with everything in them, once the service is no longer in the Plan, so a
	// host that leaves a cluster keeps nothing of it.
	StateDirs []string `json:"stateDirs,omitempty"`
	// Links are network interfaces the service's processes create on the host (the CNI bridge
	// containerd's pods hang off). The agent deletes them once the service is no longer in the
	// Plan: a bridge left with the address of an old pod range would make every pod sandbox of
	// the host's next cluster fail ("cni0 already has an IP address different from ...").
	Links []string `json:"links,omitempty"`
	// Leaves are the executables (absolute paths, artifacts of the Plan) of processes the
	// service starts that outlive it: containerd's shims keep containers running after
	// containerd stops. When the service leaves the Plan, the agent kills the processes running
	// exactly those files, and everything under them, then unmounts what is mounted below the
	// state dirs before removing them. A path, not a name, so another containerd on the host (a
	// container engine's) is never touched.
	Leaves []string `json:"leaves,omitempty"`
	// Probe checks the service's health.
	Probe *Probe `json:"probe,omitempty"`
	// Restart policy; default Always.
	Restart RestartPolicy `json:"restart,omitempty"`
	// Init seeds one of StateDirs before the service runs with it (etcd restored from a
	// snapshot).
	Init *Init `json:"init,omitempty"`
}

// InitSuffix ends the folder an Init command writes: Creates + InitSuffix.
const InitSuffix = ".init"

// Init is a command that fills a service's state dir once. While Creates does not exist on the
// host, the agent stops the service, removes Creates+InitSuffix (left by an interrupted run),
// runs Argv to completion (it must write Creates+InitSuffix), renames that folder to Creates and
// then starts the service. So Creates appears whole or not at all, and once it exists the
// command never runs again: an agent killed at any point runs it again from the start or not
// at all.
type Init struct {
	// Argv is the command; Argv[0] is an absolute path (an artifact of the Plan).
	Argv []string `json:"argv"`
	// Creates is one of the service's StateDirs.
	Creates string `json:"creates"`
	// TimeoutSeconds bounds the command; default 600, at most 3600.
	TimeoutSeconds int32 `json:"timeoutSeconds,omitempty"`
}

// Output is the folder the command writes, renamed to Creates once it succeeded.
func (i *Init) Output() string { return i.Creates + InitSuffix }

// Timeout is TimeoutSeconds with its default.
func (i *Init) Timeout() time.Duration {
	if i.TimeoutSeconds <= 0 {
		return 600 * time.Second
	}
	return time.Duration(i.TimeoutSeconds) * time.Second
}

// Probe checks a service's health. Exactly one of HTTP, TCP and Exec is set.
type Probe struct {
	HTTP *HTTPProbe `json:"http,omitempty"`
	TCP  *TCPProbe  `json:"tcp,omitempty"`
	Exec *ExecProbe `json:"exec,omitempty"`
	// PeriodSeconds between probes; default 5.
	PeriodSeconds int32 `json:"periodSeconds,omitempty"`
}

// HTTPProbe is healthy when GET URL answers 200.
type HTTPProbe struct {
	// URL to get, http or https.
	URL string `json:"url"`
	// CAFile verifies an https server; ClientCertFile and ClientKeyFile authenticate the prober.
	CAFile         string `json:"caFile,omitempty"`
	ClientCertFile string `json:"clientCertFile,omitempty"`
	ClientKeyFile  string `json:"clientKeyFile,omitempty"`
}

// TCPProbe is healthy when Address accepts a connection.
type TCPProbe struct {
	Address string `json:"address"`
}

// ExecProbe is healthy when Argv exits 0.
type ExecProbe struct {
	Argv []string `json:"argv"`
}

// Route sends traffic for Destination through Gateway.
type Route struct {
	// Destination is a CIDR, e.g. another node's pod CIDR.
	Destination string `json:"destination"`
	// Gateway is the next hop, e.g. that node's IP.
	Gateway string `json:"gateway"`
}

// Normalize sorts every list into its canonical order and fills in file checksums and default
// restart policies, so that two Plans with the same content encode, and hash, the same.
func (p *Plan) Normalize() {
	if p.Format == "" {
		p.Format = FormatVersion
	}
	for i := range p.Files {
		p.Files[i].SHA256 = sum(p.Files[i].Content)
	}
	for i := range p.Services {
		if p.Services[i].Restart == "" {
			p.Services[i].Restart = RestartAlways
		}
		slices.Sort(p.Services[i].After)
		p.Services[i].After = slices.Compact(p.Services[i].After)
		slices.Sort(p.Services[i].Reads)
		p.Services[i].Reads = slices.Compact(p.Services[i].Reads)
		slices.Sort(p.Services[i].StateDirs)
		p.Services[i].StateDirs = slices.Compact(p.Services[i].StateDirs)
		slices.Sort(p.Services[i].Leaves)
		p.Services[i].Leaves = slices.Compact(p.Services[i].Leaves)
	}
	slices.SortFunc(p.Files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	slices.SortFunc(p.Artifacts, func(a, b Artifact) int { return strings.Compare(a.Path, b.Path) })
	slices.SortFunc(p.Services, func(a, b Service) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(p.Routes, func(a, b Route) int { return strings.Compare(a.Destination, b.Destination) })
	slices.Sort(p.Images)
	for i := range p.LoadBalancers {
		slices.Sort(p.LoadBalancers[i].Backends)
		p.LoadBalancers[i].Backends = slices.Compact(p.LoadBalancers[i].Backends)
	}
	slices.SortFunc(p.LoadBalancers, func(a, b LoadBalancer) int { return strings.Compare(a.Name, b.Name) })
}

// Hash returns the Plan's hash: sha256 over its canonical JSON encoding (after Normalize on a
// copy, so the caller's Plan is not changed).
func (p *Plan) Hash() string {
	c := p.DeepCopy()
	c.Normalize()
	b, err := json.Marshal(c)
	if err != nil {
		// Every field is a plain value; encoding cannot fail.
		panic(fmt.Sprintf("plan: encoding: %v", err))
	}
	return sum(b)
}

// ServiceHash returns the hash of one service: its definition and the checksums of every file
// and artifact it reads. It changes exactly when the service must be restarted.
func (p *Plan) ServiceHash(name string) (string, error) {
	c := p.DeepCopy()
	c.Normalize()
	i := slices.IndexFunc(c.Services, func(s Service) bool { return s.Name == name })
	if i < 0 {
		return "", fmt.Errorf("plan: no service %q", name)
	}
	s := c.Services[i]
	inputs := map[string]string{}
	for _, r := range s.Reads {
		inputs[r] = c.checksumOf(r)
	}
	b, err := json.Marshal(struct {
		Service Service           `json:"service"`
		Inputs  map[string]string `json:"inputs"`
	}{s, inputs})
	if err != nil {
		panic(fmt.Sprintf("plan: encoding: %v", err))
	}
	return sum(b), nil
}

func (p *Plan) checksumOf(path string) string {
	for _, f := range p.Files {
		if f.Path == path {
			return f.SHA256
		}
	}
	for _, a := range p.Artifacts {
		if a.Path == path {
			return a.SHA256
		}
	}
	return ""
}

// Validate checks that the Plan is well formed: absolute clean paths written once, checksums
// present, services with unique names, absolute commands, known dependencies without cycles,
// and everything a service reads present in the Plan. Errors name the offending field.
func (p *Plan) Validate() error {
	var errs []error
	if p.Format != "" && p.Format != FormatVersion {
		errs = append(errs, fmt.Errorf("format %q: this agent understands %q", p.Format, FormatVersion))
	}
	if p.Host == "" {
		errs = append(errs, errors.New("host: must name the Host the Plan is for"))
	}
	if c := p.Cluster; c != nil && (c.Namespace == "" || c.Name == "" || c.UID == "") {
		errs = append(errs, errors.New("cluster: namespace, name and uid are all required"))
	}
	if p.OS != nil {
		if err := p.OS.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	paths := map[string]string{}
	claim := func(field, pth string) {
		if !path.IsAbs(pth) || path.Clean(pth) != pth {
			errs = append(errs, fmt.Errorf("%s: path %q must be absolute and clean", field, pth))
			return
		}
		if other, dup := paths[pth]; dup {
			errs = append(errs, fmt.Errorf("%s: path %q is also written by %s", field, pth, other))
			return
		}
		paths[pth] = field
	}
	for i, f := range p.Files {
		claim(fmt.Sprintf("files[%d]", i), f.Path)
		if f.SHA256 != "" && f.SHA256 != sum(f.Content) {
			errs = append(errs, fmt.Errorf("files[%d] (%s): sha256 does not match the content", i, f.Path))
		}
		if _, _, err := ParseOwner(f.Owner); err != nil {
			errs = append(errs, fmt.Errorf("files[%d] (%s): %w", i, f.Path, err))
		}
	}
	for i, a := range p.Artifacts {
		field := fmt.Sprintf("artifacts[%d] (%s)", i, a.Name)
		claim(field, a.Path)
		if !artifacts.IsSHA256(a.SHA256) {
			errs = append(errs, fmt.Errorf("%s: sha256 %q must be 64 lowercase hex digits", field, a.SHA256))
		}
	}
	names := map[string]bool{}
	for i, s := range p.Services {
		field := fmt.Sprintf("services[%d] (%s)", i, s.Name)
		switch {
		case !validServiceName(s.Name):
			errs = append(errs, fmt.Errorf("%s: name must be lowercase letters, digits and '-'", field))
		case names[s.Name]:
			errs = append(errs, fmt.Errorf("%s: name is used twice", field))
		}
		names[s.Name] = true
		if len(s.Argv) == 0 || !path.IsAbs(s.Argv[0]) {
			errs = append(errs, fmt.Errorf("%s: argv[0] must be an absolute path", field))
		}
		for _, l := range s.Links {
			if !validLinkName(l) {
				errs = append(errs, fmt.Errorf("%s: link %q must be a Linux interface name (1 to 15 letters, digits, '-', '_' or '.')", field, l))
			}
		}
		for _, d := range s.StateDirs {
			if !path.IsAbs(d) || path.Clean(d) != d || protectedDirs[d] || strings.Count(d, "/") < 2 {
				errs = append(errs, fmt.Errorf("%s: state dir %q must be an absolute clean path below a system directory, e.g. /var/lib/etcd", field, d))
				continue
			}
			claim(field+" state dir", d)
		}
		for _, l := range s.Leaves {
			if _, ok := paths[l]; !ok || !path.IsAbs(l) {
				errs = append(errs, fmt.Errorf("%s: leaves %q must be the path of an artifact of the Plan, e.g. /opt/basalt/bin/containerd-shim-runc-v2", field, l))
			}
		}
		for _, r := range s.Reads {
			if _, ok := paths[r]; !ok {
				errs = append(errs, fmt.Errorf("%s: reads %q, which no file or artifact of the Plan writes", field, r))
			}
		}
		if in := s.Init; in != nil {
			switch {
			case len(in.Argv) == 0 || !path.IsAbs(in.Argv[0]):
				errs = append(errs, fmt.Errorf("%s: init.argv[0] must be an absolute path", field))
			case !slices.Contains(s.StateDirs, in.Creates):
				errs = append(errs, fmt.Errorf("%s: init.creates %q must be one of the service's state dirs", field, in.Creates))
			case in.TimeoutSeconds < 0 || in.TimeoutSeconds > 3600:
				errs = append(errs, fmt.Errorf("%s: init.timeoutSeconds %d must be between 0 (600) and 3600", field, in.TimeoutSeconds))
			}
		}
		if s.Probe != nil {
			n := 0
			for _, set := range []bool{s.Probe.HTTP != nil, s.Probe.TCP != nil, s.Probe.Exec != nil} {
				if set {
					n++
				}
			}
			if n != 1 {
				errs = append(errs, fmt.Errorf("%s: probe must set exactly one of http, tcp and exec", field))
			}
		}
	}
	for i, s := range p.Services {
		for _, d := range s.After {
			if !names[d] {
				errs = append(errs, fmt.Errorf("services[%d] (%s): after %q, which is not a service of the Plan", i, s.Name, d))
			}
		}
	}
	if len(errs) == 0 {
		if _, err := p.StartOrder(); err != nil {
			errs = append(errs, err)
		}
	}
	for i, img := range p.Images {
		if !slices.ContainsFunc(p.Artifacts, func(a Artifact) bool { return a.Name == img }) {
			errs = append(errs, fmt.Errorf("images[%d]: %q is not an artifact of the Plan", i, img))
		}
	}
	if len(p.Images) > 0 && !names[p.ImageRuntime] {
		errs = append(errs, fmt.Errorf("imageRuntime: %q must name the container runtime service", p.ImageRuntime))
	}
	dests := map[string]bool{}
	for i, r := range p.Routes {
		field := fmt.Sprintf("routes[%d]", i)
		if pfx, err := netip.ParsePrefix(r.Destination); err != nil || pfx != pfx.Masked() {
			errs = append(errs, fmt.Errorf("%s: destination %q must be a CIDR without host bits", field, r.Destination))
		} else if gw, err := netip.ParseAddr(r.Gateway); err != nil || gw.Is4() != pfx.Addr().Is4() {
			errs = append(errs, fmt.Errorf("%s: gateway %q must be an IP of the destination's family", field, r.Gateway))
		}
		if dests[r.Destination] {
			errs = append(errs, fmt.Errorf("%s: destination %q is routed twice", field, r.Destination))
		}
		dests[r.Destination] = true
	}
	if p.VirtualIP != nil {
		errs = append(errs, p.VirtualIP.Validate())
	}
	lbs := map[string]bool{}
	for i, lb := range p.LoadBalancers {
		field := fmt.Sprintf("loadBalancers[%d] (%s)", i, lb.Name)
		if !validServiceName(lb.Name) || lbs[lb.Name] {
			errs = append(errs, fmt.Errorf("%s: name must be unique, lowercase letters, digits and '-'", field))
		}
		lbs[lb.Name] = true
		if host, _, err := splitHostPort(lb.Listen); err != nil || net.ParseIP(host) == nil {
			errs = append(errs, fmt.Errorf("%s: listen %q must be ip:port", field, lb.Listen))
		}
		if len(lb.Backends) == 0 {
			errs = append(errs, fmt.Errorf("%s: backends: at least one is required", field))
		}
		for j, b := range lb.Backends {
			if _, _, err := splitHostPort(b); err != nil {
				errs = append(errs, fmt.Errorf("%s: backends[%d]: %w", field, j, err))
			}
		}
	}
	return errors.Join(errs...)
}

// StartOrder returns the service names in an order where every service comes after the services
// it depends on (ties broken by name, so the order is stable). Stop in the reverse order.
func (p *Plan) StartOrder() ([]string, error) {
	deps := map[string][]string{}
	for _, s := range p.Services {
		deps[s.Name] = s.After
	}
	names := make([]string, 0, len(deps))
	for n := range deps {
		names = append(names, n)
	}
	slices.Sort(names)
	var order []string
	state := map[string]int{} // 0 new, 1 visiting, 2 done
	var visit func(n string, trail []string) error
	visit = func(n string, trail []string) error {
		switch state[n] {
		case 1:
			return fmt.Errorf("services: dependency cycle %s", strings.Join(append(trail, n), " → "))
		case 2:
			return nil
		}
		state[n] = 1
		after := slices.Clone(deps[n])
		slices.Sort(after)
		for _, d := range after {
			if err := visit(d, append(trail, n)); err != nil {
				return err
			}
		}
		state[n] = 2
		order = append(order, n)
		return nil
	}
	for _, n := range names {
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// DeepCopy returns a copy of p that shares no memory with it.
func (p *Plan) DeepCopy() *Plan {
	b, err := json.Marshal(p)
	if err != nil {
		panic(fmt.Sprintf("plan: encoding: %v", err))
	}
	c := &Plan{}
	if err := json.Unmarshal(b, c); err != nil {
		panic(fmt.Sprintf("plan: decoding: %v", err))
	}
	return c
}

// splitHostPort splits host:port and checks the port is a TCP port.
func splitHostPort(s string) (string, int, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || host == "" {
		return "", 0, fmt.Errorf("%q is not host:port", s)
	}
	return host, n, nil
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// protectedDirs are never a service's state dir: removing one would break the host.
var protectedDirs = map[string]bool{
	"/var/lib": true, "/var/log": true, "/usr/local": true, "/usr/lib": true, "/etc/basalt": true,
	"/var/lib/basalt": true, "/var/lib/basalt/agent": true, "/opt/basalt": true, "/run/basalt": true,
}

func validServiceName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// validLinkName says whether name is a Linux network interface name Basalt would make: 1 to 15
// characters of letters, digits, '-', '_' and '.', not "." or "..".
func validLinkName(name string) bool {
	if len(name) == 0 || len(name) > 15 || name == "." || name == ".." {
		return false
	}
	return strings.IndexFunc(name, func(c rune) bool {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		return !letter && (c < '0' || c > '9') && c != '-' && c != '_' && c != '.'
	}) < 0
}
