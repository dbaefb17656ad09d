package apply

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// Files in StateDir.
const (
	// OwnedFile records every path and route the agent wrote or programmed for any Plan not yet
	// fully superseded.
	OwnedFile = "owned.json"
	// ImagesFile records the image artifacts imported into containerd, by path and sha256.
	ImagesFile = "images.json"
)

// owned is what the agent wrote or programmed.
type owned struct {
	Paths  []string     `json:"paths,omitempty"`
	Routes []plan.Route `json:"routes,omitempty"`
	// Leaves are, by service, the executables of processes that outlive it (plan.Service.Leaves),
	// kept until the service has left the Plan and they were killed.
	Leaves map[string][]string `json:"leaves,omitempty"`
	// StateDirs are the paths of Paths that are service state dirs: mounts below them are
	// undone before they are removed.
	StateDirs []string `json:"stateDirs,omitempty"`
	// Links are the network interfaces of services (plan.Service.Links), kept until the service
	// has left the Plan and they were deleted.
	Links []string `json:"links,omitempty"`
}

// union returns o plus everything p writes or programs, sorted and without duplicates.
func (o owned) union(p *plan.Plan) owned {
	u := owned{Paths: slices.Clone(o.Paths), Routes: slices.Clone(o.Routes)}
	for _, f := range p.Files {
		u.Paths = append(u.Paths, f.Path)
	}
	for _, a := range p.Artifacts {
		u.Paths = append(u.Paths, a.Path)
	}
	u.StateDirs = slices.Clone(o.StateDirs)
	u.Links = slices.Clone(o.Links)
	if len(o.Leaves) > 0 {
		u.Leaves = map[string][]string{}
		for k, v := range o.Leaves {
			u.Leaves[k] = slices.Clone(v)
		}
	}
	for _, s := range p.Services {
		u.Paths = append(u.Paths, s.StateDirs...)
		u.StateDirs = append(u.StateDirs, s.StateDirs...)
		if s.Init != nil {
			// What an init command interrupted by a crash left is removed like a state dir.
			u.Paths = append(u.Paths, s.Init.Output())
			u.StateDirs = append(u.StateDirs, s.Init.Output())
		}
		u.Links = append(u.Links, s.Links...)
		if len(s.Leaves) > 0 {
			if u.Leaves == nil {
				u.Leaves = map[string][]string{}
			}
			u.Leaves[s.Name] = slices.Clone(s.Leaves)
		}
	}
	slices.Sort(u.Paths)
	u.Paths = slices.Compact(u.Paths)
	slices.Sort(u.StateDirs)
	u.StateDirs = slices.Compact(u.StateDirs)
	slices.Sort(u.Links)
	u.Links = slices.Compact(u.Links)
	for _, r := range p.Routes {
		if !containsRoute(u.Routes, r) {
			u.Routes = append(u.Routes, r)
		}
	}
	slices.SortFunc(u.Routes, func(a, b plan.Route) int {
		if c := strings.Compare(a.Destination, b.Destination); c != 0 {
			return c
		}
		return strings.Compare(a.Gateway, b.Gateway)
	})
	return u
}

func containsRoute(rs []plan.Route, r plan.Route) bool {
	return slices.Contains(rs, r)
}

func (a *Applier) loadOwned() owned {
	var o owned
	if err := readJSON(filepath.Join(a.StateDir, OwnedFile), &o); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.Logger.Error("Cannot read the record of owned paths; starting empty", "error", err)
	}
	return o
}

func (a *Applier) saveOwned(o owned) error {
	return writeJSON(filepath.Join(a.StateDir, OwnedFile), o)
}

func (a *Applier) loadImages() map[string]string {
	m := map[string]string{}
	if err := readJSON(filepath.Join(a.StateDir, ImagesFile), &m); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.Logger.Error("Cannot read the record of imported images", "error", err)
	}
	return m
}

func (a *Applier) saveImages(m map[string]string) error {
	return writeJSON(filepath.Join(a.StateDir, ImagesFile), m)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return WriteFile(path, append(b, '\n'), 0o600)
}
