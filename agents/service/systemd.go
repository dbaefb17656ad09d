package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// Systemd runs services as systemd units. Every systemctl call goes through Run, so the runtime
// is tested without systemd.
//
// Crash safety: the unit file is written atomically, and the record of the hash (and of the unit
// bytes) a service runs is written only after `systemctl restart` succeeded. An agent killed
// between writing the unit and restarting it finds the record out of date on its next Ensure,
// reloads and restarts.
type Systemd struct {
	// UnitDir holds the unit files; default /etc/systemd/system.
	UnitDir string
	// StateDir holds one record per service; required.
	StateDir string
	// Run runs systemctl; default ExecRunner.
	Run Runner
	// Systemctl is the systemctl command; default "systemctl".
	Systemctl string
	// RestartDelay, RestartMaxDelay and StopTimeout go into every unit (see UnitOptions).
	RestartDelay, RestartMaxDelay, StopTimeout time.Duration
	// KeepChildren names services whose children must survive a restart (KillMode=process);
	// default containerd.
	KeepChildren []string
	// Logger; default slog.Default().
	Logger *slog.Logger

	mu      sync.Mutex
	version int // systemd's version, 0 when unknown
}

var _ Runtime = (*Systemd)(nil)

// unitRecord is what Systemd remembers of a service it started.
type unitRecord struct {
	Hash string `json:"hash"`
	// UnitSHA256 is the sha256 of the unit file the running process was started from.
	UnitSHA256 string   `json:"unitSHA256"`
	After      []string `json:"after,omitempty"`
}

