package apply

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/basalt-dev/basalt/agents/lb"
	"github.com/basalt-dev/basalt/agents/vip"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// configureLoadBalancers hands the Plan's load balancers to the agent's in-process proxy by
// writing its configuration file (lb.DefaultConfigPath, watched by lb.Watcher). A Plan without
// load balancers removes the file, which stops the proxy. The agent runs one load balancer: the
// node-local one in front of the API servers.
func (r *run) configureLoadBalancers() {
	lbs := r.plan.LoadBalancers
	switch len(lbs) {
	case 0:
		r.agentConfig("loadbalancer", lb.DefaultConfigPath, nil)
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
	r.agentConfig("loadbalancer:"+lbs[0].Name, lb.DefaultConfigPath, cfg)
}

// configureVirtualIP hands the Plan's virtual IP to the agent's elector by writing its
// configuration file (vip.DefaultConfigPath, watched by vip.Watcher); a Plan without one removes
// the file, which gives the Lease and the address up.
func (r *run) configureVirtualIP() {
	if r.plan.VirtualIP == nil {
		r.agentConfig("virtualip", vip.DefaultConfigPath, nil)
		return
	}
	step := "virtualip:" + r.plan.VirtualIP.Address
	if r.CheckVirtualIP != nil {
		if err := r.CheckVirtualIP(r.plan.VirtualIP); err != nil {
			// Not campaigning for an address this host cannot carry.
			if rerr := os.Remove(r.path(vip.DefaultConfigPath)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = errors.Join(err, rerr)
			}
			r.step(step, err, false)
			return
		}
	}
	r.agentConfig(step, vip.DefaultConfigPath, r.plan.VirtualIP)
}

// agentConfig writes v as JSON to path (under Root), atomically and only when it changed, for one
// of the agent's own in-process parts; nil removes the file.
func (r *run) agentConfig(step, path string, v any) {
	if v == nil {
		err := os.Remove(r.path(path))
		if errors.Is(err, fs.ErrNotExist) {
			return
		}
		r.step(step, err, err == nil)
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		r.step(step, err, false)
		return
	}
	changed, err := r.ensureFile(plan.File{Path: path, Mode: 0o644, Content: append(b, '\n')})
	r.step(step, err, changed)
}
