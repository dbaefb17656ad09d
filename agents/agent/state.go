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
