package artifacts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeSet(t *testing.T) (string, *Manifest) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "etcd"), []byte("etcd-binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum, size, err := HashFile(filepath.Join(dir, "bin", "etcd"))
	if err != nil {
		t.Fatal(err)
	}
	m := &Manifest{KubernetesVersion: "v1.37.2", Artifacts: []Artifact{{
		Name: "etcd", Version: "v3.6.0", OS: "linux", Arch: "amd64", Kind: KindBinary, Path: "bin/etcd", SHA256: sum, Size: size,
	}}}
	if err := m.Write(dir); err != nil {
		t.Fatal(err)
	}
	return dir, m
}

func TestWriteLoadVerify(t *testing.T) {
	dir, _ := writeSet(t)
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := m.Get("etcd"); !ok || a.Size != int64(len("etcd-binary")) {
		t.Fatalf("Get(etcd) = %+v, %v", a, ok)
	}
	if err := m.Verify(dir); err != nil {
		t.Fatalf("intact set refused: %v", err)
	}
	// One changed byte must be caught, naming the artifact and both digests.
	if err := os.WriteFile(filepath.Join(dir, "bin", "etcd"), []byte("etcd-binarY"), 0o755); err != nil {
		t.Fatal(err)
	}
	err = m.Verify(dir)
	if err == nil || !strings.Contains(err.Error(), "artifact etcd") || !strings.Contains(err.Error(), m.Artifacts[0].SHA256) {
		t.Fatalf("tampered artifact: got %v", err)
	}
}

func TestValidateNamesTheField(t *testing.T) {
	ok := Artifact{Name: "a", Kind: KindBinary, Path: "bin/a", SHA256: strings.Repeat("0", 64)}
	cases := map[string]struct {
		mutate func(*Manifest)
		want   string
	}{
		"no version":    {func(m *Manifest) { m.KubernetesVersion = "" }, "kubernetesVersion is empty"},
		"no name":       {func(m *Manifest) { m.Artifacts[0].Name = "" }, "artifacts[0].name is empty"},
		"twice":         {func(m *Manifest) { m.Artifacts = append(m.Artifacts, ok) }, "listed twice"},
		"absolute path": {func(m *Manifest) { m.Artifacts[0].Path = "/bin/a" }, "must be a relative path"},
		"escaping path": {func(m *Manifest) { m.Artifacts[0].Path = "../a" }, "must be a relative path"},
		"no checksum":   {func(m *Manifest) { m.Artifacts[0].SHA256 = "" }, "sha256 \"\" is not 64"},
		"upper hex":     {func(m *Manifest) { m.Artifacts[0].SHA256 = strings.Repeat("A", 64) }, "is not 64 lowercase hex"},
		"bad kind":      {func(m *Manifest) { m.Artifacts[0].Kind = "rpm" }, "kind \"rpm\""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			m := &Manifest{KubernetesVersion: "v1.37.2", Artifacts: []Artifact{ok}}
			tc.mutate(m)
			if err := m.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
