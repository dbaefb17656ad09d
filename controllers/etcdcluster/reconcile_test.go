package etcdcluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/basalt-dev/basalt/bootstrap/components"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
	"github.com/basalt-dev/basalt/controllers/etcdcluster/etcdfake"
)

// newFake returns a running cluster with the members given (the first leads) that numbers the
// members it adds from 101.
func newFake(members ...spec) *etcdfake.Cluster {
	var ms []etcdcluster.Member
	for _, s := range members {
		ms = append(ms, s.Member)
	}
	f := etcdfake.New(ms...)
	f.IDBase = 100
	return f
}

// failingMembers is a cluster whose member list cannot be read.
type failingMembers struct{ *etcdfake.Cluster }

func (failingMembers) Members(context.Context) ([]etcdcluster.Member, error) {
	return nil, errors.New("context deadline exceeded (no quorum)")
}

// start plays the agent of machine: etcd starts there and its learner publishes its name and
// client URL, lag entries behind the leader.
func start(t *testing.T, f *etcdfake.Cluster, machine, peerURL string, lag uint64) {
	t.Helper()
	m, err := f.Start(machine, peerURL, "https://"+machine+":2379")
	if err != nil {
		t.Fatal(err)
	}
	f.SetLag(m.ID, lag)
}

// converge calls Reconcile until None, starting learners and letting them catch up as the agents
// would, and returns the membership changes.
func converge(t *testing.T, f *etcdfake.Cluster, desired []etcdcluster.DesiredMember) []string {
	t.Helper()
	var changes []string
	for range 50 {
		a, err := etcdcluster.Reconcile(context.Background(), f, desired)
		switch {
		case errors.Is(err, etcdcluster.ErrLearnerNotReady):
			continue
		case err != nil:
			t.Fatalf("Reconcile: %s: %v", a, err)
		case a.Kind == etcdcluster.None:
			return changes
		case a.Kind == etcdcluster.Wait && a.Reason == etcdcluster.ReasonWaitingForJoin:
			start(t, f, a.Machine, a.PeerURL, 5000)
		case a.Kind == etcdcluster.Wait && a.Reason == etcdcluster.ReasonLearnerCatchingUp:
			f.SetLag(a.ID, 0)
		case a.Kind == etcdcluster.Wait:
			t.Fatalf("Unexpected %s: %s", a, a.Message)
		default:
			changes = append(changes, fmt.Sprintf("%s %s", a.Kind, a.Machine))
		}
	}
	t.Fatalf("No None after 50 calls: %v", changes)
	return nil
}

func TestReconcileScaleUpAndDown(t *testing.T) {
	f := newFake(v(1))
	if got, want := converge(t, f, want(1, 2, 3)), []string{"AddLearner cp-2", "Promote cp-2", "AddLearner cp-3", "Promote cp-3"}; !slices.Equal(got, want) {
		t.Errorf("1→3: %v, want %v", got, want)
	}
	if got, want := f.Names(), []string{"cp-1", "cp-2", "cp-3"}; !slices.Equal(got, want) {
		t.Errorf("Members %v, want %v", got, want)
	}
	if err := f.MoveLeader(context.Background(), 102); err != nil { // cp-3 leads
		t.Fatal(err)
	}
	if got, want := converge(t, f, want(1)), []string{"Remove cp-2", "Remove cp-3"}; !slices.Equal(got, want) {
		t.Errorf("3→1: %v, want %v", got, want)
	}
	if removed := f.RemovedWhileLeading(); len(removed) > 0 {
		t.Errorf("Members %v were removed while leading: leadership must move first", removed)
	}
	if leader := f.Leader(); leader != 1 {
		t.Errorf("Leader %x, want cp-1", leader)
	}
}

