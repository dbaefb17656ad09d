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

// Command volume-helper is the helper pod of the local storage add-on, packed by
// hack/build-artifacts.sh as basalt.dev/volume-helper:v1 (docs/addons.md). The local path
// provisioner runs it on the node of a volume, with the volume's parent folder mounted, as its
// setupCommand and teardownCommand:
//
//	volume-helper -p PATH -s SIZE_BYTES -m Filesystem|Block -a create|delete
//
// create makes PATH (mode 0777, so any pod's user can write), delete removes PATH and everything
// in it. PATH must be an absolute clean path at least two levels deep: the helper never removes
// a mount point or / by mistake. It replaces the busybox shell scripts of the upstream helper,
// so no shell image is needed.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "volume-helper:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("volume-helper", flag.ContinueOnError)
	path := fs.String("p", "", "the volume's folder")
	_ = fs.Int64("s", 0, "the volume's size in bytes (not enforced: a local path volume shares its disk)")
	mode := fs.String("m", "Filesystem", "the volume mode")
	action := fs.String("a", "", "create or delete")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !filepath.IsAbs(*path) || filepath.Clean(*path) != *path || strings.Count(*path, "/") < 2 {
		return fmt.Errorf("-p %q must be an absolute clean path at least two levels deep", *path)
	}
	if *mode != "Filesystem" {
		return fmt.Errorf("volume mode %q: only Filesystem volumes are supported", *mode)
	}
	switch *action {
	case "create":
		if err := os.MkdirAll(*path, 0o777); err != nil {
			return err
		}
		return os.Chmod(*path, 0o777) // MkdirAll's mode is masked by the umask
	case "delete":
		return os.RemoveAll(*path)
	default:
		return errors.New("-a must be create or delete")
	}
}
