// Package rotation holds the parts of credential rotations that talk to a workload cluster: which
// encryption configuration each kube-apiserver has loaded, and the rewrite of every Secret with
// the current key. The Cluster controller sequences them (controllers/cluster,
// docs/rotation.md).
package rotation

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/bootstrap/components"
)

// SecretsPrefix is where kube-apiserver keeps Secrets in etcd (its default --etcd-prefix).
const SecretsPrefix = "/registry/secrets/"

// EncryptionParams is the kube-apiserver encryption configuration of keys, the write key first.
func EncryptionParams(keys clusterpki.EncryptionKeys) components.EncryptionParams {
	var p components.EncryptionParams
	for _, k := range keys.Ordered() {
		p.Keys = append(p.Keys, components.EncryptionKey{Name: k.Name, Secret: k.Secret})
	}
	return p
}

// ConfigHash is how kube-apiserver names the encryption configuration file of keys in its
// apiserver_encryption_config_controller_last_config_info metric: "sha256:" and the hex SHA-256
// of the file's bytes.
func ConfigHash(keys clusterpki.EncryptionKeys) (string, error) {
	b, err := components.EncryptionConfig(EncryptionParams(keys))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("sha256:%x", sha256.Sum256(b)), nil
}

// StorageClass is how etcdcluster.StorageClass names a value the write key of keys encrypted.
func StorageClass(keys clusterpki.EncryptionKeys) string {
	return "k8s:enc:" + string(components.DefaultEncryption) + ":v1:" + keys.Write.Name
}

// configInfoMetric is kube-apiserver's metric of the encryption configuration it has loaded, one
// series per API server identity, with the content's hash as label.
const configInfoMetric = "apiserver_encryption_config_controller_last_config_info"

// maxMetricsBytes bounds the /metrics answer read (a kube-apiserver's is a few MiB).
const maxMetricsBytes = 64 << 20

// LoadedConfigs asks the one API server cfg points at (workload.Clients.ServerConfig) which
// encryption configurations it has loaded: the hash labels of configInfoMetric (one, unless
// the server's identity changed without a restart).
func LoadedConfigs(ctx context.Context, cfg *rest.Config) ([]string, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s/metrics: %w", cfg.Host, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: %s", cfg.Host, resp.Status)
	}
	var hashes []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	read := 0
	for sc.Scan() {
		line := sc.Bytes()
		if read += len(line) + 1; read > maxMetricsBytes {
			return nil, fmt.Errorf("%s/metrics: more than %d bytes", cfg.Host, maxMetricsBytes)
		}
		if !bytes.HasPrefix(line, []byte(configInfoMetric+"{")) {
			continue
		}
		if h := label(string(line), "hash"); h != "" {
			hashes = append(hashes, h)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s/metrics: %w", cfg.Host, err)
	}
	return hashes, nil
}

// label returns the value of label name in one exposition-format sample line (a whole label
// name: "hash" is not the end of "apiserver_id_hash"). Values with escapes are not expected.
func label(line, name string) string {
	for _, sep := range []string{"{", ","} {
		if _, rest, ok := strings.Cut(line, sep+name+`="`); ok {
			if v, _, ok := strings.Cut(rest, `"`); ok {
				return v
			}
		}
	}
	return ""
}

// RewriteResult is what RewriteSecrets did.
type RewriteResult struct {
	// Rewritten Secrets were written back unchanged, so the API server encrypted them with its
	// current write key.
	Rewritten int
	// Changed Secrets were written by someone else between the list and the write (a conflict)
	// or deleted: their own write used the current key, or they are gone.
	Changed int
}

const (
	// rewritePage is how many Secrets one list of RewriteSecrets returns.
	rewritePage = 200
	// RewriteQPS and RewriteBurst bound RewriteSecrets' requests: client-go's default of 5 per
	// second would take over half an hour for 10,000 Secrets.
	RewriteQPS   = 100
	RewriteBurst = 200
)

// RewriteSecrets writes every Secret of the workload cluster cfg reaches back as it is, at
// most RewriteQPS writes a second. kube-apiserver writes an object read with a key that is not
// its first one even when nothing changed (the read is "stale"), so after it every Secret is
// encrypted with the write key; etcd is what proves it (etcdcluster.StorageScanner).
func RewriteSecrets(ctx context.Context, cfg *rest.Config) (RewriteResult, error) {
	var res RewriteResult
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst, cfg.RateLimiter = RewriteQPS, RewriteBurst, nil
	c, err := client.New(cfg, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		return res, err
	}
	list := &corev1.SecretList{}
	for {
		if err := c.List(ctx, list, client.Limit(rewritePage), client.Continue(list.Continue)); err != nil {
			return res, fmt.Errorf("listing Secrets: %w", err)
		}
		for i := range list.Items {
			err := c.Update(ctx, &list.Items[i])
			switch {
			case err == nil:
				res.Rewritten++
			case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
				res.Changed++
			default:
				return res, fmt.Errorf("rewriting Secret %s/%s: %w", list.Items[i].Namespace, list.Items[i].Name, err)
			}
		}
		if list.Continue == "" {
			return res, nil
		}
	}
}
