package etcdcluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/basalt-dev/basalt/bootstrap/components"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
)

// fakeEtcd is an in-process etcd membership with inspectable state. It keeps etcd's own rules
// that matter here: at most one learner, unique peer URLs, promotion only of learners, and only
// the leader can hand leadership over.
type fakeEtcd struct {
	mu      sync.Mutex
	members []etcdcluster.Member
	leader  uint64
	nextID  uint64
	down    map[uint64]bool   // members whose endpoint does not answer
	lag     map[uint64]uint64 // learners' applied-index lag
	// answerAs makes a member's endpoint answer as another member.
	answerAs map[uint64]uint64
	// loseAddAnswer commits the next AddLearner but returns an error, as when the connection
	// drops or the caller crashes before reading the answer.
	loseAddAnswer bool
	// loseRemoveAnswer commits the next Remove but returns an error ("server stopped").
	loseRemoveAnswer bool
	// promoteErr and removeErr, when set, are returned (after nothing changed).
	promoteErr, removeErr error
	// removedWhileLeader records members removed while they led.
	removedWhileLeader []uint64
}

func newFake(ns ...int) *fakeEtcd {
	f := &fakeEtcd{nextID: 100, down: map[uint64]bool{}, lag: map[uint64]uint64{}, answerAs: map[uint64]uint64{}}
	for _, n := range ns {
		f.members = append(f.members, v(n).Member)
	}
	f.leader = f.members[0].ID
	return f
}

func (f *fakeEtcd) index(id uint64) int {
	return slices.IndexFunc(f.members, func(m etcdcluster.Member) bool { return m.ID == id })
}

func (f *fakeEtcd) snapshot() []etcdcluster.Member {
	out := make([]etcdcluster.Member, len(f.members))
	for i, m := range f.members {
		m.PeerURLs, m.ClientURLs = slices.Clone(m.PeerURLs), slices.Clone(m.ClientURLs)
		out[i] = m
	}
	return out
}

func (f *fakeEtcd) Members(context.Context) ([]etcdcluster.Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snapshot(), nil
}

func (f *fakeEtcd) AddLearner(_ context.Context, peerURL string) (etcdcluster.Member, []etcdcluster.Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.members {
		if m.IsLearner {
			return etcdcluster.Member{}, nil, etcdcluster.ErrTooManyLearners
		}
		if slices.Contains(m.PeerURLs, peerURL) {
			return etcdcluster.Member{}, nil, etcdcluster.ErrPeerURLExists
		}
	}
	f.nextID++
	m := etcdcluster.Member{ID: f.nextID, PeerURLs: []string{peerURL}, IsLearner: true}
	f.members = append(f.members, m)
	if f.loseAddAnswer {
		f.loseAddAnswer = false
		return etcdcluster.Member{}, nil, context.DeadlineExceeded
	}
	return m, f.snapshot(), nil
}

// start plays the joining machine's agent: the learner publishes its name and client URL.
func (f *fakeEtcd) start(id uint64, machine string, lag uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.index(id)
	f.members[i].Name = machine
	f.members[i].ClientURLs = []string{"https://" + machine + ":2379"}
	f.lag[id] = lag
}

func (f *fakeEtcd) Promote(_ context.Context, id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.promoteErr != nil {
		return f.promoteErr
	}
	i := f.index(id)
	switch {
	case i < 0:
		return etcdcluster.ErrMemberNotFound
	case !f.members[i].IsLearner:
		return etcdcluster.ErrNotLearner
	case f.lag[id] > 100:
		return etcdcluster.ErrLearnerNotReady
	}
	f.members[i].IsLearner = false
	return nil
}

func (f *fakeEtcd) Remove(_ context.Context, id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removeErr != nil {
		return f.removeErr
	}
	i := f.index(id)
	if i < 0 {
		return etcdcluster.ErrMemberNotFound
	}
	f.members = slices.Delete(f.members, i, i+1)
	if id == f.leader {
		f.removedWhileLeader = append(f.removedWhileLeader, id)
		f.leader = f.members[0].ID
	}
	if f.loseRemoveAnswer {
		f.loseRemoveAnswer = false
		return errors.New("etcdserver: server stopped")
	}
	return nil
}

