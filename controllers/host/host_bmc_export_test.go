package host

import (
	"context"
	"time"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// The BMC calls of host_bmc.go, for the tests in package host_test (which own the envtest API
// server).

func (r *Reconciler) PowerOnForProvisioning(ctx context.Context, h *basaltv1.Host) error {
	return r.powerOnForProvisioning(ctx, h)
}

func (r *Reconciler) SetNextBootPXE(ctx context.Context, h *basaltv1.Host, persistent bool) error {
	return r.setNextBootPXE(ctx, h, persistent)
}

func (r *Reconciler) PowerCycle(ctx context.Context, h *basaltv1.Host) error {
	return r.powerCycle(ctx, h)
}

func (r *Reconciler) PowerOff(ctx context.Context, h *basaltv1.Host) error {
	return r.powerOff(ctx, h)
}

func (r *Reconciler) RefreshPower(ctx context.Context, h *basaltv1.Host) time.Duration {
	return r.refreshPower(ctx, h)
}

func (r *Reconciler) ForgetBMC(h *basaltv1.Host) { r.forgetBMC(h) }
