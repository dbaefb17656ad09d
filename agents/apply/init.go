package apply

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// ensureInit runs svc.Init when its folder does not exist yet (plan.Init): stop the service,
// remove what an interrupted run left, run the command, rename its output into place and sync
// the parent folder. It returns whether it ran.
func (r *run) ensureInit(ctx context.Context, svc plan.Service) (bool, error) {
	in := svc.Init
	if in == nil {
		return false, nil
	}
	creates, output := r.path(in.Creates), r.path(in.Output())
	if _, err := os.Stat(creates); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("init: %w", err)
	}
	// The service may still run with what it had before (etcd with its former data dir, which
	// the command may read): it is stopped first, so the command reads files no process writes.
	if err := r.Runtime.Stop(ctx, svc.Name); err != nil {
		return false, fmt.Errorf("init: stopping the service first: %w", err)
	}
	if err := os.RemoveAll(output); err != nil {
		return false, fmt.Errorf("init: removing what an interrupted run left: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(output), 0o700); err != nil {
		return false, fmt.Errorf("init: %w", err)
	}
	r.Logger.Info("Running the init command of a service", "service", svc.Name, "creates", in.Creates, "argv", in.Argv)
	cctx, cancel := context.WithTimeout(ctx, in.Timeout())
	defer cancel()
	if _, err := r.Run.Run(cctx, in.Argv[0], in.Argv[1:]...); err != nil {
		return false, fmt.Errorf("init: %w", err)
	}
	if fi, err := os.Stat(output); err != nil || !fi.IsDir() {
		return false, fmt.Errorf("init: the command succeeded but did not write the folder %s", in.Output())
	}
	if err := os.Rename(output, creates); err != nil {
		return false, fmt.Errorf("init: %w", err)
	}
	if d, err := os.Open(filepath.Dir(creates)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return true, nil
}
