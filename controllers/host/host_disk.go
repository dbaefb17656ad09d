package host

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/basalt-dev/basalt/agents/planstore"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/plan"
	"github.com/basalt-dev/basalt/controllers/conditions"
	"github.com/basalt-dev/basalt/controllers/topology"
)

// RootImageName is the name the manager's root filesystem image has in the artifact cache.
const RootImageName = "basalt-root"

// RootImage is the OS image the manager writes to network-booted Hosts' disks.
type RootImage struct {
	// Ref is its name, sha256 and size as served (gzip-compressed).
	Ref basaltv1.OSImageRef
	// RawSize is its size decompressed: the smallest disk it fits on.
	RawSize int64
	// Format is what the image is: a whole disk with its own boot loader (hack/os-image.sh) or
	// a bare ext4 filesystem (make pxe-image's root.img.gz), told apart by its first bytes.
	Format basaltv1.OSImageFormat
	// Path is the file it is served from.
	Path string
}

// maxRootImageRaw bounds what LoadRootImage decompresses (a gzip bomb passed as the image must
// not hang the manager's start).
const maxRootImageRaw = 64 << 30

// LoadRootImage reads a gzip-compressed OS image once: its sha256 and size as served, its size
// decompressed, and its format.
func LoadRootImage(path string) (*RootImage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("root image: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n := &countWriter{}
	zr, err := gzip.NewReader(io.TeeReader(f, io.MultiWriter(h, n)))
	if err != nil {
		return nil, fmt.Errorf("root image %s is not gzip-compressed: %w", path, err)
	}
	head := make([]byte, imageHeadBytes)
	got, err := io.ReadFull(zr, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("root image %s: %w", path, err)
	}
	format, err := ImageFormat(head[:got])
	if err != nil {
		return nil, fmt.Errorf("root image %s: %w", path, err)
	}
	rest, err := io.Copy(io.Discard, io.LimitReader(zr, maxRootImageRaw+1))
	if err != nil {
		return nil, fmt.Errorf("root image %s: %w", path, err)
	}
	raw := int64(got) + rest
	if raw > maxRootImageRaw {
		return nil, fmt.Errorf("root image %s decompresses to more than %d bytes", path, int64(maxRootImageRaw))
	}
	if _, err := io.Copy(io.Discard, io.TeeReader(f, io.MultiWriter(h, n))); err != nil {
		return nil, err
	}
	return &RootImage{
		Ref:     basaltv1.OSImageRef{Name: RootImageName, SHA256: hex.EncodeToString(h.Sum(nil)), Size: n.n},
		RawSize: raw,
		Format:  format,
		Path:    path,
	}, nil
}

// imageHeadBytes is how much of an image ImageFormat looks at: the protective MBR and the GPT
// header (LBA 1), and the ext4 superblock at byte 1024.
const imageHeadBytes = 4096

// ImageFormat tells a whole-disk image (a GPT: "EFI PART" at byte 512 behind an MBR signature)
// from a bare ext4 filesystem (its magic at byte 1080) by the first bytes of the decompressed
// image; anything else is refused, so a wrong file is caught when the manager starts.
func ImageFormat(head []byte) (basaltv1.OSImageFormat, error) {
	switch {
	case len(head) >= 520 && head[510] == 0x55 && head[511] == 0xAA && string(head[512:520]) == "EFI PART":
		return basaltv1.OSImageFormatDisk, nil
	case len(head) >= 1082 && head[1080] == 0x53 && head[1081] == 0xEF:
		return basaltv1.OSImageFormatFilesystem, nil
	}
	return "", errors.New("is neither a whole-disk image with a GPT partition table (hack/os-image.sh) nor an ext4 filesystem image (make pxe-image)")
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// wantsDisk says whether the Host's system goes on its local disk: a network-booted Host, with
// a manager that has a root image.
func (r *Reconciler) wantsDisk(h *basaltv1.Host) bool {
	return r.RootImage != nil && h.Spec.SSH == nil && h.Spec.Boot != nil
}

// provisionDisk has the agent write the root image to the Host's disk and reboot into it: it
// stores a Plan with only plan.Plan.OS, and the Host is Provisioned once the agent reports
// running from that image on that disk.
func (r *Reconciler) provisionDisk(ctx context.Context, s *scope) ctrl.Result {
	h := s.host
	p := h.Status.Provisioning
	if p == nil {
		disk, err := chooseRootDisk(h, r.RootImage.RawSize)
		if err != nil {
			s.diskReason, s.diskMessage = basaltv1.ReasonNoRootDisk, err.Error()
			r.Recorder.Eventf(h, nil, corev1.EventTypeWarning, basaltv1.ReasonNoRootDisk, "Provision", "%v", err)
			return ctrl.Result{RequeueAfter: time.Minute}
		}
		p = &basaltv1.HostProvisioning{Image: r.RootImage.Ref, Disk: "/dev/" + disk.Name, WWN: disk.WWN, Serial: disk.Serial, ByPath: disk.ByPath, Format: r.RootImage.Format}
		h.Status.Provisioning = p
		r.Recorder.Eventf(h, nil, corev1.EventTypeNormal, basaltv1.ReasonWritingImage, "Provision", "Writing root image %s (sha256 %s) to %s", p.Image.Name, p.Image.SHA256, describeDisk(p))
	}
	if p.WrittenAt == nil && writtenReported(h) {
		// The agent in RAM wrote the whole-disk image and reboots into it: from now on the
		// host's network boot hands over to its disk (NetBoot.Target).
		now := metav1.Now()
		p.WrittenAt = &now
		r.Recorder.Eventf(h, nil, corev1.EventTypeNormal, "ImageWritten", "Provision", "Image %s written to %s; the host boots from its disk from now on", p.Image.Name, p.Disk)
	}
	if root := h.Status.Agent.Root; root != nil && root.Image == p.Image.SHA256 && root.Disk == p.Disk {
		now := metav1.Now()
		p.ProvisionedAt = &now
		h.Status.State = basaltv1.HostStateProvisioned
		r.Recorder.Eventf(h, nil, corev1.EventTypeNormal, "Provisioned", "Provision", "The agent runs from image %s on %s", p.Image.Name, p.Disk)
		return r.watchAgent(ctx, s)
	}
	// StorePlan writes only when the hash changes: while the Host is Provisioning its Plan is
	// this one (the Machine waits for Provisioned before it stores its own).
	if _, _, err := planstore.StorePlan(ctx, planstore.Client(r.Client, r.APIReader), h.Namespace, h.Name, &plan.Plan{Host: h.Name, OS: topology.OSImage(h)}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Storing the Plan that writes the root image")
		return ctrl.Result{RequeueAfter: waitForRegistration}
	}
	s.diskReason = basaltv1.ReasonWritingImage
	s.diskMessage = fmt.Sprintf("the agent writes image %s to %s, then reboots into it", p.Image.Name, describeDisk(p))
	// The agent's reports (status writes) bring the Host back.
	return ctrl.Result{RequeueAfter: waitForRegistration}
}

// writtenReported says whether the agent's last report says it wrote h's whole-disk image to
// its disk (and reboots into it).
func writtenReported(h *basaltv1.Host) bool {
	p, w := h.Status.Provisioning, h.Status.Agent.Written
	return p != nil && p.Format == basaltv1.OSImageFormatDisk && w != nil && w.Image == p.Image.SHA256 && w.Disk == p.Disk
}

// wipedReported says whether the agent's last report says it wiped h's image from its disk (and
// reboots into the network).
func wipedReported(h *basaltv1.Host) bool {
	p, w := h.Status.Provisioning, h.Status.Agent.Wiped
	return p != nil && w != nil && w.Image == p.Image.SHA256 && w.Disk == p.Disk
}

// bootsFromDisk says whether h's network boot hands over to its local disk: a whole-disk image
// is on it and finished (Provisioned, or reported written while Provisioning), or the Host is
// being released and its agent has not reported the image wiped yet: a machine that reboots or
// loses power before its wipe comes back on its disk, where the agent wipes it (only when it ran
// from the disk: before that no node ran there). Once the wipe is reported it boots the agent from
// RAM.
func bootsFromDisk(h *basaltv1.Host) bool {
	p := h.Status.Provisioning
	if p == nil || p.Format != basaltv1.OSImageFormatDisk {
		return false
	}
	switch h.Status.State {
	case basaltv1.HostStateProvisioned:
		return true
	case basaltv1.HostStateProvisioning:
		return p.WrittenAt != nil || writtenReported(h)
	case basaltv1.HostStateDeprovisioning, basaltv1.HostStateUnwiped:
		return p.ProvisionedAt != nil && p.WipedAt == nil && !wipedReported(h)
	}
	return false
}

// wipeDisk waits, once the Host is released, until the agent on the disk reported that it wiped
// the image (the Plan without OS, the Machine's empty Plan, has it wipe the disk and reboot into
// the network) and runs from the network again. An agent that merely runs from the network proves
// nothing: the machine may have been off during the wipe and booted the network since. Then
// nothing is on the disk and status.provisioning goes.
func (r *Reconciler) wipeDisk(_ context.Context, s *scope) bool {
	h := s.host
	p := h.Status.Provisioning
	if p == nil {
		return true
	}
	if p.WipedAt == nil && wipedReported(h) {
		now := metav1.Now()
		p.WipedAt = &now
		r.Recorder.Eventf(h, nil, corev1.EventTypeNormal, "DiskWiped", "Deprovision", "The agent wiped image %s from %s and boots from the network", p.Image.Name, p.Disk)
	}
	switch {
	case h.Status.Agent.Root != nil:
		s.diskReason = basaltv1.ReasonWipingDisk
		s.diskMessage = fmt.Sprintf("waiting for the agent to wipe %s and boot from the network", describeDisk(p))
		return false
	case p.WipedAt == nil && p.ProvisionedAt == nil:
		// Released before the host ever ran from its disk: no node ran there, and what
		// provisioning may have written carries its claim, so the next provisioning overwrites it.
	case p.WipedAt == nil:
		s.diskReason = basaltv1.ReasonWipingDisk
		s.diskMessage = fmt.Sprintf("the agent runs from the network but never reported wiping image %s from %s (the machine was off or lost power before the wipe): "+
			"boot it from that disk, where its agent wipes it, or erase the disk and annotate %s", p.Image.Name, describeDisk(p), basaltv1.AnnotationConfirmWiped)
		return false
	}
	h.Status.Provisioning = nil
	return true
}

// setDiskProvisioned sets basaltv1.HostDiskProvisioned, or removes it when nothing is on the disk.
func setDiskProvisioned(s *scope) bool {
	h := s.host
	switch {
	case s.diskReason != "":
		conditions.False(h, basaltv1.HostDiskProvisioned, s.diskReason, s.diskMessage)
	case h.Status.Provisioning != nil && h.Status.State == basaltv1.HostStateProvisioned:
		p := h.Status.Provisioning
		conditions.True(h, basaltv1.HostDiskProvisioned, basaltv1.ReasonReady, fmt.Sprintf("running from image %s (sha256 %s) on %s", p.Image.Name, p.Image.SHA256, p.Disk))
	default:
		meta.RemoveStatusCondition(&h.Status.Conditions, basaltv1.HostDiskProvisioned)
		return false
	}
	return true
}
