// Package requeue combines the requeue requests of a reconcile's phases.
package requeue

import ctrl "sigs.k8s.io/controller-runtime"

// Sooner keeps the sooner of two requeue requests; a zero Result asks for nothing.
func Sooner(a, b ctrl.Result) ctrl.Result {
	switch {
	case a.IsZero():
		return b
	case b.IsZero():
		return a
	case b.RequeueAfter < a.RequeueAfter:
		return b
	}
	return a
}
