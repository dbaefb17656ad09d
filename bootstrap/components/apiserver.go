package components

import (
	"bytes"
	"encoding/base64"
	"path"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// header starts every rendered YAML file.
const header = "# Rendered by Basalt (bootstrap/components). Changes are overwritten.\n"

// marshalYAML renders v with two-space indentation, fields in declaration order.
func marshalYAML(v any) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(header)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Anonymous requests are allowed only on these paths, which the built-in
// system:public-info-viewer role grants to everyone: load balancers and the agent probe them
// without credentials.
var anonymousPaths = []string{"/healthz", "/livez", "/readyz"}

// Files of kube-apiserver under ConfigDir.
func (p Paths) apiServerFile(name string) string {
	return path.Join(p.ConfigDir, "kube-apiserver", name)
}

// APIServer renders kube-apiserver for a control-plane host. Secure defaults: anonymous access
// only to /healthz, /livez and /readyz (an AuthenticationConfiguration, since --anonymous-auth
// cannot be limited to paths); Node,RBAC authorization; NodeRestriction on top of the default
// admission plugins; Secrets encrypted at rest; profiling off; TLS 1.2 at least; kubelet
// serving certificates verified against the cluster CA; etcd reached on loopback with its own
// client certificate; the aggregation layer wired to the front-proxy CA. Audit logging is off
// unless APIServer.Audit.Enabled.
func APIServer(p ClusterParams) (Component, error) {
	r, err := p.resolve()
	if err != nil {
		return Component{}, err
	}
	if err := r.validateAPIServer(); err != nil {
		return Component{}, err
	}
	pk := r.Paths
	etcdLoopback := loopbackOf(r)
	encryption, err := EncryptionConfig(r.APIServer.Encryption)
	if err != nil {
		return Component{}, err
	}
	authn, err := authenticationConfig()
	if err != nil {
		return Component{}, err
	}
	files := []File{
		{Path: pk.apiServerFile("authentication-config.yaml"), Mode: 0o644, Content: authn},
		{Path: pk.apiServerFile("encryption-config.yaml"), Mode: 0o600, Content: encryption, Secret: true, Reloaded: true},
	}

	a := newArgv(pk.BinDir, "kube-apiserver")
	a.flag("advertise-address", r.nodeIP.String())
	a.flag("secure-port", strconv.Itoa(r.APIServer.Port))
	a.flag("allow-privileged", "true")
	a.flag("authentication-config", files[0].Path)
	a.flag("authorization-mode", "Node,RBAC")
	a.flag("enable-admission-plugins", "NodeRestriction")
	a.flag("client-ca-file", pk.CACert())
	a.flag("tls-cert-file", pk.APIServer().Cert)
	a.flag("tls-private-key-file", pk.APIServer().Key)
	a.flag("tls-min-version", "VersionTLS12")
	a.flag("kubelet-certificate-authority", pk.CACert())
	a.flag("kubelet-client-certificate", pk.APIServerKubeletClient().Cert)
	a.flag("kubelet-client-key", pk.APIServerKubeletClient().Key)
	a.flag("kubelet-preferred-address-types", "InternalIP,ExternalIP,Hostname")
	a.flag("etcd-servers", EtcdClientURL(etcdLoopback, r.Ports.EtcdClient))
	a.flag("etcd-cafile", pk.EtcdCACert())
	a.flag("etcd-certfile", pk.APIServerEtcdClient().Cert)
	a.flag("etcd-keyfile", pk.APIServerEtcdClient().Key)
	a.flag("encryption-provider-config", files[1].Path)
	// A rotation changes the keys without a restart: kube-apiserver reads the file again (it
	// looks every minute) and reports the content's hash in
	// apiserver_encryption_config_controller_last_config_info, which the manager waits for.
	a.flag("encryption-provider-config-automatic-reload", "true")
	a.flag("service-cluster-ip-range", r.serviceCIDR.String())
	a.flag("service-account-issuer", "https://kubernetes.default.svc."+r.DNSDomain)
	a.flag("service-account-key-file", pk.ServiceAccountPub())
	a.flag("service-account-signing-key-file", pk.ServiceAccountKey())
	a.flag("requestheader-client-ca-file", pk.FrontProxyCACert())
	a.flag("requestheader-allowed-names", "front-proxy-client")
	a.flag("requestheader-username-headers", "X-Remote-User")
	a.flag("requestheader-group-headers", "X-Remote-Group")
	a.flag("requestheader-extra-headers-prefix", "X-Remote-Extra-")
	a.flag("proxy-client-cert-file", pk.FrontProxyClient().Cert)
	a.flag("proxy-client-key-file", pk.FrontProxyClient().Key)
	a.flag("profiling", "false")
	if r.nodeIP.IsLoopback() {
		// kube-apiserver refuses a loopback address in the kubernetes Service's endpoints; pods
		// could not reach it there anyway. A single-node cluster on loopback has none.
		a.flag("endpoint-reconciler-type", "none")
	}
	if au := r.APIServer.Audit; au.Enabled {
		policy, err := marshalYAML(auditPolicy())
		if err != nil {
			return Component{}, err
		}
		files = append(files, File{Path: pk.apiServerFile("audit-policy.yaml"), Mode: 0o644, Content: policy})
		a.flag("audit-policy-file", files[2].Path)
		a.flag("audit-log-path", pk.AuditLog)
		a.flag("audit-log-maxage", strconv.Itoa(orDefault(au.MaxAgeDays, 30)))
		a.flag("audit-log-maxbackup", strconv.Itoa(orDefault(au.MaxBackups, 10)))
		a.flag("audit-log-maxsize", strconv.Itoa(orDefault(au.MaxSizeMB, 100)))
	}
	return Component{Name: "kube-apiserver", Args: a, Files: files}, nil
}

func orDefault(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}

// typeMeta is apiVersion and kind.
type typeMeta struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
}

