package basalt_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/test/envtest"
)

const fieldOwner = client.FieldOwner("basalt-chart-test")

// TestRenderedManifestsAcceptedByAPIServer sends what the chart renders to a real kube-apiserver
// (test/envtest, KUBEBUILDER_ASSETS): the chart's CRDs are applied for real first, as Helm does,
// then every scenario's objects go through server-side apply with dryRun=All, which runs
// defaulting, validation (strict field validation: an unknown field is an error), and admission
// without storing anything.
func TestRenderedManifestsAcceptedByAPIServer(t *testing.T) {
	env, err := envtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := env.Client

	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "basalt-system"}}); err != nil {
		t.Fatal(err)
	}
	// CRDs first, for real: the chart's copies replace what envtest installed from config/.
	for _, o := range render(t, nil) {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), fieldOwner, client.ForceOwnership); err != nil {
			t.Fatalf("applying CRD %s: %v", o.GetName(), err)
		}
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(o.GroupVersionKind())
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), got); err != nil {
			t.Fatal(err)
		}
		if got.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
			t.Errorf("CRD %s stored without the chart's annotation", o.GetName())
		}
	}

	for name, vals := range scenarios {
		t.Run(name, func(t *testing.T) {
			objs := render(t, vals)
			mustFind(t, objs, "Deployment", "basalt")
			for _, o := range objs {
				if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), fieldOwner, client.ForceOwnership, client.DryRunAll); err != nil {
					t.Errorf("%s %s/%s refused: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
				}
			}
		})
	}

	// The check can fail: an unknown field and an invalid value are refused.
	objs := render(t, nil)
	d := find(objs, "Deployment", "basalt").DeepCopy()
	if err := unstructured.SetNestedField(d.Object, "yes", "spec", "template", "spec", "hostNetwrk"); err != nil {
		t.Fatal(err)
	}
	err = c.Apply(ctx, client.ApplyConfigurationFromUnstructured(d), fieldOwner, client.ForceOwnership, client.DryRunAll)
	if err == nil || !strings.Contains(err.Error(), "hostNetwrk") {
		t.Errorf("a Deployment with an unknown field: %v, want an error naming the field", err)
	}
	s := find(objs, "Service", "basalt-agent-api").DeepCopy()
	if err := unstructured.SetNestedSlice(s.Object, []any{map[string]any{"name": "agent-api", "port": int64(70000)}}, "spec", "ports"); err != nil {
		t.Fatal(err)
	}
	err = c.Apply(ctx, client.ApplyConfigurationFromUnstructured(s), fieldOwner, client.ForceOwnership, client.DryRunAll)
	if !apierrors.IsInvalid(err) {
		t.Errorf("a Service on port 70000: %v, want Invalid", err)
	}
	// Dry run stored nothing.
	dl := &unstructured.UnstructuredList{}
	dl.SetAPIVersion("apps/v1")
	dl.SetKind("DeploymentList")
	if err := c.List(ctx, dl, client.InNamespace("basalt-system")); err != nil || len(dl.Items) != 0 {
		t.Errorf("after dry runs the namespace holds %d Deployments (%v)", len(dl.Items), err)
	}
}
