package cluster_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/basalt-dev/basalt/controllers/cluster"
	"github.com/basalt-dev/basalt/controllers/host"
	"github.com/basalt-dev/basalt/controllers/machine"
	"github.com/basalt-dev/basalt/test/envtest"
)

var env *envtest.Env

func TestMain(m *testing.M) {
	var err error
	env, err = envtest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

// startControllers runs all three controllers against env until the test ends, as the manager
// does.
func startControllers(t *testing.T) {
	t.Helper()
	mgr, err := env.NewManager()
	if err != nil {
		t.Fatal(err)
	}
	opts := envtest.ControllerOptions()
	if err := (&cluster.Reconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("basalt-cluster")}).SetupWithManager(mgr, opts); err != nil {
		t.Fatal(err)
	}
	if err := (&machine.Reconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("basalt-machine")}).SetupWithManager(mgr, opts); err != nil {
		t.Fatal(err)
	}
	if err := (&host.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("basalt-host")}).SetupWithManager(mgr, opts); err != nil {
		t.Fatal(err)
	}
	envtest.StartManager(t, mgr)
}
