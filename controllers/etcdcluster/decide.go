package etcdcluster

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Defaults of Policy fields left zero.
const (
	// DefaultMaxLearnerLag is how many raft entries a learner's applied index may trail the
	// leader's commit index and still be promoted. etcd itself refuses a promotion while the
	// learner has less than 90% of the leader's log, which for a long-lived cluster is a lag of
	// millions of entries; a thousand entries is well under a second of replication, so the
	// promoted member can take part in the next commits at once.
	DefaultMaxLearnerLag = 1000
	// DefaultJoinTimeout is how long a learner may stay unstarted or unhealthy after its
	// machine was told to join before it is removed. It covers starting etcd and receiving a
	// snapshot of a large database over the peer network.
	DefaultJoinTimeout = 15 * time.Minute
	// DefaultProbeTimeout bounds each member's health probe in Reconcile.
	DefaultProbeTimeout = 3 * time.Second
)

// Policy holds the thresholds of the rules. The zero value uses the defaults.
type Policy struct {
	// MaxLearnerLag: see DefaultMaxLearnerLag.
	MaxLearnerLag uint64
	// JoinTimeout: see DefaultJoinTimeout.
	JoinTimeout time.Duration
	// ProbeTimeout: see DefaultProbeTimeout.
	ProbeTimeout time.Duration
}

func (p Policy) withDefaults() Policy {
	if p.MaxLearnerLag == 0 {
		p.MaxLearnerLag = DefaultMaxLearnerLag
	}
	if p.JoinTimeout == 0 {
		p.JoinTimeout = DefaultJoinTimeout
	}
	if p.ProbeTimeout == 0 {
		p.ProbeTimeout = DefaultProbeTimeout
	}
	return p
}

// Next returns the one action that moves the observed membership towards the desired machines
// without risking quorum, with the default Policy. See Policy.Next.
func Next(desired []DesiredMember, observed Observed) Action {
	return Policy{}.Next(desired, observed)
}

// Next returns the one action that moves the observed membership towards the desired machines
// without risking quorum. It is a pure function of its arguments. The rules, tried in this
// order (docs/etcd.md gives the reasons):
//
//  1. Invalid desired members, or no member at all: Wait.
//  2. A learner exists (a change is in flight; nothing else happens until it is resolved):
//     remove it if no desired machine has its peer URL, or if it stayed unstarted or unhealthy
//     past JoinTimeout; otherwise wait for it to start, be healthy and catch up, then promote
//     it if the healthy voters after the promotion are still a majority.
//  3. Remove an unhealthy voter no machine wants, if the healthy voters left are a majority of
//     the voters left and the removal makes progress (more voters than desired machines, a
//     Ready machine waiting to be added, or the voter holds a desired machine's peer URL).
//  4. While there are more voters than desired machines, remove a healthy voter no machine
//     wants (a stale holder of a desired peer URL first, then followers before the leader), if
//     quorum holds after the removal.
//  5. Any voter unhealthy: Wait (no member is added while one is down).
//  6. Add a learner for the first Ready desired machine without a member.
//  7. Remove a member holding a desired machine's peer URL under another name, if quorum holds.
//  8. Wait while a voter no machine wants is kept for a replacement not yet promoted, or while a
//     desired machine is not Ready; otherwise None.
func (p Policy) Next(desired []DesiredMember, observed Observed) Action {
	p = p.withDefaults()
	if msg := validateDesired(desired); msg != "" {
		return wait(ReasonInvalidDesired, "desired etcd members are invalid: "+msg)
	}
	if len(observed.Members) == 0 {
		return wait(ReasonNotInitialised, fmt.Sprintf(
			"etcd has no member yet: machine %s initialises the cluster alone (--initial-cluster-state=new)", desired[0].Name))
	}
	v := newView(p, desired, observed)
	if a, ok := v.learnerStep(); ok {
		return a
	}
	return v.voterStep()
}

// validateDesired returns why desired cannot be acted on, or "".
func validateDesired(desired []DesiredMember) string {
	if len(desired) == 0 {
		return "no control-plane machine is desired (etcd is never shrunk to zero members)"
	}
	names, urls := map[string]bool{}, map[string]bool{}
	for i, d := range desired {
		switch {
		case d.Name == "":
			return fmt.Sprintf("machine %d has no name", i)
		case d.PeerURL == "":
			return fmt.Sprintf("machine %s has no peer URL", d.Name)
		case names[d.Name]:
			return fmt.Sprintf("machine %s is listed twice", d.Name)
		case urls[d.PeerURL]:
			return fmt.Sprintf("peer URL %s is listed twice (machine %s)", d.PeerURL, d.Name)
		}
		names[d.Name], urls[d.PeerURL] = true, true
	}
	return ""
}

