package pxenet

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// VMOptions describe a VM that boots from the network.
type VMOptions struct {
	// Dir holds the VM's disk and serial console log. Required.
	Dir string
	// MAC of the virtio NIC, e.g. 52:54:00:12:34:56. Required.
	MAC string
	// CPUs and MemoryMiB are QEMU's -smp and -m. Defaults 2 and 768.
	CPUs, MemoryMiB int
	// DiskBytes is the size of the blank virtio disk. Default 2 GiB.
	DiskBytes int64
	// UEFI boots OVMF (Debian package ovmf) instead of SeaBIOS, and takes the NIC's option ROM
	// away, so the firmware's own network stack PXE-boots (DHCP with architecture 7, then
	// ipxe.efi over TFTP) rather than QEMU's iPXE ROM.
	UEFI bool
	// NVMe attaches the disk as an NVMe controller (serial NVMeSerial) instead of virtio.
	NVMe bool
}

// NVMeSerial is the serial number of a VM's NVMe disk.
const NVMeSerial = "basalt-nvme-0"

// OVMF firmware of Debian's ovmf package: code (read-only) and the template of the variables.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// VM is a QEMU process (TCG, BIOS, virtio-net with QEMU's iPXE option ROM, a blank virtio disk)
// on a Network's tap, booting from the network first.
type VM struct {
	Options VMOptions
	// Console is the serial console's log file.
	Console string
	// Disk is the raw disk image.
	Disk string

	n    *Network
	cmd  *exec.Cmd
	done chan error
}

// NewVM creates the VM's blank disk; Start powers it on.
func (n *Network) NewVM(o VMOptions) (*VM, error) {
	if o.Dir == "" || o.MAC == "" {
		return nil, errors.New("pxenet: a VM needs Dir and MAC")
	}
	if o.CPUs == 0 {
		o.CPUs = 2
	}
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 768
	}
	if o.DiskBytes == 0 {
		o.DiskBytes = 2 << 30
	}
	vm := &VM{Options: o, Console: filepath.Join(o.Dir, "console.log"), Disk: filepath.Join(o.Dir, "disk.raw"), n: n}
	if o.UEFI {
		vars, err := os.ReadFile(OVMFVars)
		if err != nil {
			return nil, fmt.Errorf("pxenet: UEFI needs Debian's ovmf package: %w", err)
		}
		if err := os.WriteFile(filepath.Join(o.Dir, "ovmf-vars.fd"), vars, 0o644); err != nil {
			return nil, err
		}
	}
	f, err := os.Create(vm.Disk)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(o.DiskBytes); err != nil { // sparse: blank
		_ = f.Close()
		return nil, err
	}
	return vm, f.Close()
}

// Start powers the VM on: QEMU runs inside the network's namespace, attached to its tap. The
// console log is appended to, so it covers every boot.
func (vm *VM) Start() error {
	if vm.cmd != nil {
		return errors.New("pxenet: VM already running")
	}
	o := vm.Options
	args := []string{"netns", "exec", vm.n.Namespace, "qemu-system-x86_64",
		"-name", "basalt-pxe-vm",
		// The disk boots when the network does not (an installed whole-disk system with the
		// manager down); with network first, the manager decides every other boot.
		"-accel", "tcg", "-machine", "pc", "-m", strconv.Itoa(o.MemoryMiB), "-smp", strconv.Itoa(o.CPUs),
		"-display", "none", "-monitor", "none", "-no-user-config", "-nodefaults",
		"-serial", "file:" + vm.Console + ".tmp",
		"-netdev", "tap,id=n0,ifname=" + vm.n.Tap + ",script=no,downscript=no",
		"-drive", "if=none,id=d0,format=raw,file=" + vm.Disk,
	}
	if o.NVMe {
		args = append(args, "-device", "nvme,drive=d0,serial="+NVMeSerial+",bootindex=2")
	} else {
		args = append(args, "-device", "virtio-blk-pci,drive=d0,bootindex=2")
	}
	if o.UEFI {
		args = append(args,
			"-drive", "if=pflash,format=raw,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,file="+filepath.Join(o.Dir, "ovmf-vars.fd"),
			"-device", "virtio-net-pci,netdev=n0,mac="+o.MAC+",bootindex=1,romfile=")
	} else {
		args = append(args, "-device", "virtio-net-pci,netdev=n0,mac="+o.MAC+",bootindex=1", "-boot", "order=n")
	}
	name, cmdArgs := "ip", args
	if vm.n.Namespace == "" { // a tap in the root namespace (OnBridge)
		name, cmdArgs = args[3], args[4:]
	}
	cmd := exec.Command(name, cmdArgs...)
	log, err := os.OpenFile(filepath.Join(o.Dir, "qemu.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return fmt.Errorf("pxenet: starting QEMU: %w", err)
	}
	vm.cmd, vm.done = cmd, make(chan error, 1)
	go func() {
		err := cmd.Wait()
		_ = log.Close()
		vm.done <- err
	}()
	if vm.n.Logf != nil {
		vm.n.Logf("Powered on VM %s (pid %d): %d CPUs, %d MiB, %d-byte disk, booting from the network", o.MAC, cmd.Process.Pid, o.CPUs, o.MemoryMiB, o.DiskBytes)
	}
	return nil
}

// Stop powers the VM off (kills QEMU) and waits for it; the serial output of the boot is added
// to Console.
func (vm *VM) Stop() error {
	if vm.cmd == nil {
		return nil
	}
	_ = vm.cmd.Process.Kill()
	select {
	case err := <-vm.done:
		_ = err // "signal: killed": it was powered off
	case <-time.After(10 * time.Second):
		return errors.New("pxenet: QEMU did not stop")
	}
	vm.cmd = nil
	return vm.flushConsole()
}

// flushConsole appends this boot's serial output to Console.
func (vm *VM) flushConsole() error {
	b, err := os.ReadFile(vm.Console + ".tmp")
	if err != nil {
		return nil
	}
	f, err := os.OpenFile(vm.Console, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	_, err = f.Write(b)
	_ = os.Remove(vm.Console + ".tmp")
	return err
}

// ConsoleText is what the VM printed on its serial console so far, over every boot.
func (vm *VM) ConsoleText() string {
	old, _ := os.ReadFile(vm.Console)
	cur, _ := os.ReadFile(vm.Console + ".tmp")
	return string(old) + string(cur)
}

// Tail is the last n lines of the console, for failure messages.
func (vm *VM) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(vm.ConsoleText(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
