// Package bmc controls a machine's power and boot device through its baseboard management
// controller, over Redfish (github.com/stmcginnis/gofish) or IPMI v2.0 "lanplus"
// (github.com/bougou/go-ipmi). Those libraries stay inside this package: callers see the narrow
// PowerController and BootController interfaces and this package's own small types.
//
// A Controller is built from a Host's spec.bmc and the Secret it names (ForHost), or from a
// Config (New). Credentials come only from Secrets: "username", "password", and for Redfish an
// optional "ca.crt" that the BMC's certificate must chain to. Redfish certificates are verified
// by default.
//
// Every call opens its own session, acts and logs out, bounded by Config.Timeout (30 seconds by
// default) and the caller's context. Failures are *Error values whose Reason says what to fix
// (CredentialsInvalid, AddressInvalid, Unreachable, AuthenticationFailed, CertificateInvalid,
// ProtocolError) and whose message names the key, address or setting concerned; they never carry
// the password.
//
// Operations are idempotent where the protocol allows: PowerOn on a machine that is on, and
// PowerOff on one that is off, succeed without acting. PowerCycle resets a machine that is on and
// turns on one that is off, which is what remediation needs.
//
// The tests drive real protocol servers: a Redfish service (pxe/bmc/bmcsim) in front of a QEMU
// VM controlled over QMP, and OpenIPMI's ipmi_sim whose chassis control drives the same kind of
// VM.
package bmc
