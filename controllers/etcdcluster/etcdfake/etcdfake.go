// Package etcdfake is an in-process etcd membership with inspectable state for tests: Cluster
// implements etcdcluster.Client and keeps the rules of etcd that the membership controller meets
// (at most one learner, unique peer URLs, only a started learner in sync with the leader can be
// promoted, leadership moves only to a voter, nothing answers while there is no member), and has
// knobs to make members unreachable, refuse changes or lose answers.
//
// It imports nothing from the controllers but etcdcluster: peer and client URLs are plain
// strings.
package etcdfake

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/basalt-dev/basalt/controllers/etcdcluster"
)

const (
	// DefaultIDBase is the IDBase of a Cluster whose IDBase is zero.
	DefaultIDBase = 0x1000
	// CommitIndex is the raft commit index every member reports; a member's applied index is
	// CommitIndex minus its lag (see SetLag).
	CommitIndex = 100_000
	// MaxPromoteLag is the largest lag at which a learner can be promoted: further behind, Promote
	// fails with etcdcluster.ErrLearnerNotReady, as etcd refuses a learner not in sync yet.
	MaxPromoteLag = 100
)

// Cluster is an etcd cluster's membership. The zero value is a cluster with no member yet, which
// does not answer until Start initialises it; New returns one already running. All methods may
// be called concurrently.
type Cluster struct {
	// IDBase numbers the members the cluster creates (by Start or AddLearner): IDBase+1,
	// IDBase+2, ... Zero means DefaultIDBase. Set it before the first call.
	IDBase uint64

	mu      sync.Mutex
	members []etcdcluster.Member
	leader  uint64
	created uint64            // members created so far
	down    map[uint64]bool   // members whose endpoint does not answer
	lag     map[uint64]uint64 // how far members' applied index trails the commit index
	// answerAs makes a member's endpoint answer as another member.
	answerAs            map[uint64]uint64
	loseAdd, loseRemove bool
	promoteErr          error
	removeErr           error
	holdPromotions      bool
	history             []string
	removedWhileLeading []uint64
	// noSpace is the NOSPACE alarm; dbSize and inUse are members' database sizes (bytes).
	noSpace       bool
	dbSize, inUse map[uint64]int64
	compactedTo   int64
	pendingInUse  int64
}

// New returns a running cluster with members (copied); the first started voter leads.
func New(members ...etcdcluster.Member) *Cluster {
	c := &Cluster{}
	for _, m := range members {
		c.members = append(c.members, clone(m))
	}
	c.elect()
	return c
}

// Connect returns c, whatever the configuration: it has the signature of the Cluster
// controller's EtcdClient.
func (c *Cluster) Connect(etcdcluster.Config) (etcdcluster.Client, error) { return c, nil }

// Start is etcd starting on machine name with the given peer and client URL. On a cluster with no
// member it initialises the cluster with this one member, which leads. Otherwise the peer URL
// must be a member's, added as etcd requires (else etcd would exit: Start returns an error
// wrapping etcdcluster.ErrMemberNotFound and changes nothing); an unstarted member publishes its
// name and client URL, and a started one (a restart) is left as it is. It returns the member.
func (c *Cluster) Start(name, peerURL, clientURL string) (etcdcluster.Member, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.members) == 0 {
		m := etcdcluster.Member{ID: c.newID(), Name: name, PeerURLs: []string{peerURL}, ClientURLs: []string{clientURL}}
		c.members = append(c.members, m)
		c.leader = m.ID
		c.history = append(c.history, "Initialise "+name)
		return clone(m), nil
	}
	i := slices.IndexFunc(c.members, func(m etcdcluster.Member) bool { return slices.Contains(m.PeerURLs, peerURL) })
	switch {
	case i < 0:
		return etcdcluster.Member{}, fmt.Errorf("etcd %s at %s: %w", name, peerURL, etcdcluster.ErrMemberNotFound)
	case !c.members[i].Started():
		c.members[i].Name, c.members[i].ClientURLs = name, []string{clientURL}
	case c.members[i].Name != name:
		return etcdcluster.Member{}, fmt.Errorf("etcd %s at %s: the peer URL is member %s's", name, peerURL, c.members[i].Name)
	}
	if c.leader == 0 {
		c.elect()
	}
	return clone(c.members[i]), nil
}

