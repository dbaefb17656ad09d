package v1alpha1_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/test/envtest"
)

var env *envtest.Env

func TestMain(m *testing.M) {
	envtest.Main(m, &env)
}

func validCluster(ns string) *basaltv1.Cluster {
	return &basaltv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "c-", Namespace: ns},
		Spec: basaltv1.ClusterSpec{
			Version:      "v1.37.2",
			ControlPlane: basaltv1.ControlPlaneSpec{Replicas: 3},
			Workers:      []basaltv1.WorkerPool{{Name: "a", Replicas: 2}},
		},
	}
}

func validSSHHost(ns string) *basaltv1.Host {
	return &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "h-", Namespace: ns},
		Spec: basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{
			Address:             "10.0.0.1",
			PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: "k", Key: "id"},
		}},
	}
}

// bootHostWith is a valid network-booted Host changed by edit.
func bootHostWith(ns string, edit func(*basaltv1.BootSpec)) *basaltv1.Host {
	h := validSSHHost(ns)
	h.Spec.SSH, h.Spec.Boot = nil, &basaltv1.BootSpec{MACAddresses: []string{"52:54:00:12:34:56"}}
	edit(h.Spec.Boot)
	return h
}

func validMachine(ns string) *basaltv1.Machine {
	return &basaltv1.Machine{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "m-", Namespace: ns},
		Spec:       basaltv1.MachineSpec{Cluster: "c", Role: basaltv1.RoleWorker},
	}
}

