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

package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// readTar returns the regular files of a tar by name, failing on anything but folders and files.
func readTar(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		if !h.ModTime.Equal(epoch) {
			t.Errorf("%s: mtime %v, want the fixed epoch", h.Name, h.ModTime)
		}
		switch h.Typeflag {
		case tar.TypeDir:
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatalf("reading %s: %v", h.Name, err)
			}
			if _, dup := files[h.Name]; dup {
				t.Fatalf("%s is in the tar twice", h.Name)
			}
			files[h.Name] = b
		default:
			t.Fatalf("%s: unexpected tar entry type %q", h.Name, h.Typeflag)
		}
	}
}

// blob returns the blob a descriptor points at, after checking its digest and size.
func blob(t *testing.T, files map[string][]byte, d Descriptor) []byte {
	t.Helper()
	hexDigest, ok := strings.CutPrefix(d.Digest, "sha256:")
	if !ok {
		t.Fatalf("digest %q is not sha256", d.Digest)
	}
	b, ok := files["blobs/sha256/"+hexDigest]
	if !ok {
		t.Fatalf("blob %s (%s) is missing", d.Digest, d.MediaType)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != hexDigest {
		t.Fatalf("blob %s has digest %x", d.Digest, sum)
	}
	if int64(len(b)) != d.Size {
		t.Fatalf("blob %s has %d bytes, descriptor says %d", d.Digest, len(b), d.Size)
	}
	return b
}

func TestPackLayoutParses(t *testing.T) {
	bin := []byte("\x7fELF not really, but any bytes will do\n")
	opts := Options{
		Binary: bin, Path: "/usr/bin/webserver", Ref: "basalt.dev/webserver:v1",
		OS: "linux", Arch: "amd64", User: "65532:65532", Ports: []string{"8080/tcp"},
	}
	var out bytes.Buffer
	if err := Pack(&out, opts); err != nil {
		t.Fatal(err)
	}
	files := readTar(t, &out)

	var layout struct {
		ImageLayoutVersion string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(files["oci-layout"], &layout); err != nil || layout.ImageLayoutVersion != "1.0.0" {
		t.Fatalf("oci-layout = %q (%v), want imageLayoutVersion 1.0.0", files["oci-layout"], err)
	}

	var idx Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if idx.SchemaVersion != 2 || len(idx.Manifests) != 1 {
		t.Fatalf("index.json: schemaVersion %d with %d manifests, want 2 and 1", idx.SchemaVersion, len(idx.Manifests))
	}
	md := idx.Manifests[0]
	if got := md.Annotations[annotationRefName]; got != opts.Ref {
		t.Errorf("index ref.name annotation = %q, want %q", got, opts.Ref)
	}
	if md.MediaType != mediaTypeManifest || md.Platform == nil || md.Platform.OS != "linux" || md.Platform.Architecture != "amd64" {
		t.Errorf("index manifest descriptor = %+v", md)
	}

	var man Manifest
	if err := json.Unmarshal(blob(t, files, md), &man); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if man.SchemaVersion != 2 || man.Config.MediaType != mediaTypeConfig || len(man.Layers) != 1 ||
		man.Layers[0].MediaType != mediaTypeLayerGz {
		t.Fatalf("manifest = %+v", man)
	}

	var cfg ImageConfig
	if err := json.Unmarshal(blob(t, files, man.Config), &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" || cfg.Config.User != "65532:65532" ||
		len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != opts.Path {
		t.Errorf("config = %+v", cfg)
	}
	if _, ok := cfg.Config.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("config exposes %v, want 8080/tcp", cfg.Config.ExposedPorts)
	}

	zr, err := gzip.NewReader(bytes.NewReader(blob(t, files, man.Layers[0])))
	if err != nil {
		t.Fatalf("layer is not gzip: %v", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("layer: %v", err)
	}
	if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != digest(raw) {
		t.Errorf("config diff_ids = %v, want [%s]", cfg.RootFS.DiffIDs, digest(raw))
	}
	var modes = map[string]int64{}
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("layer tar: %v", err)
		}
		modes[h.Name] = h.Mode
		if h.Name == "usr/bin/webserver" {
			got, _ := io.ReadAll(tr)
			if !bytes.Equal(got, bin) {
				t.Errorf("layer holds %q at usr/bin/webserver, want the packed binary", got)
			}
		}
	}
	for _, name := range []string{"usr/", "usr/bin/", "usr/bin/webserver"} {
		if modes[name] != 0o755 {
			t.Errorf("layer entry %s: mode %o (present: %v), want 755", name, modes[name], modes)
		}
	}
}

func TestPackIsReproducible(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "pause")
	if err := os.WriteFile(bin, bytes.Repeat([]byte("pause"), 4096), 0o755); err != nil {
		t.Fatal(err)
	}
	// Run the command itself twice, as hack/build-artifacts.sh does, and compare the files.
	exe := filepath.Join(dir, "ociimage")
	if out, err := exec.Command("go", "build", "-o", exe, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var sums []string
	for i, name := range []string{"a.tar", "b.tar"} {
		out := filepath.Join(dir, name)
		cmd := exec.Command(exe, "-binary", bin, "-ref", "registry.k8s.io/pause:3.10", "-o", out, "-user", "65535:65535")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, b)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		sums = append(sums, hex.EncodeToString(sum[:]))
	}
	if sums[0] != sums[1] {
		t.Fatalf("two runs gave different tars: %s and %s", sums[0], sums[1])
	}
	// A different reference must change the output: the test is not comparing constants.
	var a, b bytes.Buffer
	opts := Options{Binary: []byte("x"), Path: "/x", Ref: "example.test/x:1", OS: "linux", Arch: "amd64"}
	if err := Pack(&a, opts); err != nil {
		t.Fatal(err)
	}
	opts.Ref = "example.test/x:2"
	if err := Pack(&b, opts); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("different references gave the same tar")
	}
}

