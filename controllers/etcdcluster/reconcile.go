package etcdcluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/basalt-dev/basalt/bootstrap/components"
)

// Reconcile observes the cluster through c, decides with Next (default Policy) and executes at
// most one membership change. See Policy.Reconcile.
func Reconcile(ctx context.Context, c Client, desired []DesiredMember) (Action, error) {
	return Policy{}.Reconcile(ctx, c, desired)
}

// Reconcile observes the cluster through c (member list, then every member's health), decides
// with Next and executes at most one membership change; it returns the action with Members set
// to the membership after it.
//
// It keeps no state and may be called again after a crash at any point: a learner added by a
// call whose answer was lost is seen by its peer URL on the next call (which returns
// Wait/WaitingForJoin for it instead of adding another), a promotion or removal that already
// happened is not repeated, and a removal that etcd reports as already done (ErrMemberNotFound)
// or a promotion of a member that already votes (ErrNotLearner) count as done. When a change
// fails, Reconcile reads the member list again and reports success if the change was committed
// anyway (its answer was lost).
//
// Before removing the leader it hands leadership to the healthy voter with the highest applied
// index, so the cluster does not sit through an election timeout.
//
// Errors: observation failures (no quorum: the member list is read linearizably), and etcd
// refusing the chosen change, wrapped: ErrLearnerNotReady and ErrUnhealthy are transient (requeue
// after a few seconds); anything else is returned as is. The returned Action is the one attempted
// even when err is not nil (Wait EtcdUnavailable when the observation failed), so its Reason and
// Message can always feed a condition.
func (p Policy) Reconcile(ctx context.Context, c Client, desired []DesiredMember) (Action, error) {
	p = p.withDefaults()
	log := logr.FromContextOrDiscard(ctx)
	obs, err := p.Observe(ctx, c)
	if err != nil {
		return Action{Kind: Wait, Reason: ReasonEtcdUnavailable, Message: "cannot read the etcd member list: " + err.Error()}, err
	}
	a := p.Next(desired, obs)
	a.Members = obs.Members
	switch a.Kind {
	case AddLearner:
		m, ms, err := c.AddLearner(ctx, a.PeerURL)
		if err != nil {
			if m, ms, ok := committed(ctx, c, func(m Member) bool { return slices.Contains(m.PeerURLs, a.PeerURL) }); ok {
				log.Info("The etcd member add failed but was committed", "peerURL", a.PeerURL, "error", err.Error())
				a.ID, a.Members = m.ID, ms
				break
			}
			return a, err
		}
		a.ID, a.Members = m.ID, ms
	case Promote:
		if err := c.Promote(ctx, a.ID); err != nil && !errors.Is(err, ErrNotLearner) {
			if _, _, ok := committed(ctx, c, func(m Member) bool { return m.ID == a.ID && !m.IsLearner }); !ok {
				return a, err
			}
			log.Info("The etcd member promotion failed but was committed", "member", HexID(a.ID), "error", err.Error())
		}
		a.Members = slices.Clone(a.Members)
		for i := range a.Members {
			if a.Members[i].ID == a.ID {
				a.Members[i].IsLearner = false
			}
		}
	case Remove:
		if a.ID == obs.Leader() {
			to := transferee(obs, desired, a.ID)
			if to == 0 {
				return a, fmt.Errorf("remove leader %s: no healthy voter to hand leadership to", HexID(a.ID))
			}
			log.Info("Moving etcd leadership before removing the leader", "from", HexID(a.ID), "to", HexID(to), "reason", a.Reason)
			if err := c.MoveLeader(ctx, to); err != nil {
				return a, fmt.Errorf("remove leader %s: %w", HexID(a.ID), err)
			}
		}
		if err := c.Remove(ctx, a.ID); err != nil && !errors.Is(err, ErrMemberNotFound) {
			if _, ms, _ := committed(ctx, c, func(Member) bool { return false }); ms == nil || slices.ContainsFunc(ms, func(m Member) bool { return m.ID == a.ID }) {
				return a, err
			}
			log.Info("The etcd member removal failed but was committed", "member", HexID(a.ID), "error", err.Error())
		}
		a.Members = slices.DeleteFunc(slices.Clone(a.Members), func(m Member) bool { return m.ID == a.ID })
	}
	if a.Changes() {
		log.Info("Changed etcd membership", "action", a.Kind, "machine", a.Machine, "member", HexID(a.ID),
			"peerURL", a.PeerURL, "reason", a.Reason, "message", a.Message)
	}
	return a, nil
}

