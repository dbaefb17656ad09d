package apply

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// benchRoutes programs nothing: the route step's cost is the kernel's, not the agent's.
type benchRoutes struct{}

func (benchRoutes) Replace(context.Context, plan.Route) error { return nil }
func (benchRoutes) Delete(context.Context, plan.Route) error  { return nil }
func (benchRoutes) DeleteLink(context.Context, string) error  { return nil }

// benchFiles are the 30 files of a control-plane node's Plan, at their real sizes: 12
// certificates, 12 private keys, 6 configuration files and kubeconfigs.
func benchFiles() []plan.File {
	content := func(name string, size int) []byte {
		return bytes.Repeat([]byte(name+"\n"), size/(len(name)+1)+1)[:size]
	}
	var files []plan.File
	for i := range 12 {
		crt := fmt.Sprintf("/etc/basalt/pki/leaf-%02d.crt", i)
		key := fmt.Sprintf("/etc/basalt/pki/leaf-%02d.key", i)
		files = append(files, plan.File{Path: crt, Mode: 0o644, Content: content(crt, 1200)},
			plan.File{Path: key, Mode: 0o600, Content: content(key, 241)})
	}
	for name, size := range map[string]int{
		"/etc/basalt/kubeconfig/controller-manager.conf": 2900, "/etc/basalt/kubeconfig/scheduler.conf": 2800,
		"/etc/basalt/kubeconfig/kubelet.conf": 2800, "/etc/basalt/kubelet/config.yaml": 1100,
		"/etc/basalt/containerd/config.toml": 1500, "/etc/basalt/kube-apiserver/encryption-config.yaml": 400,
	} {
		files = append(files, plan.File{Path: name, Mode: 0o644, Content: content(name, size)})
	}
	return files
}

// benchNodePlan adds to the 30 files what a node Plan also has: 5 artifacts (binaries and an
// image, 1 MiB each: once verified, an artifact is only stat'ed), 4 services with probes,
// dependencies and inputs, 4 routes, the node-local load balancer and an image import.
func benchNodePlan(f *memFetcher) *plan.Plan {
	p := &plan.Plan{Host: "cp-1", Files: benchFiles()}
	for _, name := range []string{"containerd", "ctr", "etcd", "kube-apiserver", "kubelet", "image-pause"} {
		b := bytes.Repeat([]byte(name), (1<<20)/len(name))
		dst := "/opt/basalt/bin/" + name
		if name == "image-pause" {
			dst = "/var/lib/basalt/images/pause.tar"
		}
		p.Artifacts = append(p.Artifacts, plan.Artifact{Name: name, SHA256: f.add(b), Size: int64(len(b)), Path: dst, Mode: 0o755})
	}
	probe := func(port int) *plan.Probe {
		return &plan.Probe{HTTP: &plan.HTTPProbe{URL: fmt.Sprintf("https://127.0.0.1:%d/healthz", port)}}
	}
	p.Services = []plan.Service{
		{Name: "containerd", Argv: []string{"/opt/basalt/bin/containerd", "--config=/etc/basalt/containerd/config.toml"},
			Reads: []string{"/opt/basalt/bin/containerd", "/etc/basalt/containerd/config.toml"},
			Probe: &plan.Probe{Exec: &plan.ExecProbe{Argv: []string{"/opt/basalt/bin/ctr", "version"}}}},
		{Name: "etcd", Argv: []string{"/opt/basalt/bin/etcd", "--name=cp-1", "--cert-file=/etc/basalt/pki/leaf-00.crt"},
			Reads: []string{"/opt/basalt/bin/etcd", "/etc/basalt/pki/leaf-00.crt", "/etc/basalt/pki/leaf-00.key",
				"/etc/basalt/pki/leaf-01.crt", "/etc/basalt/pki/leaf-01.key"}, Probe: probe(2379)},
		{Name: "kube-apiserver", Argv: []string{"/opt/basalt/bin/kube-apiserver", "--etcd-servers=https://127.0.0.1:2379"},
			After: []string{"etcd"}, Reads: []string{"/opt/basalt/bin/kube-apiserver", "/etc/basalt/kube-apiserver/encryption-config.yaml",
				"/etc/basalt/pki/leaf-02.crt", "/etc/basalt/pki/leaf-02.key", "/etc/basalt/pki/leaf-03.crt", "/etc/basalt/pki/leaf-03.key",
				"/etc/basalt/pki/leaf-04.crt", "/etc/basalt/pki/leaf-04.key", "/etc/basalt/pki/leaf-05.crt", "/etc/basalt/pki/leaf-05.key"},
			Probe: probe(6443)},
		{Name: "kubelet", Argv: []string{"/opt/basalt/bin/kubelet", "--config=/etc/basalt/kubelet/config.yaml"}, After: []string{"containerd"},
			Reads: []string{"/opt/basalt/bin/kubelet", "/etc/basalt/kubelet/config.yaml", "/etc/basalt/kubeconfig/kubelet.conf",
				"/etc/basalt/pki/leaf-06.crt", "/etc/basalt/pki/leaf-06.key"}, Probe: probe(10248)},
	}
	for i := 1; i <= 4; i++ {
		p.Routes = append(p.Routes, plan.Route{Destination: fmt.Sprintf("10.244.%d.0/24", i), Gateway: fmt.Sprintf("192.0.2.%d", 11+i)})
	}
	p.LoadBalancers = []plan.LoadBalancer{{Name: "kube-apiserver", Listen: "127.0.0.1:6444",
		Backends: []string{"192.0.2.11:6443", "192.0.2.12:6443", "192.0.2.13:6443"}}}
	p.Images, p.ImageRuntime = []string{"image-pause"}, "containerd"
	return p
}

