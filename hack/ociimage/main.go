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

// Command ociimage packs one static binary (and optionally layers below it, given as tar files)
// into an OCI image layout and writes that layout as a tar file, importable without any registry
// with
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
//	         [-layer rootfs.tar]... [-entrypoint '["/bin/sh"]'] [-cmd '["-c","true"]']
//	         [-env K=V]... [-workdir /]
//
// Each -layer is an uncompressed tar (a root filesystem, or files to add on top), packed as one
// gzip layer in the order given, below the binary's layer. With -layer, -binary may be left out;
// the entrypoint is then -entrypoint (or none).
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
	// Layers are uncompressed layer tars placed below the binary's layer, in order.
	Layers [][]byte
	// Entrypoint replaces the default entrypoint ([Path] when there is a binary).
	Entrypoint []string
	// Env is added to the default PATH.
	Env []string
	// WorkingDir defaults to /.
	WorkingDir string
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
		binary     = flag.String("binary", "", "static binary to pack (required unless -layer is given)")
		ref        = flag.String("ref", "", "image reference, e.g. registry.k8s.io/pause:3.10 (required)")
		out        = flag.String("o", "", "output tar file (required); written to a temp file and renamed")
		inPath     = flag.String("path", "", "absolute path of the binary in the image (default /<basename of -binary>)")
		user       = flag.String("user", "", "user[:group] the container runs as (default root)")
		goos       = flag.String("os", "linux", "image OS")
		goarch     = flag.String("arch", runtime.GOARCH, "image architecture")
		entrypoint = flag.String("entrypoint", "", `entrypoint as a JSON array, e.g. ["/bin/sh","-c"] (default: the binary)`)
		cmd        = flag.String("cmd", "", `default arguments as a JSON array, e.g. ["pause"]`)
		workdir    = flag.String("workdir", "", "working directory (default /)")
		ports      stringList
		layers     stringList
		env        stringList
	)
	flag.Var(&ports, "port", "exposed port such as 8080/tcp (repeatable)")
	flag.Var(&layers, "layer", "uncompressed tar to add as a layer below the binary (repeatable, in order)")
	flag.Var(&env, "env", "environment variable K=V (repeatable)")
	flag.Parse()
	if (*binary == "" && len(layers) == 0) || *ref == "" || *out == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	opts := Options{Ref: *ref, OS: *goos, Arch: *goarch, User: *user, Ports: ports, Env: env, WorkingDir: *workdir}
	if *binary != "" {
		b, err := os.ReadFile(*binary)
		if err != nil {
			fatal(err)
		}
		opts.Binary = b
		opts.Path = *inPath
		if opts.Path == "" {
			opts.Path = "/" + filepath.Base(*binary)
		}
	}
	for _, l := range layers {
		b, err := os.ReadFile(l)
		if err != nil {
			fatal(err)
		}
		opts.Layers = append(opts.Layers, b)
	}
	for flagName, v := range map[string]struct {
		s   string
		dst *[]string
	}{"entrypoint": {*entrypoint, &opts.Entrypoint}, "cmd": {*cmd, &opts.Args}} {
		if v.s == "" {
			continue
		}
		if err := json.Unmarshal([]byte(v.s), v.dst); err != nil {
			fatal(fmt.Errorf("-%s %q: want a JSON array of strings: %w", flagName, v.s, err))
		}
	}
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

	var layerDescs []Descriptor
	var diffIDs []string
	var blobs [][]byte
	var history []History
	created := epoch.Format(time.RFC3339)
	raws := opts.Layers
	if len(opts.Binary) > 0 {
		raw, err := binaryLayer(opts)
		if err != nil {
			return err
		}
		raws = append(append([][]byte(nil), opts.Layers...), raw)
	}
	for i, raw := range raws {
		if err := checkLayer(raw); err != nil {
			return fmt.Errorf("layer %d: %w", i+1, err)
		}
		gz, err := gzipLayer(raw)
		if err != nil {
			return err
		}
		layerDescs = append(layerDescs, Descriptor{MediaType: mediaTypeLayerGz, Digest: digest(gz), Size: int64(len(gz))})
		diffIDs = append(diffIDs, digest(raw))
		blobs = append(blobs, gz)
		by := "basalt hack/ociimage: layer " + fmt.Sprint(i+1)
		if len(opts.Binary) > 0 && i == len(raws)-1 {
			by = "basalt hack/ociimage: " + opts.Path
		}
		history = append(history, History{Created: created, CreatedBy: by})
	}

	entrypoint := opts.Entrypoint
	if entrypoint == nil && opts.Path != "" {
		entrypoint = []string{opts.Path}
	}
	workdir := opts.WorkingDir
	if workdir == "" {
		workdir = "/"
	}
	cfg := ImageConfig{
		Created:      created,
		Architecture: opts.Arch,
		OS:           opts.OS,
		Config: ContainerConfig{
			User:       opts.User,
			Env:        append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, opts.Env...),
			Entrypoint: entrypoint,
			Cmd:        opts.Args,
			WorkingDir: workdir,
		},
		RootFS:  RootFS{Type: "layers", DiffIDs: diffIDs},
		History: history,
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
		Layers:        layerDescs,
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
	for _, blob := range append(blobs, cfgJSON, manJSON) {
		files["blobs/sha256/"+strings.TrimPrefix(digest(blob), "sha256:")] = blob
	}
	return writeTar(w, []string{"blobs/", "blobs/sha256/"}, files)
}

func (o Options) validate() error {
	switch {
	case len(o.Binary) == 0 && len(o.Layers) == 0:
		return errors.New("nothing to pack: the binary is empty and there is no layer")
	case len(o.Binary) > 0 && (!path.IsAbs(o.Path) || path.Clean(o.Path) != o.Path || o.Path == "/"):
		return fmt.Errorf("path %q must be a clean absolute file path", o.Path)
	case !strings.ContainsAny(o.Ref[strings.LastIndex(o.Ref, "/")+1:], ":@"):
		return fmt.Errorf("reference %q must name a tag or digest, e.g. registry.k8s.io/pause:3.10", o.Ref)
	case o.OS == "" || o.Arch == "":
		return errors.New("os and arch must be set")
	}
	return nil
}

// binaryLayer returns the uncompressed layer tar holding the binary and its parent folders.
func binaryLayer(opts Options) ([]byte, error) {
	rel := strings.TrimPrefix(opts.Path, "/")
	var dirs []string
	for d := path.Dir(rel); d != "."; d = path.Dir(d) {
		dirs = append([]string{d + "/"}, dirs...)
	}
	var raw bytes.Buffer
	if err := writeTarEntries(&raw, dirs, map[string][]byte{rel: opts.Binary}, 0o755); err != nil {
		return nil, err
	}
	return raw.Bytes(), nil
}

// checkLayer reads a layer tar through, so that a truncated or foreign file is refused here and
// not by the container runtime that unpacks it.
func checkLayer(raw []byte) error {
	tr := tar.NewReader(bytes.NewReader(raw))
	n := 0
	for {
		_, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("not a tar file: %w", err)
		}
		n++
	}
	if n == 0 {
		return errors.New("the tar file is empty")
	}
	return nil
}

// gzipLayer compresses a layer. The zero gzip header (no name, no mtime) keeps it reproducible.
func gzipLayer(raw []byte) ([]byte, error) {
	var out bytes.Buffer
	level := gzip.BestCompression
	if len(raw) > 16<<20 {
		level = gzip.DefaultCompression // root filesystems: seconds instead of a minute
	}
	zw, err := gzip.NewWriterLevel(&out, level)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
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
