package machine

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/components"
)

// registrySecretError says a Secret named by spec.registries cannot be used; its message is
// what the Machine's condition shows.
type registrySecretError struct{ msg string }

func (e *registrySecretError) Error() string { return e.msg }

// registries resolves spec.registries of the Cluster into what the Plan renders: the CA
// bundles and credentials read from the Secrets they name, in the Cluster's namespace. A
// missing Secret or key is a registrySecretError; other read errors are returned as they are.
func registries(ctx context.Context, r client.Reader, c *basaltv1.Cluster) ([]components.Registry, error) {
	secrets := map[string]*corev1.Secret{}
	get := func(field, name string) (*corev1.Secret, error) {
		if s, ok := secrets[name]; ok {
			return s, nil
		}
		s := &corev1.Secret{}
		if err := r.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, s); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, &registrySecretError{fmt.Sprintf("%s names Secret %s/%s, which does not exist", field, c.Namespace, name)}
			}
			return nil, err
		}
		secrets[name] = s
		return s, nil
	}
	ca := func(field string, ref *basaltv1.SecretKeyReference) ([]byte, error) {
		if ref == nil {
			return nil, nil
		}
		s, err := get(field, ref.Name)
		if err != nil {
			return nil, err
		}
		b := s.Data[ref.Key]
		if len(b) == 0 {
			return nil, &registrySecretError{fmt.Sprintf("%s: Secret %s/%s has no key %q with PEM CA certificates", field, c.Namespace, ref.Name, ref.Key)}
		}
		return b, nil
	}
	creds := func(field string, ref *basaltv1.LocalObjectReference) (string, string, error) {
		if ref == nil {
			return "", "", nil
		}
		s, err := get(field, ref.Name)
		if err != nil {
			return "", "", err
		}
		user, pass := s.Data[corev1.BasicAuthUsernameKey], s.Data[corev1.BasicAuthPasswordKey]
		if len(user) == 0 || len(pass) == 0 {
			return "", "", &registrySecretError{fmt.Sprintf("%s: Secret %s/%s needs the keys %q and %q (type %s)", field, c.Namespace, ref.Name,
				corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey, corev1.SecretTypeBasicAuth)}
		}
		return string(user), string(pass), nil
	}
	endpoint := func(field, url string, caRef *basaltv1.SecretKeyReference, credRef *basaltv1.LocalObjectReference) (components.RegistryEndpoint, error) {
		e := components.RegistryEndpoint{URL: url}
		var err error
		if e.CA, err = ca(field+".caSecretRef", caRef); err != nil {
			return e, err
		}
		e.Username, e.Password, err = creds(field+".credentialsSecretRef", credRef)
		return e, err
	}
	var out []components.Registry
	for i, reg := range c.Spec.Registries {
		field := fmt.Sprintf("spec.registries[%d]", i)
		server, err := endpoint(field, reg.Server, reg.CASecretRef, reg.CredentialsSecretRef)
		if err != nil {
			return nil, err
		}
		cr := components.Registry{Host: reg.Host, Server: server}
		for j, m := range reg.Mirrors {
			e, err := endpoint(fmt.Sprintf("%s.mirrors[%d]", field, j), m.URL, m.CASecretRef, m.CredentialsSecretRef)
			if err != nil {
				return nil, err
			}
			cr.Mirrors = append(cr.Mirrors, e)
		}
		out = append(out, cr)
	}
	return out, nil
}
