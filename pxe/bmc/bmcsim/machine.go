package bmcsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// BootDevice is a boot source override, named as Redfish names it.
type BootDevice string

// Boot devices.
const (
	// BootNone is no override: the machine boots its default order (disk first).
	BootNone BootDevice = ""
	// BootPXE boots from the network (QEMU -boot n).
	BootPXE BootDevice = "Pxe"
	// BootDisk boots from the first hard disk (QEMU -boot c).
	BootDisk BootDevice = "Hdd"
)

// System is the machine behind an emulated BMC: what a BMC can do to a server's power and boot
// order. *Machine (a real QEMU VM) and *MemorySystem (an inspectable in-process fixture for
// protocol-level tests) implement it.
type System interface {
	// PowerState says whether the machine is powered on.
	PowerState(ctx context.Context) (on bool, err error)
	// PowerOn turns the machine on; it is a no-op when it is on.
	PowerOn(ctx context.Context) error
	// ForceOff cuts the power; it is a no-op when it is off.
	ForceOff(ctx context.Context) error
	// ForceRestart resets a running machine (applying a changed boot override), or powers on a
	// machine that is off.
	ForceRestart(ctx context.Context) error
	// SetBootOverride sets the device the next boot (persistent=false) or every boot
	// (persistent=true) starts from; BootNone clears the override.
	SetBootOverride(ctx context.Context, dev BootDevice, persistent bool) error
	// BootOverride returns the override in force.
	BootOverride() (dev BootDevice, persistent bool)
}

// Machine is a QEMU VM (TCG, no display) driven over QMP, the way a BMC drives a server: it is off
// when no QEMU process runs or QMP says it is not running; PowerOn starts QEMU (or continues a
// paused one); ForceOff sends QMP quit; ForceRestart sends system_reset, or restarts QEMU when a
// new boot override needs another -boot. The VM has a blank virtio disk and a virtio NIC on
// QEMU's restricted user network, so SeaBIOS and iPXE run and print their boot attempts to the
// serial console (Console), and nothing leaves the machine.
type Machine struct {
	// Dir holds the disk image, QMP socket and console log. Required; it must exist.
	Dir string
	// QEMU is the emulator binary. Default "qemu-system-x86_64".
	QEMU string
	// MemoryMB is the guest memory. Default 128.
	MemoryMB int
	// DiskBytes is the size of the blank disk. Default 64 MiB.
	DiskBytes int64
	// MAC of the virtio NIC. Default 52:54:00:12:34:56.
	MAC string
	// ExtraArgs are appended to QEMU's command line (e.g. QEMU's external IPMI BMC).
	ExtraArgs []string
	// Log receives QEMU's stdout and stderr. Default io.Discard.
	Log io.Writer

	mu         sync.Mutex
	cmd        *exec.Cmd
	done       chan struct{}
	q          *qmp
	runningArg string // the -boot value of the running process
	persistent BootDevice
	once       BootDevice
}

var _ System = (*Machine)(nil)

// LookQEMU reports whether the QEMU binary is installed, with the command that installs it.
func LookQEMU(bin string) error {
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	if _, err := exec.LookPath(bin); err != nil {
		return fmt.Errorf("%s not found: install it with pxe/image/ensure-debs.sh qemu-system-x86 (make test does): %w", bin, err)
	}
	return nil
}

func (m *Machine) qmpPath() string     { return filepath.Join(m.Dir, "qmp.sock") }
func (m *Machine) consolePath() string { return filepath.Join(m.Dir, "console.log") }

