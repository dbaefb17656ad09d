// Package machine reconciles Machine objects: one Host's membership in one Cluster.
//
// A Machine moves through phases (see basaltv1.MachinePhase and updateStatus):
//
//	Pending → Provisioning → Bootstrapping → Running → Deleting
//
// The controller links a Machine to its Cluster, claims the Host named by spec.hostRef once it is
// Available, keeps the Machine's Node in the workload cluster (created with the Machine's pod
// range before the kubelet may register, then mirrored into NodeReady), and builds the node's
// Plan with bootstrap/plan/builder from the Cluster's spec, the Host's facts, the node's
// certificates, the artifact set of its version, its pod range, its etcd record and its peers,
// storing it for the Host's agent with agents/planstore.StorePlan. PlanApplied compares the hash the
// agent reports with the stored one and carries the agent's own words when a step or a component
// fails. On deletion it waits for its etcd member to be removed, has the agent wipe the host with
// an empty Plan (bounded), and releases the Host.
package machine
