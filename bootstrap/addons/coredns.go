// Package addons renders what Basalt installs into a cluster besides its nodes, and decodes the
// manifests of the user's add-ons. Both end as objects that the Cluster controller applies with
// server-side apply (docs/addons.md): the built-in add-ons go through the same path as the
// user's.
package addons

import (
	"bytes"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"text/template"
)

// DNSParams are the inputs of the CoreDNS add-on.
type DNSParams struct {
	// Image is the CoreDNS image reference, preloaded on every node from the artifact set.
	Image string
	// ClusterIP is the kube-dns Service address the kubelet hands to pods.
	ClusterIP string
	// Domain is the cluster DNS domain, e.g. cluster.local.
	Domain string
	// Replicas is the number of CoreDNS pods.
	Replicas int32
	// Upstreams are the servers other names are forwarded to (IP or IP:port); none means names
	// outside the cluster do not resolve (SERVFAIL), as on a network without a resolver. The
	// node's /etc/resolv.conf is never used: on a host whose resolver is a local stub
	// (127.0.0.53, Docker's 127.0.0.11) it would send CoreDNS's queries back to itself.
	Upstreams []string
}

var dnsLabels = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

func (p DNSParams) validate() error {
	if err := checkImage("dns", p.Image); err != nil {
		return err
	}
	if _, err := netip.ParseAddr(p.ClusterIP); err != nil {
		return fmt.Errorf("dns: cluster IP %q: %w", p.ClusterIP, err)
	}
	if len(p.Domain) > 253 || !dnsLabels.MatchString(p.Domain) {
		return fmt.Errorf("dns: domain %q is not a lowercase DNS name", p.Domain)
	}
	if p.Replicas < 1 {
		return fmt.Errorf("dns: %d replicas, want at least 1", p.Replicas)
	}
	for _, u := range p.Upstreams {
		if _, err := netip.ParseAddr(u); err == nil {
			continue
		}
		ap, err := netip.ParseAddrPort(u)
		if err != nil || ap.Port() == 0 {
			return fmt.Errorf("dns: upstream %q is not an IP address or IP:port", u)
		}
	}
	return nil
}

// Corefile returns CoreDNS's configuration: the cluster domain and reverse zones answered from
// the cluster's Services and pods, everything else forwarded upstream and cached; health on
// :8080 (liveness), ready on :8181 (readiness: every plugin, the kubernetes one included, has
// synced) and metrics on :9153.
func Corefile(p DNSParams) (string, error) {
	if err := p.validate(); err != nil {
		return "", err
	}
	forward := ""
	if len(p.Upstreams) > 0 {
		forward = fmt.Sprintf(`
    forward . %s {
        max_concurrent 1000
    }`, strings.Join(p.Upstreams, " "))
	}
	return fmt.Sprintf(`.:53 {
    errors
    health {
        lameduck 5s
    }
    ready
    kubernetes %s in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    prometheus :9153%s
    cache 30
    loop
    reload
    loadbalance
}
`, p.Domain, forward), nil
}

// CoreDNS returns the CoreDNS add-on's manifests: its ServiceAccount and RBAC, the Corefile
// ConfigMap, a Deployment spread over nodes that tolerates control-plane taints, a
// PodDisruptionBudget, and the kube-dns Service on the cluster DNS address. The pod template
// carries the Corefile's digest, so a changed Corefile rolls the pods (CoreDNS's reload plugin
// would pick it up too, within its interval).
func CoreDNS(p DNSParams) ([]byte, error) {
	corefile, err := Corefile(p)
	if err != nil {
		return nil, err
	}
	return render(coreDNSTemplate, "dns", struct {
		DNSParams
		Corefile     string
		CorefileHash string
	}{p, indent(corefile, "    "), digest([]byte(corefile))[:16]})
}

func indent(s, by string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = by + l
		}
	}
	return strings.Join(lines, "\n")
}

