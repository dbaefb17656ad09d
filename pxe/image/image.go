// Package image builds the kernel and initramfs that PXE-booted hosts run the agent from, and the
// root file system image that hosts netbooting with their root on local disk run from, with
// build.sh beside this file:
//
//   - the kernel of Debian's linux-image package, extracted with dpkg-deb (nothing is installed
//     into this machine's /boot);
//   - busybox-static as the userland;
//   - the modules for virtio-net, e1000, virtio-blk and AHCI (and SCSI disks), crc32c and ext4,
//     copied from the package with their dependencies and a modules.dep for modprobe;
//   - /init (the file init beside this one): it mounts /proc, /sys, /dev, loads the modules,
//     brings up the interface named by BOOTIF (or any) with busybox udhcpc; then, given
//     basalt.root=<label> and a disk with an ext4 file system of that label holding
//     /etc/basalt/root.json, it switch_root's to that file system (keeping the network) and runs
//     its busybox init; otherwise it writes protocol.BootstrapPath from the kernel command line
//     (see pxe/httpboot's BootstrapArgs) and hands PID 1 to busybox init. Busybox init runs
//     basalt-agent --runtime supervisor and restarts it after a pause if it exits (the agent is
//     not PID 1: init reaps orphans and keeps the kernel from panicking when the agent stops);
//   - basalt-agent, built static from ./cmd/agent.
//
// The root file system image (Image.RootImage, root.img.gz) is the same tree as the initramfs as
// a gzipped ext4 file system labelled RootLabel, without a partition table: the agent writes it at
// offset 0 of a disk, adds its identity and then /etc/basalt/root.json.
//
// Both are reproducible (fixed mtimes, sorted newc cpio owned by root, gzip -n; for the file
// system a fake time, a UUID and hash seed from the cache key, inode times and owners fixed) and
// cached under $BASALT_CACHE/pxe-image/<hash of every input>. The boot test runs the initramfs in
// QEMU (TCG) and waits for the agent's first log line on the serial console.
package image

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// RootLabel is the label of the file system in Image.RootImage, for basalt.root=.
const RootLabel = "basalt-root"

// Image is a built kernel and initramfs, and the root file system image.
type Image struct {
	// Kernel and Initramfs are the files, in the cache.
	Kernel, Initramfs string
	// KernelVersion is the kernel's release, e.g. 6.1.0-56-amd64.
	KernelVersion string
	// RootImage is the gzipped ext4 file system labelled RootLabel, in the cache; its hex
	// SHA-256 is in RootImage+".sha256".
	RootImage string
}

// BuildOptions are the inputs of Build that are not in the repository.
type BuildOptions struct {
	// Cache is the cache root. Default $BASALT_CACHE, else ~/.cache/basalt.
	Cache string
	// Agent is a prebuilt static agent binary. Default: build ./cmd/agent.
	Agent string
	// Log receives build.sh's progress messages. Default os.Stderr.
	Log *os.File
}

// Script is the path of build.sh.
func Script() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "build.sh")
}

// Build runs build.sh: it returns the cached image when its inputs are unchanged, and builds it
// otherwise (Debian packages are downloaded once into the cache). It needs root only to install
// missing Debian tools (cpio, xz-utils, e2fsprogs).
func Build(ctx context.Context, o BuildOptions) (Image, error) {
	cmd := exec.CommandContext(ctx, Script())
	cmd.Env = os.Environ()
	if o.Cache != "" {
		cmd.Env = append(cmd.Env, "BASALT_CACHE="+o.Cache)
	}
	if o.Agent != "" {
		cmd.Env = append(cmd.Env, "AGENT="+o.Agent)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if o.Log != nil {
		cmd.Stderr = o.Log
	}
	if err := cmd.Run(); err != nil {
		return Image{}, fmt.Errorf("image: %s: %w", Script(), err)
	}
	return parseOutput(out.String())
}

// parseOutput reads the KEY=value lines build.sh ends with.
func parseOutput(out string) (Image, error) {
	var img Image
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "VMLINUZ":
			img.Kernel = v
		case "INITRAMFS":
			img.Initramfs = v
		case "KERNEL_VERSION":
			img.KernelVersion = v
		case "ROOT_IMAGE":
			img.RootImage = v
		}
	}
	if img.Kernel == "" || img.Initramfs == "" || img.RootImage == "" {
		return Image{}, fmt.Errorf("image: %s did not say where the image is:\n%s", Script(), out)
	}
	return img, nil
}
