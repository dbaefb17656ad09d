//go:build conformance

package e2e

// The Kubernetes conformance suite against a Cluster Basalt brings up on the bed. Built only with
// -tags conformance (make conformance, docs/conformance.md): it runs for about an hour and is
// not part of make test.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/test/e2e/bed"
	"github.com/basalt-dev/basalt/test/e2e/framework"
)

// conformanceSkips are the conformance tests that cannot run on this bed, each with the reason
// (docs/conformance.md). Matched against the full test name as a regular expression.
var conformanceSkips = map[string]string{
	`\[sig-node\] ImageVolume should succeed with pod and pull policy of Always`: "it mounts the kitten image as a " +
		"volume and expects its /etc/os-release to say Alpine Linux, the base of upstream's image; Alpine's packages " +
		"cannot be reached from this machine, so the image is built on Debian. The volume itself works: the test's " +
		"first check (the image's data.json read through the volume) passes before the os-release check fails",
}

// TestConformance brings up a Cluster of 1 control plane and 2 workers on the bed, with the
// suite's test images in the bed's OCI registry (spec.registries: TLS with the registry's CA,
// basic auth), and runs every [Conformance] test of the cluster's version with ginkgo against it.
// The JUnit report and a summary go to $BASALT_CACHE/conformance/VERSION/report-TIME/, and the
// summary into docs/conformance.md. It fails when any test fails.
func TestConformance(t *testing.T) {
	version := envOr("BASALT_CONFORMANCE_VERSION", etcdTestVersion)
	nodes, err := strconv.Atoi(envOr("BASALT_CONFORMANCE_NODES", "4"))
	if err != nil || nodes < 1 {
		t.Fatalf("BASALT_CONFORMANCE_NODES=%q: want a number of parallel ginkgo processes", os.Getenv("BASALT_CONFORMANCE_NODES"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Hour)
	defer cancel()
	setDir := artifactSet(t, version)
	tools := filepath.Join(setDir, "tools")
	for _, f := range []string{"e2e.test", "ginkgo", "kubectl"} {
		if _, err := os.Stat(filepath.Join(tools, f)); err != nil {
			t.Fatalf("%v: build the suite with hack/build-artifacts.sh --only tool-e2e.test,tool-ginkgo,tool-kubectl %s (make conformance does)", err, version)
		}
	}
	confDir := filepath.Join(bed.CacheDir(), "conformance", version)
	images, err := framework.ReadImageList(filepath.Join(confDir, "images.txt"))
	if err != nil {
		t.Fatalf("%v: build the test images with hack/conformance-images.sh (make conformance does)", err)
	}

	b := framework.NewBed(ctx, t, bed.Options{Hosts: 4, Name: "conf"})
	regHost := b.Hosts[3]
	b.Hosts = b.Hosts[:3]
	m := framework.StartManagement(t, framework.StartManagementInput{Bed: b, ArtifactSets: []string{setDir}})
	c := m.Env.Client
	ns := m.Env.Namespace(t)
	m.CreateSSHHosts(ctx, t, framework.SSHHostsInput{
		Namespace: ns, Bed: b,
		Labels: []map[string]string{{"role": "cp"}, {"role": "worker"}, {"role": "worker"}},
		OS:     &basaltv1.OSFacts{Container: ptr.To(true), SystemdPID1: ptr.To(true), CgroupVersion: 1},
	})
	m.WaitHostsAvailable(ctx, t, ns, hostNames(b), 5*time.Minute)

	reg := framework.StartRegistry(ctx, t, framework.StartRegistryInput{Host: regHost, Version: version})
	pushStart := time.Now()
	for _, im := range images {
		reg.Push(ctx, t, im.File, im.Repository, im.Tag)
	}
	t.Logf("Pushed %d test images to %s in %s", len(images), reg.Addr, time.Since(pushStart).Round(time.Second))
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "registry-ca"}, Data: map[string][]byte{"ca.crt": reg.CA}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "registry-auth"}, Type: corev1.SecretTypeBasicAuth,
			Data: map[string][]byte{"username": []byte(reg.Username), "password": []byte(reg.Password)}},
	} {
		if err := c.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	cl := &basaltv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "conformance"},
		Spec: basaltv1.ClusterSpec{
			Version:      version,
			ControlPlane: basaltv1.ControlPlaneSpec{Replicas: 1, HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "cp"}}},
			Workers: []basaltv1.WorkerPool{{Name: "pool", Replicas: 2,
				HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "worker"}}}},
			Registries: []basaltv1.Registry{{Host: reg.Addr,
				CASecretRef:          &basaltv1.SecretKeyReference{Name: "registry-ca", Key: "ca.crt"},
				CredentialsSecretRef: &basaltv1.LocalObjectReference{Name: "registry-auth"}}},
		},
	}
	if err := c.Create(ctx, cl); err != nil {
		t.Fatal(err)
	}
	took := m.WaitForClusterReady(ctx, t, framework.WaitForClusterReadyInput{Namespace: ns, Name: cl.Name, ControlPlanes: 1, Workers: 2, Timeout: 15 * time.Minute})
	t.Logf("Cluster Ready %s after it was applied (1 control plane + 2 workers)", took.Round(time.Second))

	report := filepath.Join(confDir, "report-"+time.Now().UTC().Format("20060102-150405"))
	if err := os.MkdirAll(report, 0o755); err != nil {
		t.Fatal(err)
	}
	kc := &corev1.Secret{}
	if err := c.Get(ctx, framework.ObjectKey(ns, cl.Name+"-kubeconfig"), kc); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(report, "kubeconfig")
	repoList := filepath.Join(report, "repo-list.yaml")
	// Every registry the suite knows points at the bed's registry; invalidRegistry keeps its
	// default, a name that must not resolve (a test expects that pull to fail).
	repos := fmt.Sprintf("promoterE2eRegistry: %[1]s/e2e-test-images\ngcRegistry: %[1]s/k8s\ngcEtcdRegistry: %[1]s/k8s\n"+
		"buildImageRegistry: %[1]s/unavailable\nsigStorageRegistry: %[1]s/unavailable\nprivateRegistry: %[1]s/unavailable\n"+
		"dockerLibraryRegistry: %[1]s/unavailable\ncloudProviderGcpRegistry: %[1]s/unavailable\n", reg.Addr)
	for f, b := range map[string][]byte{kubeconfig: kc.Data["value"], repoList: []byte(repos)} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	skip := []string{}
	for re := range conformanceSkips {
		skip = append(skip, re)
	}
	sort.Strings(skip)
	// BASALT_CONFORMANCE_FOCUS narrows the run, e.g. to the tests that failed last time. Several
	// --focus flags would be ORed, so both conditions go into one expression (the tag comes last
	// in every conformance test's name).
	focus := `\[Conformance\]`
	if f := os.Getenv("BASALT_CONFORMANCE_FOCUS"); f != "" {
		focus = "(" + f + ").*" + focus
		t.Logf("Only the conformance tests matching %q (BASALT_CONFORMANCE_FOCUS): the summary is not written to docs/conformance.md", f)
	}
	args := []string{
		"--nodes=" + strconv.Itoa(nodes), "--timeout=4h", "--no-color", "--focus=" + focus,
		"--poll-progress-after=10m", "--output-dir=" + report,
	}
	if len(skip) > 0 {
		args = append(args, "--skip="+strings.Join(skip, "|"))
	}

	args = append(args, filepath.Join(tools, "e2e.test"), "--",
		"--kubeconfig="+kubeconfig, "--provider=skeleton", "--kubectl-path="+filepath.Join(tools, "kubectl"),
		"--report-dir="+report, "--disable-log-dump")
	cmd := exec.CommandContext(ctx, filepath.Join(tools, "ginkgo"), args...)
	cmd.Env = append(os.Environ(), "KUBE_TEST_REPO_LIST="+repoList, "KUBECONFIG="+kubeconfig)
	cmd.Dir = report
	logFile, err := os.Create(filepath.Join(report, "e2e.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	t.Logf("Running the conformance suite (%d ginkgo processes); log: %s", nodes, logFile.Name())
	runStart := time.Now()
	runErr := cmd.Run()
	duration := time.Since(runStart)

	sum, err := framework.SummarizeJUnit(filepath.Join(report, "junit_01.xml"))
	if err != nil {
		t.Fatalf("suite exited with %v and left no readable report (%v); see %s", runErr, err, logFile.Name())
	}
	sum.Duration, sum.Version, sum.Nodes, sum.Skips, sum.Report = duration, version, nodes, conformanceSkips, report
	md := sum.Markdown(time.Now())
	if err := os.WriteFile(filepath.Join(report, "summary.md"), []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := bed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("BASALT_CONFORMANCE_FOCUS") == "" {
		if err := framework.WriteConformanceResults(filepath.Join(root, "docs", "conformance.md"), md); err != nil {
			t.Error(err)
		}
	}
	t.Logf("Conformance %s: %d passed, %d failed, %d skipped of %d in %s (report %s)", version, sum.Passed, len(sum.Failed),
		sum.Skipped, sum.Total(), duration.Round(time.Second), report)
	for _, f := range sum.Failed {
		t.Errorf("FAILED: %s", f)
	}
	if runErr != nil && len(sum.Failed) == 0 {
		t.Errorf("ginkgo exited with %v but the report names no failure; see %s", runErr, logFile.Name())
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
