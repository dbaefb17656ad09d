package agentserver_test

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/basalt-dev/basalt/test/envtest"
)

// A real kube-apiserver and etcd, started by the first test that needs them (unit tests and fuzz
// targets run without) and stopped when the package's tests end.
var (
	envOnce sync.Once
	envVal  *envtest.Env
	envErr  error
)

func needEnv(t testing.TB) *envtest.Env {
	t.Helper()
	envOnce.Do(func() { envVal, envErr = envtest.Start() })
	if envErr != nil {
		t.Fatal(envErr)
	}
	return envVal
}

func TestMain(m *testing.M) {
	code := m.Run()
	if envVal != nil {
		if err := envVal.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}
	os.Exit(code)
}
