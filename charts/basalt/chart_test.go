package basalt_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	basaltchart "github.com/basalt-dev/basalt/charts/basalt"
)

// repoRoot is the repository's root, two folders up from the chart.
func repoRoot() string { return filepath.Join(basaltchart.Dir(), "..", "..") }

// scenarios are the value sets every test renders: the defaults and each optional feature on.
var scenarios = map[string]map[string]any{
	"defaults":   nil,
	"namespaced": {"rbac": map[string]any{"scope": "Namespace"}},
	"pxe": {"pxe": map[string]any{
		"enabled": true, "interface": "eno2", "serverIP": "192.168.10.2",
		"dhcp":      map[string]any{"mode": "full", "pool": "192.168.10.100-192.168.10.199/24", "poolGateway": "192.168.10.1"},
		"discovery": map[string]any{"enabled": true, "namespace": "discovered"},
		"http":      map[string]any{"port": 8080, "url": "http://boot.example:8080"}, "agentKernelArgs": []any{"console=ttyS0"},
	}},
	"everything-off": {
		"crds": map[string]any{"install": false}, "metrics": map[string]any{"enabled": false},
		"agentAPI": map[string]any{"enabled": false}, "leaderElection": map[string]any{"enabled": false},
		"serviceAccount": map[string]any{"create": false, "name": "existing"},
	},
	"exposed": {
		"replicas": 2,
		"agentAPI": map[string]any{"addresses": []any{"10.1.2.3", "basalt.example"},
			"service": map[string]any{"type": "LoadBalancer", "nodePort": 30943, "loadBalancerIP": "10.1.2.3"}},
		"artifacts":         map[string]any{"sets": []any{"/artifacts/v1.37.2"}, "cache": map[string]any{"existingClaim": "basalt-cache"}},
		"extraVolumes":      []any{map[string]any{"name": "artifacts", "hostPath": map[string]any{"path": "/srv/basalt"}}},
		"extraVolumeMounts": []any{map[string]any{"name": "artifacts", "mountPath": "/artifacts", "readOnly": true}},
		"manager":           map[string]any{"extraArgs": []any{"--zap-encoder=console"}},
		"sshProvisioning":   map[string]any{"enabled": true, "requirePinnedHostKeys": true},
	},
}

