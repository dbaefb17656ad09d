package planstore

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestPlanSecretName(t *testing.T) {
	if got := PlanSecretName("node-1"); got != "basalt-plan-node-1" {
		t.Errorf("PlanSecretName(node-1) = %s", got)
	}
	long1 := strings.Repeat("a", 240) + ".b-" + strings.Repeat("c", 10)
	long2 := strings.Repeat("a", 240) + ".b-" + strings.Repeat("d", 10)
	n1, n2 := PlanSecretName(long1), PlanSecretName(long2)
	for _, n := range []string{n1, n2} {
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			t.Errorf("PlanSecretName of a long host = %q: %v", n, errs)
		}
	}
	if n1 == n2 {
		t.Errorf("two long host names share the Secret name %s", n1)
	}
	if v := hostLabelValue(long1); len(validation.IsValidLabelValue(v)) > 0 {
		t.Errorf("hostLabelValue(long) = %q is not a label value", v)
	}
}