// TestReconcileAfterLostAdd: the learner was added but the answer was lost. Reconcile finds the
// committed learner by reading the member list again; and a controller that crashed before
// recording the answer finds it on the next call, which adds no other learner and gives the
// member list the joining machine starts with.
func TestReconcileAfterLostAdd(t *testing.T) {
	f := newFake(v(1))
	f.LoseNextAddAnswer()
	desired := want(1, 2, 3)
	a, err := etcdcluster.Reconcile(context.Background(), f, desired)
	if err != nil || a.Kind != etcdcluster.AddLearner || a.Machine != "cp-2" || a.ID != 101 || len(a.Members) != 2 {
		t.Fatalf("First call: %s, %v, %v; want AddLearner cp-2 (65) recovered from the member list", a, err, a.Members)
	}
	// The controller crashes here and never records a.
	for range 3 {
		a, err = etcdcluster.Reconcile(context.Background(), f, desired)
		if err != nil || a.Kind != etcdcluster.Wait || a.Reason != etcdcluster.ReasonWaitingForJoin || a.Machine != "cp-2" || a.ID != 101 {
			t.Fatalf("After the crash: %s (%v), want Wait WaitingForJoin for cp-2 (65)", a, err)
		}
	}
	if got, want := f.Names(), []string{"65(learner)", "cp-1"}; !slices.Equal(got, want) {
		t.Fatalf("Members %v, want %v", got, want)
	}
	initial, err := etcdcluster.InitialCluster(a.Members, desired[1])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]components.EtcdMember{{Name: "cp-1", PeerURL: peerURL(1)}, {Name: "cp-2", PeerURL: peerURL(2)}}, initial); diff != "" {
		t.Errorf("InitialCluster (-want +got):\n%s", diff)
	}
}

// TestReconcileLostRemoveAnswer: the member taking the removal was the one removed and stopped
// before answering; the change was committed, so Reconcile reports it done.
func TestReconcileLostRemoveAnswer(t *testing.T) {
	f := newFake(v(1), v(2))
	f.LoseNextRemoveAnswer()
	a, err := etcdcluster.Reconcile(context.Background(), f, want(1))
	if err != nil || a.Kind != etcdcluster.Remove || a.ID != 2 {
		t.Fatalf("%s, %v; want Remove cp-2 done", a, err)
	}
	if got := f.Names(); !slices.Equal(got, []string{"cp-1"}) {
		t.Fatalf("Members %v", got)
	}
}

func TestReconcileActionMembers(t *testing.T) {
	f := newFake(v(1))
	a, err := etcdcluster.Reconcile(context.Background(), f, want(1, 2))
	if err != nil || a.Kind != etcdcluster.AddLearner || a.ID != 101 {
		t.Fatalf("%s, %v", a, err)
	}
	wantMembers := []etcdcluster.Member{v(1).Member, {ID: 101, PeerURLs: []string{peerURL(2)}, IsLearner: true}}
	if diff := cmp.Diff(wantMembers, a.Members); diff != "" {
		t.Errorf("AddLearner's Members (-want +got):\n%s", diff)
	}
	start(t, f, "cp-2", peerURL(2), 0)
	a, err = etcdcluster.Reconcile(context.Background(), f, want(1, 2))
	if err != nil || a.Kind != etcdcluster.Promote || a.Members[1].IsLearner {
		t.Fatalf("%s, %v, %+v", a, err, a.Members)
	}
	a, err = etcdcluster.Reconcile(context.Background(), f, want(1))
	if err != nil || a.Kind != etcdcluster.Remove || len(a.Members) != 1 || a.Members[0].ID != 1 {
		t.Fatalf("%s, %v, %+v", a, err, a.Members)
	}
}

func TestReconcileEtcdRefusals(t *testing.T) {
	t.Run("learner not ready is returned for a requeue", func(t *testing.T) {
		f := newFake(v(1), l(2))
		f.FailPromote(fmt.Errorf("promote member 2: %w", etcdcluster.ErrLearnerNotReady))
		a, err := etcdcluster.Reconcile(context.Background(), f, want(1, 2))
		if !errors.Is(err, etcdcluster.ErrLearnerNotReady) || a.Kind != etcdcluster.Promote {
			t.Fatalf("%s, %v; want the Promote and ErrLearnerNotReady", a, err)
		}
		if m, _ := f.Member("cp-2"); !m.IsLearner {
			t.Error("Learner promoted")
		}
	})
	t.Run("promotion already done counts as done", func(t *testing.T) {
		f := newFake(v(1), l(2))
		f.FailPromote(etcdcluster.ErrNotLearner)
		if a, err := etcdcluster.Reconcile(context.Background(), f, want(1, 2)); err != nil || a.Kind != etcdcluster.Promote {
			t.Fatalf("%s, %v", a, err)
		}
	})
	t.Run("removal already done counts as done", func(t *testing.T) {
		f := newFake(v(1), v(2))
		f.FailRemove(fmt.Errorf("remove member 2: %w", etcdcluster.ErrMemberNotFound))
		if a, err := etcdcluster.Reconcile(context.Background(), f, want(1)); err != nil || a.Kind != etcdcluster.Remove {
			t.Fatalf("%s, %v", a, err)
		}
	})
	t.Run("etcd's quorum check refusing a removal is returned", func(t *testing.T) {
		f := newFake(v(1), v(2))
		f.FailRemove(etcdcluster.ErrUnhealthy)
		if a, err := etcdcluster.Reconcile(context.Background(), f, want(1)); !errors.Is(err, etcdcluster.ErrUnhealthy) || a.Kind != etcdcluster.Remove {
			t.Fatalf("%s, %v", a, err)
		}
	})
}

