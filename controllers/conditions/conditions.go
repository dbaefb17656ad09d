// Package conditions holds the small helpers every Basalt reconciler uses to set
// metav1.Conditions and derive the top-level Ready condition from the others.
package conditions

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// Setter is an object with conditions and a generation.
type Setter interface {
	GetGeneration() int64
	GetConditions() []metav1.Condition
	SetConditions([]metav1.Condition)
}

// Set sets condition t on obj, stamped with obj's generation. The transition time only moves when
// the status changes, as meta.SetStatusCondition guarantees.
func Set(obj Setter, t string, status metav1.ConditionStatus, reason, message string) {
	conds := obj.GetConditions()
	meta.SetStatusCondition(&conds, metav1.Condition{
		Type:               t,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: obj.GetGeneration(),
	})
	obj.SetConditions(conds)
}

// True sets condition t to True.
func True(obj Setter, t, reason, message string) { Set(obj, t, metav1.ConditionTrue, reason, message) }

// False sets condition t to False.
func False(obj Setter, t, reason, message string) {
	Set(obj, t, metav1.ConditionFalse, reason, message)
}

// Unknown sets condition t to Unknown.
func Unknown(obj Setter, t, reason, message string) {
	Set(obj, t, metav1.ConditionUnknown, reason, message)
}

// IsTrue says whether condition t is True on obj.
func IsTrue(obj Setter, t string) bool { return meta.IsStatusConditionTrue(obj.GetConditions(), t) }

// SetSummary sets Ready from the given conditions in order: Ready is True only when all are
// True; otherwise it carries the reason and message of the first that is not.
func SetSummary(obj Setter, order ...string) {
	for _, t := range order {
		c := meta.FindStatusCondition(obj.GetConditions(), t)
		if c == nil {
			Unknown(obj, basaltv1.ConditionReady, "Unknown", t+" has not been computed yet")
			return
		}
		if c.Status != metav1.ConditionTrue {
			Set(obj, basaltv1.ConditionReady, metav1.ConditionFalse, c.Reason, t+": "+c.Message)
			return
		}
	}
	True(obj, basaltv1.ConditionReady, basaltv1.ReasonReady, "")
}

// SetPaused records whether reconciliation of obj is paused: Paused True with message, or no
// Paused condition.
func SetPaused(obj Setter, paused bool, message string) {
	if paused {
		True(obj, basaltv1.ConditionPaused, basaltv1.ReasonPaused, message)
		return
	}
	conds := obj.GetConditions()
	if meta.RemoveStatusCondition(&conds, basaltv1.ConditionPaused) {
		obj.SetConditions(conds)
	}
}

// SetProgress derives the kstatus conditions of obj from its Ready and Paused conditions and the
// others, so GitOps tools tell progress from a dead end:
//
//	Paused True                         → neither Reconciling nor Stalled (kstatus then goes by Ready)
//	Ready True                          → neither
//	a condition not True whose reason   → Stalled True with that reason, "<type>: <message>"
//	  is in stalled (Ready's included)
//	otherwise                           → Reconciling True with Ready's reason and message
func SetProgress(obj Setter, stalled map[string]bool) {
	conds := obj.GetConditions()
	drop := func(types ...string) {
		for _, t := range types {
			meta.RemoveStatusCondition(&conds, t)
		}
		obj.SetConditions(conds)
	}
	ready := meta.FindStatusCondition(conds, basaltv1.ConditionReady)
	if meta.IsStatusConditionTrue(conds, basaltv1.ConditionPaused) || (ready != nil && ready.Status == metav1.ConditionTrue) {
		drop(basaltv1.ConditionReconciling, basaltv1.ConditionStalled)
		return
	}
	for _, c := range conds {
		switch c.Type {
		case basaltv1.ConditionReconciling, basaltv1.ConditionStalled, basaltv1.ConditionPaused:
			continue
		}
		if c.Status != metav1.ConditionTrue && stalled[c.Reason] {
			msg := c.Message
			if c.Type != basaltv1.ConditionReady {
				msg = c.Type + ": " + msg
			}
			drop(basaltv1.ConditionReconciling)
			True(obj, basaltv1.ConditionStalled, c.Reason, msg)
			return
		}
	}
	reason, msg := "Unknown", "Ready has not been computed yet"
	if ready != nil {
		reason, msg = ready.Reason, ready.Message
	}
	drop(basaltv1.ConditionStalled)
	True(obj, basaltv1.ConditionReconciling, reason, msg)
}
