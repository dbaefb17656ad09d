// Package cluster reconciles Cluster objects.
//
// For each Cluster the controller, in one reconcile, runs these phases in order:
//
//	reconcileMachines      one Machine per desired control-plane and worker-pool replica (created
//	                       with the cluster's running version pinned in spec.version); surplus
//	                       Machines deleted, the control plane one at a time
//	reconcileBindings      each unbound Machine gets an Available Host matching its group's
//	                       selector (claims through package hostclaim, never one Host twice)
//	reconcilePodCIDRs      each bound Machine gets a per-node range of spec.network.podCIDR in
//	                       status.podCIDR, once, never changed (read from the API server, so no
//	                       range is handed out twice)
//	reconcileCertificates  the PKI in Secrets (package pkisecrets): clusterpki.Ensure for the bound
//	                       nodes, only changed Secrets written, the admin kubeconfig Secret, a
//	                       requeue at the first renewal
//	reconcileEtcd          the first ready control-plane Machine initialises etcd; the others join
//	                       as learners through etcdcluster.Reconcile, one change per reconcile, and
//	                       their join list and member ID are recorded on them
//	reconcileWorkload      once an API server is up, what a new workload cluster needs (the kubelet
//	                       API binding of kube-apiserver)
//	reconcileAddons        once an API server is up, the add-ons applied with server-side apply:
//	                       the built-in CoreDNS (package bootstrap/addons), then the user's
//	                       manifests from ConfigMaps and Secrets; status.addons per add-on
//
// and derives every condition it owns in updateStatus: HostsBound, CertificatesReady, EtcdReady,
// ControlPlaneReady and WorkersReady (from the Machines' Ready conditions, carrying the reason of
// the first Machine that is not Ready), UpToDate, MachinesHealthy, AddonsReady (every add-on applied and a CoreDNS
// server ready behind kube-dns), and Ready from them in that order. On deletion it removes every Machine before
// letting the Cluster go. docs/lifecycle.md has the decisions behind each step.
package cluster
