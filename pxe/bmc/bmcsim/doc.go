// Package bmcsim gives tests real BMC protocol servers in front of real (or inspectable) machines:
//
//   - Machine: a QEMU VM (TCG, blank disk, virtio NIC, serial console) driven over QMP the way a
//     BMC drives a server: power, reset, and a boot order set from a boot override.
//   - Redfish: a small Redfish service (service root, sessions, HTTP Basic, one ComputerSystem
//     with PowerState, Boot override PATCH and the Reset action) in front of a System; serve it
//     over TLS with net/http/httptest.
//   - IPMISim: OpenIPMI's ipmi_sim (RMCP+ on loopback) whose chassis control drives a System, and
//     which QEMU's external BMC device (ipmi-bmc-extern) can connect to.
//   - MemorySystem: an in-process System with inspectable state (power, boots, resets) for
//     protocol-level tests that need no VM.
//
// pxe/bmc's tests use it; the PXE end-to-end suite can power a VM on and set it to PXE through
// either protocol the same way. QEMU and ipmi_sim come from Debian (qemu-system-x86, openipmi):
// pxe/image/ensure-debs.sh installs them.
package bmcsim
