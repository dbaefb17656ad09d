package v1alpha1

import (
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HostFinalizer is set on every Host so that a host still consumed by a Machine, or still
// carrying Basalt's files, is released and wiped before the object goes away.
const HostFinalizer = "basalt.dev/host"

// Host condition types.
const (
	// HostAgentConnected is True when the host's agent has registered and reported within its
	// deadline.
	HostAgentConnected = "AgentConnected"
	// HostInspected is True when the agent has reported hardware facts.
	HostInspected = "Inspected"
	// HostKeyVerified is True when the SSH host key the host presented matches
	// spec.ssh.hostKeys, or the key recorded on first contact.
	HostKeyVerified = "HostKeyVerified"
)

// Host condition reasons.
const (
	// ReasonHostKeyNotPinned says the manager requires pinned SSH host keys
	// (--ssh-require-pinned-host-keys) and the Host has none in spec.ssh.hostKeys.
	ReasonHostKeyNotPinned = "HostKeyNotPinned"
	// ReasonHostKeyMismatch says the host presented a key that is neither pinned nor recorded.
	// Provisioning stops until the key is pinned or the recorded key is cleared.
	ReasonHostKeyMismatch = "HostKeyMismatch"
	// ReasonAgentNotInstalled says no agent has registered from this host yet.
	ReasonAgentNotInstalled = "AgentNotInstalled"
	// ReasonWaitingForAgent says the agent was installed and has not registered yet.
	ReasonWaitingForAgent = "WaitingForAgent"
	// ReasonSSHKeyInvalid says the SSH private key Secret is missing, incomplete or unusable.
	ReasonSSHKeyInvalid = "SSHKeyInvalid"
	// ReasonInstallFailed says installing the agent over SSH failed; the message has the error.
	ReasonInstallFailed = "InstallFailed"
	// ReasonAgentSilent says the agent has not reported within its deadline.
	ReasonAgentSilent = "AgentSilent"
	// ReasonInspecting says the agent registered and its hardware report is awaited.
	ReasonInspecting = "Inspecting"
	// ReasonInspectionFailed says the agent registered but reported no hardware facts in time;
	// the Host is in Error until basalt.dev/reprovision restarts it.
	ReasonInspectionFailed = "InspectionFailed"
	// ReasonWaitingForNetBoot says a network-booted Host's agent has not registered yet: the
	// machine has to PXE-boot (power it on, or set it to boot from the network).
	ReasonWaitingForNetBoot = "WaitingForNetBoot"
	// ReasonNetBootDisabled says the manager runs without its PXE services, so a network-booted
	// Host cannot get its agent.
	ReasonNetBootDisabled = "NetBootDisabled"
	// ReasonNotAccepted says the Host (typically a discovered one) waits for spec.accepted=true
	// before it may become Available.
	ReasonNotAccepted = "NotAccepted"
)

// HostDiskProvisioned is True when a network-booted Host runs from the root filesystem image
// written to its local disk; it is present only while something is, or is to be, on the disk.
const HostDiskProvisioned = "DiskProvisioned"

// DiskProvisioned reasons (besides ReasonReady).
const (
	// ReasonWritingImage says the agent writes the root filesystem image and reboots into it.
	ReasonWritingImage = "WritingImage"
	// ReasonNoRootDisk says no disk of the Host holds the image and matches
	// spec.boot.rootDeviceHints; the message says why each reported disk does not.
	ReasonNoRootDisk = "NoRootDisk"
	// ReasonWipingDisk says the agent is to wipe the image from the disk and boot the network.
	ReasonWipingDisk = "WipingDisk"
)

// HostAccepted is True when spec.accepted allows the Host to become Available.
const HostAccepted = "Accepted"

// HostWiped says whether what a former consumer left on the Host (its node's services and
// files, etcd data, the root image on disk) is gone. It is present from the moment a Machine lets
// the Host go until the next Machine claims it: False while the agent wipes or while nobody can
// confirm the wipe (state Unwiped), True once the agent confirmed it (or an operator vouched for
// it with basalt.dev/confirm-wiped). Only a Host whose wipe is confirmed becomes Available.
const HostWiped = "Wiped"

// Wiped reasons.
const (
	// ReasonWiping says the agent is connected and removing what the former Plan wrote (it
	// applies the empty Plan; a network-booted Host also wipes its disk and boots the network).
	ReasonWiping = "Wiping"
	// ReasonWipeNotConfirmed says the agent is silent, so nothing confirms that the former
	// consumer's state is gone: the Host stays out of the pool (Unwiped) until its agent comes
	// back and wipes it, or an operator annotates basalt.dev/confirm-wiped.
	ReasonWipeNotConfirmed = "WipeNotConfirmed"
	// ReasonWipeConfirmed says the agent reported that it runs no Plan of a former consumer.
	ReasonWipeConfirmed = "WipeConfirmed"
	// ReasonWipeOverridden says an operator vouched for the wipe with basalt.dev/confirm-wiped.
	ReasonWipeOverridden = "WipeOverridden"
)

// LabelDiscovered is set to "true" on Hosts the manager created for a machine that PXE-booted
// with a MAC address no Host had (discovery).
const LabelDiscovered = "basalt.dev/discovered"

// HostState is where a Host is in its life:
//
//	Registering → Inspecting → Available → Provisioning → Provisioned
//	                               ▲                           │
//	                               ├────── Deprovisioning ◄────┘
//	                               │      agent back ▲  │ agent silent
//	                               │                 │  ▼
//	                               └─ confirm-wiped ─ Unwiped
//	(any) → Error (with reason; an annotation retries)
//
// Only a Host whose agent confirmed that it runs no former consumer's Plan becomes Available
// (condition Wiped); basalt.dev/confirm-wiped is the operator's override for an Unwiped Host.
//
// +kubebuilder:validation:Enum=Registering;Inspecting;Available;Provisioning;Provisioned;Deprovisioning;Unwiped;Error
type HostState string

// Host states.
const (
	HostStateRegistering    HostState = "Registering"
	HostStateInspecting     HostState = "Inspecting"
	HostStateAvailable      HostState = "Available"
	HostStateProvisioning   HostState = "Provisioning"
	HostStateProvisioned    HostState = "Provisioned"
	HostStateDeprovisioning HostState = "Deprovisioning"
	HostStateUnwiped        HostState = "Unwiped"
	HostStateError          HostState = "Error"
)

// BootMode is the firmware a network-booted host starts with.
// +kubebuilder:validation:Enum=uefi;bios
type BootMode string

// Boot modes.
const (
	BootModeUEFI BootMode = "uefi"
	BootModeBIOS BootMode = "bios"
)

// BMCProtocol is how Basalt talks to a host's baseboard management controller.
// +kubebuilder:validation:Enum=redfish;ipmi
type BMCProtocol string

// BMC protocols.
const (
	BMCRedfish BMCProtocol = "redfish"
	BMCIPMI    BMCProtocol = "ipmi"
)

// HostSpec is the desired state of a Host: how Basalt reaches it.
//
// +kubebuilder:validation:XValidation:rule="has(self.ssh) != has(self.boot)",message="a Host must set exactly one of spec.ssh (a machine with an OS, reached over SSH) or spec.boot (a machine booted over the network)"
type HostSpec struct {
	// ssh reaches a machine that already runs an operating system.
	// +optional
	SSH *SSHSpec `json:"ssh,omitempty"`

	// boot describes a machine that boots from the network (PXE/iPXE).
	// +optional
	Boot *BootSpec `json:"boot,omitempty"`

	// bmc is the host's baseboard management controller, for power and boot-device control.
	// +optional
	BMC *BMCSpec `json:"bmc,omitempty"`

	// accepted lets the Host become Available, and so be claimed by a Cluster. It defaults to
	// true; Hosts the manager discovers (an unknown MAC address that PXE-booted) are created
	// with false, so an operator looks at their hardware (status.hardware) and accepts them:
	// kubectl patch host <name> --type merge -p '{"spec":{"accepted":true}}'.
	// Setting it to false on an Available Host takes it out of the pool; a Host already in use
	// stays with its Machine.
	// +kubebuilder:default=true
	// +optional
	Accepted *bool `json:"accepted,omitempty"`

	// os declares facts about the host's operating system that decide how Kubernetes runs on it.
	// A field set here wins over what the agent reports in status.os; a field set in neither
	// takes the safe default (not a container, cgroupfs driver).
	// +optional
	OS *OSFacts `json:"os,omitempty"`
}

// OSFacts are the facts about a host's operating system that a node's Plan depends on.
type OSFacts struct {
	// container says the host is a container (a test-bed host, a system container) rather than a
	// machine: the kubelet then tolerates swap and leaves disk eviction, and kube-proxy leaves the
	// kernel's conntrack settings, to the machine that runs the container.
	// +optional
	Container *bool `json:"container,omitempty"`
	// systemdPID1 says systemd is PID 1 on the host.
	// +optional
	SystemdPID1 *bool `json:"systemdPID1,omitempty"`
	// cgroupVersion is the cgroup hierarchy the host runs, 1 or 2. The kubelet and containerd use
	// the systemd cgroup driver only with systemd as PID 1 and cgroup v2, cgroupfs otherwise.
	// +kubebuilder:validation:Enum=1;2
	// +optional
	CgroupVersion int32 `json:"cgroupVersion,omitempty"`
	// nameservers are the DNS servers the host resolves with that pods can reach (no loopback
	// stub such as systemd-resolved's 127.0.0.53: its upstream list instead). The cluster DNS
	// forwards names outside the cluster to the control-plane Hosts' nameservers unless
	// spec.addons.dns.upstreams of the Cluster names others.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=3
	// +kubebuilder:validation:items:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="self.all(a, isIP(a) && !ip(a).isLoopback())",message="nameservers must be IP addresses a pod can reach (no loopback such as 127.0.0.53)"
	// +optional
	Nameservers []string `json:"nameservers,omitempty"`
}

// SSHSpec says how to reach a host over SSH.
type SSHSpec struct {
	// address is the host's IP address or DNS name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="isIP(self) || self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="spec.ssh.address must be an IP address or a lowercase DNS name"
	// +required
	Address string `json:"address"`

	// port of the SSH server.
	// +kubebuilder:default=22
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`

	// user to log in as; it must be root or have password-less sudo.
	// +kubebuilder:default=root
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z_][a-z0-9_-]*[$]?$')",message="spec.ssh.user must be a POSIX user name such as root or basalt"
	// +optional
	User string `json:"user,omitempty"`

	// privateKeySecretRef names the Secret key holding the PEM or OpenSSH private key.
	// +required
	PrivateKeySecretRef SecretKeyReference `json:"privateKeySecretRef"`

	// hostKeys pins the host's SSH public keys, in authorized_keys format
	// ("ssh-ed25519 AAAA..."). When empty, the key seen on first contact is recorded in
	// status.sshHostKey and enforced from then on.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=16384
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|ssh-rsa) [A-Za-z0-9+/]+={0,3}( .*)?$')",message="each spec.ssh.hostKeys entry must be a public key in authorized_keys format, e.g. 'ssh-ed25519 AAAAC3Nza...' (see ssh-keyscan)"
	// +optional
	HostKeys []string `json:"hostKeys,omitempty"`
}

// BootSpec describes a network-booted host.
//
// +kubebuilder:validation:XValidation:rule="!has(self.gateway) || (has(self.address) && cidr(self.address).containsIP(self.gateway))",message="spec.boot.gateway needs spec.boot.address and must be inside its subnet"
// +kubebuilder:validation:XValidation:rule="!has(self.rootDisk) || !has(self.rootDeviceHints) || !has(self.rootDeviceHints.deviceName)",message="spec.boot.rootDisk is the older name of spec.boot.rootDeviceHints.deviceName: set only rootDeviceHints.deviceName"
type BootSpec struct {
	// macAddresses of the host's network interfaces that may PXE-boot.
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=17
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^[0-9a-f]{2}(:[0-9a-f]{2}){5}$')",message="each spec.boot.macAddresses entry must be six lowercase hex pairs separated by colons, e.g. 52:54:00:12:34:56"
	// +required
	MACAddresses []string `json:"macAddresses"`

	// mode is the firmware the host boots with.
	// +kubebuilder:default=uefi
	// +optional
	Mode BootMode `json:"mode,omitempty"`

	// address is the IPv4 address with prefix length (e.g. 192.168.10.21/24) that the manager's
	// DHCP server leases to this host in full mode. Empty: an address from the discovery pool
	// (full mode) or from the site's DHCP server (proxy mode).
	// +kubebuilder:validation:MaxLength=18
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self).ip().family() == 4",message="spec.boot.address must be an IPv4 address with its prefix length, e.g. 192.168.10.21/24"
	// +optional
	Address string `json:"address,omitempty"`

	// gateway is the default router sent with address (DHCP option 3); optional.
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="spec.boot.gateway must be an IPv4 address, e.g. 192.168.10.1"
	// +optional
	Gateway string `json:"gateway,omitempty"`

	// rootDisk is the disk, by its kernel name (e.g. sda, vda, nvme0n1), that the manager's
	// root filesystem image is written to when the Host is provisioned (manager flag
	// --pxe-root-image). Empty: the smallest disk the agent reported that holds the image.
	//
	// Deprecated: use rootDeviceHints.deviceName, which it is the same as; rootDisk is still
	// honoured. Kernel names are renumbered across boots: prefer rootDeviceHints.wwn,
	// serialNumber or byPath.
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z][a-z0-9]*$')",message="spec.boot.rootDisk must be a disk's kernel name such as sda, vda or nvme0n1, without /dev/"
	// +optional
	RootDisk string `json:"rootDisk,omitempty"`

	// rootDeviceHints select the disk the root filesystem image is written to, among the disks
	// the agent reported (status.hardware.disks): every hint given must match, and of the disks
	// that match, the smallest that holds the image is taken (ties by name). Unset: the
	// smallest disk that holds the image.
	// +optional
	RootDeviceHints *RootDeviceHints `json:"rootDeviceHints,omitempty"`

	// eraseExistingDisk lets provisioning overwrite a disk that holds a partition table, a
	// filesystem, RAID or LVM metadata. Off by default: the agent refuses such a disk and says
	// what it found, so a disk with data is never overwritten by mistake. A disk that holds
	// only what Basalt itself wrote (a write that was interrupted) needs no permission.
	// +optional
	EraseExistingDisk bool `json:"eraseExistingDisk,omitempty"`
}

// RootDeviceHints select a Host's root disk by what the agent reports about its disks. Every
// hint given must match; string hints compare with the values in status.hardware.disks.
//
// +kubebuilder:validation:XValidation:rule="has(self.deviceName) || has(self.minSizeGigabytes) || has(self.model) || has(self.serialNumber) || has(self.wwn) || has(self.byPath) || has(self.rotational)",message="spec.boot.rootDeviceHints must set at least one of deviceName, minSizeGigabytes, model, serialNumber, wwn, byPath or rotational; remove it to take the smallest disk that holds the image"
type RootDeviceHints struct {
	// deviceName is the disk's kernel name, e.g. sda or /dev/nvme0n1. Kernel names can change
	// from one boot to the next; the disk chosen is recorded by its WWN and serial number too.
	// +kubebuilder:validation:MaxLength=37
	// +kubebuilder:validation:XValidation:rule="self.matches('^(/dev/)?[a-z][a-z0-9]*$')",message="spec.boot.rootDeviceHints.deviceName must be a disk's kernel name such as sda, vda or nvme0n1 (with or without /dev/); to name a disk by a stable identity use wwn, serialNumber or byPath"
	// +optional
	DeviceName string `json:"deviceName,omitempty"`

	// minSizeGigabytes is the smallest size the disk may have, in GiB (2^30 bytes).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1048576
	// +optional
	MinSizeGigabytes int32 `json:"minSizeGigabytes,omitempty"`

	// model must be contained in the disk's model (status.hardware.disks[].model); case
	// matters.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +optional
	Model string `json:"model,omitempty"`

	// serialNumber is the disk's serial number, exactly (status.hardware.disks[].serial).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +optional
	SerialNumber string `json:"serialNumber,omitempty"`

	// wwn is the disk's World Wide Name, exactly as status.hardware.disks[].wwn reports it:
	// 0x and hex digits for SCSI and SATA disks (udev's ID_WWN), the kernel's wwid for NVMe
	// (e.g. eui.0025388b91b12345).
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0x[0-9a-f]+|[a-z0-9]+[.][0-9a-z.-]+)$')",message="spec.boot.rootDeviceHints.wwn must be a WWN as status.hardware.disks[].wwn reports it, in lowercase, e.g. 0x5000c500a1b2c3d4 or eui.0025388b91b12345"
	// +optional
	WWN string `json:"wwn,omitempty"`

	// byPath is the disk's path on its bus, as udev names it under /dev/disk/by-path and
	// status.hardware.disks[].byPath reports it, e.g. pci-0000:00:1f.2-ata-1.0 or
	// pci-0000:01:00.0-nvme-1; the /dev/disk/by-path/ prefix may be given.
	// +kubebuilder:validation:MaxLength=160
	// +kubebuilder:validation:XValidation:rule="self.matches('^(/dev/disk/by-path/)?[a-z0-9][a-z0-9:._-]*$')",message="spec.boot.rootDeviceHints.byPath must be a /dev/disk/by-path name as status.hardware.disks[].byPath reports it, e.g. pci-0000:00:1f.2-ata-1.0"
	// +optional
	ByPath string `json:"byPath,omitempty"`

	// rotational selects spinning disks (true) or solid-state ones (false).
	// +optional
	Rotational *bool `json:"rotational,omitempty"`
}

// RootDeviceName is the kernel name (without /dev/) the Host's root disk must have, from
// rootDeviceHints.deviceName or the older rootDisk; "" when neither is set.
func (b *BootSpec) RootDeviceName() string {
	if b.RootDeviceHints != nil && b.RootDeviceHints.DeviceName != "" {
		return strings.TrimPrefix(b.RootDeviceHints.DeviceName, "/dev/")
	}
	return b.RootDisk
}

// IsAccepted says whether spec.accepted lets the Host become Available (unset means accepted).
func (s *HostSpec) IsAccepted() bool { return s.Accepted == nil || *s.Accepted }

// HostBMCReachable is True when Basalt logged in to the Host's BMC (spec.bmc) and read its
// power state; its reason says what to fix when it is False.
const HostBMCReachable = "BMCReachable"

// BMCReachable reasons (besides ReasonReady).
const (
	// ReasonBMCCredentialsInvalid says the credentials Secret is missing or lacks a key.
	ReasonBMCCredentialsInvalid = "CredentialsInvalid"
	// ReasonBMCAddressInvalid says spec.bmc.address cannot be used with spec.bmc.protocol.
	ReasonBMCAddressInvalid = "AddressInvalid"
	// ReasonBMCUnreachable says the BMC did not answer (network, port, timeout).
	ReasonBMCUnreachable = "Unreachable"
	// ReasonBMCAuthFailed says the BMC refused the user name or password.
	ReasonBMCAuthFailed = "AuthenticationFailed"
	// ReasonBMCCertificateInvalid says the Redfish BMC's TLS certificate did not verify.
	ReasonBMCCertificateInvalid = "CertificateInvalid"
	// ReasonBMCProtocolError says the BMC answered but refused or did not understand a request.
	ReasonBMCProtocolError = "ProtocolError"
)

// AnnotationPowerCycle, set on a Host, asks the Host controller to power-cycle it through its BMC
// (spec.bmc): a hard reset of a machine that is on, power on of one that is off; the boot device
// is left as it is. The value identifies the request (by convention the RFC 3339 time it was
// written): each distinct value is acted on once, and the outcome is recorded in
// status.lastPowerCycle with that value. A failed BMC call is retried with a backoff and not
// recorded; a Host without spec.bmc records the request with an error. The annotation stays;
// write a new value to power-cycle again. Cluster remediation writes it (design §6).
const AnnotationPowerCycle = "basalt.dev/power-cycle"

// BMCSpec says how to reach a host's baseboard management controller.
//
// +kubebuilder:validation:XValidation:rule="self.protocol != 'redfish' || self.address.startsWith('https://') || self.address.startsWith('redfish://')",message="a Redfish spec.bmc.address must be an https:// URL, e.g. https://10.0.0.9 or https://10.0.0.9/redfish/v1/Systems/1"
type BMCSpec struct {
	// protocol spoken by the BMC.
	// +required
	Protocol BMCProtocol `json:"protocol"`

	// address of the BMC. Redfish: an https URL, "https://bmc[:port]" when the BMC manages one
	// system, or "https://bmc[:port]/redfish/v1/Systems/<id>". IPMI (RMCP+, "lanplus"): "host",
	// "host:port" or "ipmi://host[:port]"; the port defaults to 623.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +required
	Address string `json:"address"`

	// credentialsSecretRef names a Secret in the Host's namespace with "username" and "password"
	// keys and, for Redfish, an optional "ca.crt" (PEM) that signs the BMC's certificate.
	// +required
	CredentialsSecretRef LocalObjectReference `json:"credentialsSecretRef"`

	// disableCertificateVerification accepts any certificate from a Redfish BMC. Off by default;
	// prefer putting the BMC's CA (or its self-signed certificate) under "ca.crt" in the Secret.
	// +optional
	DisableCertificateVerification bool `json:"disableCertificateVerification,omitempty"`
}

// Hardware is what the agent found on the host.
type Hardware struct {
	// cpus is the number of logical CPUs.
	// +optional
	CPUs int32 `json:"cpus,omitempty"`
	// memory is the installed memory.
	// +optional
	Memory *resource.Quantity `json:"memory,omitempty"`
	// disks found on the host.
	// +listType=atomic
	// +optional
	Disks []Disk `json:"disks,omitempty"`
	// nics found on the host.
	// +listType=atomic
	// +optional
	NICs []NIC `json:"nics,omitempty"`
	// system is the DMI system information.
	// +optional
	System SystemInfo `json:"system,omitzero"`
}

// Disk is a block device.
type Disk struct {
	Name string `json:"name"`
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`
	// +optional
	Model string `json:"model,omitempty"`
	// +optional
	Serial string `json:"serial,omitempty"`
	// wwn is the disk's World Wide Name: 0x and hex digits for SCSI and SATA disks (udev's
	// ID_WWN), the kernel's wwid for NVMe (e.g. eui.0025388b91b12345); empty when the disk has
	// none (virtio disks, most USB disks).
	// +optional
	WWN string `json:"wwn,omitempty"`
	// byPath is the disk's path on its bus as udev names it under /dev/disk/by-path, e.g.
	// pci-0000:00:1f.2-ata-1.0; derived from sysfs when the host has no udev.
	// +optional
	ByPath string `json:"byPath,omitempty"`
	// +optional
	Rotational bool `json:"rotational,omitempty"`
}

// NIC is a network interface.
type NIC struct {
	Name string `json:"name"`
	// +optional
	MAC string `json:"mac,omitempty"`
	// +listType=atomic
	// +optional
	Addresses []string `json:"addresses,omitempty"`
	// +optional
	SpeedMbps int32 `json:"speedMbps,omitempty"`
}

// SystemInfo is DMI system information.
type SystemInfo struct {
	// +optional
	Vendor string `json:"vendor,omitempty"`
	// +optional
	Product string `json:"product,omitempty"`
	// +optional
	Serial string `json:"serial,omitempty"`
}

// AgentStatus is what Basalt knows of the host's agent.
type AgentStatus struct {
	// version of the agent.
	// +optional
	Version string `json:"version,omitempty"`
	// lastSeen is when the agent last reported.
	// +optional
	LastSeen *metav1.Time `json:"lastSeen,omitempty"`
	// installedAt is when Basalt last installed the agent over SSH; a fresh token is issued only
	// if the agent has not registered some time after it.
	// +optional
	InstalledAt *metav1.Time `json:"installedAt,omitempty"`
	// root is the root filesystem on local disk the agent runs from, as it reports it; unset
	// while it runs from the network (in RAM) or from an OS Basalt did not install.
	// +optional
	Root *AgentRoot `json:"root,omitempty"`
	// written is a whole-disk image the agent has just written to a local disk and reboots into
	// (reported by the agent in RAM before its reboot): the network hands the host over to its
	// disk from then on. Cleared by the next report that does not carry it.
	// +optional
	Written *AgentRoot `json:"written,omitempty"`
	// wiped is a root image the agent has just wiped from the local disk it ran from (reported
	// before its reboot into the network): the proof that a released Host's disk holds nothing of
	// its former node. Cleared by the next report that does not carry it.
	// +optional
	Wiped *AgentRoot `json:"wiped,omitempty"`
	// planHash is the hash of the last Plan the agent applied completely, as it reports it;
	// empty before its first. A Host is wiped when it is empty or the hash of the empty Plan.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	PlanHash string `json:"planHash,omitempty"`
	// certificateSerial is the serial number (hex) of the client certificate the agent API
	// issued to this Host's agent last (registration or renewal), previousCertificateSerial the
	// one it replaced. The agent API accepts no other certificate of this Host, and renews only
	// the last one: a copy of the identity that renews first shuts the other out, which then goes
	// silent and is registered again (an SSH Host is installed again), shutting the copy out.
	// A registration clears previousCertificateSerial.
	// +kubebuilder:validation:MaxLength=40
	// +optional
	CertificateSerial string `json:"certificateSerial,omitempty"`
	// +kubebuilder:validation:MaxLength=40
	// +optional
	PreviousCertificateSerial string `json:"previousCertificateSerial,omitempty"`
}

// AgentRoot is a root filesystem image Basalt wrote to a local disk.
type AgentRoot struct {
	// image is the sha256 of the image written.
	// +kubebuilder:validation:MaxLength=64
	Image string `json:"image"`
	// disk is the disk it was written to, e.g. /dev/vda.
	// +kubebuilder:validation:MaxLength=64
	Disk string `json:"disk"`
}

// HostProvisioning is what provisioning writes, or wrote, to a network-booted Host's local disk.
type HostProvisioning struct {
	// image is the root filesystem image: its name and sha256 in the manager's artifact cache.
	Image OSImageRef `json:"image"`
	// disk is the disk the image is written to, e.g. /dev/vda, by the kernel name it had when
	// it was chosen.
	// +kubebuilder:validation:MaxLength=64
	Disk string `json:"disk"`
	// wwn of the disk when it was chosen. The agent writes, and later wipes, only a disk with
	// this WWN and serial: it finds the disk by them when its kernel name changed.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	WWN string `json:"wwn,omitempty"`
	// serial number of the disk when it was chosen.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	Serial string `json:"serial,omitempty"`
	// byPath of the disk when it was chosen, for people: where to find it in the machine.
	// +kubebuilder:validation:MaxLength=160
	// +optional
	ByPath string `json:"byPath,omitempty"`
	// format is how the image goes on the disk and boots: Disk (a whole-disk image with its own
	// partition table and boot loader: the host boots from its disk) or Filesystem (an ext4
	// filesystem on the whole disk: the host boots its kernel from the network with the root on
	// disk).
	// +optional
	Format OSImageFormat `json:"format,omitempty"`
	// writtenAt is when the agent reported the whole-disk image written (Format Disk): from then
	// on the host's network boot hands over to its local disk.
	// +optional
	WrittenAt *metav1.Time `json:"writtenAt,omitempty"`
	// wipedAt is when the agent reported the image wiped from the disk after a release; until
	// then a whole-disk Host being released boots from its disk, so that the agent there wipes
	// it even after a power loss.
	// +optional
	WipedAt *metav1.Time `json:"wipedAt,omitempty"`
	// provisionedAt is when the agent first reported running from the image on disk.
	// +optional
	ProvisionedAt *metav1.Time `json:"provisionedAt,omitempty"`
}

// OSImageFormat says how an OS image is laid out on a disk.
// +kubebuilder:validation:Enum=Disk;Filesystem
type OSImageFormat string

const (
	// OSImageFormatDisk is a whole-disk image: partition table, boot loader, root filesystem.
	OSImageFormatDisk OSImageFormat = "Disk"
	// OSImageFormatFilesystem is a bare ext4 filesystem written to the whole disk; the kernel
	// and initramfs come from the network.
	OSImageFormatFilesystem OSImageFormat = "Filesystem"
)

// OSImageRef names a root filesystem image in the manager's artifact cache.
type OSImageRef struct {
	// name of the image, e.g. basalt-root.
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// sha256 of the image's bytes as served (gzip-compressed).
	// +kubebuilder:validation:MaxLength=64
	SHA256 string `json:"sha256"`
	// size of the served bytes.
	// +optional
	Size int64 `json:"size,omitempty"`
}

// PowerState is the host's power as the BMC reports it.
// +kubebuilder:validation:Enum=On;Off;Unknown
type PowerState string

// Power states.
const (
	PowerOn      PowerState = "On"
	PowerOff     PowerState = "Off"
	PowerUnknown PowerState = "Unknown"
)

// PowerCycleRecord is the Host controller's answer to a power-cycle request
// (annotation basalt.dev/power-cycle).
type PowerCycleRecord struct {
	// request is the annotation's value this record answers.
	// +kubebuilder:validation:MaxLength=64
	// +required
	Request string `json:"request"`
	// time is when the Host was power-cycled or, when error is set, when the request was refused.
	// +required
	Time metav1.Time `json:"time"`
	// error says why the request was refused without a power cycle (the Host has no spec.bmc);
	// empty when the Host was power-cycled.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Error string `json:"error,omitempty"`
}

// RequestRecord is the Host controller's answer to a request annotation (basalt.dev/reprovision,
// basalt.dev/confirm-wiped). A request is its annotation's value: the annotation may stay on the
// Host (a GitOps tool keeps it there), and each value is acted on, or refused, once.
type RequestRecord struct {
	// request is the annotation's value this record answers.
	// +kubebuilder:validation:MaxLength=64
	// +required
	Request string `json:"request"`
	// time is when the request was acted on or refused.
	// +required
	Time metav1.Time `json:"time"`
	// error says why the request was refused; empty when it was acted on.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Error string `json:"error,omitempty"`
}

// HostStatus is the observed state of a Host.
type HostStatus struct {
	// state is where the Host is in its life.
	// +optional
	State HostState `json:"state,omitempty"`

	// conditions: Ready, AgentConnected, Inspected, Accepted, HostKeyVerified.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// consumerRef names the Machine that uses this Host.
	// +optional
	ConsumerRef *LocalObjectReference `json:"consumerRef,omitempty"`

	// sshHostKey is the SSH host key recorded on first contact when spec.ssh.hostKeys is empty.
	// +optional
	SSHHostKey string `json:"sshHostKey,omitempty"`

	// hardware reported by the agent.
	// +optional
	Hardware *Hardware `json:"hardware,omitempty"`

	// os is what the agent found about the host's operating system; spec.os overrides it.
	// +optional
	OS *OSFacts `json:"os,omitempty"`

	// agent is what Basalt knows of the host's agent.
	// +optional
	Agent AgentStatus `json:"agent,omitzero"`

	// provisioning is the root filesystem image written, or being written, to the local disk
	// of a network-booted Host; unset when nothing is (the Host runs from the network) and
	// again once deprovisioning has wiped it.
	// +optional
	Provisioning *HostProvisioning `json:"provisioning,omitempty"`

	// power as the BMC reports it.
	// +optional
	Power PowerState `json:"power,omitempty"`

	// lastPowerCycle is the last power-cycle request (annotation basalt.dev/power-cycle) the
	// Host controller answered: done when its error is empty, refused otherwise.
	// +optional
	LastPowerCycle *PowerCycleRecord `json:"lastPowerCycle,omitempty"`

	// lastReprovision is the last reprovision request (annotation basalt.dev/reprovision) the
	// Host controller acted on.
	// +optional
	LastReprovision *RequestRecord `json:"lastReprovision,omitempty"`

	// lastWipeConfirmation is the last wipe confirmation (annotation basalt.dev/confirm-wiped)
	// the Host controller answered: acted on when its error is empty, refused otherwise (the
	// Host waited for no wipe).
	// +optional
	LastWipeConfirmation *RequestRecord `json:"lastWipeConfirmation,omitempty"`

	// errorMessage says why the Host is in Error.
	// +optional
	ErrorMessage string `json:"errorMessage,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=bh,categories=basalt
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.status.state`
// +kubebuilder:printcolumn:name="Consumer",type=string,JSONPath=`.status.consumerRef.name`
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.ssh.address`
// +kubebuilder:printcolumn:name="MAC",type=string,JSONPath=`.spec.boot.macAddresses[0]`,priority=1
// +kubebuilder:printcolumn:name="Accepted",type=boolean,JSONPath=`.spec.accepted`,priority=1
// +kubebuilder:printcolumn:name="CPUs",type=integer,JSONPath=`.status.hardware.cpus`,priority=1
// +kubebuilder:printcolumn:name="Memory",type=string,JSONPath=`.status.hardware.memory`,priority=1
// +kubebuilder:printcolumn:name="Power",type=string,JSONPath=`.status.power`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Error",type=string,JSONPath=`.status.errorMessage`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.spec.ssh) || !has(self.spec.ssh) || !has(self.status) || !has(self.status.consumerRef) || self.spec.ssh.address == oldSelf.spec.ssh.address",message="spec.ssh.address cannot change while the Host is bound (status.consumerRef): it is the node's address, in its certificates and its etcd peer URL. Release the Host first (scale its pool down or delete its Machine), then change the address"

// Host is a machine Basalt may install Kubernetes onto.
type Host struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitzero"`

	// +required
	Spec HostSpec `json:"spec"`
	// The default makes a new object's status.observedGeneration 0, behind its generation (1),
	// until the manager first reconciles it: GitOps tools (kstatus) see it InProgress, not
	// Current, from the first apply.
	// +kubebuilder:default={observedGeneration: 0}
	// +optional
	Status HostStatus `json:"status,omitzero"`
}

// +kubebuilder:object:root=true

// HostList is a list of Hosts.
type HostList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitzero"`
	Items           []Host `json:"items"`
}

// GetConditions returns the Host's conditions.
func (h *Host) GetConditions() []metav1.Condition { return h.Status.Conditions }

// SetConditions replaces the Host's conditions.
func (h *Host) SetConditions(conds []metav1.Condition) { h.Status.Conditions = conds }

// SSHAddresses returns the addresses Basalt reaches the host at, if it is an SSH host.
func (s *HostSpec) SSHAddresses() []string {
	if s.SSH == nil {
		return nil
	}
	return []string{s.SSH.Address}
}
