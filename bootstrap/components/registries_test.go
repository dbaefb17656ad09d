package components

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"path"
	"strings"
	"testing"
	"time"

	toml "github.com/pelletier/go-toml"
)

// testCAPEM is a self-signed CA certificate in PEM.
func testCAPEM(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "registry-ca"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func registryWorker(t *testing.T) ClusterParams {
	p := containerWorker()
	ca := testCAPEM(t)
	p.Runtime.Registries = []Registry{
		{Host: "docker.io", Mirrors: []RegistryEndpoint{
			{URL: "https://10.0.0.5:5000", CA: ca, Username: "puller", Password: "s3cret:with colon"},
			{URL: "http://cache.lan/dockerhub/"},
		}},
		{Host: "registry.corp.example:5000", Server: RegistryEndpoint{URL: "https://registry.corp.example:5000", CA: ca}},
	}
	return p
}

func filesByPath(fs []File) map[string]File {
	m := map[string]File{}
	for _, f := range fs {
		m[f.Path] = f
	}
	return m
}

// TestRegistriesRenderHostsToml checks the hosts.toml keys containerd 2.x reads (its
// core/remotes/docker/config: server, ca, header, host.<url>.capabilities/ca/header) and that
// every CA path a file names is rendered too.
func TestRegistriesRenderHostsToml(t *testing.T) {
	p := registryWorker(t)
	files, err := Registries(p)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Registries(p)
	if len(again) != len(files) {
		t.Fatal("output is not deterministic")
	}
	for i := range files {
		if string(files[i].Content) != string(again[i].Content) {
			t.Fatal("output is not deterministic")
		}
	}
	byPath := filesByPath(files)
	certs := p.Paths.RegistryCertsDir()
	hub, ok := byPath[path.Join(certs, "docker.io", "hosts.toml")]
	if !ok {
		t.Fatalf("no hosts.toml for docker.io among %v", keys(byPath))
	}
	if hub.Mode != 0o600 || !hub.Secret {
		t.Errorf("docker.io hosts.toml holds credentials but has mode %o secret %v", hub.Mode, hub.Secret)
	}
	tree, err := toml.LoadBytes(hub.Content)
	if err != nil {
		t.Fatalf("hosts.toml does not parse: %v\n%s", err, hub.Content)
	}
	if got := tree.Get("server"); got != "https://registry-1.docker.io" {
		t.Errorf("server = %v", got)
	}
	m0 := []string{"host", "https://10.0.0.5:5000"}
	if caps := tree.GetPath(append(m0, "capabilities")); caps == nil || len(caps.([]any)) != 2 {
		t.Errorf("mirror capabilities = %v, want pull and resolve", caps)
	}
	ca, _ := tree.GetPath(append(m0, "ca")).(string)
	if f, ok := byPath[ca]; !ok || checkCABundle(f.Content) != nil {
		t.Errorf("mirror ca = %q, not a rendered CA file", ca)
	}
	auth, _ := tree.GetPath(append(m0, "header", "Authorization")).(string)
	dec, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(auth, "Basic "))
	if !strings.HasPrefix(auth, "Basic ") || err != nil || string(dec) != "puller:s3cret:with colon" {
		t.Errorf("mirror Authorization = %q (%q, %v)", auth, dec, err)
	}
	m1 := []string{"host", "http://cache.lan/dockerhub"}
	if tree.GetPath(m1) == nil || tree.GetPath(append(m1, "header")) != nil || tree.GetPath(append(m1, "ca")) != nil {
		t.Errorf("the http mirror is missing or carries a CA or credentials:\n%s", hub.Content)
	}
	if strings.Index(string(hub.Content), "10.0.0.5") > strings.Index(string(hub.Content), "cache.lan") {
		t.Error("mirrors are not in the order given")
	}

	corp := byPath[path.Join(certs, "registry.corp.example:5000", "hosts.toml")]
	if corp.Mode != 0o644 || corp.Secret {
		t.Errorf("a hosts.toml without credentials has mode %o secret %v", corp.Mode, corp.Secret)
	}
	tree, err = toml.LoadBytes(corp.Content)
	if err != nil {
		t.Fatal(err)
	}
	if tree.Get("server") != "https://registry.corp.example:5000" || tree.Get("header") != nil || tree.Get("host") != nil {
		t.Errorf("registry.corp.example:5000:\n%s", corp.Content)
	}
	if ca, _ := tree.Get("ca").(string); byPath[ca].Path == "" {
		t.Errorf("server ca %q is not rendered", ca)
	}

	// containerd looks in the same folder.
	c := mustRender(t, Containerd, p)
	ctree, err := toml.LoadBytes(fileNamed(t, c, "config.toml").Content)
	if err != nil {
		t.Fatal(err)
	}
	if got := ctree.GetPath([]string{"plugins", "io.containerd.cri.v1.images", "registry", "config_path"}); got != certs {
		t.Errorf("containerd config_path = %v, want %s", got, certs)
	}
}

func keys(m map[string]File) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestRegistriesRefuseBadInput(t *testing.T) {
	ca := testCAPEM(t)
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})
	for _, tc := range []struct {
		name string
		reg  []Registry
		want string
	}{
		{"upper-case host", []Registry{{Host: "Docker.io"}}, "runtime.registries[0].host"},
		{"host with path", []Registry{{Host: "docker.io/library"}}, "runtime.registries[0].host"},
		{"same host twice", []Registry{{Host: "a.example"}, {Host: "a.example"}}, "runtime.registries[1].host"},
		{"credentials over http", []Registry{{Host: "a.example", Mirrors: []RegistryEndpoint{{URL: "http://m.example", Username: "u", Password: "p"}}}}, "never sent in clear text"},
		{"CA for http", []Registry{{Host: "a.example", Server: RegistryEndpoint{URL: "http://a.example", CA: ca}}}, "runtime.registries[0].server.ca"},
		{"not PEM", []Registry{{Host: "a.example", Server: RegistryEndpoint{CA: []byte("hello")}}}, "not PEM certificates"},
		{"a key in the CA bundle", []Registry{{Host: "a.example", Server: RegistryEndpoint{CA: append(append([]byte{}, ca...), key...)}}}, `type "PRIVATE KEY"`},
		{"username with a colon", []Registry{{Host: "a.example", Server: RegistryEndpoint{Username: "a:b", Password: "p"}}}, "without ':'"},
		{"password without username", []Registry{{Host: "a.example", Server: RegistryEndpoint{Password: "p"}}}, "username must be non-empty"},
		{"quote in URL", []Registry{{Host: "a.example", Mirrors: []RegistryEndpoint{{URL: "https://m.example/'x"}}}}, "mirrors[0].url"},
		{"ftp URL", []Registry{{Host: "a.example", Mirrors: []RegistryEndpoint{{URL: "ftp://m.example"}}}}, "mirrors[0].url"},
		{"user in URL", []Registry{{Host: "a.example", Mirrors: []RegistryEndpoint{{URL: "https://u:p@m.example"}}}}, "mirrors[0].url"},
		{"too many mirrors", []Registry{{Host: "a.example", Mirrors: make([]RegistryEndpoint, 9)}}, "at most 8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := containerWorker()
			p.Runtime.Registries = tc.reg
			_, err := Registries(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// TestNoRegistriesNoFiles: a Cluster without spec.registries gets no hosts.toml.
func TestNoRegistriesNoFiles(t *testing.T) {
	files, err := Registries(containerWorker())
	if err != nil || len(files) != 0 {
		t.Errorf("Registries() = %v, %v; want nothing", files, err)
	}
}
