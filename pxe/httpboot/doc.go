// Package httpboot is the HTTP side of Basalt's PXE boot: the per-MAC iPXE scripts, the agent's
// kernel and its initramfs.
//
// # The boot chain
//
//	PXE ROM ──DHCP (pxe/dhcp)──► TFTP ipxe.efi / undionly.kpxe (pxe/tftp)
//	iPXE    ──DHCP──► GET /boot/<mac>.ipxe ──► script
//	script  ──► GET /boot/kernel, GET /boot/initramfs ──► Linux + /init (pxe/image) ──► basalt-agent
//
// # What a script does
//
// Scripts (implemented by the Host controller) says, for a MAC address, whether a Host has it,
// the Host's state, the label of its root filesystem on the local disk if provisioning writes
// one (Target.Root), and, when the host must run the agent, its bootstrap. The server turns that
// into one of four scripts (golden copies in testdata/):
//
//	no Host has the MAC              exit                  the next boot device takes over
//	Host Provisioned, Root + Agent   agent                 kernel + initramfs with basalt.root, and
//	                                                       a bootstrap only if one is given: /init
//	                                                       switches to the system on the disk
//	Host Provisioned, Diskless       agent                 kernel + initramfs with the bootstrap:
//	  + Agent                                              the agent is the installed system
//	Host Provisioned, otherwise      local_disk            UEFI: exit to the boot manager, which
//	                                                       boots the next option (the disk);
//	                                                       BIOS: sanboot --no-describe --drive 0x80
//	Host in any other state + Agent  agent                 kernel + initramfs with the bootstrap,
//	                                                       and basalt.root when Root is set
//	Host with nothing to boot        wait                  sleep, then fetch the script again
//	an agent script with a token,    refused               no token; says why, sleeps, runs DHCP
//	  not admitted (below)                                 again, fetches the script again
//
// A Provisioned host with Root boots the same kernel and initramfs with basalt.root=<label>:
// /init mounts the ext4 filesystem with that label and switches to it, where the agent already
// has its identity, so it needs no bootstrap token. While a host with Root is provisioned or
// deprovisioned its script carries both a bootstrap and basalt.root: /init uses the disk when it
// holds a finished install, else runs the agent from RAM with the token. A Provisioned host
// without Root (and not Diskless) gets local_disk, whatever else Scripts returns. Either way a
// host that boots from the network first cannot be sent back into provisioning by a stale answer,
// so there is no provisioning loop. A script that fails (download error, disk that does not boot)
// waits before it asks again or returns to the firmware, so nothing loops fast either.
//
// # Who gets a token
//
// A script that carries a bootstrap token goes only to a request from the MAC address's own
// address: Target.Address (the Host's reserved address) when set, else the address Clients (the
// DHCP server) leased to the MAC or saw it use; and at most TokenBurst at once per MAC, then one
// every TokenInterval. Scripts issues the token through AgentBoot.NewBootstrap, which the server
// calls only for an admitted request. Every other request gets the refused script, is logged
// without the token and counted by reason. See docs/pxe.md for the rule in proxy mode.
//
// # The bootstrap on the kernel command line
//
// The agent script passes the host's protocol.Bootstrap, when it has one, as three kernel
// parameters, next to initrd=initramfs (for the EFI stub), KernelArgs (consoles),
// BOOTIF=01-<mac> (the interface to configure first) and, for a host with a root filesystem on
// its disk, basalt.root=<label> (CheckRootLabel: 1 to 16 of a-z, 0-9 and -; by default
// RootLabel, basalt-root):
//
//	basalt.server=https://192.168.10.1:9443 basalt.ca=LS0tLS1CRUdJTi... basalt.token=abc123.0123456789abcdef
//
// basalt.ca is the PEM in standard base64, exactly as encoding/json writes Bootstrap.CA, so the
// initramfs /init writes protocol.BootstrapPath as {"server":"…","ca":"…","token":"…"} without
// decoding anything; every value is limited to characters that need no escaping in JSON, iPXE or
// the kernel (see BootstrapArgs, ParseBootstrapArgs). With an ECDSA CA the command line is about
// 1,100 bytes; MaxCommandLine (2,000) is checked.
//
// Tokens stay out of logs: the server logs the MAC, the Host, its state and the action, never a
// script; errors about a bootstrap never quote the token; scripts are sent with Cache-Control:
// no-store and only for GET (HEAD is refused, since a script may issue a token). The token is on
// the host's kernel command line (/proc/cmdline, the boot console) until the agent registers, and
// it crosses the provisioning network in clear, since Debian's iPXE has no HTTPS: the token is
// single-use and short-lived, and the provisioning network must be one you trust.
//
// # Metrics
//
// basalt_pxe_http_requests_total{path,code} (path: script, kernel, initramfs, other),
// basalt_pxe_http_scripts_total{action} and basalt_pxe_http_scripts_refused_total{reason}
// (wrong_address, no_address, rate_limited).
package httpboot