// SetLag sets how many raft entries member id's applied index trails the commit index (0 when
// never set): Health reports it, and a learner more than MaxPromoteLag behind is not promoted.
func (c *Cluster) SetLag(id, lag uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lag == nil {
		c.lag = map[uint64]uint64{}
	}
	c.lag[id] = lag
}

// SetDown makes the endpoint of member id refuse connections (true) or answer again (false).
func (c *Cluster) SetDown(id uint64, down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down == nil {
		c.down = map[uint64]bool{}
	}
	c.down[id] = down
}

// AnswerAs makes the endpoint of member id answer Health as member other (as when a client URL
// reaches the wrong etcd).
func (c *Cluster) AnswerAs(id, other uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.answerAs == nil {
		c.answerAs = map[uint64]uint64{}
	}
	c.answerAs[id] = other
}

// LoseNextAddAnswer makes the next AddLearner commit the learner but return an error
// (context.DeadlineExceeded), as when the connection drops or the caller crashes before reading
// the answer.
func (c *Cluster) LoseNextAddAnswer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.loseAdd = true
}

// LoseNextRemoveAnswer makes the next Remove commit the removal but return an error ("server
// stopped"), as when the member taking the request is the one removed.
func (c *Cluster) LoseNextRemoveAnswer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.loseRemove = true
}

// FailPromote makes every Promote return err and change nothing; nil lets promotions through
// again.
func (c *Cluster) FailPromote(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.promoteErr = err
}

// FailRemove makes every Remove return err and change nothing; nil lets removals through again.
func (c *Cluster) FailRemove(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeErr = err
}

// HoldPromotions makes etcd refuse (true) or allow (false) promotions, as it refuses a learner
// not in sync yet (etcdcluster.ErrLearnerNotReady).
func (c *Cluster) HoldPromotions(hold bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holdPromotions = hold
}

// Leader returns the ID of the leader (0: none).
func (c *Cluster) Leader() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

// RemovedWhileLeading returns the members removed while they led, which a controller avoids by
// moving the leadership first.
func (c *Cluster) RemovedWhileLeading() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.removedWhileLeading)
}

// History returns the membership changes made, in order: "Initialise <name>", "AddLearner
// <peer URL>", "Promote <member>", "Remove <member>", a member being named by its name, or by its
// hex ID before it started.
func (c *Cluster) History() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.history)
}

// Member returns the started member called name.
func (c *Cluster) Member(name string) (etcdcluster.Member, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		if m.Name == name {
			return clone(m), true
		}
	}
	return etcdcluster.Member{}, false
}

