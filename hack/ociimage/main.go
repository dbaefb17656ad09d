/*
Copyright 2026 The Basalt Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Command ociimage packs one static binary into a single-layer OCI image layout and writes that
// layout as a tar file, importable without any registry with
//
//	ctr -n k8s.io images import pause.tar
//
// The tar holds oci-layout, index.json (whose one manifest carries the image reference in the
// org.opencontainers.image.ref.name and io.containerd.image.name annotations) and
// blobs/sha256/ with the image config, the manifest and one gzip layer. Every timestamp is fixed
// and every list sorted, so the same binary and flags give the same bytes, and so the same
// sha256, on every run.
//
// Usage:
//
//	ociimage -binary bin/pause -ref registry.k8s.io/pause:3.10 -o pause.tar [-path /pause]
//	         [-user 65535:65535] [-port 8080/tcp] [-os linux] [-arch amd64]
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/atomicfile"
)

// Media types and annotations of the OCI image spec (v1.1) that this program writes.
const (
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayerGz  = "application/vnd.oci.image.layer.v1.tar+gzip"

	annotationRefName       = "org.opencontainers.image.ref.name"
	annotationContainerdRef = "io.containerd.image.name"

	layoutVersion = "1.0.0"
)

// epoch is the one timestamp written anywhere in the image: tar headers and the config's
// "created" field. A fixed value keeps the output reproducible.
var epoch = time.Unix(0, 0).UTC()

// Options says what to pack.
type Options struct {
	// Binary is the file to put into the image; its bytes are read whole.
	Binary []byte
	// Path is the absolute path of the binary inside the image, also the entrypoint.
	Path string
	// Ref is the image reference, e.g. "registry.k8s.io/pause:3.10".
	Ref string
	// OS and Arch are the platform of the image (GOOS/GOARCH spelling).
	OS, Arch string
	// User is the config's User field, e.g. "65535:65535"; empty runs as root.
	User string
	// Ports lists exposed ports as "8080/tcp".
	Ports []string
	// Args are the default arguments (the config's Cmd).
	Args []string
}

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *Platform         `json:"platform,omitempty"`
}

// Platform is the platform of a manifest in an index.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// Index is an OCI image index (index.json).
type Index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
}

// Manifest is an OCI image manifest.
type Manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

// ImageConfig is the part of the OCI image config that this program fills.
type ImageConfig struct {
	Created      string          `json:"created"`
	Architecture string          `json:"architecture"`
	OS           string          `json:"os"`
	Config       ContainerConfig `json:"config"`
	RootFS       RootFS          `json:"rootfs"`
	History      []History       `json:"history"`
}

// ContainerConfig holds the execution parameters of the image.
type ContainerConfig struct {
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
}

// RootFS lists the uncompressed digests of the layers.
type RootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

// History describes how a layer was made.
type History struct {
	Created   string `json:"created"`
	CreatedBy string `json:"created_by"`
}

func main() {
	var (
		binary = flag.String("binary", "", "static binary to pack (required)")
		ref    = flag.String("ref", "", "image reference, e.g. registry.k8s.io/pause:3.10 (required)")
		out    = flag.String("o", "", "output tar file (required); written to a temp file and renamed")
		inPath = flag.String("path", "", "absolute path of the binary in the image (default /<basename of -binary>)")
		user   = flag.String("user", "", "user[:group] the container runs as (default root)")
		goos   = flag.String("os", "linux", "image OS")
		goarch = flag.String("arch", runtime.GOARCH, "image architecture")
		ports  stringList
	)
	flag.Var(&ports, "port", "exposed port such as 8080/tcp (repeatable)")
	flag.Parse()
	if *binary == "" || *ref == "" || *out == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	b, err := os.ReadFile(*binary)
	if err != nil {
		fatal(err)
	}
	p := *inPath
	if p == "" {
		p = "/" + filepath.Base(*binary)
	}
	opts := Options{Binary: b, Path: p, Ref: *ref, OS: *goos, Arch: *goarch, User: *user, Ports: ports}
	if err := writeFileAtomic(*out, func(w io.Writer) error { return Pack(w, opts) }); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "ociimage:", err)
	os.Exit(1)
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// writeFileAtomic writes name through a temp file in the same folder and renames it into place,
// so an interrupted run never leaves a partial file under the final name.
func writeFileAtomic(name string, write func(io.Writer) error) error {
	return atomicfile.WriteFrom(name, 0o644, atomicfile.Options{}, write)
}

// Pack writes the OCI image layout holding opts.Binary, packed as a tar, to w. The output
// depends only on opts.
func Pack(w io.Writer, opts Options) error {
	if err := opts.validate(); err != nil {
		return err
	}

	layer, diffID, err := buildLayer(opts)
	if err != nil {
		return err
	}
	layerDesc := Descriptor{MediaType: mediaTypeLayerGz, Digest: digest(layer), Size: int64(len(layer))}

	created := epoch.Format(time.RFC3339)
	cfg := ImageConfig{
		Created:      created,
		Architecture: opts.Arch,
		OS:           opts.OS,
		Config: ContainerConfig{
			User:       opts.User,
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Entrypoint: []string{opts.Path},
			Cmd:        opts.Args,
			WorkingDir: "/",
		},
		RootFS:  RootFS{Type: "layers", DiffIDs: []string{diffID}},
		History: []History{{Created: created, CreatedBy: "basalt hack/ociimage: " + opts.Path}},
	}
	if len(opts.Ports) > 0 {
		cfg.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range opts.Ports {
			cfg.Config.ExposedPorts[p] = struct{}{}
		}
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	cfgDesc := Descriptor{MediaType: mediaTypeConfig, Digest: digest(cfgJSON), Size: int64(len(cfgJSON))}

	manJSON, err := json.Marshal(Manifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeManifest,
		Config:        cfgDesc,
		Layers:        []Descriptor{layerDesc},
	})
	if err != nil {
		return err
	}
	idxJSON, err := json.Marshal(Index{
		SchemaVersion: 2,
		MediaType:     mediaTypeIndex,
		Manifests: []Descriptor{{
			MediaType: mediaTypeManifest,
			Digest:    digest(manJSON),
			Size:      int64(len(manJSON)),
			Annotations: map[string]string{
				annotationRefName:       opts.Ref,
				annotationContainerdRef: opts.Ref,
			},
			Platform: &Platform{Architecture: opts.Arch, OS: opts.OS},
		}},
	})
	if err != nil {
		return err
	}

	files := map[string][]byte{
		"oci-layout": []byte(`{"imageLayoutVersion":"` + layoutVersion + `"}`),
		"index.json": idxJSON,
	}
	for _, blob := range [][]byte{layer, cfgJSON, manJSON} {
		files["blobs/sha256/"+strings.TrimPrefix(digest(blob), "sha256:")] = blob
	}
	return writeTar(w, []string{"blobs/", "blobs/sha256/"}, files)
}

func (o Options) validate() error {
	switch {
	case len(o.Binary) == 0:
		return errors.New("the binary is empty")
	case !path.IsAbs(o.Path) || path.Clean(o.Path) != o.Path || o.Path == "/":
		return fmt.Errorf("path %q must be a clean absolute file path", o.Path)
	case !strings.ContainsAny(o.Ref[strings.LastIndex(o.Ref, "/")+1:], ":@"):
		return fmt.Errorf("reference %q must name a tag or digest, e.g. registry.k8s.io/pause:3.10", o.Ref)
	case o.OS == "" || o.Arch == "":
		return errors.New("os and arch must be set")
	}
	return nil
}

// buildLayer returns the gzip layer holding the binary and the digest of its uncompressed tar
// (the diff ID).
func buildLayer(opts Options) (gz []byte, diffID string, err error) {
	// Parent folders of the binary, then the binary itself.
	rel := strings.TrimPrefix(opts.Path, "/")
	var dirs []string
	for d := path.Dir(rel); d != "."; d = path.Dir(d) {
		dirs = append([]string{d + "/"}, dirs...)
	}
	var raw bytes.Buffer
	if err := writeTarEntries(&raw, dirs, map[string][]byte{rel: opts.Binary}, 0o755); err != nil {
		return nil, "", err
	}
	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, gzip.BestCompression)
	if err != nil {
		return nil, "", err
	}
	// The zero gzip header (no name, no mtime) keeps the layer reproducible.
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return out.Bytes(), digest(raw.Bytes()), nil
}

// writeTar writes the outer layout tar: folders first, then files in name order, mode 0644.
func writeTar(w io.Writer, dirs []string, files map[string][]byte) error {
	var buf bytes.Buffer
	if err := writeTarEntries(&buf, dirs, files, 0o644); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

func writeTarEntries(w io.Writer, dirs []string, files map[string][]byte, fileMode int64) error {
	tw := tar.NewWriter(w)
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch, Format: tar.FormatUSTAR,
		}); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b := files[n]
		if err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeReg, Name: n, Mode: fileMode, Size: int64(len(b)), ModTime: epoch,
			Format: tar.FormatUSTAR,
		}); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
	return tw.Close()
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