func (f *fakeEtcd) MoveLeader(_ context.Context, to uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i := f.index(to); i < 0 || f.members[i].IsLearner {
		return fmt.Errorf("bad transferee %x", to)
	}
	f.leader = to
	return nil
}

func (f *fakeEtcd) Health(_ context.Context, endpoint string) (etcdcluster.Health, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.members {
		if !slices.Contains(m.ClientURLs, endpoint) {
			continue
		}
		if f.down[m.ID] {
			return etcdcluster.Health{}, fmt.Errorf("dial %s: connection refused", endpoint)
		}
		id := m.ID
		if other, ok := f.answerAs[id]; ok {
			id = other
		}
		return etcdcluster.Health{Healthy: true, MemberID: id, Leader: f.leader, RaftTerm: 2,
			RaftIndex: leaderIndex, RaftAppliedIndex: leaderIndex - f.lag[m.ID], IsLearner: m.IsLearner}, nil
	}
	return etcdcluster.Health{}, fmt.Errorf("dial %s: no such host", endpoint)
}

func (f *fakeEtcd) Close() error { return nil }

// failingMembers is a cluster whose member list cannot be read.
type failingMembers struct{ *fakeEtcd }

func (failingMembers) Members(context.Context) ([]etcdcluster.Member, error) {
	return nil, errors.New("context deadline exceeded (no quorum)")
}

