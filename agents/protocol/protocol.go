// Package protocol defines the wire format between the node agent and the manager's agent API.
//
// All calls are HTTPS. The agent pins the manager's serving CA, which it receives together with
// its one-time bootstrap token (over SSH, or in its per-MAC iPXE script). Registration is the only
// call authenticated by the token; every later call is mutual TLS with the client certificate
// that registration returned. The certificate's CommonName is IdentityPrefix + "<namespace>/<host>":
// a host may read only its own Plan and write only its own status.
//
//	agent                                   manager (agents/agentserver)
//	  POST /v1/register  {token, CSR}  ───►  token valid, unused, unexpired? → sign CSR, burn token
//	  GET  /v1/plan?hash=H&wait=30s    ───►  200 + Plan when its hash ≠ H, else 304 after wait
//	  GET  /v1/artifacts/<sha256>      ───►  bytes from the sha256-addressed cache (Range served)
//	  POST /v1/status    {Status}      ───►  Host.status.agent/hardware/os, Machine.status
//
// Request bodies are JSON and bounded by MaxRequestBytes; anything larger or malformed gets a 4xx.
package protocol

import (
	"time"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// API paths.
const (
	PathRegister  = "/v1/register"
	PathPlan      = "/v1/plan"
	PathStatus    = "/v1/status"
	PathArtifacts = "/v1/artifacts/"
	// PathRenew exchanges a registered agent's certificate, presented over mutual TLS, for a
	// new one for a new key (RenewRequest → RegisterResponse).
	PathRenew = "/v1/renew"
)

// Query parameters of PathPlan.
const (
	// QueryHash is the hash of the Plan the agent has applied; the call waits while it is current.
	QueryHash = "hash"
	// QueryWait bounds the long poll, as a Go duration (at most MaxPlanWait).
	QueryWait = "wait"
)

// HeaderPlanHash carries the hash of the Plan in a PathPlan answer.
const HeaderPlanHash = "X-Basalt-Plan-Hash"

// Limits.
const (
	// MaxRequestBytes bounds every request body the manager reads.
	MaxRequestBytes = 1 << 20
	// MaxPlanWait bounds a long poll.
	MaxPlanWait = 60 * time.Second
)

// IdentityPrefix starts the CommonName of every agent client certificate.
const IdentityPrefix = "basalt:host:"

// IdentityOrganization is the Organization of every agent client certificate.
const IdentityOrganization = "basalt:agents"

// RegisterRequest exchanges a bootstrap token for a client certificate.
type RegisterRequest struct {
	// Token is the one-time bootstrap token "<id>.<secret>".
	Token string `json:"token"`
	// CSR is a PEM certificate signing request for the agent's own key; the manager ignores its
	// subject and sets the identity itself.
	CSR []byte `json:"csr"`
	// AgentVersion is the agent's version.
	AgentVersion string `json:"agentVersion"`
}

// RenewRequest asks for a new client certificate for the same Host, for a new key. The caller is
// identified by the certificate it presents; it renews once RenewFraction of that certificate's
// lifetime has passed (the manager refuses an earlier renewal).
type RenewRequest struct {
	// CSR is a PEM certificate signing request for the agent's new key.
	CSR []byte `json:"csr"`
}

// RenewFraction is how much of its certificate's lifetime an agent lets pass before renewing
// it: two thirds, so a year-long certificate is renewed four months before it expires, and a
// manager that is away for less than that costs no agent its identity.
const RenewFraction = 2.0 / 3.0

// MinRenewFraction is how much of its lifetime must have passed before the manager renews a
// certificate: a stolen certificate cannot be renewed into a fresh one at will.
const MinRenewFraction = 0.5

// RegisterResponse carries the signed client certificate.
type RegisterResponse struct {
	// Certificate is the PEM client certificate for the agent's key.
	Certificate []byte `json:"certificate"`
	// Namespace and Host name the Host the agent now speaks for.
	Namespace string `json:"namespace"`
	Host      string `json:"host"`
}

// PlanResponse is the body of a 200 answer to PathPlan.
type PlanResponse struct {
	Hash string     `json:"hash"`
	Plan *plan.Plan `json:"plan"`
}

// Status is what an agent reports after each apply and periodically.
type Status struct {
	// AgentVersion is the agent's version.
	AgentVersion string `json:"agentVersion"`
	// PlanHash is the hash of the last Plan fully applied; empty before the first.
	PlanHash string `json:"planHash,omitempty"`
	// ApplyingHash is the hash of a Plan being applied, if any.
	ApplyingHash string `json:"applyingHash,omitempty"`
	// Steps are the results of the last apply, one per file, artifact, service and route.
	Steps []StepResult `json:"steps,omitempty"`
	// Components is the health of each service, from its probe.
	Components []ComponentHealth `json:"components,omitempty"`
	// Hardware facts of the host.
	Hardware *Hardware `json:"hardware,omitempty"`
	// Root is the root filesystem on local disk the agent runs from (Plan.OS, written by
	// provisioning); nil when it runs from the network (the PXE initramfs) or from an OS
	// Basalt did not install.
	Root *Root `json:"root,omitempty"`
	// Written is the image the agent has just written to a local disk and reboots into, sent
	// with its last report before that reboot; nil otherwise.
	Written *Root `json:"written,omitempty"`
	// Wiped is the image the agent has just wiped from the local disk it ran from, sent once
	// before it reboots into the network: the manager's proof that the disk holds nothing of a
	// former node (an agent that merely boots from the network proves nothing about the disk).
	Wiped *Root `json:"wiped,omitempty"`
}

// Root is what a host's RootMarkerPath says: the image written to which disk, for which Host.
type Root struct {
	// Image is the sha256 of the image written (plan.OSImage.SHA256).
	Image string `json:"image"`
	// Disk is the disk it was written to, e.g. /dev/vda, as the Plan named it (the kernel name
	// may differ on a later boot; WWN and Serial find it then).
	Disk string `json:"disk"`
	// WWN and Serial identify Disk, as the Plan did (plan.OSImage); empty when it had none.
	WWN    string `json:"wwn,omitempty"`
	Serial string `json:"serial,omitempty"`
	// Host is "<namespace>/<name>" of the Host it was written for.
	Host string `json:"host,omitempty"`
}

// StepResult is the outcome of one step of an apply.
type StepResult struct {
	// Step names it: "file:/etc/...", "artifact:etcd", "service:etcd", "route:10.244.1.0/24".
	Step string `json:"step"`
	// OK is true when the step converged.
	OK bool `json:"ok"`
	// Error is the error text when it did not.
	Error string `json:"error,omitempty"`
}

// ComponentHealth is the last probe result of one service.
type ComponentHealth struct {
	Name    string    `json:"name"`
	Healthy bool      `json:"healthy"`
	Message string    `json:"message,omitempty"`
	Time    time.Time `json:"time"`
}

// Hardware is what the agent found on its host.
type Hardware struct {
	CPUs        int32      `json:"cpus"`
	MemoryBytes int64      `json:"memoryBytes"`
	Disks       []Disk     `json:"disks,omitempty"`
	NICs        []NIC      `json:"nics,omitempty"`
	System      SystemInfo `json:"system"`
	// OS holds facts about the operating system the host runs, read together with the
	// hardware; nil from an agent that does not report them.
	OS *OSFacts `json:"os,omitempty"`
}

// OSFacts are what the agent found about its host's operating system; the manager records them
// in Host.status.os, and a node's Plan depends on them.
type OSFacts struct {
	// Container is true when the host is a container (/.dockerenv or /run/.containerenv exists,
	// PID 1 has a container= environment variable, or PID 1's cgroup is a container runtime's).
	Container bool `json:"container"`
	// SystemdPID1 is true when systemd is PID 1 and booted the host (/run/systemd/system exists).
	SystemdPID1 bool `json:"systemdPID1"`
	// CgroupVersion is 2 on the unified hierarchy, 1 on the legacy or hybrid one, 0 when unknown.
	CgroupVersion int `json:"cgroupVersion,omitempty"`
	// Nameservers are the DNS servers the host resolves names with that a pod can reach too:
	// those of systemd-resolved's upstream list (/run/systemd/resolve/resolv.conf) when it
	// exists, else of /etc/resolv.conf, without loopback addresses (a local stub such as
	// 127.0.0.53 is the pod's own loopback inside a pod); at most MaxNameservers.
	Nameservers []string `json:"nameservers,omitempty"`
}

// MaxNameservers bounds OSFacts.Nameservers, as the resolver library reads at most three.
const MaxNameservers = 3

// Disk is a block device.
type Disk struct {
	Name      string `json:"name"`
	SizeBytes int64  `json:"sizeBytes"`
	Model     string `json:"model,omitempty"`
	Serial    string `json:"serial,omitempty"`
	// WWN is the World Wide Name: "0x" and hex digits for SCSI and SATA disks (udev's ID_WWN),
	// the kernel's wwid for NVMe ("eui.…", "nvme.…"); empty when the disk has none.
	WWN string `json:"wwn,omitempty"`
	// ByPath is the disk's path on its bus as udev names it under /dev/disk/by-path, e.g.
	// pci-0000:00:1f.2-ata-1.0; empty when the bus is not one the agent knows.
	ByPath     string `json:"byPath,omitempty"`
	Rotational bool   `json:"rotational,omitempty"`
}

// NIC is a network interface.
type NIC struct {
	Name      string   `json:"name"`
	MAC       string   `json:"mac,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
	SpeedMbps int32    `json:"speedMbps,omitempty"`
}

// SystemInfo is DMI system information.
type SystemInfo struct {
	Vendor  string `json:"vendor,omitempty"`
	Product string `json:"product,omitempty"`
	Serial  string `json:"serial,omitempty"`
}

// Bootstrap is what an agent needs to start: where the manager is, which CA to trust, and its
// one-time token. The SSH installer writes it to BootstrapPath; an iPXE script passes it on the
// kernel command line.
type Bootstrap struct {
	// Server is the base URL of the agent API, e.g. https://172.28.0.1:9443.
	Server string `json:"server"`
	// CA is the PEM CA that signs the agent API's serving certificate.
	CA []byte `json:"ca"`
	// Token is the one-time bootstrap token.
	Token string `json:"token"`
}

// Paths on the host.
const (
	// BootstrapPath holds the Bootstrap JSON until registration succeeds.
	BootstrapPath = "/etc/basalt/agent/bootstrap.json"
	// StateDir holds the agent's key, certificate, pinned CA and last applied Plan.
	StateDir = "/var/lib/basalt/agent"
	// RootMarkerPath is the JSON Root the agent writes last into a root filesystem it put on
	// a local disk: its presence says the host runs from that disk (the PXE initramfs /init
	// switches only to a filesystem that has it).
	RootMarkerPath = "/etc/basalt/root.json"
)
