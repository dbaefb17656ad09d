package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// installCRDs server-side applies config/crd/bases and waits until every CRD is Established.
func installCRDs(ctx context.Context, cfg *config, st *state) error {
	c, err := newClient(st.kubeconfig)
	if err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(cfg.root, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no CRDs in config/crd/bases (run make manifests): %w", err)
	}
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(b, &u.Object); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if err := createOrReplace(ctx, c, u); err != nil {
			return fmt.Errorf("applying %s: %w", filepath.Base(f), err)
		}
		names = append(names, u.GetName())
	}
	for _, n := range names {
		err := poll(ctx, timeoutCRD, func() error {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := c.Get(ctx, client.ObjectKey{Name: n}, crd); err != nil {
				return err
			}
			for _, cond := range crd.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return nil
				}
			}
			return fmt.Errorf("CRD %s is not Established yet", n)
		})
		if err != nil {
			return err
		}
	}
	logf("Installed CRDs %v", names)
	return nil
}

// newClient returns a client for the management plane that knows the core, apiextensions and
// Basalt types.
func newClient(kubeconfigPath string) (client.Client, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath)
	if err != nil {
		return nil, err
	}
	return client.New(rc, client.Options{Scheme: scheme})
}

// createOrReplace creates u, or replaces the object of the same name with it.
func createOrReplace(ctx context.Context, c client.Client, u *unstructured.Unstructured) error {
	cur := &unstructured.Unstructured{}
	cur.SetGroupVersionKind(u.GroupVersionKind())
	err := c.Get(ctx, client.ObjectKeyFromObject(u), cur)
	switch {
	case apierrors.IsNotFound(err):
		return c.Create(ctx, u)
	case err != nil:
		return err
	}
	u.SetResourceVersion(cur.GetResourceVersion())
	return c.Update(ctx, u)
}
