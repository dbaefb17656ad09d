package builder

import (
	"slices"
	"strings"
	"testing"

	"github.com/basalt-dev/basalt/bootstrap/artifacts"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// TestEtcdRestorePlan: the member that starts a restored cluster runs etcd from the epoch's data
// dir with the epoch's token, seeded by etcdutl from the fetched snapshot (or its former
// database), alone, with the revision bumped; once restored, the snapshot leaves the Plan
// without restarting etcd.
func TestEtcdRestorePlan(t *testing.T) {
	snap := fakeSum("snapshot")
	in := firstControlPlane(t)
	in.Etcd.Epoch = "r1a2b3c4d"
	in.Etcd.Restore = &EtcdRestore{SnapshotSHA256: snap, SnapshotSize: 4096, FetchSnapshot: true}
	p := mustBuild(t, in)
	etcd := service(t, p, ServiceEtcd)
	argv := strings.Join(etcd.Argv, " ")
	for _, want := range []string{"--data-dir=/var/lib/etcd-r1a2b3c4d", "--initial-cluster-token=prod-r1a2b3c4d", "--initial-cluster=cp-1=https://192.0.2.11:2380", "--initial-cluster-state=new"} {
		if !strings.Contains(argv, want) {
			t.Errorf("etcd argv lacks %s: %s", want, argv)
		}
	}
	if !slices.Equal(etcd.StateDirs, []string{"/var/lib/etcd-r1a2b3c4d"}) {
		t.Errorf("state dirs = %v", etcd.StateDirs)
	}
	if etcd.Init == nil || etcd.Init.Creates != "/var/lib/etcd-r1a2b3c4d" {
		t.Fatalf("init = %+v", etcd.Init)
	}
	want := "/opt/basalt/bin/etcdutl snapshot restore /var/lib/basalt/etcd-snapshots/r1a2b3c4d.db --data-dir /var/lib/etcd-r1a2b3c4d.init " +
		"--name cp-1 --initial-cluster cp-1=https://192.0.2.11:2380 --initial-advertise-peer-urls https://192.0.2.11:2380 " +
		"--initial-cluster-token prod-r1a2b3c4d --bump-revision 1000000000 --mark-compacted"
	if got := strings.Join(etcd.Init.Argv, " "); got != want {
		t.Errorf("init argv\n got %s\nwant %s", got, want)
	}
	a := artifactNamed(t, p, "etcd-snapshot-r1a2b3c4d")
	if a.SHA256 != snap || a.Path != "/var/lib/basalt/etcd-snapshots/r1a2b3c4d.db" || a.Mode != 0o600 {
		t.Errorf("snapshot artifact = %+v", a)
	}
	artifactNamed(t, p, "etcdutl")
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}

	done := firstControlPlane(t)
	done.Etcd = in.Etcd
	done.Etcd.Restore = &EtcdRestore{SnapshotSHA256: snap, SnapshotSize: 4096}
	pd := mustBuild(t, done)
	if slices.ContainsFunc(pd.Artifacts, func(a plan.Artifact) bool { return strings.HasPrefix(a.Name, "etcd-snapshot") }) {
		t.Error("the snapshot stays in the Plan after the restore")
	}
	h1, _ := p.ServiceHash(ServiceEtcd)
	h2, _ := pd.ServiceHash(ServiceEtcd)
	if h1 != h2 {
		t.Error("dropping the snapshot file restarts etcd")
	}

	mem := firstControlPlane(t)
	mem.Etcd.Epoch = "r2"
	mem.Etcd.Restore = &EtcdRestore{FromMemberData: true, DataEpoch: "r1a2b3c4d"}
	pm := mustBuild(t, mem)
	got := strings.Join(service(t, pm, ServiceEtcd).Init.Argv, " ")
	if !strings.Contains(got, "snapshot restore /var/lib/etcd-r1a2b3c4d/member/snap/db --skip-hash-check --data-dir /var/lib/etcd-r2.init") {
		t.Errorf("member-data init argv: %s", got)
	}

	// A joining member of a restored cluster uses the epoch's data dir, and no init.
	j := joiningControlPlane(t)
	j.Etcd.Epoch = "r2"
	je := service(t, mustBuild(t, j), ServiceEtcd)
	if je.Init != nil || !slices.Equal(je.StateDirs, []string{"/var/lib/etcd-r2"}) {
		t.Errorf("joining member: init %+v, state dirs %v", je.Init, je.StateDirs)
	}

	for name, mutate := range map[string]func(*Input){
		"joining member": func(i *Input) {
			*i = joiningControlPlane(t)
			i.Etcd.Epoch = "r2"
			i.Etcd.Restore = &EtcdRestore{FromMemberData: true}
		},
		"no epoch":    func(i *Input) { i.Etcd.Epoch = "" },
		"two sources": func(i *Input) { i.Etcd.Restore.FromMemberData = true },
		"same epoch":  func(i *Input) { i.Etcd.Restore = &EtcdRestore{FromMemberData: true, DataEpoch: i.Etcd.Epoch} },
		"bad epoch":   func(i *Input) { i.Etcd.Epoch = "R/1" },
		"no etcdutl in set": func(i *Input) {
			i.Artifacts = testManifest("v1.37.2")
			i.Artifacts.Artifacts = slices.DeleteFunc(i.Artifacts.Artifacts, func(a artifacts.Artifact) bool { return a.Name == "etcdutl" })
		},
	} {
		bad := firstControlPlane(t)
		bad.Etcd = in.Etcd
		bad.Etcd.Restore = &EtcdRestore{SnapshotSHA256: snap, SnapshotSize: 4096, FetchSnapshot: true}
		mutate(&bad)
		if _, err := Build(bad); err == nil {
			t.Errorf("%s: Build succeeded", name)
		}
	}
}