// memberView is one observed member with what Next derived about it.
type memberView struct {
	Member
	health  Health
	healthy bool
	// machine is the desired machine this member is (matched by peer URL, and by name once
	// started); "" when no machine wants it.
	machine string
	// conflict is the desired machine whose peer URL this member holds under another name.
	conflict string
}

// label names the member in messages: "cp-2 (8e9e05c52164694d)", or its peer URL before it
// has a name.
func (m *memberView) label() string {
	switch {
	case m.Name != "":
		return fmt.Sprintf("%s (%s)", m.Name, HexID(m.ID))
	case m.machine != "":
		return fmt.Sprintf("%s (%s, not started)", m.machine, HexID(m.ID))
	default:
		return fmt.Sprintf("%s at %s (not started)", HexID(m.ID), strings.Join(m.PeerURLs, ","))
	}
}

// why says why the member is unhealthy.
func (m *memberView) why() string {
	switch {
	case !m.Started():
		return "it has not started"
	case m.health.Err != "":
		return m.health.Err
	default:
		return "it did not answer"
	}
}

type view struct {
	p       Policy
	desired []DesiredMember
	now     time.Time
	// members in a stable order: by name, then ID.
	members []*memberView
	// have maps a desired machine's name to its member.
	have          map[string]*memberView
	voters        int
	healthyVoters int
	leader        uint64
}

