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
// Nothing is written to a host's disk yet, so a claimed Host is Provisioned as soon as its agent
// is connected, and a Provisioned network-booted host boots the agent again (its installed
// system is the agent image and its Plan). Deprovisioning waits for the Machine controller,
// which has the agent apply the empty Plan (wiping what Basalt wrote) before it releases the
// Host. Only Available, unclaimed Hosts are claimed (controllers/hostclaim), so a Host is never
// claimed twice.
//
// The controller also owns the finalizer, releases claims whose Machine is gone, and refuses to
// let a Host in use disappear under its Machine.
package host
