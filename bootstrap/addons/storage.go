package addons

import (
	"encoding/json"
	"fmt"
	"path"
	"strings"
)

// StorageClassName is the name of the built-in local StorageClass.
const StorageClassName = "local-path"

// StorageParams are the inputs of the local storage add-on.
type StorageParams struct {
	// ProvisionerImage and HelperImage are the images of local-path-provisioner and of its
	// helper pod (volume-helper), preloaded on every node from the artifact set.
	ProvisionerImage, HelperImage string
	// Path is the folder on every node under which volumes are made; it survives reboots and is
	// wiped with the node's state when its Host is released.
	Path string
	// Default makes the StorageClass the cluster's default.
	Default bool
}

func (p StorageParams) validate() error {
	for name, img := range map[string]string{"storage: provisioner": p.ProvisionerImage, "storage: helper": p.HelperImage} {
		if err := checkImage(name, img); err != nil {
			return err
		}
	}
	if !path.IsAbs(p.Path) || path.Clean(p.Path) != p.Path || strings.Count(p.Path, "/") < 2 || strings.ContainsAny(p.Path, " \t\n\"'\\") {
		return fmt.Errorf("storage: path %q must be an absolute clean path at least two levels deep", p.Path)
	}
	return nil
}

// LocalStorage returns the local storage add-on's manifests: local-path-provisioner in the
// local-path-storage namespace, with its RBAC, its configuration (volumes under Path on every
// node; the helper pod runs volume-helper to make and remove a volume's folder, no shell), and
// the local-path StorageClass (WaitForFirstConsumer: a volume is made on the node its first pod
// is scheduled to, and its pods stay there).
func LocalStorage(p StorageParams) ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	config, err := json.MarshalIndent(map[string]any{
		"nodePathMap":     []map[string]any{{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": []string{p.Path}}},
		"setupCommand":    "/volume-helper",
		"teardownCommand": "/volume-helper",
	}, "", "  ")
	if err != nil {
		return nil, err
	}
	return render(storageTemplate, "storage", struct {
		StorageParams
		Config, ClassName string
	}{p, indent(string(config), "    "), StorageClassName})
}

var storageTemplate = newTemplate("storage", `apiVersion: v1
kind: Namespace
metadata:
  name: local-path-storage
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: local-path-provisioner
  namespace: local-path-storage
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: local-path-provisioner
  namespace: local-path-storage
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, patch, update, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: local-path-provisioner
  namespace: local-path-storage
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: local-path-provisioner
subjects:
- kind: ServiceAccount
  name: local-path-provisioner
  namespace: local-path-storage
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: basalt:local-path-provisioner
rules:
- apiGroups: [""]
  resources: [nodes, persistentvolumeclaims, configmaps, pods, pods/log]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [persistentvolumes]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [storage.k8s.io]
  resources: [storageclasses]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: basalt:local-path-provisioner
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: basalt:local-path-provisioner
subjects:
- kind: ServiceAccount
  name: local-path-provisioner
  namespace: local-path-storage
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-path-config
  namespace: local-path-storage
data:
  config.json: |
{{ .Config }}
  helperPod.yaml: |
    apiVersion: v1
    kind: Pod
    metadata:
      name: helper-pod
    spec:
      priorityClassName: system-node-critical
      containers:
      - name: helper-pod
        image: {{ quote .HelperImage }}
        imagePullPolicy: IfNotPresent
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: local-path-provisioner
  namespace: local-path-storage
  labels:
    app: local-path-provisioner
spec:
  replicas: 1
  selector:
    matchLabels:
      app: local-path-provisioner
  template:
    metadata:
      labels:
        app: local-path-provisioner
    spec:
      serviceAccountName: local-path-provisioner
      priorityClassName: system-cluster-critical
      nodeSelector:
        kubernetes.io/os: linux
      tolerations:
      - key: node-role.kubernetes.io/control-plane
        effect: NoSchedule
      containers:
      - name: local-path-provisioner
        image: {{ quote .ProvisionerImage }}
        imagePullPolicy: IfNotPresent
        command:
        - /local-path-provisioner
        - start
        - --config
        - /etc/config/config.json
        - --configmap-name
        - local-path-config
        - --service-account-name
        - local-path-provisioner
        - --helper-image
        - {{ quote .HelperImage }}
        - --provisioner-name
        - rancher.io/local-path
        env:
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          runAsNonRoot: true
          runAsUser: 65534
          capabilities:
            drop: [ALL]
        volumeMounts:
        - name: config-volume
          mountPath: /etc/config/
      volumes:
      - name: config-volume
        configMap:
          name: local-path-config
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: {{ .ClassName }}
  annotations:
    storageclass.kubernetes.io/is-default-class: {{ if .Default }}"true"{{ else }}"false"{{ end }}
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
`)