// TestCreateRejected applies invalid objects to the real API server; each must be refused with a
// message that names the field and says what to change.
func TestCreateRejected(t *testing.T) {
	ns := env.Namespace(t)
	cases := []struct {
		name string
		obj  func() client.Object
		want string
	}{
		{"even control-plane replicas", func() client.Object {
			c := validCluster(ns)
			c.Spec.ControlPlane.Replicas = 2
			return c
		}, "spec.controlPlane.replicas must be odd (1, 3, 5 or 7)"},
		{"control-plane replicas above 7", func() client.Object {
			c := validCluster(ns)
			c.Spec.ControlPlane.Replicas = 9
			return c
		}, "should be less than or equal to 7"},
		{"overlapping pod and service CIDRs", func() client.Object {
			c := validCluster(ns)
			c.Spec.Network.PodCIDR, c.Spec.Network.ServiceCIDR = "10.0.0.0/8", "10.96.0.0/12"
			return c
		}, "podCIDR and spec.network.serviceCIDR overlap"},
		{"pod CIDR not a CIDR", func() client.Object {
			c := validCluster(ns)
			c.Spec.Network.PodCIDR = "10.244.0.0/33"
			return c
		}, "spec.network.podCIDR must be a network in CIDR notation"},
		{"pod CIDR with host bits", func() client.Object {
			c := validCluster(ns)
			c.Spec.Network.PodCIDR = "10.244.1.0/16"
			return c
		}, "no host bits set"},
		{"service CIDR too large", func() client.Object {
			c := validCluster(ns)
			c.Spec.Network.ServiceCIDR = "172.0.0.0/8"
			return c
		}, "spec.network.serviceCIDR is too large"},
		{"pod CIDR cannot split into node ranges", func() client.Object {
			c := validCluster(ns)
			c.Spec.Network.NodeCIDRMaskSize = 16
			return c
		}, "nodeCIDRMaskSize must be larger than the prefix length"},
		{"version without v", func() client.Object {
			c := validCluster(ns)
			c.Spec.Version = "1.37.2"
			return c
		}, "spec.version must look like v1.37.2"},
		{"version without patch", func() client.Object {
			c := validCluster(ns)
			c.Spec.Version = "v1.37"
			return c
		}, "spec.version must look like v1.37.2"},
		{"version with leading zero", func() client.Object {
			c := validCluster(ns)
			c.Spec.Version = "v1.037.2"
			return c
		}, "spec.version must look like v1.37.2"},
		{"dns domain upper case", func() client.Object {
			c := validCluster(ns)
			c.Spec.Network.DNSDomain = "Cluster.Local"
			return c
		}, "spec.network.dnsDomain must be a lowercase DNS name"},
		{"endpoint neither IP nor name", func() client.Object {
			c := validCluster(ns)
			c.Spec.ControlPlane.Endpoint = &basaltv1.APIEndpoint{Host: "api_server!", Port: 6443}
			return c
		}, "endpoint host must be an IP address or a lowercase DNS name"},
		{"endpoint port out of range", func() client.Object {
			c := validCluster(ns)
			c.Spec.ControlPlane.Endpoint = &basaltv1.APIEndpoint{Host: "10.0.0.10", Port: 70000}
			return c
		}, "should be less than or equal to 65535"},
		{"virtual IP not IPv4", func() client.Object {
			c := validCluster(ns)
			c.Spec.ControlPlane.VirtualIP = &basaltv1.VirtualIPSpec{Address: "fd00::10"}
			return c
		}, "virtualIP.address must be a routable IPv4 address"},
		{"virtual IP loopback", func() client.Object {
			c := validCluster(ns)
			c.Spec.ControlPlane.VirtualIP = &basaltv1.VirtualIPSpec{Address: "127.0.0.10"}
			return c
		}, "virtualIP.address must be a routable IPv4 address"},
		{"virtual IP and another endpoint address", func() client.Object {
			c := validCluster(ns)
			c.Spec.ControlPlane.VirtualIP = &basaltv1.VirtualIPSpec{Address: "10.0.0.10"}
			c.Spec.ControlPlane.Endpoint = &basaltv1.APIEndpoint{Host: "10.0.0.11", Port: 6443}
			return c
		}, "spec.controlPlane.endpoint.host must be virtualIP.address"},
		{"virtual IP and another port", func() client.Object {
			c := validCluster(ns)
			c.Spec.ControlPlane.VirtualIP = &basaltv1.VirtualIPSpec{Address: "10.0.0.10"}
			c.Spec.ControlPlane.Endpoint = &basaltv1.APIEndpoint{Host: "api.example.com", Port: 443}
			return c
		}, "spec.controlPlane.endpoint.port must be 6443 with spec.controlPlane.virtualIP"},
		{"duplicate worker pool names", func() client.Object {
			c := validCluster(ns)
			c.Spec.Workers = append(c.Spec.Workers, basaltv1.WorkerPool{Name: "a", Replicas: 1})
			return c
		}, "spec.workers names must be unique; rename the duplicate pool"},
		{"worker pool name not a DNS label", func() client.Object {
			c := validCluster(ns)
			c.Spec.Workers[0].Name = "Pool_A"
			return c
		}, "worker pool name must be a DNS label"},
		{"renewal window not shorter than validity", func() client.Object {
			c := validCluster(ns)
			c.Spec.Certificates = basaltv1.CertificatesSpec{ValidityDays: 30, RenewBeforeDays: 30}
			return c
		}, "renewBeforeDays must be less than validityDays"},
		{"registry host with a path", func() client.Object {
			c := validCluster(ns)
			c.Spec.Registries = []basaltv1.Registry{{Host: "docker.io/library"}}
			return c
		}, "spec.registries[0].host"},
		{"registry credentials over http", func() client.Object {
			c := validCluster(ns)
			c.Spec.Registries = []basaltv1.Registry{{Host: "docker.io", Mirrors: []basaltv1.RegistryMirror{{URL: "http://cache.lan",
				CredentialsSecretRef: &basaltv1.LocalObjectReference{Name: "pull"}}}}}
			return c
		}, "credentialsSecretRef needs an https url: credentials are never sent in clear text"},
		{"registry CA for an http server", func() client.Object {
			c := validCluster(ns)
			c.Spec.Registries = []basaltv1.Registry{{Host: "r.lan", Server: "http://r.lan",
				CASecretRef: &basaltv1.SecretKeyReference{Name: "ca", Key: "ca.crt"}}}
			return c
		}, "caSecretRef needs an https server"},
		{"registry mirror not a URL", func() client.Object {
			c := validCluster(ns)
			c.Spec.Registries = []basaltv1.Registry{{Host: "docker.io", Mirrors: []basaltv1.RegistryMirror{{URL: "mirror.lan:5000"}}}}
			return c
		}, "mirrors[].url must be an http or https URL"},
		{"registry host twice", func() client.Object {
			c := validCluster(ns)
			c.Spec.Registries = []basaltv1.Registry{{Host: "docker.io"}, {Host: "docker.io"}}
			return c
		}, "Duplicate value"},
		{"artifact mirror not http", func() client.Object {
			c := validCluster(ns)
			c.Spec.Artifacts.Mirror = "ftp://mirror.example.com/"
			return c
		}, "spec.artifacts.mirror must be an http or https URL"},
		{"artifact override, not built yet", func() client.Object {
			c := validCluster(ns)
			c.Spec.Artifacts.Overrides = []basaltv1.ArtifactOverride{{Name: "etcd", URL: "https://x.example.com/etcd", SHA256: strings.Repeat("a", 64)}}
			return c
		}, "spec.artifacts.overrides is not built yet"},
		{"artifact override with a bad sha256", func() client.Object {
			c := validCluster(ns)
			c.Spec.Artifacts.Overrides = []basaltv1.ArtifactOverride{{Name: "etcd", URL: "https://x.example.com/etcd", SHA256: "abc"}}
			return c
		}, "artifact override sha256 must be 64 lowercase hex digits"},
		{"unknown CNI", func() client.Object {
			c := validCluster(ns)
			c.Spec.Network.CNI = "flannel"
			return c
		}, `supported values: "bridge", "none"`},
		{"unknown upgrade strategy", func() client.Object {
			c := validCluster(ns)
			c.Spec.Upgrade.Strategy = "Rolling"
			return c
		}, `supported values: "InPlace", "Replace"`},
		{"maxUnhealthy over 100%", func() client.Object {
			c := validCluster(ns)
			c.Spec.Remediation.MaxUnhealthy = &intstr.IntOrString{Type: intstr.String, StrVal: "150%"}
			return c
		}, "spec.remediation.maxUnhealthy must be a count (0 or more) or a percentage"},
		{"maxUnhealthy negative", func() client.Object {
			c := validCluster(ns)
			c.Spec.Remediation.MaxUnhealthy = &intstr.IntOrString{Type: intstr.Int, IntVal: -1}
			return c
		}, "spec.remediation.maxUnhealthy must be a count (0 or more) or a percentage"},
		{"upgrade strategy Replace, not built", func() client.Object {
			c := validCluster(ns)
			c.Spec.Upgrade.Strategy = basaltv1.UpgradeReplace
			return c
		}, "spec.upgrade.strategy Replace is not built yet"},
		{"host with both ssh and boot", func() client.Object {
			h := validSSHHost(ns)
			h.Spec.Boot = &basaltv1.BootSpec{MACAddresses: []string{"52:54:00:12:34:56"}}
			return h
		}, "a Host must set exactly one of spec.ssh"},
		{"host with neither ssh nor boot", func() client.Object {
			h := validSSHHost(ns)
			h.Spec.SSH = nil
			return h
		}, "a Host must set exactly one of spec.ssh"},
		{"malformed MAC", func() client.Object {
			h := validSSHHost(ns)
			h.Spec.SSH, h.Spec.Boot = nil, &basaltv1.BootSpec{MACAddresses: []string{"52:54:00:12:34"}}
			return h
		}, "each spec.boot.macAddresses entry must be six lowercase hex pairs"},
		{"upper-case MAC", func() client.Object {
			h := validSSHHost(ns)
			h.Spec.SSH, h.Spec.Boot = nil, &basaltv1.BootSpec{MACAddresses: []string{"52:54:00:AB:34:56"}}
			return h
		}, "each spec.boot.macAddresses entry must be six lowercase hex pairs"},
		{"empty root device hints", func() client.Object {
			return bootHostWith(ns, func(b *basaltv1.BootSpec) { b.RootDeviceHints = &basaltv1.RootDeviceHints{} })
		}, "spec.boot.rootDeviceHints must set at least one of deviceName"},
		{"rootDisk and rootDeviceHints.deviceName", func() client.Object {
			return bootHostWith(ns, func(b *basaltv1.BootSpec) {
				b.RootDisk, b.RootDeviceHints = "sda", &basaltv1.RootDeviceHints{DeviceName: "sdb"}
			})
		}, "spec.boot.rootDisk is the older name of spec.boot.rootDeviceHints.deviceName"},
		{"device name with a by-id path", func() client.Object {
			return bootHostWith(ns, func(b *basaltv1.BootSpec) {
				b.RootDeviceHints = &basaltv1.RootDeviceHints{DeviceName: "/dev/disk/by-id/wwn-0x5000c500a1b2"}
			})
		}, "spec.boot.rootDeviceHints.deviceName must be a disk's kernel name"},
		{"upper-case WWN", func() client.Object {
			return bootHostWith(ns, func(b *basaltv1.BootSpec) { b.RootDeviceHints = &basaltv1.RootDeviceHints{WWN: "0x5000C500A1B2C3D4"} })
		}, "spec.boot.rootDeviceHints.wwn must be a WWN as status.hardware.disks[].wwn reports it"},
		{"by-path with a space", func() client.Object {
			return bootHostWith(ns, func(b *basaltv1.BootSpec) { b.RootDeviceHints = &basaltv1.RootDeviceHints{ByPath: "pci 0000"} })
		}, "spec.boot.rootDeviceHints.byPath must be a /dev/disk/by-path name"},
		{"min size zero", func() client.Object {
			return bootHostWith(ns, func(b *basaltv1.BootSpec) {
				b.RootDeviceHints = &basaltv1.RootDeviceHints{MinSizeGigabytes: -1}
			})
		}, "should be greater than or equal to 1"},
		{"ssh port zero", func() client.Object {
			h := validSSHHost(ns)
			h.Spec.SSH.Port = -1
			return h
		}, "should be greater than or equal to 1"},
		{"ssh port above 65535", func() client.Object {
			h := validSSHHost(ns)
			h.Spec.SSH.Port = 65536
			return h
		}, "should be less than or equal to 65535"},
		{"ssh address with a space", func() client.Object {
			h := validSSHHost(ns)
			h.Spec.SSH.Address = "node 1"
			return h
		}, "spec.ssh.address must be an IP address or a lowercase DNS name"},
		{"pinned host key not in authorized_keys format", func() client.Object {
			h := validSSHHost(ns)
			h.Spec.SSH.HostKeys = []string{"AAAAC3NzaC1lZDI1NTE5AAAAIFQp"}
			return h
		}, "each spec.ssh.hostKeys entry must be a public key in authorized_keys format"},
		{"unknown BMC protocol", func() client.Object {
			h := validSSHHost(ns)
			h.Spec.BMC = &basaltv1.BMCSpec{Protocol: "snmp", Address: "10.0.1.1", CredentialsSecretRef: basaltv1.LocalObjectReference{Name: "b"}}
			return h
		}, `supported values: "redfish", "ipmi"`},
		{"unknown machine role", func() client.Object {
			m := validMachine(ns)
			m.Spec.Role = "master"
			return m
		}, `supported values: "control-plane", "worker"`},
		{"pool on a control-plane machine", func() client.Object {
			m := validMachine(ns)
			m.Spec.Role, m.Spec.Pool = basaltv1.RoleControlPlane, "a"
			return m
		}, "spec.pool is only for workers"},
		{"machine version malformed", func() client.Object {
			m := validMachine(ns)
			m.Spec.Version = "latest"
			return m
		}, "spec.version must look like v1.37.2"},
		{"node label key with two slashes", func() client.Object {
			c := validCluster(ns)
			c.Spec.Workers[0].NodeLabels = []basaltv1.NodeLabel{{Key: "a/b/c"}}
			return c
		}, "node label key must be a label key"},
		{"reserved node label key", func() client.Object {
			c := validCluster(ns)
			c.Spec.Workers[0].NodeLabels = []basaltv1.NodeLabel{{Key: "kubernetes.io/hostname", Value: "x"}}
			return c
		}, "node label keys in the kubernetes.io, k8s.io and basalt.dev namespaces are reserved"},
		{"Basalt's own node label", func() client.Object {
			c := validCluster(ns)
			c.Spec.Workers[0].NodeLabels = []basaltv1.NodeLabel{{Key: "basalt.dev/pool", Value: "x"}}
			return c
		}, "are reserved"},
		{"node label value with a space", func() client.Object {
			c := validCluster(ns)
			c.Spec.Workers[0].NodeLabels = []basaltv1.NodeLabel{{Key: "tier", Value: "a b"}}
			return c
		}, "node label value must be a label value"},
		{"taint effect", func() client.Object {
			c := validCluster(ns)
			c.Spec.Workers[0].NodeTaints = []basaltv1.NodeTaint{{Key: "example.com/gpu", Effect: "Never"}}
			return c
		}, "Unsupported value: \"Never\""},
		{"reserved taint key", func() client.Object {
			c := validCluster(ns)
			c.Spec.Workers[0].NodeTaints = []basaltv1.NodeTaint{{Key: "node.kubernetes.io/unschedulable", Effect: "NoSchedule"}}
			return c
		}, "taint keys in the kubernetes.io, k8s.io and basalt.dev namespaces are reserved"},
		{"taint twice", func() client.Object {
			c := validCluster(ns)
			c.Spec.Workers[0].NodeTaints = []basaltv1.NodeTaint{{Key: "example.com/gpu", Effect: "NoSchedule"}, {Key: "example.com/gpu", Value: "b", Effect: "NoSchedule"}}
			return c
		}, "one taint per key and effect"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := env.Client.Create(context.Background(), tc.obj())
			if err == nil {
				t.Fatalf("created, want refusal containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("refused with %q, want a message containing %q", err, tc.want)
			}
		})
	}
}

