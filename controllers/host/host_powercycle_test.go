package host_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/test/envtest"
)

// requestPowerCycle writes the power-cycle request value on the Host, as remediation or an
// operator does.
func requestPowerCycle(t *testing.T, h *basaltv1.Host, value string) {
	t.Helper()
	envtest.Eventually(t, wait, func() error {
		got := &basaltv1.Host{}
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(h), got); err != nil {
			return err
		}
		if got.Annotations == nil {
			got.Annotations = map[string]string{}
		}
		got.Annotations[basaltv1.AnnotationPowerCycle] = value
		return env.Client.Update(context.Background(), got)
	})
}

// hostEvents returns the notes of the events with that reason about Host h.
func hostEvents(ctx context.Context, h *basaltv1.Host, reason string) ([]string, error) {
	l := &eventsv1.EventList{}
	if err := env.Client.List(ctx, l, client.InNamespace(h.Namespace)); err != nil {
		return nil, err
	}
	var out []string
	for _, e := range l.Items {
		if e.Regarding.Kind == "Host" && e.Regarding.Name == h.Name && e.Reason == reason {
			out = append(out, e.Note)
		}
	}
	return out, nil
}

// lastPowerCycle reads the Host's status.lastPowerCycle, nil when none is recorded.
func lastPowerCycle(ctx context.Context, h *basaltv1.Host) (*basaltv1.PowerCycleRecord, *basaltv1.Host, error) {
	got := &basaltv1.Host{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
		return nil, nil, err
	}
	return got.Status.LastPowerCycle, got, nil
}

// TestHostPowerCycleOnRequest: each distinct value of basalt.dev/power-cycle resets the machine
// behind the Host's Redfish BMC exactly once (reconciles with the same value do not), records the
// value in status.lastPowerCycle and emits PowerCycled; a BMC that refuses the call gets
// PowerCycleFailed, no record, and a retry that succeeds once the Secret is fixed; a Host without
// spec.bmc records the request with an error and a Warning event, and nothing is reset.
func TestHostPowerCycleOnRequest(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	sys, url, ca := startRedfishController(t)
	h := bmcHost(t, ns, url, ca, "pw")
	// The registering Host is booted from the network first (power on, no reset).
	envtest.Eventually(t, wait, func() error {
		got := &basaltv1.Host{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
			return err
		}
		if on, _ := sys.PowerState(ctx); !on || got.Status.Agent.InstalledAt == nil {
			return fmt.Errorf("machine on=%v, installedAt %v", on, got.Status.Agent.InstalledAt)
		}
		return nil
	})
	if n := sys.Resets(); n != 0 {
		t.Fatalf("%d resets before any request", n)
	}

	waitDone := func(value string, resets int) {
		t.Helper()
		envtest.Eventually(t, wait, func() error {
			pc, got, err := lastPowerCycle(ctx, h)
			if err != nil {
				return err
			}
			if pc == nil || pc.Request != value || pc.Error != "" || pc.Time.IsZero() {
				return fmt.Errorf("status.lastPowerCycle %+v, want request %q done", pc, value)
			}
			if n := sys.Resets(); n != resets {
				return fmt.Errorf("%d resets, want %d", n, resets)
			}
			if got.Status.Power != basaltv1.PowerOn {
				return fmt.Errorf("status.power %q", got.Status.Power)
			}
			notes, err := hostEvents(ctx, h, "PowerCycled")
			if err != nil {
				return err
			}
			for _, n := range notes {
				if strings.Contains(n, value) {
					return nil
				}
			}
			return fmt.Errorf("no PowerCycled event for %s in %q", value, notes)
		})
	}
	first := "2030-01-01T10:00:00Z"
	requestPowerCycle(t, h, first)
	waitDone(first, 1)

	// The same value again, and other changes to the Host, reset nothing.
	requestPowerCycle(t, h, first)
	for i := range 3 {
		envtest.Eventually(t, wait, func() error {
			got := &basaltv1.Host{}
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
				return err
			}
			got.Labels = map[string]string{"touched": fmt.Sprint(i)}
			return env.Client.Update(ctx, got)
		})
		time.Sleep(time.Second)
	}
	if n := sys.Resets(); n != 1 {
		t.Fatalf("%d resets after the same request was seen again, want 1", n)
	}

	second := "2030-01-01T11:00:00Z"
	requestPowerCycle(t, h, second)
	waitDone(second, 2)

	// The BMC refuses the password: a Warning event, no record, BMCReachable says why; once the
	// Secret is right the request is done on a retry (backoff 10 s).
	setPassword := func(pw string) {
		envtest.Eventually(t, wait, func() error {
			sec := &corev1.Secret{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "bmc"}, sec); err != nil {
				return err
			}
			sec.Data["password"] = []byte(pw)
			return env.Client.Update(ctx, sec)
		})
	}
	setPassword("wrong")
	third := "2030-01-01T12:00:00Z"
	requestPowerCycle(t, h, third)
	envtest.Eventually(t, wait, func() error {
		pc, got, err := lastPowerCycle(ctx, h)
		if err != nil {
			return err
		}
		if pc == nil || pc.Request != second {
			return fmt.Errorf("status.lastPowerCycle %+v: a failed power cycle must not be recorded", pc)
		}
		if c := bmcCondition(t, got); c.Status != metav1.ConditionFalse || c.Reason != basaltv1.ReasonBMCAuthFailed {
			return fmt.Errorf("BMCReachable %s/%s: %s", c.Status, c.Reason, c.Message)
		}
		notes, err := hostEvents(ctx, h, "PowerCycleFailed")
		if err != nil {
			return err
		}
		for _, n := range notes {
			if strings.Contains(n, third) {
				return nil
			}
		}
		return fmt.Errorf("no PowerCycleFailed event for %s in %q", third, notes)
	})
	if n := sys.Resets(); n != 2 {
		t.Fatalf("%d resets after a refused call, want 2", n)
	}
	setPassword("pw")
	waitDone(third, 3)

	// A Host without spec.bmc: the request is answered with an error, nothing is reset.
	plain := sshHost(ns, "no-bmc")
	if err := env.Client.Create(ctx, plain); err != nil {
		t.Fatal(err)
	}
	fourth := "2030-01-01T13:00:00Z"
	requestPowerCycle(t, plain, fourth)
	envtest.Eventually(t, wait, func() error {
		pc, _, err := lastPowerCycle(ctx, plain)
		if err != nil {
			return err
		}
		if pc == nil || pc.Request != fourth || !strings.Contains(pc.Error, "spec.bmc") || pc.Time.IsZero() {
			return fmt.Errorf("status.lastPowerCycle %+v, want request %q refused for want of spec.bmc", pc, fourth)
		}
		notes, err := hostEvents(ctx, plain, "PowerCycleFailed")
		if err != nil {
			return err
		}
		if len(notes) != 1 || !strings.Contains(notes[0], "no spec.bmc") {
			return fmt.Errorf("PowerCycleFailed events %q, want one saying the Host has no spec.bmc", notes)
		}
		return nil
	})
	if n := sys.Resets(); n != 3 {
		t.Fatalf("%d resets, want 3", n)
	}
}
