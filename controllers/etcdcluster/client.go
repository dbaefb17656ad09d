package etcdcluster

import (
	"context"
	"crypto/sha1" //nolint:gosec // etcd derives member IDs with SHA-1
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Client is what the Cluster controller asks of a workload cluster's etcd: the seven calls it
// makes, with Basalt's own types. Every method takes the caller's context and returns when the
// context ends at the latest.
type Client interface {
	// Members lists the members, learners included, with a linearizable read (so it fails while
	// the cluster has no quorum, and always shows a change that was committed, even one whose
	// caller crashed before reading the answer).
	Members(ctx context.Context) ([]Member, error)
	// AddLearner adds a non-voting member with the given peer URL and returns it (unstarted: no
	// name, no client URLs) and the member list right after the change, which is what the new
	// member's --initial-cluster is built from (see InitialCluster). Errors wrap
	// ErrTooManyLearners, ErrPeerURLExists or ErrUnhealthy when etcd refuses.
	AddLearner(ctx context.Context, peerURL string) (Member, []Member, error)
	// Promote makes a learner a voter. Errors wrap ErrLearnerNotReady when the leader finds the
	// learner behind, ErrNotLearner when the member already votes, ErrMemberNotFound.
	Promote(ctx context.Context, id uint64) error
	// Remove removes a member. Errors wrap ErrMemberNotFound when it is already gone and
	// ErrUnhealthy when etcd refuses because the active quorum would break.
	Remove(ctx context.Context, id uint64) error
	// MoveLeader hands the leadership to the voter with the given ID (done before the leader is
	// removed, so the cluster does not wait for an election timeout).
	MoveLeader(ctx context.Context, to uint64) error
	// Health asks the member serving the client URL endpoint for its status. An error means no
	// answer (unreachable, TLS, timeout); an answer may still be unhealthy (no leader, alarms).
	Health(ctx context.Context, endpoint string) (Health, error)
	// Close releases the connections.
	Close() error
}

// Member is one etcd member as the member list shows it.
type Member struct {
	// ID is etcd's member ID.
	ID uint64
	// Name is the member name (--name), the machine's name. It is empty until the member has
	// started and published itself: an added learner whose process never ran has no name.
	Name string
	// PeerURLs identify the member; a learner is known by its peer URL before it starts.
	PeerURLs []string
	// ClientURLs are its advertised client URLs; empty until it has started.
	ClientURLs []string
	// IsLearner is true for a non-voting member.
	IsLearner bool
}

// Started reports whether the member's process has run and published its name and client URLs.
func (m Member) Started() bool { return m.Name != "" }

// HexID is the member ID as etcd prints it (and as Machine status.etcdMemberID stores it).
func (m Member) HexID() string { return HexID(m.ID) }

// HexID formats an etcd member ID the way etcd and etcdctl print it.
func HexID(id uint64) string { return strconv.FormatUint(id, 16) }

// Health is what one member said about itself.
type Health struct {
	// Healthy is true when the member answered, knows a leader and reports no alarm.
	Healthy bool
	// MemberID is the ID of the member that answered.
	MemberID uint64
	// Leader is the member ID of the leader it follows (0: none).
	Leader uint64
	// RaftTerm is its raft term.
	RaftTerm uint64
	// RaftIndex is its raft commit index; RaftAppliedIndex the index it has applied.
	RaftIndex        uint64
	RaftAppliedIndex uint64
	// IsLearner is true when it is a learner.
	IsLearner bool
	// DBSize is the size of its backend database file; DBSizeInUse the part of it that holds
	// data (the rest is free pages a defragmentation gives back).
	DBSize, DBSizeInUse int64
	// Revision is the cluster's revision as the member knows it.
	Revision int64
	// Err says why it is not healthy ("no leader", an alarm, or why it did not answer).
	Err string
}

// Sentinel errors the controller reacts to. Client implementations wrap them; Reconcile returns
// them wrapped, so test them with errors.Is.
var (
	// ErrLearnerNotReady: etcd refused a promotion because the learner is not in sync with the
	// leader yet. Transient: requeue after a few seconds.
	ErrLearnerNotReady = errors.New("etcd: learner is not in sync with the leader yet")
	// ErrTooManyLearners: etcd refused to add a learner because one is already pending.
	// Reconcile never asks for a second one; seeing this means someone else changed the
	// membership. The next Reconcile sees the learner.
	ErrTooManyLearners = errors.New("etcd: too many learners")
	// ErrMemberNotFound: the member ID is not (or no longer) a member.
	ErrMemberNotFound = errors.New("etcd: member not found")
	// ErrNotLearner: a promotion was asked for a member that already votes.
	ErrNotLearner = errors.New("etcd: member is not a learner")
	// ErrPeerURLExists: a member with this peer URL already exists.
	ErrPeerURLExists = errors.New("etcd: peer URL already exists")
	// ErrUnhealthy: etcd's own reconfiguration check refused the change because it would break
	// the active quorum (members down or not connected). Transient: requeue.
	ErrUnhealthy = errors.New("etcd: refused the change: it would break the active quorum")
)

// memberErr wraps err with the member ID it concerns.
func memberErr(op string, id uint64, err error) error {
	return fmt.Errorf("%s member %s: %w", op, HexID(id), err)
}

// MemberIDOf is the ID etcd gives the member with these peer URLs in a cluster bootstrapped
// with this --initial-cluster-token (etcd's computeMemberID without a time: the members of a
// new cluster, and the one member `etcdutl snapshot restore` writes). A restored member is told
// from the member its host ran before the restore by it, since the restore's token differs.
func MemberIDOf(peerURLs []string, clusterToken string) uint64 {
	urls := slices.Clone(peerURLs)
	slices.Sort(urls)
	h := sha1.Sum([]byte(strings.Join(urls, "") + clusterToken)) //nolint:gosec // etcd's own derivation, not a security use
	return binary.BigEndian.Uint64(h[:8])
}