// TestUpdateRejected checks the transition rules: versions never go down or skip a minor, a
// Machine's cluster and role never change, and a bound Machine never moves to another Host.
func TestUpdateRejected(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	cases := []struct {
		name   string
		create func() client.Object
		mutate func(client.Object)
		want   string
	}{
		{"patch downgrade", func() client.Object { return validCluster(ns) },
			func(o client.Object) { o.(*basaltv1.Cluster).Spec.Version = "v1.37.1" },
			"spec.version cannot be lowered"},
		{"minor downgrade", func() client.Object { return validCluster(ns) },
			func(o client.Object) { o.(*basaltv1.Cluster).Spec.Version = "v1.36.9" },
			"spec.version cannot be lowered"},
		{"two minors at once", func() client.Object {
			c := validCluster(ns)
			c.Spec.Version = "v1.35.4"
			return c
		}, func(o client.Object) { o.(*basaltv1.Cluster).Spec.Version = "v1.37.0" },
			"spec.version may be raised by at most one minor version at a time"},
		{"major change", func() client.Object { return validCluster(ns) },
			func(o client.Object) { o.(*basaltv1.Cluster).Spec.Version = "v2.0.0" },
			"spec.version cannot change its major version"},
		{"machine moved to another cluster", func() client.Object { return validMachine(ns) },
			func(o client.Object) { o.(*basaltv1.Machine).Spec.Cluster = "other" },
			"spec.cluster is immutable"},
		{"machine role changed", func() client.Object { return validMachine(ns) },
			func(o client.Object) { o.(*basaltv1.Machine).Spec.Role = basaltv1.RoleControlPlane },
			"spec.role is immutable"},
		{"bound machine moved to another host", func() client.Object {
			m := validMachine(ns)
			m.Spec.HostRef = &basaltv1.LocalObjectReference{Name: "h1"}
			return m
		}, func(o client.Object) { o.(*basaltv1.Machine).Spec.HostRef.Name = "h2" },
			"spec.hostRef cannot change once bound"},
		{"address of a bound host", func() client.Object {
			h := validSSHHost(ns)
			h.Name, h.GenerateName = "bound-host", ""
			return h
		}, func(o client.Object) {
			h := o.(*basaltv1.Host)
			h.Status.ConsumerRef = &basaltv1.LocalObjectReference{Name: "m-1"}
			if err := env.Client.Status().Update(context.Background(), h); err != nil {
				panic(err)
			}
			h.Spec.SSH.Address = "10.0.0.99"
		}, "spec.ssh.address cannot change while the Host is bound"},
		{"bound machine unbound", func() client.Object {
			m := validMachine(ns)
			m.Spec.HostRef = &basaltv1.LocalObjectReference{Name: "h1"}
			return m
		}, func(o client.Object) { o.(*basaltv1.Machine).Spec.HostRef = nil },
			"spec.hostRef cannot change once bound"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := tc.create()
			if err := env.Client.Create(ctx, obj); err != nil {
				t.Fatalf("creating the valid object: %v", err)
			}
			tc.mutate(obj)
			err := env.Client.Update(ctx, obj)
			if err == nil {
				t.Fatalf("updated, want refusal containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("refused with %q, want a message containing %q", err, tc.want)
			}
		})
	}
}

