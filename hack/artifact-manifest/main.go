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

// Command artifact-manifest hashes the files of a Kubernetes artifact set and writes its
// manifest.json (package bootstrap/artifacts), atomically. hack/build-artifacts.sh calls it once
// every file of the set is in place.
//
// Usage:
//
//	artifact-manifest -dir SET -kubernetes-version v1.37.2 [-os linux] [-arch amd64] \
//	    -artifact NAME,VERSION,KIND,PATH[,IMAGE] ...
//
// KIND is binary or image; PATH is relative to SET; IMAGE is the reference an image carries.
// A missing file is an error: the manifest is only written for a complete set.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/basalt-dev/basalt/bootstrap/artifacts"
)

type artifactList []artifacts.Artifact

func (l *artifactList) String() string { return fmt.Sprint(len(*l), " artifacts") }

func (l *artifactList) Set(v string) error {
	f := strings.Split(v, ",")
	if len(f) != 4 && len(f) != 5 {
		return fmt.Errorf("%q: want NAME,VERSION,KIND,PATH[,IMAGE]", v)
	}
	a := artifacts.Artifact{Name: f[0], Version: f[1], Kind: artifacts.Kind(f[2]), Path: f[3]}
	if len(f) == 5 {
		a.Image = f[4]
	}
	if a.Version == "" {
		return fmt.Errorf("%q: the version is empty", v)
	}
	if a.Kind == artifacts.KindImage && a.Image == "" {
		return fmt.Errorf("%q: an image artifact needs its image reference", v)
	}
	*l = append(*l, a)
	return nil
}

func main() {
	var list artifactList
	dir := flag.String("dir", "", "the artifact set folder (required)")
	kubeVersion := flag.String("kubernetes-version", "", "Kubernetes version of the set (required)")
	goos := flag.String("os", runtime.GOOS, "OS the binaries are built for")
	goarch := flag.String("arch", runtime.GOARCH, "architecture the binaries are built for")
	flag.Var(&list, "artifact", "NAME,VERSION,KIND,PATH[,IMAGE] (repeatable)")
	flag.Parse()
	if *dir == "" || *kubeVersion == "" || len(list) == 0 || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	m := artifacts.Manifest{KubernetesVersion: *kubeVersion}
	for _, a := range list {
		sum, size, err := artifacts.HashFile(filepath.Join(*dir, a.Path))
		if err != nil {
			fatal(fmt.Errorf("artifact %s: %w", a.Name, err))
		}
		a.OS, a.Arch, a.SHA256, a.Size = *goos, *goarch, sum, size
		m.Artifacts = append(m.Artifacts, a)
	}
	if err := m.Write(*dir); err != nil {
		fatal(err)
	}
	// Write creates the file through os.CreateTemp (mode 0600); the set is readable by all.
	if err := os.Chmod(filepath.Join(*dir, artifacts.ManifestFile), 0o644); err != nil {
		fatal(err)
	}
	// Read it back: what the manager will load must parse and validate.
	back, err := artifacts.Load(*dir)
	if err != nil {
		fatal(err)
	}
	fmt.Printf("Wrote %s: Kubernetes %s, %d artifacts\n", filepath.Join(*dir, artifacts.ManifestFile), *kubeVersion, len(back.Artifacts))
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "artifact-manifest:", err)
	os.Exit(1)
}