func TestReconcileObservesHealth(t *testing.T) {
	t.Run("unreachable member is unhealthy and blocks adds", func(t *testing.T) {
		f := newFake(v(1), v(2))
		f.SetDown(2, true)
		a, err := etcdcluster.Reconcile(context.Background(), f, want(1, 2, 3))
		if err != nil || a.Kind != etcdcluster.Wait || a.Reason != etcdcluster.ReasonMemberUnhealthy || !strings.Contains(a.Message, "connection refused") {
			t.Fatalf("%s (%s), %v", a, a.Message, err)
		}
	})
	t.Run("unreadable member list is a Wait with the error", func(t *testing.T) {
		a, err := etcdcluster.Reconcile(context.Background(), failingMembers{newFake(v(1))}, want(1))
		if err == nil || a.Kind != etcdcluster.Wait || a.Reason != etcdcluster.ReasonEtcdUnavailable || !strings.Contains(a.Message, "no quorum") {
			t.Fatalf("%s (%s), %v", a, a.Message, err)
		}
	})
	t.Run("endpoint answering as another member is unhealthy", func(t *testing.T) {
		f := newFake(v(1), v(2))
		f.AnswerAs(2, 1)
		a, err := etcdcluster.Reconcile(context.Background(), f, want(1, 2, 3))
		if err != nil || a.Reason != etcdcluster.ReasonMemberUnhealthy || !strings.Contains(a.Message, "answered as member 1") {
			t.Fatalf("%s (%s), %v", a, a.Message, err)
		}
	})
	t.Run("killed member of three: removing a healthy one is refused", func(t *testing.T) {
		f := newFake(v(1), v(2), v(3))
		f.SetDown(3, true)
		a, err := etcdcluster.Reconcile(context.Background(), f, want(1, 3))
		if err != nil || a.Kind != etcdcluster.Wait || a.Reason != etcdcluster.ReasonQuorumAtRisk {
			t.Fatalf("%s (%s), %v", a, a.Message, err)
		}
		if got := f.Names(); len(got) != 3 {
			t.Errorf("Members %v, want all three", got)
		}
	})
}

func TestInitialCluster(t *testing.T) {
	self := etcdcluster.DesiredMember{Name: "cp-3", PeerURL: peerURL(3)}
	unstarted := l(3).unstarted().Member
	for _, tc := range []struct {
		name    string
		members []etcdcluster.Member
		want    []components.EtcdMember
		err     string
	}{
		{"learner not started yet", []etcdcluster.Member{v(1).Member, v(2).Member, unstarted},
			[]components.EtcdMember{{Name: "cp-1", PeerURL: peerURL(1)}, {Name: "cp-2", PeerURL: peerURL(2)}, {Name: "cp-3", PeerURL: peerURL(3)}}, ""},
		{"learner started (restart after a crash)", []etcdcluster.Member{v(1).Member, l(3).Member},
			[]components.EtcdMember{{Name: "cp-1", PeerURL: peerURL(1)}, {Name: "cp-3", PeerURL: peerURL(3)}}, ""},
		{"not added yet", []etcdcluster.Member{v(1).Member}, nil, "is not a member"},
		{"peer URL held by another machine's member", []etcdcluster.Member{v(1).Member, v(3).named("old").Member}, nil, "belongs to member old"},
		{"another member never started", []etcdcluster.Member{v(1).Member, l(2).unstarted().Member, unstarted}, nil, "has not started"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := etcdcluster.InitialCluster(tc.members, self)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