// BenchmarkApplyNoChange: one turn of the agent's convergence loop when nothing changed, on a
// temporary root on this machine's disk (every file read back and compared; the state records
// written through a temporary file, fsync and rename), with the fakes of the package's tests
// for the fetcher, the service runtime, the probes and ip/ctr.
func BenchmarkApplyNoChange(b *testing.B) {
	for _, tc := range []struct {
		name string
		plan func(*memFetcher) *plan.Plan
	}{
		{"30-files", func(*memFetcher) *plan.Plan { return &plan.Plan{Host: "cp-1", Files: benchFiles()} }},
		{"30-files-4-services-5-artifacts", benchNodePlan},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dir := b.TempDir()
			f, rt := newFetcher(), newRuntime()
			a := &Applier{
				Root: filepath.Join(dir, "root"), StateDir: filepath.Join(dir, "state"),
				Fetcher: f, Runtime: rt, Run: &recorder{}, Health: &healthMap{unready: map[string]bool{}}, Routes: benchRoutes{},
				DependencyTimeout: 5 * time.Second, PollInterval: 10 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			}
			p := tc.plan(f)
			p.Normalize()
			if len(p.Files) != 30 {
				b.Fatalf("%d files, want 30", len(p.Files))
			}
			ctx := context.Background()
			if steps, err := a.Apply(ctx, p); err != nil {
				b.Fatalf("first apply: %v\n%+v", err, steps)
			}
			starts, fetches := maps.Clone(rt.starts), maps.Clone(f.fetches)
			b.ReportAllocs()
			for b.Loop() {
				if steps, err := a.Apply(ctx, p); err != nil {
					b.Fatalf("apply: %v\n%+v", err, steps)
				}
			}
			if !maps.Equal(starts, rt.starts) || !maps.Equal(fetches, f.fetches) {
				b.Fatalf("a no-change apply restarted or downloaded: starts %v → %v, fetches %v → %v",
					starts, rt.starts, slices.Sorted(maps.Keys(fetches)), slices.Sorted(maps.Keys(f.fetches)))
			}
		})
	}
}