func render(t *testing.T, vals map[string]any) []*unstructured.Unstructured {
	t.Helper()
	m, err := basaltchart.Render(basaltchart.RenderInput{Values: vals})
	if err != nil {
		t.Fatalf("rendering: %v", err)
	}
	objs, err := basaltchart.Objects(m)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func mustFind(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	o := find(objs, kind, name)
	if o == nil {
		var have []string
		for _, o := range objs {
			have = append(have, o.GetKind()+"/"+o.GetName())
		}
		t.Fatalf("no %s %s rendered; have %v", kind, name, have)
	}
	return o
}

// readObjects parses a YAML file of config/.
func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := basaltchart.Objects(string(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return objs
}

func TestLint(t *testing.T) {
	for name, vals := range scenarios {
		t.Run(name, func(t *testing.T) {
			msgs, err := basaltchart.Lint(basaltchart.LintInput{Values: vals})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				t.Errorf("helm lint --strict: %s", m.Error())
			}
		})
	}
}

// TestLintReportsBadValues makes sure Lint reports what helm lint reports: values the schema
// refuses are a finding.
func TestLintReportsBadValues(t *testing.T) {
	msgs, err := basaltchart.Lint(basaltchart.LintInput{Values: map[string]any{"image": map[string]any{"repository": "Not A Repository"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) == 0 {
		t.Fatal("helm lint accepted values that values.schema.json refuses")
	}
	if !strings.Contains(msgs[0].Error(), "/image/repository") {
		t.Errorf("lint finding %q does not name /image/repository", msgs[0].Error())
	}
}

// TestFilesAreCopiesOfConfig is the drift check `go test` runs on its own (make verify runs
// hack/chart-sync.sh --check too): files/ holds byte copies of config/, nothing more.
func TestFilesAreCopiesOfConfig(t *testing.T) {
	root := repoRoot()
	crds, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(crds) == 0 {
		t.Fatalf("no CRDs in config/crd/bases (%v)", err)
	}
	pairs := map[string]string{}
	for _, f := range crds {
		pairs[f] = filepath.Join(basaltchart.Dir(), "files", "crds", filepath.Base(f))
	}
	for _, f := range []string{"role.yaml", "leader_election_role.yaml", "metrics_auth_role.yaml"} {
		pairs[filepath.Join(root, "config", "rbac", f)] = filepath.Join(basaltchart.Dir(), "files", "rbac", f)
	}
	for src, dst := range pairs {
		a, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s is not a copy of %s (%v): run make chart", dst, src, err)
		}
	}
	copies, _ := filepath.Glob(filepath.Join(basaltchart.Dir(), "files", "crds", "*.yaml"))
	for _, c := range copies {
		if _, err := os.Stat(filepath.Join(root, "config", "crd", "bases", filepath.Base(c))); err != nil {
			t.Errorf("%s has no source in config/crd/bases: run make chart", c)
		}
	}
}

// TestCRDsMatchConfig compares the rendered CRDs with config/crd/bases object by object: the only
// difference allowed is the keep annotation.
func TestCRDsMatchConfig(t *testing.T) {
	objs := render(t, nil)
	files, _ := filepath.Glob(filepath.Join(repoRoot(), "config", "crd", "bases", "*.yaml"))
	var want []string
	for _, f := range files {
		for _, crd := range readObjects(t, f) {
			want = append(want, crd.GetName())
			got := mustFind(t, objs, "CustomResourceDefinition", crd.GetName()).DeepCopy()
			ann := got.GetAnnotations()
			if ann["helm.sh/resource-policy"] != "keep" {
				t.Errorf("CRD %s: helm.sh/resource-policy = %q, want keep", crd.GetName(), ann["helm.sh/resource-policy"])
			}
			delete(ann, "helm.sh/resource-policy")
			got.SetAnnotations(ann)
			if d := cmp.Diff(crd.Object, got.Object); d != "" {
				t.Errorf("CRD %s differs from %s (-config +chart):\n%s", crd.GetName(), f, d)
			}
		}
	}
	var have []string
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			have = append(have, o.GetName())
		}
	}
	slices.Sort(want)
	slices.Sort(have)
	if !slices.Equal(want, have) {
		t.Errorf("chart CRDs %v, config/crd/bases %v", have, want)
	}
	if o := render(t, map[string]any{"crds": map[string]any{"keep": false}}); find(o, "CustomResourceDefinition", "hosts.basalt.dev").GetAnnotations()["helm.sh/resource-policy"] != "" {
		t.Error("crds.keep=false still renders the keep annotation")
	}
	for _, o := range render(t, map[string]any{"crds": map[string]any{"install": false}}) {
		if o.GetKind() == "CustomResourceDefinition" {
			t.Errorf("crds.install=false renders %s", o.GetName())
		}
	}
}

func rules(t *testing.T, o *unstructured.Unstructured) []any {
	t.Helper()
	r, ok, err := unstructured.NestedSlice(o.Object, "rules")
	if err != nil || !ok || len(r) == 0 {
		t.Fatalf("%s %s has no rules (%v)", o.GetKind(), o.GetName(), err)
	}
	return r
}

// TestRBACMatchesConfig checks every role the chart renders against the rules in config/rbac, in
// both scopes, and that the namespaced mode grants nothing cluster-wide but metrics auth.
func TestRBACMatchesConfig(t *testing.T) {
	cfg := func(file, kind, name string) []any {
		o := find(readObjects(t, filepath.Join(repoRoot(), "config", "rbac", file)), kind, name)
		if o == nil {
			t.Fatalf("config/rbac/%s has no %s %s", file, kind, name)
		}
		return rules(t, o)
	}
	manager := cfg("role.yaml", "ClusterRole", "basalt-manager")
	leader := cfg("leader_election_role.yaml", "Role", "basalt-leader-election")
	metricsAuth := cfg("metrics_auth_role.yaml", "ClusterRole", "basalt-metrics-auth")
	metricsReader := cfg("metrics_auth_role.yaml", "ClusterRole", "basalt-metrics-reader")

	check := func(objs []*unstructured.Unstructured, kind, name string, want []any) {
		t.Helper()
		if d := cmp.Diff(want, rules(t, mustFind(t, objs, kind, name))); d != "" {
			t.Errorf("%s %s rules differ from config/rbac (-config +chart):\n%s", kind, name, d)
		}
	}
	binding := func(objs []*unstructured.Unstructured, kind, name, roleKind string) {
		t.Helper()
		b := mustFind(t, objs, kind, name)
		if k, _, _ := unstructured.NestedString(b.Object, "roleRef", "kind"); k != roleKind {
			t.Errorf("%s %s binds a %s, want %s", kind, name, k, roleKind)
		}
		subs, _, _ := unstructured.NestedSlice(b.Object, "subjects")
		want := []any{map[string]any{"kind": "ServiceAccount", "name": "basalt", "namespace": "basalt-system"}}
		if d := cmp.Diff(want, subs); d != "" {
			t.Errorf("%s %s subjects (-want +got):\n%s", kind, name, d)
		}
	}

	cluster := render(t, nil)
	check(cluster, "ClusterRole", "basalt-manager", manager)
	binding(cluster, "ClusterRoleBinding", "basalt-manager", "ClusterRole")
	check(cluster, "Role", "basalt-leader-election", leader)
	binding(cluster, "RoleBinding", "basalt-leader-election", "Role")
	check(cluster, "ClusterRole", "basalt-metrics-auth", metricsAuth)
	check(cluster, "ClusterRole", "basalt-metrics-reader", metricsReader)
	if args := managerArgs(t, cluster); slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--watch-namespace") }) {
		t.Errorf("cluster scope passes a watch namespace: %v", args)
	}

	ns := render(t, scenarios["namespaced"])
	check(ns, "Role", "basalt-manager", manager)
	binding(ns, "RoleBinding", "basalt-manager", "Role")
	if mustFind(t, ns, "Role", "basalt-manager").GetNamespace() != "basalt-system" {
		t.Error("the namespaced manager Role is not in the release namespace")
	}
	var clusterScoped []string
	for _, o := range ns {
		switch o.GetKind() {
		case "ClusterRole", "ClusterRoleBinding":
			clusterScoped = append(clusterScoped, o.GetKind()+"/"+o.GetName())
		}
	}
	want := []string{"ClusterRole/basalt-metrics-auth", "ClusterRole/basalt-metrics-reader", "ClusterRoleBinding/basalt-metrics-auth"}
	slices.Sort(clusterScoped)
	if !slices.Equal(clusterScoped, want) {
		t.Errorf("namespaced mode renders cluster-wide %v, want only %v", clusterScoped, want)
	}
	if args := managerArgs(t, ns); !slices.Contains(args, "--watch-namespace=$(POD_NAMESPACE)") {
		t.Errorf("namespaced mode does not restrict the manager to its namespace: %v", args)
	}
}

