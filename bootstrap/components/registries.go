package components

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/basalt-dev/basalt/bootstrap/pki/pemcerts"
)

// Registry says how containerd reaches one image registry; see Registries.
type Registry struct {
	// Host names the registry as image references do: "docker.io", "registry.example.com:5000".
	Host string
	// Server is the registry itself; an empty URL means https://Host (https://registry-1.docker.io
	// for docker.io).
	Server RegistryEndpoint
	// Mirrors are tried in order for pulls and resolves before Server.
	Mirrors []RegistryEndpoint
}

// RegistryEndpoint is one URL that serves a registry's images, with what containerd needs to
// trust and authenticate to it.
type RegistryEndpoint struct {
	// URL is http:// or https://, with an optional path prefix before /v2.
	URL string
	// CA is PEM CA certificates that verify the endpoint's TLS certificate besides the host's
	// system roots (https only).
	CA []byte
	// Username and Password are sent with HTTP basic authentication (https only).
	Username, Password string
}

// RegistryCertsDir is where containerd looks for hosts.toml, one folder per registry host
// (its config_path), under Paths.ConfigDir.
func (p Paths) RegistryCertsDir() string {
	return path.Join(p.withDefaults().ConfigDir, "containerd", "certs.d")
}

// Limits on what a Cluster may ask, so a Plan stays small.
const (
	maxRegistries       = 16
	maxRegistryMirrors  = 8
	maxRegistryCABytes  = 64 << 10
	maxRegistryUserPass = 1024
)

var registryHostRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$`)

// Registries renders containerd's hosts.toml for every registry of p.Runtime.Registries, and the
// CA files they name, into Paths.RegistryCertsDir()/<host>/. Credentials become an Authorization
// header of the endpoint they belong to, so hosts.toml files with credentials are 0600. containerd
// reads these files at each pull: a change needs no restart.
func Registries(p ClusterParams) ([]File, error) {
	r, err := p.resolve()
	if err != nil {
		return nil, err
	}
	regs := r.Runtime.Registries
	if len(regs) > maxRegistries {
		return nil, fieldErr("runtime.registries", "%d registries; at most %d", len(regs), maxRegistries)
	}
	dir := r.Paths.RegistryCertsDir()
	seen := map[string]bool{}
	var files []File
	for i, reg := range regs {
		field := fmt.Sprintf("runtime.registries[%d]", i)
		if len(reg.Host) > 253 || !registryHostRE.MatchString(reg.Host) {
			return nil, fieldErr(field+".host", "%q is not a registry host such as docker.io or registry.example.com:5000", reg.Host)
		}
		if seen[reg.Host] {
			return nil, fieldErr(field+".host", "%q appears twice", reg.Host)
		}
		seen[reg.Host] = true
		if len(reg.Mirrors) > maxRegistryMirrors {
			return nil, fieldErr(field+".mirrors", "%d mirrors; at most %d", len(reg.Mirrors), maxRegistryMirrors)
		}
		hostDir := path.Join(dir, reg.Host)
		server := reg.Server
		if server.URL == "" {
			server.URL = "https://" + reg.Host
			if reg.Host == "docker.io" {
				server.URL = "https://registry-1.docker.io"
			}
		}
		var buf bytes.Buffer
		secret := false
		fmt.Fprintf(&buf, "# Rendered by Basalt (bootstrap/components) from spec.registries of the Cluster. Changes are overwritten.\n")
		fmt.Fprintf(&buf, "server = %s\n", tomlString(server.URL))
		top, err := registryEndpoint(field+".server", server)
		if err != nil {
			return nil, err
		}
		if len(server.CA) > 0 {
			ca := path.Join(hostDir, "server-ca.crt")
			files = append(files, File{Path: ca, Mode: 0o644, Content: server.CA})
			fmt.Fprintf(&buf, "ca = %s\n", tomlString(ca))
		}
		if top.auth != "" {
			secret = true
			fmt.Fprintf(&buf, "\n[header]\n  Authorization = %s\n", tomlString(top.auth))
		}
		for j, m := range reg.Mirrors {
			mf := fmt.Sprintf("%s.mirrors[%d]", field, j)
			ep, err := registryEndpoint(mf, m)
			if err != nil {
				return nil, err
			}
			key := tomlString(ep.url)
			fmt.Fprintf(&buf, "\n[host.%s]\n  capabilities = ['pull', 'resolve']\n", key)
			if len(m.CA) > 0 {
				ca := path.Join(hostDir, fmt.Sprintf("mirror-%d-ca.crt", j))
				files = append(files, File{Path: ca, Mode: 0o644, Content: m.CA})
				fmt.Fprintf(&buf, "  ca = %s\n", tomlString(ca))
			}
			if ep.auth != "" {
				secret = true
				fmt.Fprintf(&buf, "  [host.%s.header]\n    Authorization = %s\n", key, tomlString(ep.auth))
			}
		}
		mode := fs.FileMode(0o644)
		if secret {
			mode = 0o600
		}
		files = append(files, File{Path: path.Join(hostDir, "hosts.toml"), Mode: mode, Content: buf.Bytes(), Secret: secret})
	}
	return files, nil
}

type renderedEndpoint struct {
	url  string // no trailing slash; containerd appends /v2 to the path
	auth string // Authorization header value, or empty
}

// registryEndpoint checks one endpoint and works out its hosts.toml fields.
func registryEndpoint(field string, e RegistryEndpoint) (renderedEndpoint, error) {
	u, err := url.Parse(e.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(e.URL, "'\n\r\"\\") {
		return renderedEndpoint{}, fieldErr(field+".url", "%q is not an http or https URL such as https://mirror.example.com:5000", e.URL)
	}
	out := renderedEndpoint{url: u.Scheme + "://" + u.Host}
	// A mirror under a path prefix serves <prefix>/v2/...: containerd appends /v2.
	out.url += strings.TrimSuffix(u.EscapedPath(), "/")
	if len(e.CA) > 0 {
		if u.Scheme != "https" {
			return renderedEndpoint{}, fieldErr(field+".ca", "a CA is for https endpoints; %s is http", e.URL)
		}
		if err := checkCABundle(e.CA); err != nil {
			return renderedEndpoint{}, fieldErr(field+".ca", "%v", err)
		}
	}
	if e.Username != "" || e.Password != "" {
		if u.Scheme != "https" {
			return renderedEndpoint{}, fieldErr(field+".credentials", "credentials are never sent in clear text; %s is http", e.URL)
		}
		if e.Username == "" || strings.Contains(e.Username, ":") || len(e.Username)+len(e.Password) > maxRegistryUserPass ||
			strings.ContainsAny(e.Username+e.Password, "\n\r") {
			return renderedEndpoint{}, fieldErr(field+".credentials", "the username must be non-empty without ':' or line breaks, the password without line breaks, together at most %d bytes", maxRegistryUserPass)
		}
		out.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(e.Username+":"+e.Password))
	}
	return out, nil
}

// checkCABundle accepts PEM holding only certificates, at least one.
func checkCABundle(b []byte) error {
	if len(b) > maxRegistryCABytes {
		return fmt.Errorf("%d bytes of CA certificates; at most %d", len(b), maxRegistryCABytes)
	}
	_, err := pemcerts.Parse(b)
	return err
}