// TestUpdateAccepted checks that the transition rules let through what they must: one minor up,
// a patch up, binding an unbound Machine.
func TestUpdateAccepted(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	c := validCluster(ns)
	c.Spec.Version = "v1.36.3"
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"v1.36.4", "v1.37.0", "v1.37.2"} {
		c.Spec.Version = v
		if err := env.Client.Update(ctx, c); err != nil {
			t.Fatalf("raising to %s: %v", v, err)
		}
	}
	// A virtual IP, alone or behind a DNS name, may be added later.
	c.Spec.ControlPlane.VirtualIP = &basaltv1.VirtualIPSpec{Address: "10.0.0.10"}
	if err := env.Client.Update(ctx, c); err != nil {
		t.Fatalf("adding a virtual IP: %v", err)
	}
	c.Spec.ControlPlane.Endpoint = &basaltv1.APIEndpoint{Host: "api.example.com", Port: 6443}
	if err := env.Client.Update(ctx, c); err != nil {
		t.Fatalf("a DNS name for the virtual IP: %v", err)
	}
	m := validMachine(ns)
	if err := env.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	m.Spec.HostRef = &basaltv1.LocalObjectReference{Name: "h1"}
	if err := env.Client.Update(ctx, m); err != nil {
		t.Fatalf("binding an unbound Machine: %v", err)
	}
	// A Host's address may change while no Machine holds it (and again once released).
	h := validSSHHost(ns)
	if err := env.Client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	h.Spec.SSH.Address = "10.0.0.2"
	if err := env.Client.Update(ctx, h); err != nil {
		t.Fatalf("changing the address of an unbound Host: %v", err)
	}
	h.Status.ConsumerRef = &basaltv1.LocalObjectReference{Name: "m-1"}
	if err := env.Client.Status().Update(ctx, h); err != nil {
		t.Fatal(err)
	}
	h.Labels = map[string]string{"rack": "r1"} // other changes of a bound Host are fine
	if err := env.Client.Update(ctx, h); err != nil {
		t.Fatalf("labelling a bound Host: %v", err)
	}
	h.Status.ConsumerRef = nil
	if err := env.Client.Status().Update(ctx, h); err != nil {
		t.Fatal(err)
	}
	h.Spec.SSH.Address = "10.0.0.3"
	if err := env.Client.Update(ctx, h); err != nil {
		t.Fatalf("changing the address of a released Host: %v", err)
	}
}