func managerContainer(t *testing.T, objs []*unstructured.Unstructured) map[string]any {
	t.Helper()
	d := mustFind(t, objs, "Deployment", "basalt")
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if len(cs) != 1 {
		t.Fatalf("the Deployment has %d containers, want 1", len(cs))
	}
	return cs[0].(map[string]any)
}

func managerArgs(t *testing.T, objs []*unstructured.Unstructured) []string {
	t.Helper()
	args, _, err := unstructured.NestedStringSlice(managerContainer(t, objs), "args")
	if err != nil {
		t.Fatal(err)
	}
	return args
}

func TestDeploymentDefaults(t *testing.T) {
	objs := render(t, nil)
	d := mustFind(t, objs, "Deployment", "basalt")
	pod, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec")
	c := managerContainer(t, objs)

	want := map[string]any{"runAsNonRoot": true, "runAsUser": int64(65532), "runAsGroup": int64(65532), "fsGroup": int64(65532),
		"seccompProfile": map[string]any{"type": "RuntimeDefault"}}
	if d := cmp.Diff(want, pod["securityContext"]); d != "" {
		t.Errorf("pod securityContext (-want +got):\n%s", d)
	}
	wantC := map[string]any{"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": map[string]any{"drop": []any{"ALL"}}}
	if d := cmp.Diff(wantC, c["securityContext"]); d != "" {
		t.Errorf("container securityContext (-want +got):\n%s", d)
	}
	if pod["hostNetwork"] != nil {
		t.Errorf("hostNetwork = %v by default", pod["hostNetwork"])
	}
	for _, probe := range []string{"livenessProbe", "readinessProbe"} {
		if _, ok := c[probe]; !ok {
			t.Errorf("no %s", probe)
		}
	}
	args := managerArgs(t, objs)
	for _, a := range []string{"--leader-elect=true", "--agent-api-bind-address=:9443", "--agent-api-addresses=$(POD_IP)",
		"--agent-binary=/usr/local/bin/basalt-agent", "--metrics-bind-address=:8443", "--metrics-secure=true", "--health-probe-bind-address=:8081"} {
		if !slices.Contains(args, a) {
			t.Errorf("args %v lack %s", args, a)
		}
	}
	if img := c["image"]; img != "basalt-manager:0.1.0" {
		t.Errorf("image %v, want basalt-manager:<appVersion>", img)
	}
	for name, port := range map[string]int64{"basalt-agent-api": 9443, "basalt-metrics": 8443} {
		s := mustFind(t, objs, "Service", name)
		ports, _, _ := unstructured.NestedSlice(s.Object, "spec", "ports")
		if len(ports) != 1 || ports[0].(map[string]any)["port"] != port {
			t.Errorf("Service %s ports %v, want %d", name, ports, port)
		}
	}
}

