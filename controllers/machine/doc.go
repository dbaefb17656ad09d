// Package machine reconciles Machine objects: one Host's membership in one Cluster.
//
// A Machine moves through phases (see basaltv1.MachinePhase):
//
//	Pending → Provisioning → Bootstrapping → Running → Deleting
//	  (any) ─────────────────────────────────────────→ Failed (with reason)
//
// Today the controller links a Machine to its Cluster (label and owner reference), claims the
// Host named by spec.hostRef once that Host is Available, and releases it on deletion. Installing
// the agent, applying Plans and reading the Node are not built yet: the Machine then stays in
// Provisioning with AgentConnected=False and reason NotImplemented, never a fake Ready.
package machine
