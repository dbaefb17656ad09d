package skeleton

import (
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
)

func TestSooner(t *testing.T) {
	s, l := ctrl.Result{RequeueAfter: time.Second}, ctrl.Result{RequeueAfter: time.Minute}
	for _, c := range []struct{ a, b, want ctrl.Result }{
		{ctrl.Result{}, l, l}, {l, ctrl.Result{}, l}, {s, l, s}, {l, s, s}, {ctrl.Result{}, ctrl.Result{}, ctrl.Result{}},
	} {
		if got := Sooner(c.a, c.b); got != c.want {
			t.Errorf("Sooner(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
