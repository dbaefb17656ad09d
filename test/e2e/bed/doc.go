// Package bed is the multi-host test bed of Basalt's end-to-end suites: it starts hosts as Docker
// containers from the node image (hack/node-image.sh), each with its own IP address on a bridge
// network of its own, systemd as PID 1 and sshd with a host key generated for that run.
//
// A Bed is what a test gets from New: the hosts, their pinned SSH host keys and the client key
// they accept for root. The test process reaches every host directly on the bridge, so SSH, etcd
// clients or an agent API all work without port mappings. Faults are container operations:
// Host.Stop and Host.Kill take a host down, Host.Disconnect cuts it off the network with its
// address kept for Host.Reconnect.
//
// Everything a run creates (containers, the network, volumes) carries the label
// basalt.dev/testbed=<run ID>; Bed.Close removes it all, and New first removes what runs whose
// process died left behind. Cleanup (and hack/testbed-clean.sh) removes every run's leftovers.
//
// The bed drives the docker CLI with os/exec; it needs no registry, only the Docker engine and
// the node image, which EnsureImage builds when it is missing. See docs/testbed.md.
package bed
