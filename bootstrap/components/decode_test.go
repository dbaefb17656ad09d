package components

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	toml "github.com/pelletier/go-toml"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"
	kubeschedulerv1 "k8s.io/kube-scheduler/config/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// unmarshalStrict decodes YAML as the components do (sigs.k8s.io/json): field names match
// case-sensitively, and unknown or duplicate fields are errors.
func unmarshalStrict(data []byte, into any) error {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return err
	}
	strictErrs, err := kjson.UnmarshalStrict(j, into)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// strictDecode decodes a rendered YAML file into the upstream Go type of its kind, failing on any
// field the upstream type does not have (a misspelt field would be silently ignored by the
// component otherwise), and checks apiVersion and kind.
func strictDecode(t *testing.T, f File, into any, apiVersion, kind string) {
	t.Helper()
	if err := unmarshalStrict(f.Content, into); err != nil {
		t.Fatalf("%s does not decode strictly into %T: %v", f.Path, into, err)
	}
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(f.Content, &tm); err != nil || tm.APIVersion != apiVersion || tm.Kind != kind {
		t.Fatalf("%s is %s/%s, want %s/%s (%v)", f.Path, tm.APIVersion, tm.Kind, apiVersion, kind, err)
	}
}

func fileNamed(t *testing.T, c Component, suffix string) File {
	t.Helper()
	for _, f := range c.Files {
		if strings.HasSuffix(f.Path, suffix) {
			return f
		}
	}
	t.Fatalf("%s has no file %s", c.Name, suffix)
	return File{}
}

