package host_test

import (
	"testing"

	"github.com/basalt-dev/basalt/controllers/host"
	"github.com/basalt-dev/basalt/test/envtest"
)

var env *envtest.Env

func TestMain(m *testing.M) {
	envtest.Main(m, &env)
}

// startController runs the Host controller against env until the test ends.
func startController(t *testing.T) {
	t.Helper()
	mgr, err := env.NewManager()
	if err != nil {
		t.Fatal(err)
	}
	r := &host.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("basalt-host")}
	if err := r.SetupWithManager(mgr, envtest.ControllerOptions()); err != nil {
		t.Fatal(err)
	}
	envtest.StartManager(t, mgr)
}
