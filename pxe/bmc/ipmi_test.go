package bmc_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/pxe/bmc"
	"github.com/basalt-dev/basalt/pxe/bmc/bmcsim"
	"github.com/basalt-dev/basalt/pxe/internal/testenv"
)

// startIPMISim runs ipmi_sim in front of sys until the test ends. Missing Debian packages are
// installed by pxe/image/ensure-debs.sh, or the test fails saying so.
func startIPMISim(t *testing.T, sys bmcsim.System, qemuSerialPort int) *bmcsim.IPMISim {
	t.Helper()
	if err := testenv.EnsureDebs("openipmi"); err != nil {
		t.Fatalf("ipmi_sim is needed: %v", err)
	}
	sim := &bmcsim.IPMISim{Dir: t.TempDir(), Username: "admin", Password: "s3cret-pw", System: sys,
		QEMUSerialPort: qemuSerialPort, Log: testWriter{t}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	return sim
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Logf("%s", p)
	return len(p), nil
}

func ipmiController(t *testing.T, addr, user, pass string) bmc.Controller {
	t.Helper()
	c, err := bmc.New(bmc.Config{Protocol: basaltv1.BMCIPMI, Address: addr,
		Credentials: bmc.Credentials{Username: user, Password: pass}, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestIPMIAgainstIPMISim drives OpenIPMI's ipmi_sim over RMCP+ with go-ipmi: power status, on,
// off, cycle and boot device, checked against the state of the machine behind the BMC.
func TestIPMIAgainstIPMISim(t *testing.T) {
	sys := &bmcsim.MemorySystem{}
	sim := startIPMISim(t, sys, 0)
	c := ipmiController(t, sim.Addr(), "admin", "s3cret-pw")
	ctx := context.Background()

	st, err := c.PowerState(ctx)
	if err != nil || st != bmc.PowerOff {
		t.Fatalf("PowerState = %s, %v; want Off", st, err)
	}
	if err := c.SetNextBoot(ctx, bmc.DevicePXE, false); err != nil {
		t.Fatal(err)
	}
	if dev, _ := sys.BootOverride(); dev != bmcsim.BootPXE {
		t.Fatalf("boot override %q after SetNextBoot(PXE), want Pxe", dev)
	}
	if err := c.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	if on, _ := sys.PowerState(ctx); !on {
		t.Fatal("machine is off after PowerOn")
	}
	if st, err := c.PowerState(ctx); err != nil || st != bmc.PowerOn {
		t.Fatalf("PowerState = %s, %v; want On", st, err)
	}
	// Power cycle: ipmi_sim powers off, then on again a second later.
	if err := c.PowerCycle(ctx); err != nil {
		t.Fatal(err)
	}
	if err := waitFor(20*time.Second, func() error {
		if got := sys.Boots(); len(got) != 2 {
			return fmt.Errorf("boots %v", got)
		}
		return nil
	}); err != nil {
		t.Fatalf("power cycle did not boot the machine again: %v; calls %q", err, sim.Calls())
	}
	if got := sys.Boots(); got[0] != bmcsim.BootPXE || got[1] != bmcsim.BootDisk {
		t.Fatalf("boots %v, want [Pxe Hdd]: the PXE override is for the next boot only", got)
	}
	if err := c.SetNextBoot(ctx, bmc.DeviceDisk, false); err != nil {
		t.Fatal(err)
	}
	if dev, _ := sys.BootOverride(); dev != bmcsim.BootDisk {
		t.Fatalf("boot override %q after SetNextBoot(Disk), want Hdd", dev)
	}
	if err := c.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	if on, _ := sys.PowerState(ctx); on {
		t.Fatal("machine is on after PowerOff")
	}
	if st, err := c.PowerState(ctx); err != nil || st != bmc.PowerOff {
		t.Fatalf("PowerState = %s, %v; want Off", st, err)
	}
	t.Logf("ipmi_sim chassis calls: %q", sim.Calls())
}

// TestIPMIRefusals: a wrong password, an unknown user and a BMC that does not answer each give
// the reason a user acts on, without the password in the message, and touch nothing.
func TestIPMIRefusals(t *testing.T) {
	sys := &bmcsim.MemorySystem{}
	sim := startIPMISim(t, sys, 0)
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	for _, tc := range []struct {
		name, addr, user, pass string
		reason                 bmc.Reason
		mentions               string
	}{
		{"wrong password", sim.Addr(), "admin", "wrong-password", bmc.ReasonAuthFailed, `user "admin"`},
		{"unknown user", sim.Addr(), "intruder", "s3cret-pw", bmc.ReasonAuthFailed, "username"},
		{"nothing answers", silent.LocalAddr().String(), "admin", "s3cret-pw", bmc.ReasonUnreachable, "spec.bmc.address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := bmc.New(bmc.Config{Protocol: basaltv1.BMCIPMI, Address: tc.addr,
				Credentials: bmc.Credentials{Username: tc.user, Password: tc.pass}, Timeout: 3 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			err = c.PowerOn(context.Background())
			if bmc.ReasonOf(err) != tc.reason || !strings.Contains(err.Error(), tc.mentions) {
				t.Fatalf("got %v (reason %s), want %s mentioning %q", err, bmc.ReasonOf(err), tc.reason, tc.mentions)
			}
			if strings.Contains(err.Error(), tc.pass) {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
	if on, _ := sys.PowerState(context.Background()); on {
		t.Fatal("a refused client powered the machine on")
	}
}