// TestRootDeviceHintsAccepted: every hint, in the forms the agent reports them, and the older
// rootDisk together with hints other than deviceName.
func TestRootDeviceHintsAccepted(t *testing.T) {
	ns := env.Namespace(t)
	yes := true
	for _, b := range []func(*basaltv1.BootSpec){
		func(b *basaltv1.BootSpec) {
			b.EraseExistingDisk = true
			b.RootDeviceHints = &basaltv1.RootDeviceHints{DeviceName: "/dev/nvme0n1", MinSizeGigabytes: 100, Model: "SAMSUNG",
				SerialNumber: "S437NA0M123456", WWN: "eui.0025388b91b12345", ByPath: "pci-0000:01:00.0-nvme-1", Rotational: &yes}
		},
		func(b *basaltv1.BootSpec) {
			b.RootDeviceHints = &basaltv1.RootDeviceHints{DeviceName: "sda", WWN: "0x5000c500a1b2c3d4", ByPath: "/dev/disk/by-path/pci-0000:00:1f.2-ata-1.0"}
		},
		func(b *basaltv1.BootSpec) {
			b.RootDisk, b.RootDeviceHints = "sda", &basaltv1.RootDeviceHints{MinSizeGigabytes: 1}
		},
	} {
		if err := env.Client.Create(context.Background(), bootHostWith(ns, b)); err != nil {
			t.Error(err)
		}
	}
}

