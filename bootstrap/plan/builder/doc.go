// Package builder builds the Plan of one host of a workload cluster: the files, artifacts,
// services, routes, images and node-local load balancer a control-plane or worker node needs,
// from one typed Input.
//
// Build is a pure function: the same Input gives the same Plan, byte for byte, and so the same
// hash, whatever the order of routes, API server backends, etcd members or manifest entries. It
// reads no clock, host, network or API object: the Cluster and Machine controllers gather the
// facts (spec, host facts the agent reported, the PKI from bootstrap/clusterpki, the artifact
// set's manifest) into an Input. It does not import api/: the Input is a small, stable,
// documented struct that tests fill by hand, and the mapping from the CRD types lives in the
// controllers.
//
// Every error names the Input field at fault, e.g.
//
//	builder: version: "v1.37.3" is not the version of the artifact set (v1.37.2)
//	builder: artifacts["kube-scheduler"]: missing from the artifact set of v1.37.2
//	builder: artifacts["kubelet"].sha256: "" is not 64 lowercase hex digits
//	builder: network.podCIDR: "10.244.0.1/16" has host bits set (did you mean 10.244.0.0/16?)
//	builder: endpoint: "https://api" is neither an IP nor a DNS name
//	builder: certificates.etcdPeer: not valid for 192.0.2.11 (a certificate of another node?)
//
// What a node gets (default paths; Paths and Root move them):
//
//	every node     containerd (+ shim, runc, ctr), kubelet, kube-proxy; CNI bridge, host-local,
//	               loopback and portmap in /opt/cni/bin and 10-basalt.conflist (network.cni
//	               bridge); every image of the artifact set imported into containerd; routes to
//	               the other nodes' pod ranges; the node-local load balancer 127.0.0.1:6444 →
//	               every kube-apiserver, which the kubelet and kube-proxy kubeconfigs point at.
//	control plane  also etcd, kube-apiserver, kube-controller-manager, kube-scheduler (the last
//	               three only once the node's etcd member is a voter), the control-plane PKI and
//	               the controller-manager and scheduler kubeconfigs (to the local API server).
//
// Services start in dependency order (containerd → kubelet; etcd → kube-apiserver →
// kube-controller-manager, kube-scheduler), each with a health probe, and each lists the files
// and binaries it reads, so that plan.ServiceHash restarts exactly the services a change
// touches: a renewed scheduler certificate restarts kube-scheduler and nothing else.
//
// docs/plan.md describes the layout and the decisions behind it.
package builder