func (f *fakeEtcd) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, m := range f.members {
		s := cmpOr(m.Name, etcdcluster.HexID(m.ID))
		if m.IsLearner {
			s += "(learner)"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// converge calls Reconcile until None, starting learners and letting them catch up as the agents
// would, and returns the membership changes.
func converge(t *testing.T, f *fakeEtcd, desired []etcdcluster.DesiredMember) []string {
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
			f.start(a.ID, a.Machine, 5000)
		case a.Kind == etcdcluster.Wait && a.Reason == etcdcluster.ReasonLearnerCatchingUp:
			f.lag[a.ID] = 0
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
	f := newFake(1)
	if got, want := converge(t, f, want(1, 2, 3)), []string{"AddLearner cp-2", "Promote cp-2", "AddLearner cp-3", "Promote cp-3"}; !slices.Equal(got, want) {
		t.Errorf("1→3: %v, want %v", got, want)
	}
	if got, want := f.names(), []string{"cp-1", "cp-2", "cp-3"}; !slices.Equal(got, want) {
		t.Errorf("Members %v, want %v", got, want)
	}
	if err := f.MoveLeader(context.Background(), 102); err != nil { // cp-3 leads
		t.Fatal(err)
	}
	if got, want := converge(t, f, want(1)), []string{"Remove cp-2", "Remove cp-3"}; !slices.Equal(got, want) {
		t.Errorf("3→1: %v, want %v", got, want)
	}
	if len(f.removedWhileLeader) > 0 {
		t.Errorf("Members %v were removed while leading: leadership must move first", f.removedWhileLeader)
	}
	if f.leader != 1 {
		t.Errorf("Leader %x, want cp-1", f.leader)
	}
}

// TestReconcileAfterLostAdd: the learner was added but the answer was lost. Reconcile finds the
// committed learner by reading the member list again; and a controller that crashed before
// recording the answer finds it on the next call, which adds no other learner and gives the
// member list the joining machine starts with.
func TestReconcileAfterLostAdd(t *testing.T) {
	f := newFake(1)
	f.loseAddAnswer = true
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
	if got, want := f.names(), []string{"65(learner)", "cp-1"}; !slices.Equal(got, want) {
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
	f := newFake(1, 2)
	f.loseRemoveAnswer = true
	a, err := etcdcluster.Reconcile(context.Background(), f, want(1))
	if err != nil || a.Kind != etcdcluster.Remove || a.ID != 2 {
		t.Fatalf("%s, %v; want Remove cp-2 done", a, err)
	}
	if got := f.names(); !slices.Equal(got, []string{"cp-1"}) {
		t.Fatalf("Members %v", got)
	}
}

func TestReconcileActionMembers(t *testing.T) {
	f := newFake(1)
	a, err := etcdcluster.Reconcile(context.Background(), f, want(1, 2))
	if err != nil || a.Kind != etcdcluster.AddLearner || a.ID != 101 {
		t.Fatalf("%s, %v", a, err)
	}
	wantMembers := []etcdcluster.Member{v(1).Member, {ID: 101, PeerURLs: []string{peerURL(2)}, IsLearner: true}}
	if diff := cmp.Diff(wantMembers, a.Members); diff != "" {
		t.Errorf("AddLearner's Members (-want +got):\n%s", diff)
	}
	f.start(101, "cp-2", 0)
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
		f := newFake(1)
		f.members = append(f.members, l(2).Member)
		f.promoteErr = fmt.Errorf("promote member 2: %w", etcdcluster.ErrLearnerNotReady)
		a, err := etcdcluster.Reconcile(context.Background(), f, want(1, 2))
		if !errors.Is(err, etcdcluster.ErrLearnerNotReady) || a.Kind != etcdcluster.Promote {
			t.Fatalf("%s, %v; want the Promote and ErrLearnerNotReady", a, err)
		}
		if !f.members[1].IsLearner {
			t.Error("Learner promoted")
		}
	})
	t.Run("promotion already done counts as done", func(t *testing.T) {
		f := newFake(1)
		f.members = append(f.members, l(2).Member)
		f.promoteErr = etcdcluster.ErrNotLearner
		if a, err := etcdcluster.Reconcile(context.Background(), f, want(1, 2)); err != nil || a.Kind != etcdcluster.Promote {
			t.Fatalf("%s, %v", a, err)
		}
	})
	t.Run("removal already done counts as done", func(t *testing.T) {
		f := newFake(1, 2)
		f.removeErr = fmt.Errorf("remove member 2: %w", etcdcluster.ErrMemberNotFound)
		if a, err := etcdcluster.Reconcile(context.Background(), f, want(1)); err != nil || a.Kind != etcdcluster.Remove {
			t.Fatalf("%s, %v", a, err)
		}
	})
	t.Run("etcd's quorum check refusing a removal is returned", func(t *testing.T) {
		f := newFake(1, 2)
		f.removeErr = etcdcluster.ErrUnhealthy
		if a, err := etcdcluster.Reconcile(context.Background(), f, want(1)); !errors.Is(err, etcdcluster.ErrUnhealthy) || a.Kind != etcdcluster.Remove {
			t.Fatalf("%s, %v", a, err)
		}
	})
}

func TestReconcileObservesHealth(t *testing.T) {
	t.Run("unreachable member is unhealthy and blocks adds", func(t *testing.T) {
		f := newFake(1, 2)
		f.down[2] = true
		a, err := etcdcluster.Reconcile(context.Background(), f, want(1, 2, 3))
		if err != nil || a.Kind != etcdcluster.Wait || a.Reason != etcdcluster.ReasonMemberUnhealthy || !strings.Contains(a.Message, "connection refused") {
			t.Fatalf("%s (%s), %v", a, a.Message, err)
		}
	})
	t.Run("unreadable member list is a Wait with the error", func(t *testing.T) {
		a, err := etcdcluster.Reconcile(context.Background(), failingMembers{newFake(1)}, want(1))
		if err == nil || a.Kind != etcdcluster.Wait || a.Reason != etcdcluster.ReasonEtcdUnavailable || !strings.Contains(a.Message, "no quorum") {
			t.Fatalf("%s (%s), %v", a, a.Message, err)
		}
	})
	t.Run("endpoint answering as another member is unhealthy", func(t *testing.T) {
		f := newFake(1, 2)
		f.answerAs[2] = 1
		a, err := etcdcluster.Reconcile(context.Background(), f, want(1, 2, 3))
		if err != nil || a.Reason != etcdcluster.ReasonMemberUnhealthy || !strings.Contains(a.Message, "answered as member 1") {
			t.Fatalf("%s (%s), %v", a, a.Message, err)
		}
	})
	t.Run("killed member of three: removing a healthy one is refused", func(t *testing.T) {
		f := newFake(1, 2, 3)
		f.down[3] = true
		a, err := etcdcluster.Reconcile(context.Background(), f, want(1, 3))
		if err != nil || a.Kind != etcdcluster.Wait || a.Reason != etcdcluster.ReasonQuorumAtRisk {
			t.Fatalf("%s (%s), %v", a, a.Message, err)
		}
		if got := f.names(); len(got) != 3 {
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
