package etcdcluster_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/basalt-dev/basalt/controllers/etcdcluster"
)

// model is a simulated etcd cluster that applies Next's actions and plays the agents: a machine
// starts its learner when Next waits for it to join, and a started learner catches up by the
// next observation.
type model struct {
	members []spec
	leader  uint64
	nextID  uint64
}

func (m *model) observe() etcdcluster.Observed { return observeLeader(m.leader, m.members...) }

func (m *model) voters() (all, healthy int) {
	for _, s := range m.members {
		if !s.IsLearner {
			all++
			if s.down == "" && !s.noReply {
				healthy++
			}
		}
	}
	return all, healthy
}

func (m *model) index(id uint64) int {
	return slices.IndexFunc(m.members, func(s spec) bool { return s.ID == id })
}

// run applies Next until None or a Wait the model cannot resolve, and returns the membership
// changes and that last action, checking after every step that
// quorum holds, that there is at most one learner, and that a healthy voter is never removed
// while fewer voters than desired machines would remain.
func (m *model) run(t *testing.T, desired []etcdcluster.DesiredMember) ([]string, etcdcluster.Action) {
	t.Helper()
	var changes []string
	for step := 0; step < 100; step++ {
		a := etcdcluster.Next(desired, m.observe())
		switch {
		case a.Kind == etcdcluster.None:
			return changes, a
		case a.Kind == etcdcluster.AddLearner:
			m.nextID++
			m.members = append(m.members, spec{Member: etcdcluster.Member{ID: m.nextID, PeerURLs: []string{a.PeerURL}, IsLearner: true}, noReply: true})
		case a.Kind == etcdcluster.Wait && a.Reason == etcdcluster.ReasonWaitingForJoin:
			i := m.index(a.ID)
			m.members[i].Name, m.members[i].ClientURLs, m.members[i].noReply, m.members[i].lag = a.Machine, []string{"https://" + a.Machine + ":2379"}, false, 50_000
		case a.Kind == etcdcluster.Wait && a.Reason == etcdcluster.ReasonLearnerCatchingUp:
			m.members[m.index(a.ID)].lag = 3
		case a.Kind == etcdcluster.Promote:
			m.members[m.index(a.ID)].IsLearner = false
		case a.Kind == etcdcluster.Remove:
			i := m.index(a.ID)
			removed := m.members[i]
			m.members = slices.Delete(m.members, i, i+1)
			all, _ := m.voters()
			if !removed.IsLearner && removed.down == "" && !removed.noReply && all < len(desired) {
				t.Fatalf("Step %d: %s removed a healthy voter, leaving %d voters for %d desired machines", step, a, all, len(desired))
			}
			if a.ID == m.leader {
				m.leader = 0 // the lowest-ID healthy voter takes over
			}
		default:
			return changes, a
		}
		if a.Changes() {
			changes = append(changes, fmt.Sprintf("%s %s", a.Kind, cmpOr(a.Machine, etcdcluster.HexID(a.ID))))
		}
		learners := 0
		for _, s := range m.members {
			if s.IsLearner {
				learners++
			}
		}
		if learners > 1 {
			t.Fatalf("Step %d: %s left %d learners", step, a, learners)
		}
		if all, healthy := m.voters(); healthy < all/2+1 {
			t.Fatalf("Step %d: %s left %d healthy voters of %d: quorum lost", step, a, healthy, all)
		}
	}
	t.Fatalf("No None after 100 steps; changes %v", changes)
	return nil, etcdcluster.Action{}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func newModel(leader uint64, ss ...spec) *model {
	m := &model{members: ss, leader: leader, nextID: 100}
	return m
}

// TestNextSequences drives whole membership changes through Next.
func TestNextSequences(t *testing.T) {
	for _, tc := range []struct {
		name    string
		start   *model
		desired []etcdcluster.DesiredMember
		want    []string
		final   string // reason of the last action; empty means InSync
	}{
		{"1→3", newModel(0, v(1)), want(1, 2, 3),
			[]string{"AddLearner cp-2", "Promote cp-2", "AddLearner cp-3", "Promote cp-3"}, ""},
		{"3→1", newModel(0, v(1), v(2), v(3)), want(1),
			[]string{"Remove cp-2", "Remove cp-3"}, ""},
		{"3→1 with the leader leaving", newModel(2, v(1), v(2), v(3)), want(1),
			[]string{"Remove cp-3", "Remove cp-2"}, ""},
		{"3→5", newModel(0, v(1), v(2), v(3)), want(1, 2, 3, 4, 5),
			[]string{"AddLearner cp-4", "Promote cp-4", "AddLearner cp-5", "Promote cp-5"}, ""},
		{"5→3 with a desired member down", newModel(0, v(1), v(2), v(3).unhealthy("rebooting"), v(4), v(5)), want(1, 2, 3),
			[]string{"Remove cp-4", "Remove cp-5"}, etcdcluster.ReasonMemberUnhealthy}, // 3 voters, 2 healthy: quorum holds
		{"5→1 with a desired member down stops where quorum would break", newModel(0, v(1), v(2).unhealthy("rebooting"), v(3), v(4), v(5)), want(1, 2),
			nil, ""}, // checked below
		{"replace cp-3 with cp-4", newModel(0, v(1), v(2), v(3)), want(1, 2, 4),
			[]string{"AddLearner cp-4", "Promote cp-4", "Remove cp-3"}, ""},
		{"replace every member, one at a time", newModel(0, v(1), v(2), v(3)), want(4, 5, 6),
			[]string{"AddLearner cp-4", "Promote cp-4", "Remove cp-2", "AddLearner cp-5", "Promote cp-5", "Remove cp-3",
				"AddLearner cp-6", "Promote cp-6", "Remove cp-1"}, ""},
		{"replace a dead member", newModel(0, v(1), v(2), v(3).unhealthy("disk failed")), want(1, 2, 4),
			[]string{"Remove cp-3", "AddLearner cp-4", "Promote cp-4"}, ""},
		{"clean up a stale learner, then scale up", newModel(0, v(1), l(7).unstarted()), want(1, 2),
			[]string{"Remove 7", "AddLearner cp-2", "Promote cp-2"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == nil {
				// 5 voters (4 healthy) → 4 (3) → 3 (2); removing a third would leave 1 healthy of 2.
				for _, id := range []uint64{3, 4, 5} {
					a := etcdcluster.Next(tc.desired, tc.start.observe())
					if id == 5 {
						if a.Kind != etcdcluster.Wait || a.Reason != etcdcluster.ReasonQuorumAtRisk {
							t.Fatalf("Third step %s (%s), want Wait QuorumAtRisk", a, a.Message)
						}
						t.Logf("Refused: %s", a.Message)
						return
					}
					if a.Kind != etcdcluster.Remove || a.ID != id {
						t.Fatalf("Step %s, want Remove cp-%d", a, id)
					}
					tc.start.members = slices.DeleteFunc(tc.start.members, func(s spec) bool { return s.ID == id })
				}
			}
			got, last := tc.start.run(t, tc.desired)
			if !slices.Equal(got, tc.want) {
				t.Errorf("Changes\n  %v\nwant\n  %v", got, tc.want)
			}
			if want := cmpOr(tc.final, etcdcluster.ReasonInSync); last.Reason != want {
				t.Errorf("Ended with %s (%s), want reason %s", last, last.Message, want)
			}
		})
	}
}
