package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/agents/service"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// HealthChecker probes one service.
type HealthChecker interface {
	Check(ctx context.Context, svc plan.Service) protocol.ComponentHealth
}

// StatusReader tells whether a service's process runs.
type StatusReader interface {
	Status(ctx context.Context, name string) (service.State, error)
}

// Monitor keeps the health of the current Plan's services: a service whose process does not run
// is unhealthy; one that runs is probed every PeriodSeconds (default 5). Start it with Run.
type Monitor struct {
	Checker HealthChecker
	Runtime StatusReader
	// Tick is how often due probes are started; default 1s.
	Tick time.Duration
	// Changed, when set, is called (without the lock held) when a service's health flips, so
	// the agent reports it at once instead of at its next heartbeat.
	Changed func()

	mu       sync.Mutex
	services []plan.Service
	results  map[string]protocol.ComponentHealth
	due      map[string]time.Time
	inFlight map[string]bool
	// gen counts the restarts of each service: a probe started before a restart says nothing
	// about the new process and is dropped.
	gen map[string]int
	// starting holds the restarted services not seen healthy since.
	starting map[string]bool
}

// Restarted forgets what is known of service name's health: the process that was probed is
// gone. Until the new one is probed the service is reported unhealthy ("restarted, not probed
// yet"), so a manager that waits for a restarted component never sees the old process's
// result (apply.Applier.AfterStart).
func (m *Monitor) Restarted(_ context.Context, name string) {
	m.mu.Lock()
	if m.gen == nil {
		m.gen = map[string]int{}
	}
	if m.due == nil {
		m.due = map[string]time.Time{}
	}
	if m.starting == nil {
		m.starting = map[string]bool{}
	}
	m.gen[name]++
	m.starting[name] = true
	_, known := m.results[name]
	delete(m.results, name)
	m.due[name] = time.Time{}
	m.mu.Unlock()
	if known && m.Changed != nil {
		m.Changed()
	}
}

// SetServices replaces the monitored services; results of services that stay are kept.
func (m *Monitor) SetServices(svcs []plan.Service) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.services = slices.Clone(svcs)
	if m.due == nil {
		m.due = map[string]time.Time{}
	}
	for _, s := range svcs {
		m.due[s.Name] = time.Time{} // probe soon: the definition may have changed
	}
}

// Snapshot returns the latest health of every monitored service, sorted by name; a service not
// probed yet is unhealthy with the message "not probed yet".
func (m *Monitor) Snapshot() []protocol.ComponentHealth {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]protocol.ComponentHealth, 0, len(m.services))
	for _, s := range m.services {
		h, ok := m.results[s.Name]
		if !ok {
			msg := "not probed yet"
			if m.gen[s.Name] > 0 {
				msg = "(re)started, not probed yet"
			}
			h = protocol.ComponentHealth{Name: s.Name, Message: msg, Time: time.Now().UTC()}
		}
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b protocol.ComponentHealth) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Run probes until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	tick := m.Tick
	if tick <= 0 {
		tick = time.Second
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		m.mu.Lock()
		if m.results == nil {
			m.results, m.inFlight = map[string]protocol.ComponentHealth{}, map[string]bool{}
		}
		if m.due == nil {
			m.due = map[string]time.Time{}
		}
		now := time.Now()
		for _, s := range m.services {
			if m.inFlight[s.Name] || now.Before(m.due[s.Name]) {
				continue
			}
			m.inFlight[s.Name] = true
			wg.Add(1)
			go func(s plan.Service, gen int) {
				defer wg.Done()
				h := m.check(ctx, s)
				period := 5 * time.Second
				if s.Probe != nil && s.Probe.PeriodSeconds > 0 {
					period = time.Duration(s.Probe.PeriodSeconds) * time.Second
				}
				m.mu.Lock()
				m.inFlight[s.Name] = false
				flipped := false
				switch {
				case gen != m.gen[s.Name]:
					// Restarted while probed: probe the new process at once.
				case slices.ContainsFunc(m.services, func(c plan.Service) bool { return c.Name == s.Name }):
					old, known := m.results[s.Name]
					flipped = !known || old.Healthy != h.Healthy
					m.results[s.Name] = h
					if m.starting[s.Name] && !h.Healthy {
						// Restarted and not up yet: look every second, so the manager (which
						// restarts the next control-plane node only then) hears of it soon.
						period = min(period, time.Second)
					} else {
						delete(m.starting, s.Name)
					}
					if m.due[s.Name].IsZero() || m.due[s.Name].Before(time.Now()) {
						m.due[s.Name] = time.Now().Add(period)
					}
				}
				m.mu.Unlock()
				if flipped && m.Changed != nil {
					m.Changed()
				}
			}(s, m.gen[s.Name])
		}
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Monitor) check(ctx context.Context, s plan.Service) protocol.ComponentHealth {
	if m.Runtime != nil {
		st, err := m.Runtime.Status(ctx, s.Name)
		if err != nil || !st.Active {
			msg := "not running"
			if err != nil {
				msg = fmt.Sprintf("not running: %v", err)
			} else if st.Message != "" {
				msg += ": " + st.Message
			}
			return protocol.ComponentHealth{Name: s.Name, Message: msg, Time: time.Now().UTC()}
		}
		if s.Probe == nil {
			return protocol.ComponentHealth{Name: s.Name, Healthy: true, Message: "running", Time: time.Now().UTC()}
		}
	}
	return m.Checker.Check(ctx, s)
}
