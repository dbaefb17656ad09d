package host

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/conditions"
	"github.com/basalt-dev/basalt/pxe/bmc"
)

// What the Host controller asks of a Host's BMC (spec.bmc), for the state machine to call:
//
//	powerOnForProvisioning  one-time boot from PXE, then power on (or power-cycle a Host that is
//	                        on, so it boots from the network now): Registering, Provisioning,
//	                        Deprovisioning of a network-booted Host
//	setNextBootPXE          the boot device alone, one-time or persistent
//	powerCycle              remediation: hard reset of a Host that is on, power on of one that is off
//	                        (on request: annotation basalt.dev/power-cycle, host_powercycle.go)
//	powerOff                power off (e.g. after deprovisioning)
//	refreshPower            read the power state when the last reading is old
//
// Each call builds the Host's bmc.Controller from spec.bmc and the Secret it names (read straight
// from the API server: the manager does not cache Secrets), then records what it learnt on the
// Host: status.power and the BMCReachable condition, whose reason says what to fix. They change
// the Host object in memory only; the reconcile's deferred patch saves them. A Host without
// spec.bmc gets errNoBMC and no condition.

// errNoBMC says the Host has no spec.bmc, so Basalt cannot control its power.
var errNoBMC = errors.New("the Host has no spec.bmc: Basalt cannot control its power or boot device; power it on by hand")

// BMCConnector builds the BMC controller of a Host from its spec.bmc and its credentials Secret.
// bmc.ForHost is the real one.
type BMCConnector func(host *basaltv1.Host, secret *corev1.Secret) (bmc.Controller, error)

// BMCAccess says how the Host controller reaches BMCs. The zero value uses bmc.ForHost and reads
// the power state at most once a minute per Host.
type BMCAccess struct {
	// Connect builds a Host's BMC controller. Default bmc.ForHost.
	Connect BMCConnector
	// PollInterval is how old a power reading may get before refreshPower asks the BMC again.
	// Default 1 minute.
	PollInterval time.Duration

	// lastPoll maps a Host (types.NamespacedName) to when its power was last read.
	lastPoll sync.Map
	// powerCycleRetry maps a Host (types.NamespacedName) to the *powerCycleBackoff of its last
	// power-cycle request not yet seen recorded in its status (host_powercycle.go).
	powerCycleRetry sync.Map
}

// defaultBMCAccess serves Reconcilers whose BMC field is nil.
var defaultBMCAccess = &BMCAccess{}

func (r *Reconciler) bmcAccess() *BMCAccess {
	if r.BMC != nil {
		return r.BMC
	}
	return defaultBMCAccess
}

// bmcFor returns the Host's BMC controller. Its errors are *bmc.Error values.
func (r *Reconciler) bmcFor(ctx context.Context, h *basaltv1.Host) (bmc.Controller, error) {
	if h.Spec.BMC == nil {
		return nil, errNoBMC
	}
	ref := h.Spec.BMC.CredentialsSecretRef
	sec := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: h.Namespace, Name: ref.Name}, sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &bmc.Error{Reason: bmc.ReasonCredentialsInvalid, Err: fmt.Errorf(
				"secret %s/%s (spec.bmc.credentialsSecretRef) does not exist: create it with keys %q and %q",
				h.Namespace, ref.Name, bmc.SecretUsername, bmc.SecretPassword)}
		}
		return nil, &bmc.Error{Reason: bmc.ReasonCredentialsInvalid, Err: fmt.Errorf(
			"reading secret %s/%s (spec.bmc.credentialsSecretRef): %w", h.Namespace, ref.Name, err)}
	}
	connect := r.bmcAccess().Connect
	if connect == nil {
		connect = bmc.ForHost
	}
	return connect(h, sec)
}

// conditionReason maps a bmc.Reason to the Host's BMCReachable reason.
func conditionReason(err error) string {
	switch bmc.ReasonOf(err) {
	case bmc.ReasonCredentialsInvalid:
		return basaltv1.ReasonBMCCredentialsInvalid
	case bmc.ReasonInvalidAddress:
		return basaltv1.ReasonBMCAddressInvalid
	case bmc.ReasonUnreachable:
		return basaltv1.ReasonBMCUnreachable
	case bmc.ReasonAuthFailed:
		return basaltv1.ReasonBMCAuthFailed
	case bmc.ReasonCertificateInvalid:
		return basaltv1.ReasonBMCCertificateInvalid
	}
	return basaltv1.ReasonBMCProtocolError
}

// recordBMC writes the outcome of a BMC call on the Host: BMCReachable, and status.power when the
// call read it (power != "") or failed before reaching the machine (Unknown). A protocol error
// after login keeps the last power reading: the BMC answered, the action failed.
func recordBMC(h *basaltv1.Host, power bmc.PowerState, doing string, err error) {
	if err != nil {
		if errors.Is(err, errNoBMC) {
			return
		}
		conditions.False(h, basaltv1.HostBMCReachable, conditionReason(err), doing+": "+err.Error())
		if bmc.ReasonOf(err) != bmc.ReasonProtocolError || h.Status.Power == "" {
			h.Status.Power = basaltv1.PowerUnknown
		}
		return
	}
	if power != "" {
		h.Status.Power = basaltv1.PowerState(power)
	}
	conditions.True(h, basaltv1.HostBMCReachable, basaltv1.ReasonReady,
		fmt.Sprintf("%s BMC at %s answered (%s)", h.Spec.BMC.Protocol, h.Spec.BMC.Address, doing))
}