func TestPackRejectsBadInput(t *testing.T) {
	good := Options{Binary: []byte("x"), Path: "/x", Ref: "example.test/x:1", OS: "linux", Arch: "amd64"}
	for name, mutate := range map[string]func(*Options){
		"empty binary":  func(o *Options) { o.Binary = nil },
		"relative path": func(o *Options) { o.Path = "x" },
		"root path":     func(o *Options) { o.Path = "/" },
		"unclean path":  func(o *Options) { o.Path = "/a/../x" },
		"untagged ref":  func(o *Options) { o.Ref = "example.test/x" },
		"port, no tag":  func(o *Options) { o.Ref = "example.test:5000/x" },
		"empty ref":     func(o *Options) { o.Ref = "" },
		"no arch":       func(o *Options) { o.Arch = "" },
		"bad layer": func(o *Options) {
			o.Layers = [][]byte{[]byte("not a tar file at all, just some bytes that are long enough")}
		},
	} {
		t.Run(name, func(t *testing.T) {
			o := good
			mutate(&o)
			if err := Pack(io.Discard, o); err == nil {
				t.Fatal("Pack accepted bad options")
			}
		})
	}
}

// TestPackLayers packs a root filesystem layer below a binary, as the conformance test images
// are made: two layers in order, their diff IDs, the entrypoint and environment given, the
// setuid bit of a file in the lower layer kept.
func TestPackLayers(t *testing.T) {
	var base bytes.Buffer
	tw := tar.NewWriter(&base)
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "bin/", Mode: 0o755},
		{Typeflag: tar.TypeReg, Name: "bin/nnp", Mode: 0o4755, Size: 3},
		{Typeflag: tar.TypeSymlink, Name: "bin/sh", Linkname: "busybox", Mode: 0o777},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte("nnp")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Binary: []byte("agnhost"), Path: "/agnhost", Ref: "example.test/agnhost:2.66.1", OS: "linux", Arch: "amd64",
		Layers: [][]byte{base.Bytes()}, Args: []string{"pause"}, Env: []string{"A=b"}, WorkingDir: "/tmp",
	}
	var out bytes.Buffer
	if err := Pack(&out, opts); err != nil {
		t.Fatal(err)
	}
	files := readTar(t, &out)
	var idx Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	var man Manifest
	if err := json.Unmarshal(blob(t, files, idx.Manifests[0]), &man); err != nil {
		t.Fatal(err)
	}
	var cfg ImageConfig
	if err := json.Unmarshal(blob(t, files, man.Config), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(man.Layers) != 2 || len(cfg.RootFS.DiffIDs) != 2 || cfg.RootFS.DiffIDs[0] != digest(base.Bytes()) {
		t.Fatalf("layers %d, diff IDs %v, want 2 with the root filesystem's first", len(man.Layers), cfg.RootFS.DiffIDs)
	}
	if len(cfg.History) != 2 {
		t.Errorf("history %v, want one entry per layer", cfg.History)
	}
	c := cfg.Config
	if len(c.Entrypoint) != 1 || c.Entrypoint[0] != "/agnhost" || len(c.Cmd) != 1 || c.Cmd[0] != "pause" ||
		c.WorkingDir != "/tmp" || len(c.Env) != 2 || c.Env[1] != "A=b" {
		t.Errorf("config %+v", c)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob(t, files, man.Layers[0])))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	modes := map[string]int64{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		modes[h.Name] = h.Mode
	}
	if modes["bin/nnp"] != 0o4755 {
		t.Errorf("bin/nnp mode %o, want 4755 (setuid kept)", modes["bin/nnp"])
	}

	// A layer alone, with an entrypoint of its own.
	opts = Options{Ref: "example.test/busybox:1", OS: "linux", Arch: "amd64", Layers: [][]byte{base.Bytes()}, Entrypoint: []string{"/bin/sh"}}
	out.Reset()
	if err := Pack(&out, opts); err != nil {
		t.Fatal(err)
	}
}
