// Package basalt loads, lints and renders Basalt's Helm chart (the folder this file is in) with the
// Helm Go SDK, the way `helm lint` and `helm template` do, for the chart's tests and the
// end-to-end suites that install it.
//
// The chart's CRDs and RBAC rules are byte copies of config/ kept in files/ by `make chart`
// (hack/chart-sync.sh); the templates read them with .Files.Get, so the chart never restates a
// generated object. Go files are excluded from the packaged chart by .helmignore.
package basalt

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	helmchart "helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint/support"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// DefaultKubeVersion is the Kubernetes version charts are rendered and linted for when the
// caller names none: the version Basalt builds and tests.
const DefaultKubeVersion = "v1.37.2"

// Dir is the chart's folder.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Load reads the chart from Dir, honouring .helmignore.
func Load() (*helmchart.Chart, error) {
	c, err := loader.Load(Dir())
	if err != nil {
		return nil, fmt.Errorf("loading the chart from %s: %w", Dir(), err)
	}
	return c, nil
}

// RenderInput says what to render.
type RenderInput struct {
	// ReleaseName defaults to "basalt"; Namespace to "basalt-system".
	ReleaseName, Namespace string
	// Values override values.yaml, as `helm template -f` would.
	Values map[string]any
	// KubeVersion is the version the templates see (default DefaultKubeVersion).
	KubeVersion string
}

// Render renders the chart like `helm template` (client only, the values checked against
// values.schema.json) and returns the manifest, CRDs included. A schema violation or a template
// failure is returned as the error Helm reports.
func Render(in RenderInput) (string, error) {
	c, err := Load()
	if err != nil {
		return "", err
	}
	kv, err := kubeVersion(in.KubeVersion)
	if err != nil {
		return "", err
	}
	inst := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	inst.DryRun, inst.DryRunOption = true, "client"
	inst.ClientOnly = true
	inst.Replace = true
	inst.IncludeCRDs = true
	inst.ReleaseName = withDefault(in.ReleaseName, "basalt")
	inst.Namespace = withDefault(in.Namespace, "basalt-system")
	inst.KubeVersion = kv
	vals := in.Values
	if vals == nil {
		vals = map[string]any{}
	}
	rel, err := inst.Run(c, vals)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	out.WriteString(rel.Manifest)
	for _, h := range rel.Hooks {
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", h.Path, h.Manifest)
	}
	return out.String(), nil
}

// LintInput says how to lint.
type LintInput struct {
	// Namespace defaults to "basalt-system".
	Namespace string
	// Values override values.yaml.
	Values map[string]any
	// KubeVersion defaults to DefaultKubeVersion.
	KubeVersion string
}

// Lint runs `helm lint --strict` on the chart and returns every finding at warning level or
// above; an empty result means the chart is clean. Informational findings are left out.
func Lint(in LintInput) ([]support.Message, error) {
	kv, err := kubeVersion(in.KubeVersion)
	if err != nil {
		return nil, err
	}
	l := action.NewLint()
	l.Strict = true
	l.Namespace = withDefault(in.Namespace, "basalt-system")
	l.KubeVersion = kv
	vals := in.Values
	if vals == nil {
		vals = map[string]any{}
	}
	res := l.Run([]string{Dir()}, vals)
	var found []support.Message
	for _, m := range res.Messages {
		if m.Severity >= support.WarningSev {
			found = append(found, m)
		}
	}
	if res.TotalChartsLinted != 1 && len(res.Errors) > 0 {
		return found, errors.Join(res.Errors...)
	}
	return found, nil
}

// Objects splits a rendered manifest into objects, in order; empty documents are skipped. Numbers
// become int64 or float64 as in an API response.
func Objects(manifest string) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the rendered manifest (object %d): %w", len(objs)+1, err)
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("decoding the rendered manifest (object %d): %w", len(objs)+1, err)
		}
		if t := bytes.TrimSpace(j); len(t) == 0 || bytes.Equal(t, []byte("null")) || bytes.Equal(t, []byte("{}")) {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			return nil, fmt.Errorf("decoding the rendered manifest (object %d): %w", len(objs)+1, err)
		}
		objs = append(objs, u)
	}
}

func kubeVersion(v string) (*chartutil.KubeVersion, error) {
	kv, err := chartutil.ParseKubeVersion(withDefault(v, DefaultKubeVersion))
	if err != nil {
		return nil, fmt.Errorf("kube version %q: %w", v, err)
	}
	return kv, nil
}

func withDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
