package tokens_test

import (
	"testing"

	"github.com/basalt-dev/basalt/test/envtest"
)

var env *envtest.Env

func TestMain(m *testing.M) {
	envtest.Main(m, &env)
}
