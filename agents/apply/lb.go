package apply

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/basalt-dev/basalt/agents/lb"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// configureLoadBalancers hands the Plan's load balancers to the agent's in-process proxy by
// writing its configuration file (lb.DefaultConfigPath, watched by lb.Watcher), atomically and only
// when it changed. A Plan without load balancers removes the file, which stops the proxy. The
// agent runs one load balancer: the node-local one in front of the API servers.
func (r *run) configureLoadBalancers() {
	lbs := r.plan.LoadBalancers
	path := r.path(lb.DefaultConfigPath)
	switch len(lbs) {
	case 0:
		err := os.Remove(path)
		if errors.Is(err, fs.ErrNotExist) {
			return
		}
		r.step("loadbalancer", err, err == nil)
		return
	case 1:
	default:
		r.step("loadbalancer", fmt.Errorf("the Plan has %d load balancers; this agent runs one", len(lbs)), false)
		return
	}
	cfg := lb.Config{Listen: lbs[0].Listen, Backends: lbs[0].Backends}
	if err := cfg.Validate(); err != nil {
		r.step("loadbalancer:"+lbs[0].Name, err, false)
		return
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		r.step("loadbalancer:"+lbs[0].Name, err, false)
		return
	}
	changed, err := r.ensureFile(plan.File{Path: lb.DefaultConfigPath, Mode: 0o644, Content: append(b, '\n')})
	r.step("loadbalancer:"+lbs[0].Name, err, changed)
}