func newView(p Policy, desired []DesiredMember, o Observed) *view {
	v := &view{p: p, desired: desired, now: o.Now, have: map[string]*memberView{}, leader: o.Leader()}
	for _, m := range o.Members {
		mv := &memberView{Member: m, health: o.Health[m.ID]}
		mv.healthy = mv.health.Healthy && m.Started()
		for _, d := range desired {
			if !slices.Contains(m.PeerURLs, d.PeerURL) {
				continue
			}
			if !m.Started() || m.Name == d.Name {
				mv.machine = d.Name
				v.have[d.Name] = mv
			} else {
				mv.conflict = d.Name
			}
		}
		if !m.IsLearner {
			v.voters++
			if mv.healthy {
				v.healthyVoters++
			}
		}
		v.members = append(v.members, mv)
	}
	slices.SortFunc(v.members, func(a, b *memberView) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	return v
}

func (v *view) desiredMember(name string) DesiredMember {
	for _, d := range v.desired {
		if d.Name == name {
			return d
		}
	}
	return DesiredMember{}
}

func (v *view) member(id uint64) *memberView {
	for _, m := range v.members {
		if m.ID == id {
			return m
		}
	}
	return nil
}

func (v *view) filter(keep func(*memberView) bool) []*memberView {
	var out []*memberView
	for _, m := range v.members {
		if keep(m) {
			out = append(out, m)
		}
	}
	return out
}

// joinExpired reports whether machine's learner has had JoinTimeout to start and become healthy.
func (v *view) joinExpired(machine string) bool {
	since := v.desiredMember(machine).JoiningSince
	return !since.IsZero() && !v.now.IsZero() && v.now.Sub(since) > v.p.JoinTimeout
}

// canRemove reports whether removing voter m leaves a majority of healthy voters, and if not why.
func (v *view) canRemove(m *memberView) (bool, string) {
	after := v.voters - 1
	healthyAfter := v.healthyVoters
	if m.healthy {
		healthyAfter--
	}
	if after < 1 {
		return false, fmt.Sprintf("%s is the last voter", m.label())
	}
	if need := after/2 + 1; healthyAfter < need {
		return false, fmt.Sprintf("removing %s would leave %d healthy voter(s) of %d, fewer than the majority of %d",
			m.label(), healthyAfter, after, need)
	}
	return true, ""
}

// learnerStep handles a pending learner; ok is false when there is none.
func (v *view) learnerStep() (Action, bool) {
	learners := v.filter(func(m *memberView) bool { return m.IsLearner })
	if len(learners) == 0 {
		return Action{}, false
	}
	for _, l := range learners {
		if l.machine == "" {
			return remove(l, ReasonMachineGone, fmt.Sprintf(
				"removing learner %s: no desired machine has peer URL %s (its machine is gone); a learner does not vote, so quorum is unaffected",
				l.label(), strings.Join(l.PeerURLs, ","))), true
		}
	}
	for _, l := range learners {
		if !l.healthy && v.joinExpired(l.machine) {
			return remove(l, ReasonJoinTimeout, fmt.Sprintf(
				"removing learner %s: machine %s was told to join more than %s ago and the learner is still not a healthy member (%s)",
				l.label(), l.machine, v.p.JoinTimeout, l.why())), true
		}
	}
	if len(learners) > 1 {
		var names []string
		for _, l := range learners {
			names = append(names, l.label())
		}
		return wait(ReasonTooManyLearners, fmt.Sprintf(
			"%d learners are pending (%s); Basalt adds one at a time and waits for them to be promoted or time out",
			len(learners), strings.Join(names, ", "))), true
	}
	l := learners[0]
	about := func(a Action) (Action, bool) {
		a.Machine, a.ID, a.PeerURL = l.machine, l.ID, firstOf(l.PeerURLs)
		return a, true
	}
	if !l.Started() {
		return about(wait(ReasonWaitingForJoin, fmt.Sprintf(
			"learner %s was added for machine %s: waiting for its etcd to start with --initial-cluster-state=existing and join",
			HexID(l.ID), l.machine)))
	}
	if !l.healthy {
		return about(wait(ReasonLearnerUnhealthy, fmt.Sprintf("learner %s is unhealthy: %s", l.label(), l.why())))
	}
	leader := v.member(v.leader)
	if leader == nil || !leader.healthy || leader.IsLearner {
		return about(wait(ReasonNoLeader, fmt.Sprintf("no healthy leader to compare learner %s with", l.label())))
	}
	if lag := sub(leader.health.RaftIndex, l.health.RaftAppliedIndex); lag > v.p.MaxLearnerLag {
		return about(wait(ReasonLearnerCatchingUp, fmt.Sprintf(
			"learner %s is catching up: applied index %d is %d entries behind the leader's commit index %d (promoted at %d or fewer)",
			l.label(), l.health.RaftAppliedIndex, lag, leader.health.RaftIndex, v.p.MaxLearnerLag)))
	}
	if need := (v.voters+1)/2 + 1; v.healthyVoters+1 < need {
		return about(wait(ReasonQuorumAtRisk, fmt.Sprintf(
			"promoting %s would make %d voters with %d healthy, fewer than the majority of %d",
			l.label(), v.voters+1, v.healthyVoters+1, need)))
	}
	return about(Action{Kind: Promote, Reason: ReasonLearnerCaughtUp, Message: fmt.Sprintf(
		"promoting learner %s: healthy and %d entries behind the leader",
		l.label(), sub(leader.health.RaftIndex, l.health.RaftAppliedIndex))})
}

// voterStep decides when no learner is pending.
func (v *view) voterStep() Action {
	var refused []string
	// 3. An unhealthy voter no machine wants is removed first when that makes progress (there
	// are more voters than desired machines, a Ready machine waits to be added, or it holds a
	// desired peer URL): it already counts against quorum, and nothing may be added while it is
	// down. Otherwise it is kept, so a probe that failed once never removes a voter whose
	// replacement is not there yet.
	replacementReady := slices.ContainsFunc(v.desired, func(d DesiredMember) bool { return d.Ready && v.have[d.Name] == nil })
	for _, m := range v.filter(func(m *memberView) bool { return !m.IsLearner && !m.healthy && m.machine == "" }) {
		if v.voters <= len(v.desired) && !replacementReady && m.conflict == "" {
			continue
		}
		ok, why := v.canRemove(m)
		if !ok {
			refused = append(refused, why)
			continue
		}
		reason, whose := ReasonMachineGone, "no desired machine wants it"
		if m.conflict != "" {
			reason, whose = ReasonPeerURLConflict, fmt.Sprintf("it holds the peer URL of machine %s under another name", m.conflict)
		}
		return remove(m, reason, fmt.Sprintf("removing unhealthy member %s (%s): %s; %d healthy voter(s) of %d remain",
			m.label(), m.why(), whose, v.healthyVoters, v.voters-1))
	}
	unwanted := v.filter(func(m *memberView) bool { return !m.IsLearner && m.healthy && m.machine == "" })
	slices.SortStableFunc(unwanted, func(a, b *memberView) int {
		// A stale holder of a desired peer URL first (it blocks that machine), the leader last
		// (its removal costs a leadership transfer).
		return cmp.Or(boolFirst(a.conflict != "", b.conflict != ""), boolFirst(a.ID != v.leader, b.ID != v.leader))
	})
	// 4. Scale down: more voters than desired machines.
	if v.voters > len(v.desired) {
		for _, m := range unwanted {
			ok, why := v.canRemove(m)
			if !ok {
				refused = append(refused, why)
				continue
			}
			reason, msg := ReasonScaleDown, fmt.Sprintf("removing member %s: no desired machine wants it and there are %d voters for %d desired machine(s)",
				m.label(), v.voters, len(v.desired))
			if m.conflict != "" {
				reason = ReasonPeerURLConflict
				msg = fmt.Sprintf("removing member %s: it holds the peer URL of machine %s under another name", m.label(), m.conflict)
			}
			return remove(m, reason, msg)
		}
	}
	// 5. No add while a voter is down.
	if down := v.filter(func(m *memberView) bool { return !m.IsLearner && !m.healthy }); len(down) > 0 {
		var parts []string
		for _, m := range down {
			parts = append(parts, fmt.Sprintf("%s: %s", m.label(), m.why()))
		}
		msg := fmt.Sprintf("%d of %d voters unhealthy (%s); no member is added while a voter is down: it must recover, or its machine be replaced",
			len(down), v.voters, strings.Join(parts, "; "))
		if len(refused) > 0 {
			return wait(ReasonQuorumAtRisk, strings.Join(refused, "; ")+"; "+msg)
		}
		return wait(ReasonMemberUnhealthy, msg)
	}
	if len(refused) > 0 { // unreachable while every voter is healthy; kept for safety
		return wait(ReasonQuorumAtRisk, strings.Join(refused, "; "))
	}
	// 6. Add a learner for the first Ready machine without a member.
	taken := map[string]*memberView{}
	for _, m := range v.members {
		for _, u := range m.PeerURLs {
			taken[u] = m
		}
	}
	var missing, notReady []string
	for _, d := range v.desired {
		if v.have[d.Name] != nil {
			continue
		}
		missing = append(missing, d.Name)
		if !d.Ready {
			notReady = append(notReady, d.Name)
			continue
		}
		if taken[d.PeerURL] == nil {
			return Action{Kind: AddLearner, Reason: ReasonScaleUp, Machine: d.Name, PeerURL: d.PeerURL, Message: fmt.Sprintf(
				"adding machine %s as a learner at %s", d.Name, d.PeerURL)}
		}
	}
	// 7. A member holds a desired machine's peer URL under another name: it must go first.
	for _, m := range unwanted {
		if m.conflict == "" {
			continue
		}
		if ok, why := v.canRemove(m); !ok {
			return wait(ReasonQuorumAtRisk, why)
		}
		return remove(m, ReasonPeerURLConflict, fmt.Sprintf(
			"removing member %s: it holds the peer URL of machine %s under another name (a previous machine at the same address)",
			m.label(), m.conflict))
	}
	// 8. Wait or done.
	if len(unwanted) > 0 {
		var names []string
		for _, m := range unwanted {
			names = append(names, m.label())
		}
		return wait(ReasonWaitingForReplacement, fmt.Sprintf(
			"keeping %s until machine(s) %s have joined and been promoted (a voter is never removed before its replacement)",
			strings.Join(names, ", "), strings.Join(missing, ", ")))
	}
	if len(notReady) > 0 {
		return wait(ReasonWaitingForMachine, fmt.Sprintf("waiting for machine(s) %s to be ready to run etcd", strings.Join(notReady, ", ")))
	}
	return Action{Kind: None, Reason: ReasonInSync, Message: fmt.Sprintf(
		"%d healthy voter(s), one per desired machine", v.voters)}
}

// Leader returns the leader the healthy members follow: the leader named by the healthy member
// with the highest raft term (the newest election wins). 0 means none is known.
func (o Observed) Leader() uint64 {
	var leader, term uint64
	for _, m := range o.Members {
		h, ok := o.Health[m.ID]
		if ok && h.Healthy && h.Leader != 0 && (leader == 0 || h.RaftTerm > term) {
			leader, term = h.Leader, h.RaftTerm
		}
	}
	return leader
}

func wait(reason, msg string) Action { return Action{Kind: Wait, Reason: reason, Message: msg} }

func remove(m *memberView, reason, msg string) Action {
	return Action{Kind: Remove, Reason: reason, Message: msg, ID: m.ID, PeerURL: firstOf(m.PeerURLs),
		Machine: cmp.Or(m.machine, m.Name)}
}

func firstOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func sub(a, b uint64) uint64 {
	if b >= a {
		return 0
	}
	return a - b
}

// boolFirst orders true before false.
func boolFirst(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	default:
		return 1
	}
}