type encryptionConfiguration struct {
	typeMeta  `yaml:",inline"`
	Resources []encryptionResource `yaml:"resources"`
}

type encryptionResource struct {
	Resources []string             `yaml:"resources"`
	Providers []encryptionProvider `yaml:"providers"`
}

type encryptionProvider struct {
	Secretbox *encryptionKeys `yaml:"secretbox,omitempty"`
	AESCBC    *encryptionKeys `yaml:"aescbc,omitempty"`
	Identity  *struct{}       `yaml:"identity,omitempty"`
}

type encryptionKeys struct {
	Keys []encryptionKey `yaml:"keys"`
}

type encryptionKey struct {
	Name   string `yaml:"name"`
	Secret string `yaml:"secret"`
}

// EncryptionConfig is kube-apiserver's EncryptionConfiguration file for e: Secrets encrypted
// with the configured provider, the first key for writes; identity comes last so data written
// before encryption was turned on stays readable, and is re-encrypted on its next write. The
// same e always gives the same bytes (the manager compares their hash with what each API server
// reports loaded).
func EncryptionConfig(e EncryptionParams) ([]byte, error) {
	keys := &encryptionKeys{}
	for _, k := range e.Keys {
		keys.Keys = append(keys.Keys, encryptionKey{Name: k.Name, Secret: base64.StdEncoding.EncodeToString(k.Secret)})
	}
	first := encryptionProvider{Secretbox: keys}
	if e.Provider == EncryptionAESCBC {
		first = encryptionProvider{AESCBC: keys}
	}
	return marshalYAML(encryptionConfiguration{
		typeMeta: typeMeta{APIVersion: "apiserver.config.k8s.io/v1", Kind: "EncryptionConfiguration"},
		Resources: []encryptionResource{{
			Resources: []string{"secrets"},
			Providers: []encryptionProvider{first, {Identity: &struct{}{}}},
		}},
	})
}

type authenticationConfiguration struct {
	typeMeta  `yaml:",inline"`
	Anonymous struct {
		Enabled    bool `yaml:"enabled"`
		Conditions []struct {
			Path string `yaml:"path"`
		} `yaml:"conditions"`
	} `yaml:"anonymous"`
}

func authenticationConfig() ([]byte, error) {
	c := authenticationConfiguration{typeMeta: typeMeta{APIVersion: "apiserver.config.k8s.io/v1", Kind: "AuthenticationConfiguration"}}
	c.Anonymous.Enabled = true
	for _, p := range anonymousPaths {
		c.Anonymous.Conditions = append(c.Anonymous.Conditions, struct {
			Path string `yaml:"path"`
		}{p})
	}
	return marshalYAML(c)
}

type auditPolicyFile struct {
	typeMeta   `yaml:",inline"`
	OmitStages []string    `yaml:"omitStages"`
	Rules      []auditRule `yaml:"rules"`
}

type auditRule struct {
	Level           string       `yaml:"level"`
	Users           []string     `yaml:"users,omitempty"`
	Verbs           []string     `yaml:"verbs,omitempty"`
	Resources       []auditGroup `yaml:"resources,omitempty"`
	NonResourceURLs []string     `yaml:"nonResourceURLs,omitempty"`
}

type auditGroup struct {
	Group     string   `yaml:"group"`
	Resources []string `yaml:"resources"`
}

// auditPolicy logs who did what at Metadata level (never request or response bodies, so no
// Secret content), and drops the high-volume noise: health checks, watches, events, and the
// lease renewals of leader election and node heartbeats.
func auditPolicy() auditPolicyFile {
	return auditPolicyFile{
		typeMeta:   typeMeta{APIVersion: "audit.k8s.io/v1", Kind: "Policy"},
		OmitStages: []string{"RequestReceived"},
		Rules: []auditRule{
			{Level: "None", NonResourceURLs: []string{"/healthz*", "/livez*", "/readyz*", "/version"}},
			{Level: "None", Verbs: []string{"watch"}},
			{Level: "None", Resources: []auditGroup{{Group: "", Resources: []string{"events"}}, {Group: "events.k8s.io", Resources: []string{"events"}}}},
			{Level: "None", Verbs: []string{"get", "update"}, Resources: []auditGroup{{Group: "coordination.k8s.io", Resources: []string{"leases"}}}},
			{Level: "Metadata"},
		},
	}
}
