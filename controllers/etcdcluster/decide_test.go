package etcdcluster_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/controllers/etcdcluster"
)

// t0 is the time of every observation in these tests.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// leaderIndex is the leader's commit index in every observation.
const leaderIndex = 100_000

func peerURL(n int) string   { return fmt.Sprintf("https://10.0.0.%d:2380", n) }
func clientURL(n int) string { return fmt.Sprintf("https://10.0.0.%d:2379", n) }
func name(n int) string      { return fmt.Sprintf("cp-%d", n) }

// spec is one observed member and how it answers.
type spec struct {
	etcdcluster.Member
	down    string // not "": unhealthy for this reason
	lag     uint64 // applied index behind the leader's commit index
	noReply bool   // no health entry at all
}

// v is a started, healthy voter cp-n with ID n.
func v(n int) spec {
	return spec{Member: etcdcluster.Member{ID: uint64(n), Name: name(n), PeerURLs: []string{peerURL(n)}, ClientURLs: []string{clientURL(n)}}}
}

// l is a started, healthy, caught-up learner cp-n with ID n.
func l(n int) spec { s := v(n); s.IsLearner = true; return s }

func (s spec) unstarted() spec {
	s.Name, s.ClientURLs, s.noReply = "", nil, true
	return s
}
func (s spec) unhealthy(why string) spec { s.down = why; return s }
func (s spec) behind(n uint64) spec      { s.lag = n; return s }
func (s spec) named(n string) spec       { s.Name = n; return s }

// observe builds an observation; the leader is the lowest-ID healthy voter, or leader if given.
func observe(ss ...spec) etcdcluster.Observed {
	return observeLeader(0, ss...)
}

func observeLeader(leader uint64, ss ...spec) etcdcluster.Observed {
	if leader == 0 {
		for _, s := range ss {
			if !s.IsLearner && s.down == "" && !s.noReply && (leader == 0 || s.ID < leader) {
				leader = s.ID
			}
		}
	}
	o := etcdcluster.Observed{Health: map[uint64]etcdcluster.Health{}, Now: t0}
	for _, s := range ss {
		o.Members = append(o.Members, s.Member)
		switch {
		case s.noReply:
		case s.down != "":
			o.Health[s.ID] = etcdcluster.Health{MemberID: s.ID, Err: s.down}
		default:
			o.Health[s.ID] = etcdcluster.Health{Healthy: true, MemberID: s.ID, Leader: leader, RaftTerm: 3,
				RaftIndex: leaderIndex, RaftAppliedIndex: leaderIndex - s.lag, IsLearner: s.IsLearner}
		}
	}
	return o
}

// want returns Ready desired machines cp-n.
func want(ns ...int) []etcdcluster.DesiredMember {
	var out []etcdcluster.DesiredMember
	for _, n := range ns {
		out = append(out, etcdcluster.DesiredMember{Name: name(n), PeerURL: peerURL(n), Ready: true})
	}
	return out
}

func notReady(d []etcdcluster.DesiredMember, n int) []etcdcluster.DesiredMember {
	for i := range d {
		if d[i].Name == name(n) {
			d[i].Ready = false
		}
	}
	return d
}

func joining(d []etcdcluster.DesiredMember, n int, since time.Time) []etcdcluster.DesiredMember {
	for i := range d {
		if d[i].Name == name(n) {
			d[i].JoiningSince = since
		}
	}
	return d
}

// expect is what a case checks: Kind and Reason always, the rest when set.
type expect struct {
	kind     etcdcluster.Kind
	reason   string
	id       uint64
	machine  string
	peerURL  string
	contains []string // substrings of the message
}

func check(t *testing.T, got etcdcluster.Action, w expect) {
	t.Helper()
	if got.Kind != w.kind || got.Reason != w.reason {
		t.Fatalf("Next = %s %s (%q), want %s %s", got.Kind, got.Reason, got.Message, w.kind, w.reason)
	}
	if w.id != 0 && got.ID != w.id {
		t.Errorf("ID = %x, want %x (%s)", got.ID, w.id, got)
	}
	if w.machine != "" && got.Machine != w.machine {
		t.Errorf("Machine = %q, want %q (%s)", got.Machine, w.machine, got)
	}
	if w.peerURL != "" && got.PeerURL != w.peerURL {
		t.Errorf("PeerURL = %q, want %q", got.PeerURL, w.peerURL)
	}
	for _, s := range w.contains {
		if !strings.Contains(got.Message, s) {
			t.Errorf("Message %q does not contain %q", got.Message, s)
		}
	}
	if got.Message == "" {
		t.Error("Message is empty")
	}
	if got.Members != nil {
		t.Errorf("Next set Members: %v", got.Members)
	}
}

