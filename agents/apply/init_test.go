package apply

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/basalt-dev/basalt/agents/service"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// initPlan is a Plan whose service db is seeded by a shell command that writes marker into its
// output folder and counts its runs in a file outside the Plan.
func initPlan(e *env, script string) *plan.Plan {
	return &plan.Plan{Format: plan.FormatVersion, Host: "h", Services: []plan.Service{{
		Name: "db", Argv: []string{"/usr/bin/db"}, StateDirs: []string{"/var/lib/db-r1"},
		Init: &plan.Init{Argv: []string{"/bin/sh", "-euc", script, "sh", e.root}, Creates: "/var/lib/db-r1"},
	}}}
}

// TestServiceInit: the init command runs once, before the service starts, after the service was
// stopped; its output appears whole under Creates; a leftover of an interrupted run is removed
// first; a failing command or one that writes nothing leaves no Creates and no started service.
func TestServiceInit(t *testing.T) {
	e := newEnv(t)
	e.a.Run = service.ExecRunner{}
	count := filepath.Join(t.TempDir(), "runs")
	// mkdir without -p fails if an interrupted run's folder were still there.
	ok := `mkdir "$1/var/lib/db-r1.init" && echo restored > "$1/var/lib/db-r1.init/data" && echo x >> ` + count
	// A leftover of a run the agent did not finish.
	if err := os.MkdirAll(filepath.Join(e.root, "var/lib/db-r1.init/half"), 0o700); err != nil {
		t.Fatal(err)
	}
	p := initPlan(e, ok)
	steps := e.mustApply(t, p)
	if got := e.read(t, "/var/lib/db-r1/data"); got != "restored\n" {
		t.Fatalf("seeded data = %q", got)
	}
	if e.exists("/var/lib/db-r1/half") || e.exists("/var/lib/db-r1.init") {
		t.Error("the interrupted run's folder was not removed before the command ran")
	}
	if got := e.rt.takeLog(); !slices.Equal(got, []string{"stop db", "start db"}) {
		t.Errorf("runtime calls = %v, want the service stopped before the command and started after", got)
	}
	if s, _ := stepErr(steps, "service:db"); !s.OK {
		t.Errorf("step = %+v", s)
	}
	// Applied again, and with the service restarted for another reason: the command does not run again.
	e.mustApply(t, p)
	p2 := initPlan(e, ok)
	p2.Services[0].Env = map[string]string{"X": "1"}
	e.mustApply(t, p2)
	if b, _ := os.ReadFile(count); strings.Count(string(b), "x") != 1 {
		t.Errorf("the init command ran %d times, want once", strings.Count(string(b), "x"))
	}

	for name, script := range map[string]string{
		"fails":       `echo no snapshot >&2; exit 3`,
		"writes none": `true`,
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.a.Run = service.ExecRunner{}
			steps, err := e.apply(t, initPlan(e, script))
			if err == nil {
				t.Fatal("apply succeeded")
			}
			s, _ := stepErr(steps, "service:db")
			if s.OK || !strings.Contains(s.Error, "init:") {
				t.Errorf("step = %+v, want an init error", s)
			}
			if name == "fails" && !strings.Contains(s.Error, "no snapshot") {
				t.Errorf("step error %q does not carry the command's output", s.Error)
			}
			if e.exists("/var/lib/db-r1") || e.rt.starts["db"] != 0 {
				t.Error("the state dir exists or the service started after a failed init")
			}
		})
	}
}
