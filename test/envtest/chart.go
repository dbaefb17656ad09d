package envtest

import (
	"os"
	"testing"

	helmchart "helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chartutil"
)

// GreeterChart packages a small Helm chart, greeter at version, as `helm package` does: its one
// template is a ConfigMap <release>-greeting in the release namespace whose data.msg is the value
// msg (default "hello"). The tests of chart add-ons put it in a ConfigMap's binaryData.
func GreeterChart(t testing.TB, version string) []byte {
	t.Helper()
	ch := &helmchart.Chart{
		Metadata: &helmchart.Metadata{APIVersion: helmchart.APIVersionV2, Name: "greeter", Version: version, Type: "application"},
		Values:   map[string]any{"msg": "hello"},
		Templates: []*helmchart.File{{Name: "templates/greeting.yaml", Data: []byte(`apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-greeting
  namespace: {{ .Release.Namespace }}
data:
  msg: {{ .Values.msg | quote }}
  chart: {{ .Chart.Version | quote }}
`)}},
	}
	path, err := chartutil.Save(ch, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