// alive says whether the QEMU process runs. Callers hold m.mu.
func (m *Machine) alive() bool {
	if m.done == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// bootArg is QEMU's -boot value for the override in force. Callers hold m.mu.
func (m *Machine) bootArg() string {
	order := "c"
	if m.persistent == BootPXE {
		order = "n"
	}
	switch m.once {
	case BootPXE:
		return "order=" + order + ",once=n"
	case BootDisk:
		return "order=" + order + ",once=c"
	}
	return "order=" + order
}

// start launches QEMU and connects to its QMP socket. Callers hold m.mu.
func (m *Machine) start(ctx context.Context) error {
	if m.Dir == "" {
		return errors.New("bmcsim: Machine.Dir is required")
	}
	if err := LookQEMU(m.QEMU); err != nil {
		return err
	}
	disk := filepath.Join(m.Dir, "disk.raw")
	if _, err := os.Stat(disk); errors.Is(err, os.ErrNotExist) {
		size := m.DiskBytes
		if size == 0 {
			size = 64 << 20
		}
		f, err := os.Create(disk)
		if err != nil {
			return err
		}
		err = f.Truncate(size)
		f.Close()
		if err != nil {
			return err
		}
	}
	bin, mem, mac := m.QEMU, m.MemoryMB, m.MAC
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	if mem == 0 {
		mem = 128
	}
	if mac == "" {
		mac = "52:54:00:12:34:56"
	}
	_ = os.Remove(m.qmpPath())
	bootArg := m.bootArg()
	args := []string{
		"-accel", "tcg", "-nographic", "-monitor", "none",
		"-m", strconv.Itoa(mem),
		"-drive", "file=" + disk + ",if=virtio,format=raw",
		"-nic", "user,model=virtio-net-pci,restrict=on,mac=" + mac,
		"-boot", bootArg,
		"-qmp", "unix:" + m.qmpPath() + ",server=on,wait=off",
		"-serial", "file:" + m.consolePath(),
	}
	args = append(args, m.ExtraArgs...)
	cmd := exec.Command(bin, args...)
	out := m.Log
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so a test's Ctrl-C reaches it only through Close.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	m.cmd, m.done, m.runningArg = cmd, done, bootArg
	// A one-time override is used up by this boot, as on a real BMC.
	m.once = BootNone

	deadline := time.Now().Add(15 * time.Second)
	for {
		q, err := dialQMP(ctx, m.qmpPath())
		if err == nil {
			m.q = q
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited during start (%s): see its log", bin, cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			m.kill()
			return fmt.Errorf("QMP socket of %s did not answer: %w", bin, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends QEMU at once and waits for it. Callers hold m.mu.
func (m *Machine) kill() {
	if m.q != nil {
		m.q.close()
		m.q = nil
	}
	if m.alive() {
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}

// stop ends QEMU with QMP quit (the power is cut: no guest shutdown), then kills it if it lingers.
// Callers hold m.mu.
func (m *Machine) stop(ctx context.Context) error {
	if !m.alive() {
		m.kill()
		return nil
	}
	if m.q != nil {
		_, _ = m.q.do(ctx, "quit", nil) // QEMU may close the socket before it answers
	}
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
	}
	m.kill()
	return nil
}

func (m *Machine) status(ctx context.Context) (string, error) {
	raw, err := m.q.do(ctx, "query-status", nil)
	if err != nil {
		return "", err
	}
	var st struct {
		Running bool   `json:"running"`
		Status  string `json:"status"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return "", err
	}
	return st.Status, nil
}

// PowerState is on when QEMU runs and QMP query-status says "running".
func (m *Machine) PowerState(ctx context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.alive() || m.q == nil {
		return false, nil
	}
	st, err := m.status(ctx)
	if err != nil {
		if !m.alive() {
			return false, nil
		}
		return false, err
	}
	return st == "running", nil
}

// PowerOn starts QEMU, or continues it when it is paused.
func (m *Machine) PowerOn(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.alive() && m.q != nil {
		st, err := m.status(ctx)
		if err == nil && st == "running" {
			return nil
		}
		if err == nil && (st == "paused" || st == "prelaunch") {
			_, err = m.q.do(ctx, "cont", nil)
			return err
		}
		// shutdown, internal-error, ...: start afresh.
		m.kill()
	}
	return m.start(ctx)
}

// ForceOff quits QEMU.
func (m *Machine) ForceOff(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stop(ctx)
}

// ForceRestart resets the guest with QMP system_reset; when the boot override changed since QEMU
// started, QEMU is restarted with the new -boot instead. A machine that is off is powered on.
func (m *Machine) ForceRestart(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.alive() || m.q == nil {
		m.kill()
		return m.start(ctx)
	}
	if m.bootArg() != m.runningArg {
		if err := m.stop(ctx); err != nil {
			return err
		}
		return m.start(ctx)
	}
	_, err := m.q.do(ctx, "system_reset", nil)
	return err
}

// SetBootOverride records the override; it applies when QEMU next starts or restarts.
func (m *Machine) SetBootOverride(_ context.Context, dev BootDevice, persistent bool) error {
	switch dev {
	case BootNone, BootPXE, BootDisk:
	default:
		return fmt.Errorf("boot device %q is not supported: use Pxe or Hdd", dev)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case dev == BootNone:
		m.once, m.persistent = BootNone, BootNone
	case persistent:
		m.once, m.persistent = BootNone, dev
	default:
		m.once = dev
	}
	return nil
}

// BootOverride returns the pending one-time override, else the persistent one.
func (m *Machine) BootOverride() (BootDevice, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.once != BootNone {
		return m.once, false
	}
	return m.persistent, m.persistent != BootNone
}

// RunningBootArg is the -boot value of the running QEMU, "" when it is off.
func (m *Machine) RunningBootArg() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.alive() {
		return ""
	}
	return m.runningArg
}

// PID is the QEMU process id, 0 when it is off.
func (m *Machine) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.alive() {
		return 0
	}
	return m.cmd.Process.Pid
}

// Console returns what the guest wrote to its serial console since QEMU last started.
func (m *Machine) Console() string {
	b, _ := os.ReadFile(m.consolePath())
	return string(b)
}

// Close kills QEMU if it runs. It is safe to call more than once.
func (m *Machine) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.kill()
}
