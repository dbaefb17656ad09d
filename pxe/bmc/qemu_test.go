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

// These tests boot real QEMU VMs (TCG, a blank disk, no OS): what they check is that the power
// state and boot order a BMC protocol sets are the ones the VM really has. SeaBIOS and iPXE print
// each boot attempt to the serial console, so the boot device is read from what the VM did.

const bootWait = 3 * time.Minute

// startMachine makes a QEMU VM (powered off) that is killed when the test ends.
func startMachine(t *testing.T, extraArgs ...string) *bmcsim.Machine {
	t.Helper()
	if err := testenv.EnsureDebs("qemu-system-x86"); err != nil {
		t.Fatalf("QEMU is needed: %v", err)
	}
	m := &bmcsim.Machine{Dir: t.TempDir(), ExtraArgs: extraArgs, Log: testWriter{t}}
	t.Cleanup(m.Close)
	return m
}

// firstBoot waits until the VM's firmware tries its first boot device and returns it as SeaBIOS
// names it ("ROM" for iPXE, "Hard Disk"). Call it after a fresh start of QEMU (the console log
// starts anew) or pass the number of earlier firmware runs to skip.
func firstBoot(t *testing.T, m *bmcsim.Machine, skipRuns int) string {
	t.Helper()
	deadline := time.Now().Add(bootWait)
	for time.Now().Before(deadline) {
		runs := strings.Split(m.Console(), "SeaBIOS (version")
		if len(runs) > skipRuns+1 {
			run := runs[skipRuns+1]
			if i := strings.Index(run, "Booting from "); i >= 0 {
				rest := run[i+len("Booting from "):]
				if j := strings.Index(rest, "..."); j >= 0 {
					return rest[:j]
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the VM's firmware made no boot attempt within %s; console:\n%s", bootWait, m.Console())
	return ""
}

func wantPower(t *testing.T, c bmc.Controller, m *bmcsim.Machine, want bmc.PowerState) {
	t.Helper()
	st, err := c.PowerState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st != want {
		t.Fatalf("BMC says %s, want %s", st, want)
	}
	if running := m.PID() != 0; running != (want == bmc.PowerOn) {
		t.Fatalf("BMC says %s but the QEMU process running=%v", st, running)
	}
}

// TestRedfishDrivesQEMU: gofish against the Redfish simulator in front of a QEMU VM. Power on
// with a one-time PXE override boots iPXE; off stops QEMU; a persistent disk override boots the
// disk; a PowerCycle after a new override restarts QEMU with it, and one without restarts the
// guest in place (system_reset).
func TestRedfishDrivesQEMU(t *testing.T) {
	m := startMachine(t)
	srv, ca := redfishServer(t, &bmcsim.Redfish{System: m})
	c := redfishController(t, bmc.Config{Address: srv.URL, Credentials: bmc.Credentials{Username: rfUser, Password: rfPass, CA: ca}})
	ctx := context.Background()

	wantPower(t, c, m, bmc.PowerOff)
	if err := c.SetNextBoot(ctx, bmc.DevicePXE, false); err != nil {
		t.Fatal(err)
	}
	if err := c.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	wantPower(t, c, m, bmc.PowerOn)
	if got := m.RunningBootArg(); got != "order=c,once=n" {
		t.Fatalf("QEMU runs with -boot %s, want order=c,once=n", got)
	}
	if dev := firstBoot(t, m, 0); dev != "ROM" {
		t.Fatalf("first boot from %q after a PXE override, want ROM (iPXE)", dev)
	}

	if err := c.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	wantPower(t, c, m, bmc.PowerOff)

	if err := c.SetNextBoot(ctx, bmc.DeviceDisk, true); err != nil {
		t.Fatal(err)
	}
	if err := c.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	wantPower(t, c, m, bmc.PowerOn)
	if dev := firstBoot(t, m, 0); dev != "Hard Disk" {
		t.Fatalf("first boot from %q with a persistent disk override, want Hard Disk", dev)
	}

	// A new override needs a new QEMU: PowerCycle restarts the process.
	pid := m.PID()
	if err := c.SetNextBoot(ctx, bmc.DevicePXE, true); err != nil {
		t.Fatal(err)
	}
	if err := c.PowerCycle(ctx); err != nil {
		t.Fatal(err)
	}
	wantPower(t, c, m, bmc.PowerOn)
	if m.PID() == pid || m.RunningBootArg() != "order=n" {
		t.Fatalf("after PowerCycle: pid %d (was %d), -boot %s; want a new QEMU with order=n", m.PID(), pid, m.RunningBootArg())
	}
	if dev := firstBoot(t, m, 0); dev != "ROM" {
		t.Fatalf("first boot from %q after a persistent PXE override, want ROM", dev)
	}

	// Nothing changed: PowerCycle resets the guest inside the same QEMU.
	pid = m.PID()
	if err := c.PowerCycle(ctx); err != nil {
		t.Fatal(err)
	}
	if m.PID() != pid {
		t.Fatalf("PowerCycle without a boot change restarted QEMU (pid %d → %d); want system_reset", pid, m.PID())
	}
	if dev := firstBoot(t, m, 1); dev != "ROM" {
		t.Fatalf("second firmware run booted %q, want ROM", dev)
	}
	if err := c.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	wantPower(t, c, m, bmc.PowerOff)
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestIPMIDrivesQEMU: go-ipmi against OpenIPMI's ipmi_sim, whose chassis control drives a QEMU VM
// that also carries QEMU's external IPMI BMC device (ipmi-bmc-extern) connected to the same
// ipmi_sim. Boot device PXE then power on boots iPXE; power cycle (ipmi_sim: off, then on after a
// second) gives a new QEMU; power off stops it.
func TestIPMIDrivesQEMU(t *testing.T) {
	if err := testenv.EnsureDebs("qemu-system-x86", "openipmi"); err != nil {
		t.Fatal(err)
	}
	serialPort := freeTCPPort(t)
	probe := &bmcsim.IPMISim{QEMUSerialPort: serialPort}
	m := startMachine(t, probe.QEMUArgs()...)
	sim := startIPMISim(t, m, serialPort)
	c, err := bmc.New(bmc.Config{Protocol: basaltv1.BMCIPMI, Address: sim.Addr(),
		Credentials: bmc.Credentials{Username: "admin", Password: "s3cret-pw"}, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	wantPower(t, c, m, bmc.PowerOff)
	if err := c.SetNextBoot(ctx, bmc.DevicePXE, false); err != nil {
		t.Fatal(err)
	}
	if err := c.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	wantPower(t, c, m, bmc.PowerOn)
	if dev := firstBoot(t, m, 0); dev != "ROM" {
		t.Fatalf("first boot from %q after IPMI bootdev pxe, want ROM (iPXE)", dev)
	}

	pid := m.PID()
	if err := c.PowerCycle(ctx); err != nil {
		t.Fatal(err)
	}
	// ipmi_sim powers off at once and on again a second later.
	if err := waitFor(30*time.Second, func() error {
		if p := m.PID(); p == 0 || p == pid {
			return fmt.Errorf("QEMU pid %d (was %d)", p, pid)
		}
		return nil
	}); err != nil {
		t.Fatalf("power cycle did not restart the VM: %v; chassis calls %q", err, sim.Calls())
	}
	wantPower(t, c, m, bmc.PowerOn)
	// The one-time PXE override was used by the first boot: this one starts from the disk.
	if dev := firstBoot(t, m, 0); dev != "Hard Disk" {
		t.Fatalf("boot after the one-time PXE override went from %q, want Hard Disk", dev)
	}

	if err := c.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	wantPower(t, c, m, bmc.PowerOff)
	t.Logf("ipmi_sim chassis calls: %q", sim.Calls())
}

func waitFor(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