// Names returns the members sorted, each by its name (its hex ID before it started), learners
// with the suffix "(learner)".
func (c *Cluster) Names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.members {
		s := label(m)
		if m.IsLearner {
			s += "(learner)"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Members lists the members; it fails while the cluster has no member (nothing to dial).
func (c *Cluster) Members(context.Context) ([]etcdcluster.Member, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.reachable(); err != nil {
		return nil, err
	}
	return c.snapshot(), nil
}

// AddLearner adds a learner with peerURL, refused while another learner is pending
// (etcdcluster.ErrTooManyLearners) or when a member has the peer URL
// (etcdcluster.ErrPeerURLExists). See LoseNextAddAnswer.
func (c *Cluster) AddLearner(_ context.Context, peerURL string) (etcdcluster.Member, []etcdcluster.Member, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.reachable(); err != nil {
		return etcdcluster.Member{}, nil, err
	}
	for _, m := range c.members {
		if m.IsLearner {
			return etcdcluster.Member{}, nil, fmt.Errorf("add learner %s: %w", peerURL, etcdcluster.ErrTooManyLearners)
		}
		if slices.Contains(m.PeerURLs, peerURL) {
			return etcdcluster.Member{}, nil, fmt.Errorf("add learner %s: %w", peerURL, etcdcluster.ErrPeerURLExists)
		}
	}
	m := etcdcluster.Member{ID: c.newID(), PeerURLs: []string{peerURL}, IsLearner: true}
	c.members = append(c.members, m)
	c.history = append(c.history, "AddLearner "+peerURL)
	if c.loseAdd {
		c.loseAdd = false
		return etcdcluster.Member{}, nil, context.DeadlineExceeded
	}
	return clone(m), c.snapshot(), nil
}

// Promote makes a learner a voter. It is refused for a learner that has not started, trails by
// more than MaxPromoteLag or while promotions are held (etcdcluster.ErrLearnerNotReady), for a
// voter (etcdcluster.ErrNotLearner) and for an unknown ID (etcdcluster.ErrMemberNotFound). See
// FailPromote.
func (c *Cluster) Promote(_ context.Context, id uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.promoteErr != nil {
		return c.promoteErr
	}
	if err := c.reachable(); err != nil {
		return err
	}
	i := c.index(id)
	switch {
	case i < 0:
		return memberErr("promote", id, etcdcluster.ErrMemberNotFound)
	case !c.members[i].IsLearner:
		return memberErr("promote", id, etcdcluster.ErrNotLearner)
	case !c.members[i].Started() || c.lag[id] > MaxPromoteLag || c.holdPromotions:
		return memberErr("promote", id, etcdcluster.ErrLearnerNotReady)
	}
	c.members[i].IsLearner = false
	c.history = append(c.history, "Promote "+label(c.members[i]))
	if c.leader == 0 {
		c.elect()
	}
	return nil
}

// Remove removes a member (etcdcluster.ErrMemberNotFound when there is none with the ID). When it
// led, it is recorded (see RemovedWhileLeading) and the first started voter left leads. See
// FailRemove and LoseNextRemoveAnswer.
func (c *Cluster) Remove(_ context.Context, id uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removeErr != nil {
		return c.removeErr
	}
	if err := c.reachable(); err != nil {
		return err
	}
	i := c.index(id)
	if i < 0 {
		return memberErr("remove", id, etcdcluster.ErrMemberNotFound)
	}
	c.history = append(c.history, "Remove "+label(c.members[i]))
	c.members = slices.Delete(c.members, i, i+1)
	if id == c.leader {
		c.removedWhileLeading = append(c.removedWhileLeading, id)
		c.elect()
	}
	if c.loseRemove {
		c.loseRemove = false
		return errors.New("etcdserver: server stopped")
	}
	return nil
}

// MoveLeader hands the leadership to voter to; it fails for a learner or an unknown ID.
func (c *Cluster) MoveLeader(_ context.Context, to uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.reachable(); err != nil {
		return err
	}
	if i := c.index(to); i < 0 || c.members[i].IsLearner {
		return fmt.Errorf("move leader: bad transferee %s", etcdcluster.HexID(to))
	}
	c.leader = to
	return nil
}

// Health answers for the member whose client URL is endpoint: healthy when there is a leader,
// applied index CommitIndex minus its lag. An endpoint that is no member's, or a member's set
// down, does not answer. See AnswerAs.
func (c *Cluster) Health(_ context.Context, endpoint string) (etcdcluster.Health, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		if !slices.Contains(m.ClientURLs, endpoint) {
			continue
		}
		if c.down[m.ID] {
			return etcdcluster.Health{}, fmt.Errorf("dial %s: connection refused", endpoint)
		}
		h := etcdcluster.Health{Healthy: c.leader != 0, MemberID: cmp.Or(c.answerAs[m.ID], m.ID), Leader: c.leader, RaftTerm: 2,
			RaftIndex: CommitIndex, RaftAppliedIndex: CommitIndex - min(c.lag[m.ID], CommitIndex), IsLearner: m.IsLearner,
			DBSize: c.dbSize[m.ID], DBSizeInUse: c.inUse[m.ID], Revision: Revision}
		switch {
		case !h.Healthy:
			h.Err = "no leader"
		case c.noSpace:
			h.Healthy, h.Err = false, "alarm:NOSPACE"
		}
		return h, nil
	}
	return etcdcluster.Health{}, fmt.Errorf("dial %s: connection refused", endpoint)
}

// Close does nothing.
func (c *Cluster) Close() error { return nil }

// Revision is the revision every member reports.
const Revision = 1000

var _ etcdcluster.Maintainer = (*Cluster)(nil)

// RaiseNoSpace fills every member's database to size bytes, of which inUse hold data after a
// compaction, and raises the NOSPACE alarm, as etcd does at its quota.
func (c *Cluster) RaiseNoSpace(size, inUse int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noSpace = true
	c.dbSize, c.inUse = map[uint64]int64{}, map[uint64]int64{}
	for _, m := range c.members {
		c.dbSize[m.ID], c.inUse[m.ID] = size, size
	}
	c.compactedTo = 0
	c.pendingInUse = inUse
}

// Alarms implements etcdcluster.Maintainer.
func (c *Cluster) Alarms(context.Context) ([]etcdcluster.Alarm, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.reachable(); err != nil {
		return nil, err
	}
	if !c.noSpace {
		return nil, nil
	}
	return []etcdcluster.Alarm{{MemberID: c.leader, Type: etcdcluster.AlarmNoSpace}}, nil
}

// Disarm implements etcdcluster.Maintainer.
func (c *Cluster) Disarm(_ context.Context, a etcdcluster.Alarm) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noSpace = false
	c.history = append(c.history, "Disarm "+a.Type)
	return nil
}

