package addons

import (
	"encoding/base64"
	"encoding/pem"
	"fmt"
)

// MetricsParams are the inputs of the metrics-server add-on.
type MetricsParams struct {
	// Image is the metrics-server image reference, preloaded on every node from the artifact set.
	Image string
	// CA is the cluster CA certificate (PEM): the APIService's caBundle, which kube-apiserver
	// verifies metrics-server's serving certificate with.
	CA []byte
	// Cert and Key are metrics-server's serving certificate and key (PEM), issued by the cluster
	// CA for metrics-server.kube-system.svc.
	Cert, Key []byte
}

func (p MetricsParams) validate() error {
	if err := checkImage("metrics", p.Image); err != nil {
		return err
	}
	for name, b := range map[string][]byte{"CA": p.CA, "certificate": p.Cert, "key": p.Key} {
		if blk, _ := pem.Decode(b); blk == nil {
			return fmt.Errorf("metrics: the serving %s is not PEM", name)
		}
	}
	return nil
}

// MetricsServer returns the metrics-server add-on's manifests: its ServiceAccount and RBAC (the
// aggregated-reader role that admin, edit and view pick up; auth delegation), the serving
// certificate as a Secret, a Deployment that verifies every kubelet's serving certificate with
// the cluster CA (the kube-root-ca.crt ConfigMap of its namespace), its Service, and the
// v1beta1.metrics.k8s.io APIService with the cluster CA as caBundle. `kubectl top` works once
// the APIService is Available.
func MetricsServer(p MetricsParams) ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	return render(metricsTemplate, "metrics", struct {
		MetricsParams
		CABundle, TLSCert, TLSKey string
	}{p, base64.StdEncoding.EncodeToString(p.CA), base64.StdEncoding.EncodeToString(p.Cert), base64.StdEncoding.EncodeToString(p.Key)})
}

var metricsTemplate = newTemplate("metrics", `apiVersion: v1
kind: ServiceAccount
metadata:
  name: metrics-server
  namespace: kube-system
  labels:
    k8s-app: metrics-server
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:aggregated-metrics-reader
  labels:
    k8s-app: metrics-server
    rbac.authorization.k8s.io/aggregate-to-admin: "true"
    rbac.authorization.k8s.io/aggregate-to-edit: "true"
    rbac.authorization.k8s.io/aggregate-to-view: "true"
rules:
- apiGroups: [metrics.k8s.io]
  resources: [pods, nodes]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:metrics-server
  labels:
    k8s-app: metrics-server
rules:
- apiGroups: [""]
  resources: [nodes/metrics]
  verbs: [get]
- apiGroups: [""]
  resources: [pods, nodes]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: metrics-server-auth-reader
  namespace: kube-system
  labels:
    k8s-app: metrics-server
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: extension-apiserver-authentication-reader
subjects:
- kind: ServiceAccount
  name: metrics-server
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: metrics-server:system:auth-delegator
  labels:
    k8s-app: metrics-server
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:auth-delegator
subjects:
- kind: ServiceAccount
  name: metrics-server
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:metrics-server
  labels:
    k8s-app: metrics-server
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:metrics-server
subjects:
- kind: ServiceAccount
  name: metrics-server
  namespace: kube-system
---
apiVersion: v1
kind: Secret
metadata:
  name: metrics-server-tls
  namespace: kube-system
  labels:
    k8s-app: metrics-server
type: kubernetes.io/tls
data:
  tls.crt: {{ .TLSCert }}
  tls.key: {{ .TLSKey }}
---
apiVersion: v1
kind: Service
metadata:
  name: metrics-server
  namespace: kube-system
  labels:
    k8s-app: metrics-server
spec:
  selector:
    k8s-app: metrics-server
  ports:
  - {name: https, port: 443, protocol: TCP, targetPort: https}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: metrics-server
  namespace: kube-system
  labels:
    k8s-app: metrics-server
spec:
  replicas: 1
  strategy:
    rollingUpdate:
      maxUnavailable: 0
  selector:
    matchLabels:
      k8s-app: metrics-server
  template:
    metadata:
      labels:
        k8s-app: metrics-server
    spec:
      serviceAccountName: metrics-server
      priorityClassName: system-cluster-critical
      nodeSelector:
        kubernetes.io/os: linux
      tolerations:
      - key: CriticalAddonsOnly
        operator: Exists
      - key: node-role.kubernetes.io/control-plane
        effect: NoSchedule
      containers:
      - name: metrics-server
        image: {{ quote .Image }}
        imagePullPolicy: IfNotPresent
        args:
        - --secure-port=10250
        - --cert-dir=/tmp
        - --tls-cert-file=/etc/metrics-server/tls/tls.crt
        - --tls-private-key-file=/etc/metrics-server/tls/tls.key
        - --kubelet-certificate-authority=/etc/metrics-server/kubelet-ca/ca.crt
        - --kubelet-preferred-address-types=InternalIP
        - --kubelet-use-node-status-port
        - --metric-resolution=15s
        ports:
        - {name: https, containerPort: 10250, protocol: TCP}
        readinessProbe:
          httpGet: {path: /readyz, port: https, scheme: HTTPS}
          initialDelaySeconds: 5
          periodSeconds: 5
          failureThreshold: 3
        livenessProbe:
          httpGet: {path: /livez, port: https, scheme: HTTPS}
          periodSeconds: 10
          failureThreshold: 3
        resources:
          requests:
            cpu: 100m
            memory: 200Mi
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          runAsNonRoot: true
          runAsUser: 65534
          capabilities:
            drop: [ALL]
          seccompProfile:
            type: RuntimeDefault
        volumeMounts:
        - {name: tmp, mountPath: /tmp}
        - {name: tls, mountPath: /etc/metrics-server/tls, readOnly: true}
        - {name: kubelet-ca, mountPath: /etc/metrics-server/kubelet-ca, readOnly: true}
      volumes:
      - name: tmp
        emptyDir: {}
      - name: tls
        secret:
          secretName: metrics-server-tls
      - name: kubelet-ca
        configMap:
          name: kube-root-ca.crt
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1beta1.metrics.k8s.io
  labels:
    k8s-app: metrics-server
spec:
  group: metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  caBundle: {{ .CABundle }}
  service:
    name: metrics-server
    namespace: kube-system
    port: 443
`)
