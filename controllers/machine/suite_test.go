package machine_test

import (
	"testing"

	"github.com/basalt-dev/basalt/controllers/machine"
	"github.com/basalt-dev/basalt/test/envtest"
)

var env *envtest.Env

func TestMain(m *testing.M) {
	envtest.Main(m, &env)
}

// startController runs the Machine controller against env until the test ends.
func startController(t *testing.T) {
	t.Helper()
	mgr, err := env.NewManager()
	if err != nil {
		t.Fatal(err)
	}
	r := &machine.Reconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("basalt-machine")}
	if err := r.SetupWithManager(mgr, envtest.ControllerOptions()); err != nil {
		t.Fatal(err)
	}
	envtest.StartManager(t, mgr)
}
