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
