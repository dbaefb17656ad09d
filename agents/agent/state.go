package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/basalt-dev/basalt/agents/apply"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// Plan records in the state folder.
const (
	// DesiredFile holds the last valid Plan received for this host, written before applying it.
	DesiredFile = "desired.json"
	// AppliedFile holds the last Plan applied completely and its hash, written after.
	AppliedFile = "applied.json"
	// ClusterFile names the Cluster whose Plan the host's state belongs to (plan.ClusterRef),
	// written before a Plan of that Cluster is first applied and removed once the empty Plan is.
	ClusterFile = "cluster.json"
)

type planRecord struct {
	Hash string     `json:"hash"`
	Plan *plan.Plan `json:"plan"`
}

// loadPlanRecord returns nil when the file does not exist; an unreadable record is an error
// (the agent would otherwise forget what it applied).
func loadPlanRecord(stateDir, name string) (*planRecord, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r planRecord
	if err := json.Unmarshal(b, &r); err != nil || r.Plan == nil {
		return nil, fmt.Errorf("agent: %s is corrupt (%w); remove it to start over", filepath.Join(stateDir, name), err)
	}
	return &r, nil
}

func savePlanRecord(stateDir, name string, r *planRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return apply.WriteFile(filepath.Join(stateDir, name), b, 0o600)
}

// loadClusterRecord returns the Cluster whose state the host holds, nil when none is recorded.
func loadClusterRecord(stateDir string) (*plan.ClusterRef, error) {
	path := filepath.Join(stateDir, ClusterFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c plan.ClusterRef
	if err := json.Unmarshal(b, &c); err != nil || c.UID == "" {
		return nil, fmt.Errorf("agent: %s is corrupt (%v): the agent cannot tell which Cluster's state the host holds; "+
			"wipe the host (basaltctl host reprovision) or remove the file to keep its state", path, err)
	}
	return &c, nil
}

func saveClusterRecord(stateDir string, c *plan.ClusterRef) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return apply.WriteFile(filepath.Join(stateDir, ClusterFile), b, 0o600)
}

func removeClusterRecord(stateDir string) error {
	err := os.Remove(filepath.Join(stateDir, ClusterFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