func mustRender(t *testing.T, f func(ClusterParams) (Component, error), p ClusterParams) Component {
	t.Helper()
	c, err := f(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConfigFilesDecodeIntoUpstreamTypes(t *testing.T) {
	for name, p := range map[string]ClusterParams{
		"first": firstControlPlane(), "joining": joiningControlPlane(), "worker": containerWorker(), "ipv6": ipv6ControlPlane(),
	} {
		t.Run(name, func(t *testing.T) {
			var kc kubeletv1beta1.KubeletConfiguration
			strictDecode(t, fileNamed(t, mustRender(t, Kubelet, p), "kubelet/config.yaml"), &kc, "kubelet.config.k8s.io/v1beta1", "KubeletConfiguration")
			if kc.FailCgroupV1 == nil || *kc.FailCgroupV1 {
				t.Error("failCgroupV1 is not explicitly false")
			}
			if kc.RotateCertificates || kc.ServerTLSBootstrap || kc.StaticPodPath != "" || kc.ReadOnlyPort != 0 {
				t.Error("kubelet: certificate rotation, static pods or the read-only port are on")
			}
			if *kc.Authentication.Anonymous.Enabled || !*kc.Authentication.Webhook.Enabled || kc.Authorization.Mode != kubeletv1beta1.KubeletAuthorizationModeWebhook {
				t.Error("kubelet authentication/authorization are not webhook-only")
			}
			if kc.CgroupDriver != string(p.Node.CgroupDriver) {
				t.Errorf("cgroupDriver %q, want %q", kc.CgroupDriver, p.Node.CgroupDriver)
			}

			var kp kubeproxyv1alpha1.KubeProxyConfiguration
			strictDecode(t, fileNamed(t, mustRender(t, KubeProxy, p), "kube-proxy/config.yaml"), &kp, "kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration")
			if kp.Mode != "iptables" || kp.ClusterCIDR != p.PodCIDR || kp.HostnameOverride != p.Node.Name {
				t.Errorf("kube-proxy: mode %q clusterCIDR %q hostname %q", kp.Mode, kp.ClusterCIDR, kp.HostnameOverride)
			}
			if p.Node.InContainer && (kp.Conntrack.MaxPerCore == nil || *kp.Conntrack.MaxPerCore != 0 || kp.Conntrack.TCPEstablishedTimeout.Duration != 0) {
				t.Error("kube-proxy in a container still sets conntrack sysctls")
			}

			containerd := fileNamed(t, mustRender(t, Containerd, p), "config.toml")
			checkContainerd(t, containerd.Content, p.Node.CgroupDriver == CgroupDriverSystemd)
			cni, err := CNI(p)
			if err != nil {
				t.Fatal(err)
			}
			checkCNI(t, cni.Content, p.Node.PodCIDR)

			if len(p.Etcd.Members) == 0 {
				return // a worker
			}
			var sc kubeschedulerv1.KubeSchedulerConfiguration
			strictDecode(t, fileNamed(t, mustRender(t, Scheduler, p), "config.yaml"), &sc, "kubescheduler.config.k8s.io/v1", "KubeSchedulerConfiguration")
			if sc.LeaderElection.LeaderElect == nil || !*sc.LeaderElection.LeaderElect || sc.EnableProfiling == nil || *sc.EnableProfiling {
				t.Error("scheduler: leader election off or profiling on")
			}

			api := mustRender(t, APIServer, p)
			var ec apiserverv1.EncryptionConfiguration
			enc := fileNamed(t, api, "encryption-config.yaml")
			strictDecode(t, enc, &ec, "apiserver.config.k8s.io/v1", "EncryptionConfiguration")
			if !enc.Secret || enc.Mode != 0o600 {
				t.Error("encryption config is not marked secret with mode 0600")
			}
			checkEncryption(t, ec, p.APIServer.Encryption)

			var ac apiserverv1.AuthenticationConfiguration
			strictDecode(t, fileNamed(t, api, "authentication-config.yaml"), &ac, "apiserver.config.k8s.io/v1", "AuthenticationConfiguration")
			var paths []string
			for _, c := range ac.Anonymous.Conditions {
				paths = append(paths, c.Path)
			}
			if !ac.Anonymous.Enabled || !slices.Equal(paths, []string{"/healthz", "/livez", "/readyz"}) {
				t.Errorf("anonymous auth: enabled %v on %q; want only the health endpoints", ac.Anonymous.Enabled, paths)
			}
			if p.APIServer.Audit.Enabled {
				var pol auditv1.Policy
				strictDecode(t, fileNamed(t, api, "audit-policy.yaml"), &pol, "audit.k8s.io/v1", "Policy")
				for _, r := range pol.Rules {
					if r.Level == auditv1.LevelRequest || r.Level == auditv1.LevelRequestResponse {
						t.Errorf("audit rule logs bodies: %+v", r)
					}
				}
			}
		})
	}
}

func checkEncryption(t *testing.T, ec apiserverv1.EncryptionConfiguration, want EncryptionParams) {
	t.Helper()
	if len(ec.Resources) != 1 || !slices.Equal(ec.Resources[0].Resources, []string{"secrets"}) {
		t.Fatalf("encryption resources %+v", ec.Resources)
	}
	ps := ec.Resources[0].Providers
	if len(ps) != 2 || ps[1].Identity == nil {
		t.Fatalf("providers %+v: want the encrypting provider, then identity", ps)
	}
	var keys []apiserverv1.Key
	switch {
	case want.Provider == EncryptionAESCBC && ps[0].AESCBC != nil:
		keys = ps[0].AESCBC.Keys
	case want.Provider != EncryptionAESCBC && ps[0].Secretbox != nil:
		keys = ps[0].Secretbox.Keys
	}
	if len(keys) != len(want.Keys) {
		t.Fatalf("provider %+v, want %q with %d keys", ps[0], want.Provider, len(want.Keys))
	}
	for i, k := range keys {
		secret, err := base64.StdEncoding.DecodeString(k.Secret)
		if err != nil || k.Name != want.Keys[i].Name || !bytes.Equal(secret, want.Keys[i].Secret) {
			t.Errorf("key %d: %s (%v)", i, k.Name, err)
		}
	}
}

// checkContainerd parses the TOML and checks the keys containerd 2.x reads (names from its
// internal/cri/config and docs/cri/config.md).
func checkContainerd(t *testing.T, content []byte, systemd bool) {
	t.Helper()
	tree, err := toml.LoadBytes(content)
	if err != nil {
		t.Fatalf("config.toml does not parse: %v", err)
	}
	get := func(keys ...string) any { return tree.GetPath(keys) }
	if v := get("version"); v != int64(3) {
		t.Errorf("version = %v, want 3", v)
	}
	images := []string{"plugins", "io.containerd.cri.v1.images"}
	runtime := []string{"plugins", "io.containerd.cri.v1.runtime"}
	runc := append(slices.Clone(runtime), "containerd", "runtimes", "runc")
	checks := map[string]struct {
		path []string
		want any
	}{
		"sandbox image":   {append(slices.Clone(images), "pinned_images", "sandbox"), nil},
		"default runtime": {append(slices.Clone(runtime), "containerd", "default_runtime_name"), "runc"},
		"runtime type":    {append(slices.Clone(runc), "runtime_type"), "io.containerd.runc.v2"},
		"SystemdCgroup":   {append(slices.Clone(runc), "options", "SystemdCgroup"), systemd},
		"runc binary":     {append(slices.Clone(runc), "options", "BinaryName"), nil},
		"CNI conf dir":    {append(slices.Clone(runtime), "cni", "conf_dir"), nil},
		"CNI bin dirs":    {append(slices.Clone(runtime), "cni", "bin_dirs"), nil},
		"grpc address":    {[]string{"grpc", "address"}, nil},
	}
	for name, c := range checks {
		v := get(c.path...)
		if v == nil || (c.want != nil && v != c.want) {
			t.Errorf("%s: %s = %v, want %v", name, strings.Join(c.path, "."), v, c.want)
		}
	}
}

func checkCNI(t *testing.T, content []byte, podCIDR string) {
	t.Helper()
	var list struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	dec := json.NewDecoder(bytes.NewReader(content))
	if err := dec.Decode(&list); err != nil {
		t.Fatalf("conflist: %v", err)
	}
	var types []string
	for _, p := range list.Plugins {
		types = append(types, p["type"].(string))
	}
	if list.CNIVersion != "1.0.0" || list.Name == "" || !slices.Equal(types, []string{"bridge", "portmap", "loopback"}) {
		t.Fatalf("conflist %s %s %v", list.CNIVersion, list.Name, types)
	}
	bridge := list.Plugins[0]
	if bridge["isGateway"] != true || bridge["ipMasq"] != true {
		t.Errorf("bridge %v", bridge)
	}
	ipam := bridge["ipam"].(map[string]any)
	subnet := ipam["ranges"].([]any)[0].([]any)[0].(map[string]any)["subnet"]
	if ipam["type"] != "host-local" || subnet != podCIDR {
		t.Errorf("ipam %v, want host-local on %s", ipam, podCIDR)
	}
}

// TestStrictDecodeCatchesMisspelling proves the decode test above can fail.
func TestStrictDecodeCatchesMisspelling(t *testing.T) {
	bad := []byte("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nfailCgroupv1: false\n")
	var kc kubeletv1beta1.KubeletConfiguration
	if err := unmarshalStrict(bad, &kc); err == nil {
		t.Fatal("a misspelt field decoded strictly")
	}
}