var coreDNSTemplate = newTemplate("coredns", `apiVersion: v1
kind: ServiceAccount
metadata:
  name: coredns
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:coredns
  labels:
    kubernetes.io/bootstrapping: rbac-defaults
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:coredns
  labels:
    kubernetes.io/bootstrapping: rbac-defaults
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:coredns
subjects:
- kind: ServiceAccount
  name: coredns
  namespace: kube-system
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: coredns
  namespace: kube-system
data:
  Corefile: |
{{ .Corefile }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
spec:
  replicas: {{ .Replicas }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 1
  selector:
    matchLabels:
      k8s-app: kube-dns
  template:
    metadata:
      labels:
        k8s-app: kube-dns
      annotations:
        basalt.dev/corefile-digest: {{ quote .CorefileHash }}
    spec:
      priorityClassName: system-cluster-critical
      serviceAccountName: coredns
      dnsPolicy: Default
      nodeSelector:
        kubernetes.io/os: linux
      tolerations:
      - key: CriticalAddonsOnly
        operator: Exists
      - key: node-role.kubernetes.io/control-plane
        effect: NoSchedule
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: ScheduleAnyway
        labelSelector:
          matchLabels:
            k8s-app: kube-dns
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              topologyKey: kubernetes.io/hostname
              labelSelector:
                matchLabels:
                  k8s-app: kube-dns
      containers:
      - name: coredns
        image: {{ quote .Image }}
        imagePullPolicy: IfNotPresent
        args: ["-conf", "/etc/coredns/Corefile"]
        resources:
          requests:
            cpu: 100m
            memory: 70Mi
          limits:
            memory: 170Mi
        ports:
        - {name: dns, containerPort: 53, protocol: UDP}
        - {name: dns-tcp, containerPort: 53, protocol: TCP}
        - {name: metrics, containerPort: 9153, protocol: TCP}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities:
            add: [NET_BIND_SERVICE]
            drop: [ALL]
        livenessProbe:
          httpGet: {path: /health, port: 8080, scheme: HTTP}
          initialDelaySeconds: 60
          timeoutSeconds: 5
          successThreshold: 1
          failureThreshold: 5
        readinessProbe:
          httpGet: {path: /ready, port: 8181, scheme: HTTP}
          periodSeconds: 2
        volumeMounts:
        - name: config-volume
          mountPath: /etc/coredns
          readOnly: true
      volumes:
      - name: config-volume
        configMap:
          name: coredns
          items:
          - key: Corefile
            path: Corefile
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: coredns
  namespace: kube-system
spec:
  # All but one CoreDNS pod stay through drains; a single replica may go, or a drain of its node
  # would never finish.
  maxUnavailable: 1
  selector:
    matchLabels:
      k8s-app: kube-dns
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
    kubernetes.io/cluster-service: "true"
    kubernetes.io/name: CoreDNS
  annotations:
    prometheus.io/port: "9153"
    prometheus.io/scrape: "true"
spec:
  selector:
    k8s-app: kube-dns
  clusterIP: {{ quote .ClusterIP }}
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
  - {name: metrics, port: 9153, protocol: TCP, targetPort: 9153}
`)

// newTemplate parses an add-on's manifests template; quote renders a Go-quoted (YAML-safe) string.
func newTemplate(name, text string) *template.Template {
	return template.Must(template.New(name).Funcs(template.FuncMap{"quote": strconv.Quote}).Parse(text))
}

// render executes an add-on's template; what names the add-on in the error.
func render(t *template.Template, what string, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("%s: rendering: %w", what, err)
	}
	return b.Bytes(), nil
}

// checkImage refuses an empty image reference or one that would break out of its YAML string.
func checkImage(what, image string) error {
	if image == "" || strings.ContainsAny(image, " \t\n\"'") {
		return fmt.Errorf("%s: image %q is not an image reference", what, image)
	}
	return nil
}
