package topology

import basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"

// RunningVersion is the version the cluster runs (status.version), or spec.version for a
// cluster that never ran. New Machines are built for it, so scaling out during an upgrade adds
// Machines of the version the others run, and the rollout moves them with the rest.
func RunningVersion(c *basaltv1.Cluster) string {
	if c.Status.Version != "" {
		return c.Status.Version
	}
	return c.Spec.Version
}

// MachineVersion is the version m is built for: its spec.version, else the cluster's running
// version. The Cluster controller's rollout and the Machine controller's Plan both read it here,
// so they never disagree about which artifact set a Machine runs.
func MachineVersion(c *basaltv1.Cluster, m *basaltv1.Machine) string {
	if m.Spec.Version != "" {
		return m.Spec.Version
	}
	return RunningVersion(c)
}
