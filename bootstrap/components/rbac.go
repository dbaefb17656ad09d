package components

// apiServerKubeletClientUser is the CN of kube-apiserver's kubelet client certificate
// (pki.APIServerKubeletClientUser; bootstrap/pki is not imported to keep cfssl out of here).
const apiServerKubeletClientUser = "kube-apiserver-kubelet-client"

// KubeletAPIAdminBinding is the ClusterRoleBinding the Cluster controller applies to a new
// cluster with the admin kubeconfig: it lets kube-apiserver's kubelet client certificate
// (CN=kube-apiserver-kubelet-client, no group, as kubeadm 1.37 issues it) use the kubelet API,
// which kubectl logs, exec, attach and port-forward need. kubeadm creates the same binding.
func KubeletAPIAdminBinding() []byte {
	return []byte(header + `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: basalt:apiserver-kubelet-client
  labels:
    app.kubernetes.io/managed-by: basalt
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:kubelet-api-admin
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: ` + apiServerKubeletClientUser + `
`)
}

// virtualIPUser is pki.VirtualIPUser (bootstrap/pki is not imported to keep cfssl out of here).
const virtualIPUser = "basalt:control-plane-vip"

// VirtualIPLeaseNamespace and VirtualIPLeaseName name the Lease the agents on control-plane hosts
// elect the holder of the control-plane virtual IP with.
const (
	VirtualIPLeaseNamespace = "kube-system"
	VirtualIPLeaseName      = "basalt-control-plane-vip"
)

// VirtualIPLeaseAccess is the Role and RoleBinding the Cluster controller applies to a new cluster:
// the virtual IP's client certificate (CN=basalt:control-plane-vip) may create Leases in
// kube-system and read and write the virtual IP's, nothing else.
func VirtualIPLeaseAccess() []byte {
	return []byte(header + `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: basalt:control-plane-vip
  namespace: ` + VirtualIPLeaseNamespace + `
  labels:
    app.kubernetes.io/managed-by: basalt
rules:
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: ["` + VirtualIPLeaseName + `"]
  verbs: ["get", "update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: basalt:control-plane-vip
  namespace: ` + VirtualIPLeaseNamespace + `
  labels:
    app.kubernetes.io/managed-by: basalt
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: basalt:control-plane-vip
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: ` + virtualIPUser + `
`)
}
