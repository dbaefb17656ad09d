// Package ssh installs the Basalt agent on a host that already runs an operating system, over SSH
// (golang.org/x/crypto/ssh). Import it as agentssh next to golang.org/x/crypto/ssh.
//
// The manager never runs commands on hosts one by one: SSH is only how an agent gets onto a
// machine. Install puts the agent binary, its bootstrap (manager URL, pinned CA, one-time token)
// and a service definition on the host and starts the agent; from then on the agent speaks the
// agent protocol (agents/protocol) and SSH is not used again until Uninstall.
//
// # Host key policy
//
// The host key is checked in the HostKeyCallback, during the key exchange, before
// authentication and before any byte of the agent is sent:
//
//	PinnedKeys non-empty  → the presented key must be one of them        (spec.ssh.hostKeys)
//	else RecordedKey set  → the presented key must equal it              (status.sshHostKey)
//	else                  → accept, and return it in InstallResult.HostKey to be recorded
//	                        (trust on first use; enforced from then on)
//
// A mismatch is a *HostKeyMismatchError naming both SHA256 fingerprints.
//
// # What Install does on the host
//
// Every command runs as root: directly when Target.User is root, through `sudo -n` otherwise.
//
//  1. Probe: architecture, whether systemd is PID 1 (/run/systemd/system exists), the sha256 of
//     an installed agent binary and unit, whether the agent has registered (protocol.CertFile
//     exists) and whether it runs.
//  2. Binary: only when the host's sha256 differs, streamed over the session's stdin to a
//     temporary file next to protocol.AgentBinaryPath, checked with sha256sum on the host, then
//     renamed into place. A mismatch leaves the old binary untouched.
//  3. Bootstrap: only while the agent has not registered, written 0600 (directory 0700) to
//     protocol.BootstrapPath through a temporary file and a rename. Once the agent holds a
//     certificate, the token passed to Install is not written (InstallResult.BootstrapWritten is
//     false) and the caller should revoke it.
//  4. Service: with systemd, the unit protocol.AgentUnit (rewritten only when it changed),
//     `systemctl daemon-reload`, `systemctl enable`, then `restart` when the binary, unit or
//     bootstrap changed and `start` otherwise. Without systemd (containers, minimal systems) the
//     agent is started detached with `setsid nohup`, its pid in protocol.AgentPIDFile and its
//     output in protocol.AgentLogFile; a running agent is restarted only when something changed.
//
// A second Install with the same binary uploads nothing and leaves a running agent running.
//
// Uninstall stops the agent (systemd unit or pidfile process) and removes protocol.InstalledPaths.
//
// Uploads go over the session's stdin rather than SFTP: it works through `sudo -n` for a
// non-root user, needs no sftp-server on the host, and the checksum is verified by the same
// shell step that renames the file into place. The host needs a POSIX sh, sha256sum, mkdir, mv,
// cat, and setsid (util-linux) where systemd is not PID 1.
package ssh
