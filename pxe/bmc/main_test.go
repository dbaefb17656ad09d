package bmc_test

import (
	"os"
	"testing"

	"github.com/basalt-dev/basalt/pxe/bmc/bmcsim"
)

func TestMain(m *testing.M) {
	// ipmi_sim runs this binary as its chassis control program; in that role it never returns.
	bmcsim.ChassisHelperMain()
	os.Exit(m.Run())
}