// committed re-reads the member list after a change failed: the change may have been committed
// although its answer was lost (the connection dropped, or the member that took the request
// stopped). It returns the first member matching and the list; ms is nil when the list could
// not be read.
func committed(ctx context.Context, c Client, match func(Member) bool) (m Member, ms []Member, ok bool) {
	ms, err := c.Members(ctx)
	if err != nil {
		return Member{}, nil, false
	}
	for _, m := range ms {
		if match(m) {
			return m, ms, true
		}
	}
	return Member{}, ms, false
}

// Observe lists the members through c and asks every started member for its health, all at once,
// each probe bounded by ProbeTimeout. A member that does not answer on any of its client URLs,
// or answers as another member, is recorded unhealthy with the reason.
func (p Policy) Observe(ctx context.Context, c Client) (Observed, error) {
	p = p.withDefaults()
	ms, err := c.Members(ctx)
	if err != nil {
		return Observed{}, err
	}
	obs := Observed{Members: ms, Health: map[uint64]Health{}, Now: time.Now()}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range ms {
		if len(m.ClientURLs) == 0 {
			continue
		}
		wg.Go(func() {
			h := p.probe(ctx, c, m)
			mu.Lock()
			obs.Health[m.ID] = h
			mu.Unlock()
		})
	}
	wg.Wait()
	return obs, nil
}

// probe returns the health of m from the first of its client URLs that answers.
func (p Policy) probe(ctx context.Context, c Client, m Member) Health {
	var errs []error
	for _, ep := range m.ClientURLs {
		pctx, cancel := context.WithTimeout(ctx, p.ProbeTimeout)
		h, err := c.Health(pctx, ep)
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if h.MemberID != 0 && h.MemberID != m.ID {
			return Health{MemberID: h.MemberID, Err: fmt.Sprintf("%s answered as member %s, not %s", ep, HexID(h.MemberID), HexID(m.ID))}
		}
		return h
	}
	return Health{Err: errors.Join(errs...).Error()}
}

// transferee picks who takes over from the leader being removed: a healthy voter, a desired
// machine's if possible, with the highest applied index.
func transferee(obs Observed, desired []DesiredMember, leaving uint64) uint64 {
	wanted := map[string]bool{}
	for _, d := range desired {
		wanted[d.Name] = true
	}
	var best Member
	var bestIndex uint64
	for _, m := range obs.Members {
		h := obs.Health[m.ID]
		if m.ID == leaving || m.IsLearner || !h.Healthy {
			continue
		}
		better := best.ID == 0 ||
			(wanted[m.Name] && !wanted[best.Name]) ||
			(wanted[m.Name] == wanted[best.Name] && h.RaftAppliedIndex > bestIndex)
		if better {
			best, bestIndex = m, h.RaftAppliedIndex
		}
	}
	return best.ID
}

// InitialCluster returns the member list a joining machine starts etcd with
// (components.EtcdParams.Members, with Join true and --initial-cluster-state=existing): every
// member by name and peer URL, the machine's own learner (unnamed until it starts) under the
// machine's name. members is Action.Members from the AddLearner action, or from any later
// Reconcile: etcd only reads the flag on the first start, and the list only has to match the
// current peer URLs.
func InitialCluster(members []Member, self DesiredMember) ([]components.EtcdMember, error) {
	var out []components.EtcdMember
	found := false
	for _, m := range members {
		name := m.Name
		if slices.Contains(m.PeerURLs, self.PeerURL) {
			if m.Name != "" && m.Name != self.Name {
				return nil, fmt.Errorf("peer URL %s belongs to member %s (%s), not to machine %s", self.PeerURL, m.Name, HexID(m.ID), self.Name)
			}
			name, found = self.Name, true
		}
		if name == "" {
			return nil, fmt.Errorf("member %s at %v has not started, so it has no name for --initial-cluster", HexID(m.ID), m.PeerURLs)
		}
		for _, u := range m.PeerURLs {
			out = append(out, components.EtcdMember{Name: name, PeerURL: u})
		}
	}
	if !found {
		return nil, fmt.Errorf("machine %s (%s) is not a member: add it as a learner first", self.Name, self.PeerURL)
	}
	return out, nil
}