// withBMC runs fn against the Host's BMC and records the outcome; fn returns the power state it
// leaves the Host in ("" when unknown).
func (r *Reconciler) withBMC(ctx context.Context, h *basaltv1.Host, doing string, fn func(ctx context.Context, c bmc.Controller) (bmc.PowerState, error)) error {
	log := ctrl.LoggerFrom(ctx)
	c, err := r.bmcFor(ctx, h)
	if err != nil {
		recordBMC(h, "", doing, err)
		if !errors.Is(err, errNoBMC) {
			log.Info("BMC call failed", "host", klog.KObj(h), "action", doing, "reason", bmc.ReasonOf(err), "err", err.Error())
		}
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*bmc.DefaultTimeout)
	defer cancel()
	power, err := fn(ctx, c)
	if err == nil {
		r.bmcAccess().lastPoll.Store(client.ObjectKeyFromObject(h), time.Now())
	}
	recordBMC(h, power, doing, err)
	if err != nil {
		log.Info("BMC call failed", "host", klog.KObj(h), "action", doing, "reason", bmc.ReasonOf(err), "err", err.Error())
	} else if doing != "reading power" {
		log.Info("BMC call done", "host", klog.KObj(h), "action", doing, "power", power)
	}
	return err
}

// powerOnForProvisioning makes the Host boot from the network now: one-time boot from PXE, then
// power on, or power-cycle when it is already on (a running OS would not look at the network
// otherwise). Calling it again repeats the boot, so callers call it once per attempt (e.g. when
// entering a state, or after a timeout), not on every reconcile.
func (r *Reconciler) powerOnForProvisioning(ctx context.Context, h *basaltv1.Host) error {
	return r.withBMC(ctx, h, "booting from PXE", func(ctx context.Context, c bmc.Controller) (bmc.PowerState, error) {
		if err := c.SetNextBoot(ctx, bmc.DevicePXE, false); err != nil {
			return "", err
		}
		st, err := c.PowerState(ctx)
		if err != nil {
			return "", err
		}
		if st == bmc.PowerOn {
			err = c.PowerCycle(ctx)
		} else {
			err = c.PowerOn(ctx)
		}
		if err != nil {
			return st, err
		}
		return bmc.PowerOn, nil
	})
}

// setNextBootPXE sets the Host to boot from PXE, at the next boot only or at every boot; the
// power is left alone.
func (r *Reconciler) setNextBootPXE(ctx context.Context, h *basaltv1.Host, persistent bool) error {
	return r.withBMC(ctx, h, "setting the next boot to PXE", func(ctx context.Context, c bmc.Controller) (bmc.PowerState, error) {
		return "", c.SetNextBoot(ctx, bmc.DevicePXE, persistent)
	})
}

// powerCycle is remediation's hard restart: a Host that is on is reset, one that is off is
// powered on. The boot device is left as it is (a provisioned Host boots its installed system;
// its iPXE script says so).
func (r *Reconciler) powerCycle(ctx context.Context, h *basaltv1.Host) error {
	return r.withBMC(ctx, h, "power-cycling", func(ctx context.Context, c bmc.Controller) (bmc.PowerState, error) {
		if err := c.PowerCycle(ctx); err != nil {
			return "", err
		}
		return bmc.PowerOn, nil
	})
}

// powerOff cuts the Host's power.
func (r *Reconciler) powerOff(ctx context.Context, h *basaltv1.Host) error {
	return r.withBMC(ctx, h, "powering off", func(ctx context.Context, c bmc.Controller) (bmc.PowerState, error) {
		if err := c.PowerOff(ctx); err != nil {
			return "", err
		}
		return bmc.PowerOff, nil
	})
}

// refreshPower reads the Host's power state through its BMC when the last reading is older than
// BMCAccess.PollInterval (or there is none), and records status.power and BMCReachable. It
// returns when the next reading is due, so a handler can requeue for it; 0 for a Host without
// spec.bmc. It may be called on every reconcile: it talks to the BMC only when a reading is due.
func (r *Reconciler) refreshPower(ctx context.Context, h *basaltv1.Host) time.Duration {
	if h.Spec.BMC == nil {
		return 0
	}
	a := r.bmcAccess()
	every := a.PollInterval
	if every <= 0 {
		every = time.Minute
	}
	key := types.NamespacedName{Namespace: h.Namespace, Name: h.Name}
	if last, ok := a.lastPoll.Load(key); ok && h.Status.Power != "" {
		if age := time.Since(last.(time.Time)); age < every {
			return every - age
		}
	}
	err := r.withBMC(ctx, h, "reading power", func(ctx context.Context, c bmc.Controller) (bmc.PowerState, error) {
		return c.PowerState(ctx)
	})
	if err != nil {
		// Try again sooner than a healthy poll, but not in a tight loop.
		a.lastPoll.Store(key, time.Now().Add(-every/2))
		return every / 2
	}
	return every
}

// forgetBMC drops what BMCAccess remembers of a Host; call it when the Host is deleted.
func (r *Reconciler) forgetBMC(h *basaltv1.Host) {
	key := types.NamespacedName{Namespace: h.Namespace, Name: h.Name}
	r.bmcAccess().lastPoll.Delete(key)
	r.bmcAccess().powerCycleRetry.Delete(key)
}
