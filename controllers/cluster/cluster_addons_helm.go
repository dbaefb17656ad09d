package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"helm.sh/helm/v3/pkg/action"
	helmchart "helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/addons"
)

// releaseRevisionLabel is the Helm release label holding the add-on revision it was made from.
const releaseRevisionLabel = "basalt.dev/addon-revision"

// chartAddon is a chart add-on as this reconcile wants it installed.
type chartAddon struct {
	chart     *helmchart.Chart
	values    map[string]any
	namespace string
	// revision is a digest of the chart archive, the values and the namespace.
	revision string
}

// readChart reads and loads a chart add-on's archive and values.
func (r *Reconciler) readChart(ctx context.Context, ns string, a basaltv1.ChartAddon) (*chartAddon, error) {
	src := a.Chart
	cm, sec, err := r.readSource(ctx, ns, src.ConfigMapRef, src.SecretRef)
	if err != nil {
		return nil, err
	}
	var archive []byte
	if cm != nil {
		if archive = cm.BinaryData[src.Key]; archive == nil {
			return nil, fmt.Errorf("the ConfigMap %s has no binaryData key %s", cm.Name, src.Key)
		}
	} else if archive = sec.Data[src.Key]; archive == nil {
		return nil, fmt.Errorf("the Secret %s has no key %s", sec.Name, src.Key)
	}
	if len(archive) > addons.MaxBytes {
		return nil, fmt.Errorf("the chart archive holds more than %d bytes", addons.MaxBytes)
	}
	ch, err := loader.LoadArchive(bytes.NewReader(archive))
	if err != nil {
		return nil, fmt.Errorf("loading the chart archive %s: %w", src.Key, err)
	}
	values := map[string]any{}
	var raw []byte
	if a.Values != nil && len(a.Values.Raw) > 0 {
		raw = a.Values.Raw
		if err := json.Unmarshal(raw, &values); err != nil {
			return nil, fmt.Errorf("values: %w", err)
		}
	}
	h := sha256.New()
	h.Write(archive)
	h.Write([]byte{0})
	h.Write(raw)
	h.Write([]byte{0})
	h.Write([]byte(a.Namespace))
	return &chartAddon{chart: ch, values: values, namespace: a.Namespace, revision: hex.EncodeToString(h.Sum(nil))[:16]}, nil
}

// helmRelease installs the chart as release name, or upgrades the release when it exists, as
// `helm upgrade --install` does (no wait: the add-on is applied once Helm applied it).
func (r *Reconciler) helmRelease(ctx context.Context, c *basaltv1.Cluster, name string, ch *chartAddon) (*basaltv1.AddonRelease, error) {
	cfg, err := r.helmConfig(ctx, c, ch.namespace)
	if err != nil {
		return nil, err
	}
	chartName := ch.chart.Metadata.Name + "-" + ch.chart.Metadata.Version
	// The add-on's revision is a label of the release: a release already at it (the status write
	// after the last upgrade was lost, the manager restarted) is recorded, not upgraded again.
	labels := map[string]string{releaseRevisionLabel: ch.revision}
	last, err := action.NewGet(cfg).Run(name)
	switch {
	case errors.Is(err, driver.ErrReleaseNotFound):
		inst := action.NewInstall(cfg)
		inst.ReleaseName, inst.Namespace, inst.CreateNamespace, inst.Labels = name, ch.namespace, true, labels
		rel, err := inst.RunWithContext(ctx, ch.chart, ch.values)
		if err != nil {
			return nil, fmt.Errorf("helm install %s into namespace %s: %w", name, ch.namespace, err)
		}
		return &basaltv1.AddonRelease{Namespace: rel.Namespace, Version: int32(rel.Version), Chart: chartName}, nil
	case err != nil:
		return nil, fmt.Errorf("reading release %s: %w", name, err)
	case last.Labels[releaseRevisionLabel] == ch.revision && last.Info != nil && last.Info.Status == release.StatusDeployed:
		return &basaltv1.AddonRelease{Namespace: last.Namespace, Version: int32(last.Version), Chart: chartName}, nil
	}
	up := action.NewUpgrade(cfg)
	up.Namespace, up.MaxHistory, up.Labels = ch.namespace, 10, labels
	rel, err := up.RunWithContext(ctx, name, ch.chart, ch.values)
	if err != nil {
		return nil, fmt.Errorf("helm upgrade %s in namespace %s: %w", name, ch.namespace, err)
	}
	return &basaltv1.AddonRelease{Namespace: rel.Namespace, Version: int32(rel.Version), Chart: chartName}, nil
}

// helmUninstall removes a chart add-on's release; a release already gone is no error.
func (r *Reconciler) helmUninstall(ctx context.Context, c *basaltv1.Cluster, name string, rel *basaltv1.AddonRelease) error {
	cfg, err := r.helmConfig(ctx, c, rel.Namespace)
	if err != nil {
		return err
	}
	if _, err := action.NewUninstall(cfg).Run(name); err != nil && !errors.Is(err, driver.ErrReleaseNotFound) {
		return fmt.Errorf("helm uninstall %s: %w", name, err)
	}
	return nil
}

// helmConfig is a Helm action configuration for c's workload cluster, keeping release records in
// Secrets of namespace, as the helm CLI does.
func (r *Reconciler) helmConfig(ctx context.Context, c *basaltv1.Cluster, namespace string) (*action.Configuration, error) {
	rc, err := r.Workload.RESTConfig(ctx, c)
	if err != nil {
		return nil, err
	}
	cfg := new(action.Configuration)
	if err := cfg.Init(restGetter{cfg: rc, namespace: namespace}, namespace, "secret", func(string, ...any) {}); err != nil {
		return nil, fmt.Errorf("helm configuration: %w", err)
	}
	return cfg, nil
}

// restGetter hands the Helm SDK a REST config the manager built, without a kubeconfig file.
type restGetter struct {
	cfg       *rest.Config
	namespace string
}

func (g restGetter) ToRESTConfig() (*rest.Config, error) { return rest.CopyConfig(g.cfg), nil }

func (g restGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(g.cfg)
	if err != nil {
		return nil, err
	}
	return memory.NewMemCacheClient(dc), nil
}

func (g restGetter) ToRESTMapper() (meta.RESTMapper, error) {
	dc, err := g.ToDiscoveryClient()
	if err != nil {
		return nil, err
	}
	return restmapper.NewShortcutExpander(restmapper.NewDeferredDiscoveryRESTMapper(dc), dc, nil), nil
}

// ToRawKubeConfigLoader gives Helm the release namespace; nothing else of it is read.
func (g restGetter) ToRawKubeConfigLoader() clientcmd.ClientConfig {
	cfg := clientcmdapi.NewConfig()
	cfg.Contexts["basalt"] = &clientcmdapi.Context{Namespace: g.namespace}
	cfg.CurrentContext = "basalt"
	return clientcmd.NewDefaultClientConfig(*cfg, &clientcmd.ConfigOverrides{})
}
