package host

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
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

// RootImage is the root filesystem image the manager writes to network-booted Hosts' disks.
type RootImage struct {
	// Ref is its name, sha256 and size as served (gzip-compressed).
	Ref basaltv1.OSImageRef
	// RawSize is its size decompressed: the smallest disk it fits on.
	RawSize int64
	// Path is the file it is served from.
	Path string
}

// maxRootImageRaw bounds what LoadRootImage decompresses (a gzip bomb passed as the image must
// not hang the manager's start).
const maxRootImageRaw = 64 << 30

// LoadRootImage reads a gzip-compressed root filesystem image (make pxe-image's root.img.gz)
// once: its sha256 and size as served, and its size decompressed.
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
	raw, err := io.Copy(io.Discard, io.LimitReader(zr, maxRootImageRaw+1))
	if err != nil {
		return nil, fmt.Errorf("root image %s: %w", path, err)
	}
	if raw > maxRootImageRaw {
		return nil, fmt.Errorf("root image %s decompresses to more than %d bytes", path, int64(maxRootImageRaw))
	}
	if _, err := io.Copy(io.Discard, io.TeeReader(f, io.MultiWriter(h, n))); err != nil {
		return nil, err
	}
	return &RootImage{
		Ref:     basaltv1.OSImageRef{Name: RootImageName, SHA256: hex.EncodeToString(h.Sum(nil)), Size: n.n},
		RawSize: raw,
		Path:    path,
	}, nil
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
		p = &basaltv1.HostProvisioning{Image: r.RootImage.Ref, Disk: "/dev/" + disk.Name, WWN: disk.WWN, Serial: disk.Serial, ByPath: disk.ByPath}
		h.Status.Provisioning = p
		r.Recorder.Eventf(h, nil, corev1.EventTypeNormal, basaltv1.ReasonWritingImage, "Provision", "Writing root image %s (sha256 %s) to %s", p.Image.Name, p.Image.SHA256, describeDisk(p))
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

// wipeDisk waits, in Deprovisioning, until the agent runs from the network again: the Plan
// without OS (the Machine's empty Plan) has it wipe the disk and reboot. Then nothing is on the
// disk and status.provisioning goes.
func (r *Reconciler) wipeDisk(_ context.Context, s *scope) bool {
	h := s.host
	if h.Status.Provisioning == nil {
		return true
	}
	if h.Status.Agent.Root != nil {
		s.diskReason = basaltv1.ReasonWipingDisk
		s.diskMessage = fmt.Sprintf("waiting for the agent to wipe %s and boot from the network", h.Status.Provisioning.Disk)
		return false
	}
	h.Status.Provisioning = nil
	r.Recorder.Eventf(h, nil, corev1.EventTypeNormal, "DiskWiped", "Deprovision", "The root image is wiped; the agent runs from the network")
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
