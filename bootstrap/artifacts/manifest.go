// Package artifacts describes a Kubernetes artifact set: the binaries and OCI image tarballs
// that make up one Kubernetes version, as built by hack/build-artifacts.sh and served by the
// manager's artifact cache.
//
// An artifact set is a folder holding a manifest.json and the files it names. Every file is
// addressed by its sha256; a file whose bytes do not match is an error, never a warning.
package artifacts

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/basalt-dev/basalt/bootstrap/atomicfile"
)

// ManifestFile is the name of the manifest inside an artifact set folder.
const ManifestFile = "manifest.json"

// Kind says what an artifact is.
type Kind string

const (
	// KindBinary is a single executable file.
	KindBinary Kind = "binary"
	// KindImage is an OCI image layout packed as a tar file, importable with `ctr images import`.
	KindImage Kind = "image"
)

// Artifact is one file of an artifact set.
type Artifact struct {
	// Name identifies the artifact inside a set, e.g. "kube-apiserver", "cni-bridge", "image-pause".
	Name string `json:"name"`
	// Version is the version of the component the artifact was built from (not the Kubernetes version).
	Version string `json:"version"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
	Kind    Kind   `json:"kind"`
	// Path is relative to the folder that holds the manifest.
	Path string `json:"path"`
	// SHA256 is the lowercase hex digest of the file.
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// Image is the image reference an image artifact carries, e.g. "registry.k8s.io/pause:3.10".
	Image string `json:"image,omitempty"`
}

// Manifest lists the artifacts that make up one Kubernetes version.
type Manifest struct {
	KubernetesVersion string     `json:"kubernetesVersion"`
	Artifacts         []Artifact `json:"artifacts"`
}

// Get returns the artifact with the given name.
func (m *Manifest) Get(name string) (Artifact, bool) {
	for _, a := range m.Artifacts {
		if a.Name == name {
			return a, true
		}
	}
	return Artifact{}, false
}

// Validate checks the manifest is self-consistent: names unique, every artifact with a path,
// a 64-hex-digit sha256 and a known kind.
func (m *Manifest) Validate() error {
	if m.KubernetesVersion == "" {
		return errors.New("manifest: kubernetesVersion is empty")
	}
	seen := map[string]bool{}
	for i, a := range m.Artifacts {
		switch {
		case a.Name == "":
			return fmt.Errorf("manifest: artifacts[%d].name is empty", i)
		case seen[a.Name]:
			return fmt.Errorf("manifest: artifacts[%d].name %q is listed twice", i, a.Name)
		case a.Path == "" || filepath.IsAbs(a.Path) || strings.HasPrefix(filepath.Clean(a.Path), ".."):
			return fmt.Errorf("manifest: artifacts[%d] (%s).path %q must be a relative path inside the set", i, a.Name, a.Path)
		case !IsSHA256(a.SHA256):
			return fmt.Errorf("manifest: artifacts[%d] (%s).sha256 %q is not 64 lowercase hex digits", i, a.Name, a.SHA256)
		case a.Kind != KindBinary && a.Kind != KindImage:
			return fmt.Errorf("manifest: artifacts[%d] (%s).kind %q must be %q or %q", i, a.Name, a.Kind, KindBinary, KindImage)
		}
		seen[a.Name] = true
	}
	return nil
}

// Load reads and validates the manifest of the artifact set in dir. It does not hash the files;
// call Verify for that.
func Load(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", filepath.Join(dir, ManifestFile), err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Write stores the manifest in dir atomically (temp file + rename), artifacts sorted by name.
func (m *Manifest) Write(dir string) error {
	sort.Slice(m.Artifacts, func(i, j int) bool { return m.Artifacts[i].Name < m.Artifacts[j].Name })
	if err := m.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, ManifestFile), append(b, '\n'), 0o644)
}

// Verify hashes every file of the set in dir and returns an error naming the first artifact
// whose size or sha256 does not match the manifest.
func (m *Manifest) Verify(dir string) error {
	for _, a := range m.Artifacts {
		sum, size, err := HashFile(filepath.Join(dir, a.Path))
		if err != nil {
			return fmt.Errorf("artifact %s: %w", a.Name, err)
		}
		if size != a.Size || sum != a.SHA256 {
			return fmt.Errorf("artifact %s: %s has sha256 %s (%d bytes), manifest says %s (%d bytes)",
				a.Name, a.Path, sum, size, a.SHA256, a.Size)
		}
	}
	return nil
}

// HashFile returns the lowercase hex sha256 and the size of the file at path.
func HashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// IsSHA256 says whether s is a lowercase hex sha256 digest.
func IsSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Set is one artifact set as hack/build-artifacts.sh writes it: a folder and its manifest.
type Set struct {
	// Dir is the folder; the manifest's paths are relative to it.
	Dir string
	// Manifest is Dir's manifest.json.
	Manifest *Manifest
}

// Sets are the artifact sets a manager serves, by Kubernetes version. The Machine controller
// builds a Machine's Plan from the set of its version, the Cluster controller moves Machines to a
// version only when there is a set of it, and the artifact cache serves the sets' files.
type Sets map[string]Set

// LoadSets reads the manifest of each artifact-set folder. It does not hash the files (the
// artifact cache checks each one when it fetches it). Two folders of one Kubernetes version are
// an error.
func LoadSets(dirs ...string) (Sets, error) {
	sets := Sets{}
	for _, dir := range dirs {
		m, err := Load(dir)
		if err != nil {
			return nil, fmt.Errorf("artifact set %s: %w", dir, err)
		}
		if other, dup := sets[m.KubernetesVersion]; dup {
			return nil, fmt.Errorf("artifact set %s: a second set of %s (the first is %s)", dir, m.KubernetesVersion, other.Dir)
		}
		sets[m.KubernetesVersion] = Set{Dir: dir, Manifest: m}
	}
	return sets, nil
}

// Versions lists the versions there are sets of, sorted.
func (s Sets) Versions() []string { return slices.Sorted(maps.Keys(s)) }