func TestPXEOnTheHostNetwork(t *testing.T) {
	objs := render(t, scenarios["pxe"])
	d := mustFind(t, objs, "Deployment", "basalt")
	pod, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec")
	if pod["hostNetwork"] != true || pod["dnsPolicy"] != "ClusterFirstWithHostNet" {
		t.Errorf("hostNetwork %v dnsPolicy %v", pod["hostNetwork"], pod["dnsPolicy"])
	}
	if s, _, _ := unstructured.NestedString(d.Object, "spec", "strategy", "type"); s != "Recreate" {
		t.Errorf("strategy %q on the host network, want Recreate", s)
	}
	c := managerContainer(t, objs)
	caps, _, _ := unstructured.NestedMap(c, "securityContext", "capabilities")
	if d := cmp.Diff(map[string]any{"drop": []any{"ALL"}, "add": []any{"NET_BIND_SERVICE", "NET_RAW"}}, caps); d != "" {
		t.Errorf("capabilities (-want +got):\n%s", d)
	}
	if ro, _, _ := unstructured.NestedBool(c, "securityContext", "readOnlyRootFilesystem"); !ro {
		t.Error("PXE mode has a writable root filesystem")
	}
	args := managerArgs(t, objs)
	for _, a := range []string{"--pxe-interface=eno2", "--pxe-server-ip=192.168.10.2", "--pxe-dhcp-mode=full",
		"--pxe-dhcp-pool=192.168.10.100-192.168.10.199/24", "--pxe-dhcp-pool-gateway=192.168.10.1", "--pxe-discovery",
		"--pxe-discovery-namespace=discovered", "--pxe-tftp-root=/usr/lib/ipxe", "--pxe-kernel=/usr/share/basalt/pxe/vmlinuz",
		"--pxe-initramfs=/usr/share/basalt/pxe/initramfs", "--pxe-root-image=/usr/share/basalt/pxe/root.img.gz", "--pxe-http-bind-address=192.168.10.2:8080", "--pxe-http-url=http://boot.example:8080",
		"--pxe-agent-kernel-args=console=ttyS0", "--agent-api-addresses=$(HOST_IP)"} {
		if !slices.Contains(args, a) {
			t.Errorf("args lack %s: %v", a, args)
		}
	}
	ports, _, _ := unstructured.NestedSlice(c, "ports")
	var names []string
	for _, p := range ports {
		names = append(names, p.(map[string]any)["name"].(string))
	}
	if !slices.Contains(names, "dhcp") || !slices.Contains(names, "tftp") || !slices.Contains(names, "http-boot") {
		t.Errorf("ports %v lack the PXE services", names)
	}
	// The server IP defaults to the node's.
	if args := managerArgs(t, render(t, map[string]any{"pxe": map[string]any{"enabled": true, "interface": "eno2"}})); !slices.Contains(args, "--pxe-server-ip=$(HOST_IP)") || !slices.Contains(args, "--pxe-http-bind-address=$(HOST_IP):8080") {
		t.Errorf("without pxe.serverIP the args are %v, want the node's IP", args)
	}
	// HTTP boot on every interface, when asked.
	if args := managerArgs(t, render(t, map[string]any{"pxe": map[string]any{"enabled": true, "interface": "eno2", "http": map[string]any{"port": 8080, "bindAddress": ":8080"}}})); !slices.Contains(args, "--pxe-http-bind-address=:8080") {
		t.Errorf("with pxe.http.bindAddress :8080 the args are %v", args)
	}
	// pxe.rootImage "" keeps network-booted Hosts diskless: no --pxe-root-image at all.
	diskless := managerArgs(t, render(t, map[string]any{"pxe": map[string]any{"enabled": true, "interface": "eno2", "rootImage": ""}}))
	for _, a := range diskless {
		if strings.HasPrefix(a, "--pxe-root-image") {
			t.Errorf("with pxe.rootImage \"\" the args have %s: %v", a, diskless)
		}
	}
	if !slices.Contains(diskless, "--pxe-kernel=/usr/share/basalt/pxe/vmlinuz") {
		t.Errorf("with pxe.rootImage \"\" the args lack the kernel: %v", diskless)
	}
	// Without pxe.enabled no PXE flag is passed, the root image's included.
	for _, a := range managerArgs(t, render(t, nil)) {
		if strings.HasPrefix(a, "--pxe-") {
			t.Errorf("PXE is off by default, yet the args have %s", a)
		}
	}
}

