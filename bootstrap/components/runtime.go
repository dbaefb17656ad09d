package components

import (
	"bytes"
	"encoding/json"
	"path"
	"strconv"
	"strings"
	"text/template"
)

// containerdTemplate is config version 3 (containerd 2.x). Strings are TOML literal strings;
// tomlString rejects values that cannot be one.
var containerdTemplate = template.Must(template.New("config.toml").Funcs(template.FuncMap{"q": tomlString}).Parse(
	`# Rendered by Basalt (bootstrap/components). Changes are overwritten.
version = 3
root = {{q .Root}}
state = {{q .State}}

[grpc]
  address = {{q .Socket}}

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = {{q .Snapshotter}}

    [plugins.'io.containerd.cri.v1.images'.registry]
      # One folder per registry host with its hosts.toml (mirrors, CAs, credentials), read at
      # each pull.
      config_path = {{q .RegistryDir}}

    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = {{q .SandboxImage}}

  [plugins.'io.containerd.cri.v1.runtime']
{{- if .RestrictOOMScoreAdj}}
    # The host is a container without CAP_SYS_RESOURCE: no process may lower its OOM score, so
    # containers get no lower score than containerd's instead of failing to start.
    restrict_oom_score_adj = true
{{- end}}
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'

      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        runtime_path = {{q .ShimPath}}

        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = {{q .RuncPath}}
          SystemdCgroup = {{.SystemdCgroup}}

    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [{{q .CNIBinDir}}]
      conf_dir = {{q .CNIConfDir}}
      max_conf_num = 1
`))

// tomlString quotes s as a TOML literal string; it panics on a quote or newline, which the
// validation of ClusterParams rules out for every value passed here.
func tomlString(s string) string {
	if strings.ContainsAny(s, "'\n\r") {
		panic("components: value cannot be a TOML literal string: " + strconv.Quote(s))
	}
	return "'" + s + "'"
}

// Containerd renders containerd 2.x with its CRI plugin: runc (and its shim) from BinDir with
// SystemdCgroup matching the kubelet's cgroup driver — kubelet 1.37 asks containerd for the
// driver, so the two must agree; the pinned sandbox image, which the agent imports from the
// artifact set, so containerd never pulls it; the CNI directories of the bridge configuration.
func Containerd(p ClusterParams) (Component, error) {
	r, err := p.resolve()
	if err != nil {
		return Component{}, err
	}
	if err := r.validateCgroupDriver(); err != nil {
		return Component{}, err
	}
	rt := r.Runtime
	if rt.SandboxImage == "" {
		rt.SandboxImage = DefaultSandboxImage
	}
	if rt.Snapshotter == "" {
		rt.Snapshotter = DefaultSnapshotter
	}
	if !imageRefRE.MatchString(rt.SandboxImage) {
		return Component{}, fieldErr("runtime.sandboxImage", "%q is not an image reference", rt.SandboxImage)
	}
	if !nameRE.MatchString(rt.Snapshotter) {
		return Component{}, fieldErr("runtime.snapshotter", "%q is not a snapshotter name", rt.Snapshotter)
	}
	pk := r.Paths
	var buf bytes.Buffer
	err = containerdTemplate.Execute(&buf, map[string]any{
		"Root": pk.ContainerdRoot, "State": pk.ContainerdState, "Socket": pk.ContainerdSocket,
		"Snapshotter": rt.Snapshotter, "SandboxImage": rt.SandboxImage, "RegistryDir": pk.RegistryCertsDir(),
		"ShimPath": path.Join(pk.BinDir, "containerd-shim-runc-v2"), "RuncPath": path.Join(pk.BinDir, "runc"),
		"SystemdCgroup": r.Node.CgroupDriver == CgroupDriverSystemd,
		"CNIBinDir":     pk.CNIBinDir, "CNIConfDir": pk.CNIConfDir,
		"RestrictOOMScoreAdj": r.Node.InContainer,
	})
	if err != nil {
		return Component{}, err
	}
	file := File{Path: path.Join(pk.ConfigDir, "containerd", "config.toml"), Mode: 0o644, Content: buf.Bytes()}
	a := newArgv(pk.BinDir, "containerd")
	a.flag("config", file.Path)
	return Component{Name: "containerd", Args: a, Files: []File{file}}, nil
}

type cniConfList struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Plugins    []any  `json:"plugins"`
}

type cniBridge struct {
	Type        string  `json:"type"`
	Bridge      string  `json:"bridge"`
	IsGateway   bool    `json:"isGateway"`
	IPMasq      bool    `json:"ipMasq"`
	HairpinMode bool    `json:"hairpinMode"`
	MTU         int     `json:"mtu,omitempty"`
	IPAM        cniIPAM `json:"ipam"`
}

type cniIPAM struct {
	Type   string                `json:"type"`
	Ranges [][]map[string]string `json:"ranges"`
	Routes []map[string]string   `json:"routes"`
}

type cniPortmap struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities"`
}

type cniLoopback struct {
	Type string `json:"type"`
}

// CNIConfigName is the file name of the conflist under Paths.CNIConfDir; it sorts first, and
// containerd loads only the first configuration (max_conf_num = 1).
const CNIConfigName = "10-basalt.conflist"

// CNI renders the pod network of a node (cni: bridge): a bridge that is the pods' gateway, with
// host-local addresses from Node.PodCIDR, masquerading of pod traffic leaving the range
// (ipMasq), hairpin mode so a pod reaches itself through a Service; then portmap for hostPort;
// then loopback, which passes the bridge's result through. The agent routes the other nodes'
// pod ranges (host-gw). The result is a File to write at Paths.CNIConfDir/CNIConfigName.
func CNI(p ClusterParams) (File, error) {
	r, err := p.resolve()
	if err != nil {
		return File{}, err
	}
	if !r.nodePodCIDR.IsValid() {
		return File{}, fieldErr("node.podCIDR", "required to render the CNI configuration")
	}
	rt := r.Runtime
	if rt.BridgeName == "" {
		rt.BridgeName = DefaultBridgeName
	}
	if len(rt.BridgeName) > 15 || !nameRE.MatchString(rt.BridgeName) {
		return File{}, fieldErr("runtime.bridgeName", "%q is not a Linux interface name", rt.BridgeName)
	}
	if rt.MTU != 0 && (rt.MTU < 576 || rt.MTU > 65535) {
		return File{}, fieldErr("runtime.mtu", "%d is not an MTU", rt.MTU)
	}
	defaultRoute := "0.0.0.0/0"
	if r.nodeIP.Is6() {
		defaultRoute = "::/0"
	}
	conf := cniConfList{CNIVersion: "1.0.0", Name: "basalt", Plugins: []any{
		cniBridge{Type: "bridge", Bridge: rt.BridgeName, IsGateway: true, IPMasq: true, HairpinMode: true, MTU: rt.MTU,
			IPAM: cniIPAM{Type: "host-local",
				Ranges: [][]map[string]string{{{"subnet": r.nodePodCIDR.String()}}},
				Routes: []map[string]string{{"dst": defaultRoute}}}},
		cniPortmap{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}},
		cniLoopback{Type: "loopback"},
	}}
	content, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return File{}, err
	}
	return File{Path: path.Join(r.Paths.CNIConfDir, CNIConfigName), Mode: 0o644, Content: append(content, '\n')}, nil
}