// Init fills in defaults, creates the state folder and asks systemd for its version (exponential
// restart backoff needs 254 or later).
func (s *Systemd) Init(ctx context.Context) error {
	if s.StateDir == "" {
		return errors.New("systemd runtime: StateDir is required")
	}
	if s.UnitDir == "" {
		s.UnitDir = "/etc/systemd/system"
	}
	if s.Run == nil {
		s.Run = ExecRunner{}
	}
	if s.Systemctl == "" {
		s.Systemctl = "systemctl"
	}
	if s.KeepChildren == nil {
		s.KeepChildren = []string{"containerd"}
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if err := os.MkdirAll(s.StateDir, 0o700); err != nil {
		return err
	}
	out, err := s.Run.Run(ctx, s.Systemctl, "--version")
	if err != nil {
		s.Logger.Warn("Cannot read the systemd version; restart backoff will be constant", "error", err)
		return nil
	}
	s.version = parseSystemdVersion(string(out))
	return nil
}

var systemdVersionRE = regexp.MustCompile(`^systemd (\d+)`)

func parseSystemdVersion(out string) int {
	m := systemdVersionRE.FindStringSubmatch(strings.TrimSpace(out))
	if m == nil {
		return 0
	}
	v, _ := strconv.Atoi(m[1])
	return v
}

func (s *Systemd) unitOptions(name, hash string) UnitOptions {
	return UnitOptions{
		Hash:            hash,
		RestartDelay:    s.RestartDelay,
		RestartMaxDelay: s.RestartMaxDelay,
		RestartSteps:    s.version >= 254,
		StopTimeout:     s.StopTimeout,
		KeepChildren:    slices.Contains(s.KeepChildren, name),
	}
}

func (s *Systemd) systemctl(ctx context.Context, args ...string) ([]byte, error) {
	return s.Run.Run(ctx, s.Systemctl, args...)
}

// Ensure writes the unit, and reloads and restarts it when the recorded hash or unit bytes
// differ; a unit that is up to date but not running is started.
func (s *Systemd) Ensure(ctx context.Context, svc plan.Service, hash string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	unit, err := RenderUnit(svc, s.unitOptions(svc.Name, hash))
	if err != nil {
		return false, err
	}
	unitSum := sha256.Sum256(unit)
	rec := s.readRecord(svc.Name)
	unitName := UnitName(svc.Name)
	unitPath := filepath.Join(s.UnitDir, unitName)
	current := rec != nil && rec.Hash == hash && rec.UnitSHA256 == hex.EncodeToString(unitSum[:])
	if old, err := os.ReadFile(unitPath); err != nil || !bytes.Equal(old, unit) {
		current = false
		if err := writeFileAtomic(unitPath, unit, 0o644); err != nil {
			return false, fmt.Errorf("service %s: writing %s: %w", svc.Name, unitPath, err)
		}
	}
	if current {
		if s.active(ctx, unitName) {
			return false, nil
		}
		if _, err := s.systemctl(ctx, "enable", "--now", unitName); err != nil {
			return false, fmt.Errorf("service %s: %w", svc.Name, err)
		}
		return true, nil
	}
	for _, args := range [][]string{{"daemon-reload"}, {"enable", unitName}, {"restart", unitName}} {
		if _, err := s.systemctl(ctx, args...); err != nil {
			return false, fmt.Errorf("service %s: %w", svc.Name, err)
		}
	}
	rec = &unitRecord{Hash: hash, UnitSHA256: hex.EncodeToString(unitSum[:]), After: svc.After}
	b, _ := json.Marshal(rec)
	if err := writeFileAtomic(s.recordPath(svc.Name), b, 0o600); err != nil {
		return true, fmt.Errorf("service %s: recording its hash: %w", svc.Name, err)
	}
	return true, nil
}

func (s *Systemd) active(ctx context.Context, unit string) bool {
	// is-active exits non-zero for anything but active; the word on stdout says which.
	out, _ := s.systemctl(ctx, "is-active", unit)
	switch strings.TrimSpace(string(out)) {
	case "active", "activating", "reloading":
		return true
	}
	return false
}

// Stop disables and stops the unit, removes its file and record and reloads systemd. Each step
// tolerates what an earlier, interrupted Stop already did.
func (s *Systemd) Stop(ctx context.Context, name string) error {
	if name == ReservedName {
		return fmt.Errorf("service %q: refusing to stop the agent's own unit", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	unitName := UnitName(name)
	unitPath := filepath.Join(s.UnitDir, unitName)
	_, statErr := os.Stat(unitPath)
	if statErr == nil {
		if _, err := s.systemctl(ctx, "disable", "--now", unitName); err != nil {
			return fmt.Errorf("service %s: %w", name, err)
		}
		if err := os.Remove(unitPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	} else {
		// The unit file is gone (an interrupted Stop): make sure nothing still runs.
		_, _ = s.systemctl(ctx, "stop", unitName)
	}
	if _, err := s.systemctl(ctx, "daemon-reload"); err != nil {
		return fmt.Errorf("service %s: %w", name, err)
	}
	// A unit that failed before it was removed (a stale node's kubelet after a reboot) would
	// keep systemd "degraded" for good: forget its failure with it.
	_, _ = s.systemctl(ctx, "reset-failed", unitName)
	if err := os.Remove(s.recordPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Status reads the record and asks systemd whether the unit is active and for its main PID.
func (s *Systemd) Status(ctx context.Context, name string) (State, error) {
	unitName := UnitName(name)
	rec := s.readRecord(name)
	if rec == nil {
		if _, err := os.Stat(filepath.Join(s.UnitDir, unitName)); errors.Is(err, fs.ErrNotExist) {
			return State{}, nil
		} else if err != nil {
			return State{}, err
		}
		rec = &unitRecord{}
	}
	out, _ := s.systemctl(ctx, "show", "--property=ActiveState,SubState,MainPID", unitName)
	st := State{Hash: rec.Hash}
	var active, sub string
	for _, line := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "ActiveState":
			active = v
		case "SubState":
			sub = v
		case "MainPID":
			st.PID, _ = strconv.Atoi(v)
		}
	}
	st.Active = active == "active" || active == "reloading"
	st.Message = strings.Trim(active+"/"+sub, "/")
	return st, nil
}

// Installed lists the basalt-*.service units in UnitDir (except the agent's own) and the services
// with a record, so a unit written just before a crash is found too.
func (s *Systemd) Installed(ctx context.Context) ([]Installed, error) {
	names := map[string]bool{}
	entries, err := os.ReadDir(s.UnitDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, UnitPrefix) && strings.HasSuffix(n, ".service") {
			svc := strings.TrimSuffix(strings.TrimPrefix(n, UnitPrefix), ".service")
			if svc != ReservedName && svc != "" {
				names[svc] = true
			}
		}
	}
	recs, err := os.ReadDir(s.StateDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range recs {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && !strings.HasPrefix(n, ".") {
			names[n] = true
		}
	}
	var out []Installed
	for _, n := range slices.Sorted(maps.Keys(names)) {
		in := Installed{Name: n}
		if rec := s.readRecord(n); rec != nil {
			in.Hash, in.After = rec.Hash, rec.After
		}
		out = append(out, in)
	}
	return out, nil
}

func (s *Systemd) recordPath(name string) string { return filepath.Join(s.StateDir, name+".json") }

func (s *Systemd) readRecord(name string) *unitRecord {
	b, err := os.ReadFile(s.recordPath(name))
	if err != nil {
		return nil
	}
	var r unitRecord
	if json.Unmarshal(b, &r) != nil {
		return nil
	}
	return &r
}