var (
	flagsOnce sync.Once
	flagSet   map[string]bool
	flagsErr  error
)

// managerFlags builds cmd/manager and returns the flags its --help lists.
func managerFlags(t *testing.T) map[string]bool {
	t.Helper()
	flagsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "basalt-manager-flags-")
		if err != nil {
			flagsErr = err
			return
		}
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "manager")
		build := exec.Command("go", "build", "-o", bin, "./cmd/manager")
		build.Dir = repoRoot()
		if out, err := build.CombinedOutput(); err != nil {
			flagsErr = fmt.Errorf("go build ./cmd/manager: %w: %s", err, out)
			return
		}
		out, _ := exec.Command(bin, "--help").CombinedOutput()
		flagSet = map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
			flagSet[m[1]] = true
		}
		if len(flagSet) == 0 {
			flagsErr = fmt.Errorf("manager --help lists no flags: %s", out)
		}
	})
	if flagsErr != nil {
		t.Fatalf("listing cmd/manager's flags: %v", flagsErr)
	}
	return flagSet
}

// TestArgsAreManagerFlags renders every scenario and checks each argument names a flag that
// cmd/manager defines, so a renamed flag breaks this test rather than a deployment.
func TestArgsAreManagerFlags(t *testing.T) {
	flags := managerFlags(t)
	for name, vals := range scenarios {
		for _, a := range managerArgs(t, render(t, vals)) {
			f := strings.TrimPrefix(strings.SplitN(a, "=", 2)[0], "--")
			if !flags[f] {
				t.Errorf("%s: argument %q is not a flag of cmd/manager", name, a)
			}
		}
	}
}

