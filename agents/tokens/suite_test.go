package tokens_test

import (
	"fmt"
	"os"
	"testing"

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
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping envtest:", err)
	}
	os.Exit(code)
}
