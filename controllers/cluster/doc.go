// Package cluster reconciles Cluster objects.
//
// For each Cluster the controller keeps one Machine per desired control-plane replica and per
// worker-pool replica, binds each Machine to an Available Host matching the group's selector
// (never one Host twice: claims go through package hostclaim with an optimistic lock), deletes
// Machines the spec no longer asks for (the control plane one at a time), and on deletion removes
// every Machine before letting the Cluster go.
//
// Status is honest about what is not built yet: CertificatesReady, EtcdReady, ControlPlaneReady
// and WorkersReady are False with reason NotImplemented, so Ready is never True in this release.
// HostsBound says how many Hosts each group is missing.
package cluster
