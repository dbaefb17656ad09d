// Package host reconciles Host objects: the machines Basalt may install Kubernetes onto, and
// answers the PXE services for the network-booted ones (NetBoot).
//
// A Host moves through an explicit state machine (see basaltv1.HostState), one handler per state
// in stateHandlers:
//
//	Registering ─► Inspecting ─► Available ─► Provisioning ─► Provisioned
//	               (agent         (hardware     (status.         (agent         │ Machine deleted
//	               registered)    reported,     consumerRef      connected)     │ or released
//	                              accepted)     set by a claim)                 ▼
//	                                  ▲                                    Deprovisioning
//	                                  └──────── consumer gone ◄─────────────────┘
//	Available ─► Inspecting when spec.accepted turns false (out of the pool)
//	(any) → Error
//
// How the agent arrives: over SSH (installAgent, with a one-time token from the Bootstrapper), or,
// for spec.boot Hosts, in the initramfs the host PXE-boots: NetBoot (pxe/dhcp's Reservations and
// pxe/httpboot's Scripts) finds the Host by MAC address through the manager's cache (MACIndex)
// and puts a fresh one-time token on the agent's kernel command line each time it serves a
// script. With discovery, an unknown netbooting MAC address becomes a Host with
// spec.accepted=false: inspected, never Available until accepted.
//
// What a claimed Host runs: an SSH Host keeps its own system, so it is Provisioned as soon as its
// agent is connected and the Machine's Plan does the rest. A network-booted Host, when the
// manager has a root image (RootImage, --pxe-root-image), first gets that image written to a
// local disk by its agent (provisionDisk stores a Plan with only the OS; the disk is chosen by
// spec.boot.rootDeviceHints among the reported disks, host_disk_hints.go, and recorded with its
// WWN and serial, which the agent checks), reboots into it, and is Provisioned when its agent
// reports running from that disk; without a root image it runs from the network. Which
// controller writes a Host's Plan in which state is written down in agents/planstore.
//
// Deprovisioning waits for the Machine controller, which has the agent apply the empty Plan
// (wiping what Basalt wrote; an agent running from a disk Basalt wrote also wipes that disk and
// boots from the network again) before it releases the Host; then the Host is Available. Only
// Available, unclaimed Hosts are claimed (controllers/hostclaim), so a Host is never claimed
// twice. A BMC (spec.bmc) powers network-booted Hosts on with a one-time network boot, and
// power-cycles a Host on request (annotation basalt.dev/power-cycle, also remediation's first
// step).
//
// The controller also owns the finalizer, releases claims whose Machine is gone, and refuses to
// let a Host in use disappear under its Machine.
package host