// TestDefaults checks that an almost empty Cluster and Host get the documented defaults.
func TestDefaults(t *testing.T) {
	ns := env.Namespace(t)
	ctx := context.Background()
	c := &basaltv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: ns}, Spec: basaltv1.ClusterSpec{Version: "v1.37.2"}}
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	want := basaltv1.ClusterSpec{
		Version:      "v1.37.2",
		ControlPlane: basaltv1.ControlPlaneSpec{Replicas: 1},
		Network: basaltv1.NetworkSpec{PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12", NodeCIDRMaskSize: 24,
			DNSDomain: "cluster.local", CNI: basaltv1.CNIBridge},
		Certificates:     basaltv1.CertificatesSpec{ValidityDays: 365, RenewBeforeDays: 30},
		Upgrade:          basaltv1.UpgradeSpec{Strategy: basaltv1.UpgradeInPlace, MaxUnavailableWorkers: 1},
		NodeDrainTimeout: &metav1.Duration{Duration: 5 * time.Minute},
		Remediation: basaltv1.RemediationSpec{
			NodeNotReadyTimeout: &metav1.Duration{Duration: 5 * time.Minute},
			AgentSilentTimeout:  &metav1.Duration{Duration: 5 * time.Minute},
			MaxRetries:          func() *int32 { n := int32(3); return &n }(),
			RetryPeriod:         &metav1.Duration{Duration: time.Hour},
			MaxUnhealthy:        &intstr.IntOrString{Type: intstr.String, StrVal: "40%"},
		},
		Addons: basaltv1.AddonsSpec{DNS: basaltv1.DNSAddonSpec{Replicas: 2}, Storage: basaltv1.StorageAddonSpec{DefaultClass: func() *bool { b := true; return &b }()}},
	}
	if !reflect.DeepEqual(c.Spec, want) {
		got, _ := json.Marshal(c.Spec)
		exp, _ := json.Marshal(want)
		t.Fatalf("defaulted spec\n got %s\nwant %s", got, exp)
	}
	h := validSSHHost(ns)
	if err := env.Client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	if h.Spec.SSH.Port != 22 || h.Spec.SSH.User != "root" {
		t.Fatalf("ssh defaults: port %d user %q, want 22 root", h.Spec.SSH.Port, h.Spec.SSH.User)
	}
}

// TestSamplesAccepted applies every sample in config/samples with a server-side dry run.
func TestSamplesAccepted(t *testing.T) {
	ns := env.Namespace(t)
	files, err := filepath.Glob(filepath.Join(envtest.RepoRoot(), "config", "samples", "basalt_*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(b, &u.Object); err != nil {
				t.Fatal(err)
			}
			u.SetNamespace(ns)
			if err := env.Client.Create(context.Background(), u, client.DryRunAll); err != nil {
				t.Fatalf("sample refused: %v", err)
			}
		})
	}
}