// TestSchemaRefusesBadValues feeds values that values.schema.json must refuse, each with the
// part of Helm's error that says what is wrong and where.
func TestSchemaRefusesBadValues(t *testing.T) {
	cases := []struct {
		name string
		vals map[string]any
		want []string
	}{
		{"unknown top-level key", map[string]any{"replica": 2}, []string{"additional properties 'replica' not allowed"}},
		{"unknown nested key", map[string]any{"agentAPI": map[string]any{"adresses": []any{"10.0.0.1"}}}, []string{"/agentAPI", "'adresses'"}},
		{"pull policy", map[string]any{"image": map[string]any{"pullPolicy": "Sometimes"}}, []string{"/image/pullPolicy", "Always", "IfNotPresent", "Never"}},
		{"rbac scope", map[string]any{"rbac": map[string]any{"scope": "Everything"}}, []string{"/rbac/scope", "Cluster", "Namespace"}},
		{"port out of range", map[string]any{"agentAPI": map[string]any{"port": 70000}}, []string{"/agentAPI/port", "maximum"}},
		{"wrong type", map[string]any{"metrics": map[string]any{"enabled": "yes"}}, []string{"/metrics/enabled", "boolean"}},
		{"zero concurrency", map[string]any{"manager": map[string]any{"concurrency": map[string]any{"host": 0}}}, []string{"/manager/concurrency/host", "minimum"}},
		{"PXE without an interface", map[string]any{"pxe": map[string]any{"enabled": true}}, []string{"/pxe", "interface"}},
		{"PXE without the agent API", map[string]any{"pxe": map[string]any{"enabled": true, "interface": "eno2"}, "agentAPI": map[string]any{"enabled": false}}, []string{"/agentAPI/enabled"}},
		{"pool in proxy mode", map[string]any{"pxe": map[string]any{"dhcp": map[string]any{"pool": "10.0.0.10-10.0.0.20/24"}}}, []string{"/pxe/dhcp/mode", "full"}},
		{"bad server IP", map[string]any{"pxe": map[string]any{"serverIP": "300.1.1.1"}}, []string{"/pxe/serverIP"}},
		{"relative root image", map[string]any{"pxe": map[string]any{"rootImage": "pxe/root.img.gz"}}, []string{"/pxe/rootImage"}},
		{"HTTP bind address without a port", map[string]any{"pxe": map[string]any{"http": map[string]any{"port": 8080, "bindAddress": "0.0.0.0"}}}, []string{"/pxe/http/bindAddress"}},
		{"replicas without leader election", map[string]any{"replicas": 3, "leaderElection": map[string]any{"enabled": false}}, []string{"/leaderElection/enabled"}},
		{"extra arg without dashes", map[string]any{"manager": map[string]any{"extraArgs": []any{"v=4"}}}, []string{"/manager/extraArgs/0"}},
		{"relative artifact set", map[string]any{"artifacts": map[string]any{"sets": []any{"artifacts/v1.37.2"}}}, []string{"/artifacts/sets/0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := basaltchart.Render(basaltchart.RenderInput{Values: tc.vals})
			if err == nil {
				t.Fatal("the chart rendered values the schema should refuse")
			}
			msg := err.Error()
			if !strings.Contains(msg, "values don't meet the specifications of the schema") {
				t.Errorf("not a schema error: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestNotes(t *testing.T) {
	c, err := basaltchart.Load()
	if err != nil {
		t.Fatal(err)
	}
	var notes bool
	for _, tpl := range c.Templates {
		notes = notes || tpl.Name == "templates/NOTES.txt"
	}
	if !notes {
		t.Fatal("the chart has no templates/NOTES.txt")
	}
	for _, f := range c.Templates {
		if strings.HasSuffix(f.Name, ".go") {
			t.Errorf("%s is packaged into the chart; .helmignore should leave it out", f.Name)
		}
	}
	for _, f := range c.Files {
		if strings.HasSuffix(f.Name, ".go") {
			t.Errorf("%s is packaged into the chart; .helmignore should leave it out", f.Name)
		}
	}
}