func TestNext(t *testing.T) {
	for _, tc := range []struct {
		name    string
		desired []etcdcluster.DesiredMember
		obs     etcdcluster.Observed
		policy  etcdcluster.Policy
		want    expect
	}{
		// Bootstrap.
		{"bootstrap: the first member initialises alone, nothing to do", want(1), observe(v(1)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.None, reason: etcdcluster.ReasonInSync}},
		{"bootstrap: no member yet", want(1, 2, 3), etcdcluster.Observed{Now: t0},
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonNotInitialised, contains: []string{"cp-1 initialises"}}},

		// Scale up 1 → 3, step by step.
		{"1→3: add the first learner", want(1, 2, 3), observe(v(1)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.AddLearner, reason: etcdcluster.ReasonScaleUp, machine: "cp-2", peerURL: peerURL(2)}},
		{"1→3: learner added, machine not started yet", want(1, 2, 3), observe(v(1), l(2).unstarted()),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonWaitingForJoin, id: 2, machine: "cp-2", peerURL: peerURL(2)}},
		{"1→3: learner not caught up", want(1, 2, 3), observe(v(1), l(2).behind(5000)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonLearnerCatchingUp, id: 2, machine: "cp-2",
				contains: []string{"5000 entries behind"}}},
		{"1→3: learner caught up is promoted", want(1, 2, 3), observe(v(1), l(2).behind(10)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Promote, reason: etcdcluster.ReasonLearnerCaughtUp, id: 2, machine: "cp-2"}},
		{"1→3: add the second learner after the promotion", want(1, 2, 3), observe(v(1), v(2)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.AddLearner, reason: etcdcluster.ReasonScaleUp, machine: "cp-3"}},
		{"1→3: promote the second learner", want(1, 2, 3), observe(v(1), v(2), l(3)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Promote, reason: etcdcluster.ReasonLearnerCaughtUp, id: 3}},
		{"1→3: done", want(1, 2, 3), observe(v(1), v(2), v(3)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.None, reason: etcdcluster.ReasonInSync}},

		// Catch-up threshold.
		{"lag exactly MaxLearnerLag is caught up", want(1, 2), observe(v(1), l(2).behind(etcdcluster.DefaultMaxLearnerLag)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Promote, reason: etcdcluster.ReasonLearnerCaughtUp}},
		{"lag one over MaxLearnerLag waits", want(1, 2), observe(v(1), l(2).behind(etcdcluster.DefaultMaxLearnerLag+1)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonLearnerCatchingUp}},
		{"policy threshold applies", want(1, 2), observe(v(1), l(2).behind(50)),
			etcdcluster.Policy{MaxLearnerLag: 10}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonLearnerCatchingUp}},
		{"unhealthy learner is not promoted", want(1, 2), observe(v(1), l(2).unhealthy("no leader")),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonLearnerUnhealthy, contains: []string{"no leader"}}},
		{"learner without a known leader waits", want(1, 2), observeLeader(77, v(1), l(2)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonNoLeader}},
		{"promotion refused when the voters after it would lack a majority", want(1, 2, 3, 4),
			observe(v(1), v(2).unhealthy("unreachable"), v(3).unhealthy("unreachable"), l(4)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonQuorumAtRisk, contains: []string{"4 voters with 2 healthy"}}},
		{"promotion allowed with one voter of three down (3 of 4 healthy)", want(1, 2, 3, 4),
			observe(v(1), v(2), v(3).unhealthy("unreachable"), l(4)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Promote, reason: etcdcluster.ReasonLearnerCaughtUp, id: 4}},

		// Never two learners, never two changes at once.
		{"two learners: wait, never a third", want(1, 2, 3, 4), observe(v(1), l(2), l(3)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonTooManyLearners}},
		{"pending learner blocks the next add", want(1, 2, 3), observe(v(1), l(2).unstarted()),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonWaitingForJoin, machine: "cp-2"}},
		{"pending learner blocks a scale-down removal", want(2), observe(v(1), v(3), l(2).behind(5000)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonLearnerCatchingUp}},
		{"pending learner blocks removing an unhealthy unwanted voter", want(1, 2, 4), observe(v(1), v(2), v(3).unhealthy("unreachable"), l(4).unstarted()),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonWaitingForJoin, machine: "cp-4"}},

		// Unhealthy members block adds.
		{"unhealthy voter blocks adds", want(1, 2, 3), observe(v(1), v(2).unhealthy("context deadline exceeded")),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonMemberUnhealthy,
				contains: []string{"cp-2 (2): context deadline exceeded", "1 of 2 voters unhealthy"}}},
		{"voter without an answer is unhealthy", want(1, 2, 3), observe(v(1), v(2), v(3).unstarted().named("cp-3")),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonMemberUnhealthy, contains: []string{"cp-3"}}},
		{"unstarted voter of a desired machine blocks adds", want(1, 2, 3), observe(v(1), v(2), v(3).unstarted()),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonMemberUnhealthy, contains: []string{"has not started"}}},

		// Scale down 3 → 1.
		{"3→1: remove a follower first", want(1), observe(v(1), v(2), v(3)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonScaleDown, id: 2, machine: "cp-2"}},
		{"3→1: the leader goes last", want(1), observeLeader(2, v(1), v(2), v(3)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonScaleDown, id: 3}},
		{"3→1: second removal", want(1), observe(v(1), v(3)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonScaleDown, id: 3}},
		{"3→1: second removal of the leader", want(1), observeLeader(3, v(1), v(3)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonScaleDown, id: 3}},
		{"3→1: done", want(1), observe(v(1)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.None, reason: etcdcluster.ReasonInSync}},
		{"3→1 with the remaining member's peer down: the dead one goes first", want(1), observe(v(1), v(2), v(3).unhealthy("connection refused")),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonMachineGone, id: 3,
				contains: []string{"connection refused", "2 healthy voter(s) of 2 remain"}}},

		// Quorum checks.
		{"3 voters, 1 unhealthy: removing a healthy one is refused", want(1, 3), observe(v(1), v(2), v(3).unhealthy("connection refused")),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonQuorumAtRisk,
				contains: []string{"removing cp-2 (2) would leave 1 healthy voter(s) of 2, fewer than the majority of 2"}}},
		{"quorum lost: nothing is removed", want(1), observe(v(1), v(2).unhealthy("unreachable"), v(3).unhealthy("unreachable")),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonQuorumAtRisk,
				contains: []string{"would leave 1 healthy voter(s) of 2"}}},
		{"5 voters, 1 down and desired: scale to 3 removes a healthy one (3 of 4 healthy)", want(1, 2, 3),
			observe(v(1), v(2), v(3).unhealthy("rebooting"), v(4), v(5)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonScaleDown, id: 4}},
		{"5 voters, 2 down and desired: scale to 3 refused", want(1, 2, 3),
			observe(v(1), v(2).unhealthy("rebooting"), v(3).unhealthy("rebooting"), v(4), v(5)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonQuorumAtRisk,
				contains: []string{"removing cp-4 (4) would leave 2 healthy voter(s) of 4"}}},
		{"the last voter is never removed", want(9), observe(v(1)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.AddLearner, reason: etcdcluster.ReasonScaleUp, machine: "cp-9"}},
		{"the last voter stays while its replacement is not ready", notReady(want(9), 9), observe(v(1)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonWaitingForReplacement, contains: []string{"keeping cp-1 (1)", "cp-9"}}},

		// Replacement with a spare host: cp-3 → cp-4.
		{"replace: new machine not ready, the old voter is kept", notReady(want(1, 2, 4), 4), observe(v(1), v(2), v(3)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonWaitingForReplacement,
				contains: []string{"keeping cp-3 (3) until machine(s) cp-4"}}},
		{"replace: add the replacement as a learner first", want(1, 2, 4), observe(v(1), v(2), v(3)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.AddLearner, reason: etcdcluster.ReasonScaleUp, machine: "cp-4"}},
		{"replace: learner pending, the old voter is kept", want(1, 2, 4), observe(v(1), v(2), v(3), l(4).behind(9000)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonLearnerCatchingUp}},
		{"replace: promote the replacement", want(1, 2, 4), observe(v(1), v(2), v(3), l(4)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Promote, reason: etcdcluster.ReasonLearnerCaughtUp, id: 4}},
		{"replace: only then remove the old voter", want(1, 2, 4), observe(v(1), v(2), v(3), v(4)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonScaleDown, id: 3}},
		{"replace the leader: only after the promotion, and last", want(1, 2, 4), observeLeader(3, v(1), v(2), v(3), v(4)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonScaleDown, id: 3}},
		{"replace a dead voter: it is removed first (nothing can be added while it is down)", want(1, 2, 4),
			observe(v(1), v(2), v(3).unhealthy("unreachable")),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonMachineGone, id: 3}},
		{"replace a dead voter whose replacement is not ready: keep it (a failed probe never removes early)", notReady(want(1, 2, 4), 4),
			observe(v(1), v(2), v(3).unhealthy("unreachable")),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonMemberUnhealthy, contains: []string{"cp-3 (3): unreachable"}}},
		{"replace a dead voter that is still desired: wait", want(1, 2, 3, 4),
			observe(v(1), v(2), v(3).unhealthy("unreachable")),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonMemberUnhealthy}},
		{"rolling replacement of all: one surplus voter is removed before the next add", want(4, 5, 6),
			observe(v(1), v(2), v(3), v(4)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonScaleDown, id: 2}},

		// Learners of machines that never joined.
		{"stale learner of a vanished machine is removed", want(1), observe(v(1), l(2).unstarted()),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonMachineGone, id: 2,
				contains: []string{"quorum is unaffected"}}},
		{"started learner of a vanished machine is removed", want(1, 3), observe(v(1), l(2)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonMachineGone, id: 2}},
		{"learner that never started within the timeout is removed", joining(want(1, 2), 2, t0.Add(-20*time.Minute)),
			observe(v(1), l(2).unstarted()),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonJoinTimeout, id: 2, machine: "cp-2"}},
		{"learner unhealthy past the timeout is removed", joining(want(1, 2), 2, t0.Add(-20*time.Minute)),
			observe(v(1), l(2).unhealthy("no leader")),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonJoinTimeout, id: 2}},
		{"learner within the timeout is waited for", joining(want(1, 2), 2, t0.Add(-5*time.Minute)),
			observe(v(1), l(2).unstarted()),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonWaitingForJoin}},
		{"policy join timeout applies", joining(want(1, 2), 2, t0.Add(-5*time.Minute)),
			observe(v(1), l(2).unstarted()),
			etcdcluster.Policy{JoinTimeout: time.Minute}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonJoinTimeout}},
		{"healthy learner still catching up past the timeout is kept", joining(want(1, 2), 2, t0.Add(-20*time.Minute)),
			observe(v(1), l(2).behind(50_000)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonLearnerCatchingUp}},
		{"unknown join time never times out", want(1, 2), observe(v(1), l(2).unstarted()),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonWaitingForJoin}},

		// Unknown members.
		{"unknown healthy voter is removed when surplus", want(1, 2, 3), observe(v(1), v(2), v(3), v(9)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonScaleDown, id: 9}},
		{"unknown unhealthy voter is removed", want(1, 2, 3), observe(v(1), v(2), v(3), v(9).unhealthy("unreachable")),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonMachineGone, id: 9}},
		{"unknown members go one at a time", want(1), observe(v(1), v(8), v(9)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonScaleDown, id: 8}},
		{"member at a desired peer URL under another name is removed first", append(want(1, 2), etcdcluster.DesiredMember{Name: "cp-3b", PeerURL: peerURL(3), Ready: true}),
			observe(v(1), v(2), v(3)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonPeerURLConflict, id: 3, contains: []string{"cp-3b"}}},
		{"learner started under another name than its machine is removed", want(1, 2), observe(v(1), l(2).named("intruder")),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Remove, reason: etcdcluster.ReasonMachineGone, id: 2}},

		// Machines that are not ready, invalid input.
		{"machine not ready: wait", notReady(want(1, 2), 2), observe(v(1)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonWaitingForMachine, contains: []string{"cp-2"}}},
		{"first ready machine in order is added", notReady(want(1, 2, 3), 2), observe(v(1)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.AddLearner, reason: etcdcluster.ReasonScaleUp, machine: "cp-3"}},
		{"no desired machine", nil, observe(v(1)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonInvalidDesired}},
		{"duplicate machine", append(want(1), want(1)...), observe(v(1)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonInvalidDesired, contains: []string{"listed twice"}}},
		{"duplicate peer URL", append(want(1), etcdcluster.DesiredMember{Name: "cp-x", PeerURL: peerURL(1)}), observe(v(1)),
			etcdcluster.Policy{}, expect{kind: etcdcluster.Wait, reason: etcdcluster.ReasonInvalidDesired}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check(t, tc.policy.Next(tc.desired, tc.obs), tc.want)
		})
	}
}

// TestNextIsPure checks that Next neither changes its inputs nor depends on the member order.
func TestNextIsPure(t *testing.T) {
	desired := want(1, 2, 4)
	obs := observeLeader(3, v(3), v(1), v(4), v(2))
	before := fmt.Sprint(desired, obs)
	a := etcdcluster.Next(desired, obs)
	if fmt.Sprint(desired, obs) != before {
		t.Fatal("Next changed its arguments")
	}
	slices.Reverse(obs.Members)
	if b := etcdcluster.Next(desired, obs); b.String() != a.String() || b.Message != a.Message {
		t.Fatalf("Next depends on the member order: %s then %s", a, b)
	}
	if a.Kind != etcdcluster.Remove || a.ID != 3 {
		t.Fatalf("Next = %s, want Remove cp-3", a)
	}
}