// Compact implements etcdcluster.Maintainer: the data in use shrinks to what RaiseNoSpace said.
func (c *Cluster) Compact(_ context.Context, rev int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rev > c.compactedTo {
		c.compactedTo = rev
		for id := range c.inUse {
			c.inUse[id] = c.pendingInUse
		}
	}
	c.history = append(c.history, "Compact "+strconv.FormatInt(rev, 10))
	return nil
}

// Defragment implements etcdcluster.Maintainer: the member's database shrinks to its data.
func (c *Cluster) Defragment(_ context.Context, endpoint string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.members {
		if slices.Contains(m.ClientURLs, endpoint) {
			if c.down[m.ID] {
				return fmt.Errorf("dial %s: connection refused", endpoint)
			}
			c.dbSize[m.ID] = c.inUse[m.ID]
			c.history = append(c.history, "Defragment "+label(m))
			return nil
		}
	}
	return fmt.Errorf("dial %s: connection refused", endpoint)
}

// reachable fails while there is no member to dial.
func (c *Cluster) reachable() error {
	if len(c.members) == 0 {
		return errors.New("dial tcp: connection refused")
	}
	return nil
}

func (c *Cluster) newID() uint64 {
	c.created++
	return cmp.Or(c.IDBase, DefaultIDBase) + c.created
}

// elect makes the first started voter the leader (0: none).
func (c *Cluster) elect() {
	c.leader = 0
	for _, m := range c.members {
		if !m.IsLearner && m.Started() {
			c.leader = m.ID
			return
		}
	}
}

func (c *Cluster) index(id uint64) int {
	return slices.IndexFunc(c.members, func(m etcdcluster.Member) bool { return m.ID == id })
}

func (c *Cluster) snapshot() []etcdcluster.Member {
	out := make([]etcdcluster.Member, len(c.members))
	for i, m := range c.members {
		out[i] = clone(m)
	}
	return out
}

func clone(m etcdcluster.Member) etcdcluster.Member {
	m.PeerURLs, m.ClientURLs = slices.Clone(m.PeerURLs), slices.Clone(m.ClientURLs)
	return m
}

// label names a member by its name, or by its hex ID before it started.
func label(m etcdcluster.Member) string { return cmp.Or(m.Name, m.HexID()) }

func memberErr(op string, id uint64, err error) error {
	return fmt.Errorf("%s member %s: %w", op, etcdcluster.HexID(id), err)
}

// Restore is etcdutl restoring a snapshot on machine name and etcd starting from it: the
// cluster is replaced by one member with the given ID (etcdcluster.MemberIDOf of its peer URL
// and the restore's token), which leads. Restoring again with the same ID changes nothing.
func (c *Cluster) Restore(name, peerURL, clientURL string, id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.members) == 1 && c.members[0].ID == id {
		return
	}
	c.members = []etcdcluster.Member{{ID: id, Name: name, PeerURLs: []string{peerURL}, ClientURLs: []string{clientURL}}}
	c.leader = id
	c.history = append(c.history, "Restore "+name)
}
