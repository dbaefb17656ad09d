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
