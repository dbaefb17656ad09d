package machine

import (
	"fmt"
	"maps"
	"slices"

	"github.com/basalt-dev/basalt/bootstrap/artifacts"
)

// ArtifactSets are the manifests of the artifact sets the manager serves, by Kubernetes version.
// A Machine's Plan is built from the manifest of its version; a version without a set leaves the
// Machine waiting with reason ArtifactSetNotFound.
type ArtifactSets map[string]*artifacts.Manifest

// LoadArtifactSets reads the manifest of each artifact-set folder (hack/build-artifacts.sh
// output). Two folders of the same Kubernetes version are an error.
func LoadArtifactSets(dirs ...string) (ArtifactSets, error) {
	sets := ArtifactSets{}
	for _, dir := range dirs {
		m, err := artifacts.Load(dir)
		if err != nil {
			return nil, fmt.Errorf("artifact set %s: %w", dir, err)
		}
		if _, dup := sets[m.KubernetesVersion]; dup {
			return nil, fmt.Errorf("artifact set %s: a second set of %s", dir, m.KubernetesVersion)
		}
		sets[m.KubernetesVersion] = m
	}
	return sets, nil
}

// Versions lists the versions there are sets of, sorted.
func (a ArtifactSets) Versions() []string { return slices.Sorted(maps.Keys(a)) }
