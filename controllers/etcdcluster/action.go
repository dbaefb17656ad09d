package etcdcluster

import (
	"fmt"
	"time"
)

// DesiredMember is a control-plane machine that should run an etcd member.
type DesiredMember struct {
	// Name is the machine's name, which is also its etcd member name (--name).
	Name string
	// PeerURL is the member's peer URL, components.EtcdPeerURL(node IP, peer port). It is how a
	// member is matched to its machine: etcd knows an added learner only by its peer URL until
	// the learner starts.
	PeerURL string
	// Ready reports that the machine can run etcd now: its host is provisioned and its agent
	// connected, so a Plan carrying the etcd component would be applied within seconds (for the
	// first machine: it has applied etcd). A learner is added only for a Ready machine, so an
	// unprovisioned host never holds the single learner slot.
	Ready bool
	// JoiningSince is when the controller first saw this machine's learner: when Reconcile
	// returned AddLearner for it, or (after a crash lost that) the first Wait naming it. A
	// learner still unstarted or unhealthy Policy.JoinTimeout after it is removed. Zero means
	// unknown and never times out.
	JoiningSince time.Time
}

// Observed is what Reconcile saw of the cluster.
type Observed struct {
	// Members is the member list.
	Members []Member
	// Health is each member's answer by member ID. A member without an entry is unhealthy
	// (unstarted, or no client URL answered).
	Health map[uint64]Health
	// Now is when the observation was made; it is compared with DesiredMember.JoiningSince.
	Now time.Time
}

// Kind says which of the five actions an Action is.
type Kind string

// The actions Next chooses from. Exactly one is returned per call.
const (
	// None: every desired machine is a healthy voter and nothing else is a member.
	None Kind = "None"
	// AddLearner: add a learner with Action.PeerURL for machine Action.Machine.
	AddLearner Kind = "AddLearner"
	// Promote: make learner Action.ID (machine Action.Machine) a voter.
	Promote Kind = "Promote"
	// Remove: remove member Action.ID, for Action.Reason.
	Remove Kind = "Remove"
	// Wait: nothing may change now; Action.Reason and Action.Message say why.
	Wait Kind = "Wait"
)

// Reasons, one CamelCase word each, fit for a condition's reason.
const (
	// ReasonInSync (None): the membership is what is desired and every member is healthy.
	ReasonInSync = "InSync"

	// ReasonScaleUp (AddLearner): a Ready machine has no member yet.
	ReasonScaleUp = "ScaleUp"
	// ReasonLearnerCaughtUp (Promote): the learner is healthy and caught up with the leader.
	ReasonLearnerCaughtUp = "LearnerCaughtUp"

	// ReasonMachineGone (Remove): a learner, or an unhealthy voter, whose machine is not desired.
	ReasonMachineGone = "MachineGone"
	// ReasonJoinTimeout (Remove): a learner did not start or stayed unhealthy for
	// Policy.JoinTimeout after its machine was told to join.
	ReasonJoinTimeout = "JoinTimeout"
	// ReasonScaleDown (Remove): a healthy voter no machine wants while there are more voters
	// than desired machines.
	ReasonScaleDown = "ScaleDown"
	// ReasonPeerURLConflict (Remove): a member holds a desired machine's peer URL under another
	// name (a stale member of a previous machine at the same address).
	ReasonPeerURLConflict = "PeerURLConflict"

	// ReasonInvalidDesired (Wait): the desired members are inconsistent (duplicate or empty
	// names or peer URLs).
	ReasonInvalidDesired = "InvalidDesiredMembers"
	// ReasonNotInitialised (Wait): etcd has no member yet; the first machine initialises it.
	ReasonNotInitialised = "NotInitialised"
	// ReasonWaitingForJoin (Wait): a learner was added; its machine must start etcd with
	// InitialCluster(...) and --initial-cluster-state=existing.
	ReasonWaitingForJoin = "WaitingForJoin"
	// ReasonLearnerUnhealthy (Wait): the learner started but does not answer or has no leader.
	ReasonLearnerUnhealthy = "LearnerUnhealthy"
	// ReasonLearnerCatchingUp (Wait): the learner is more than Policy.MaxLearnerLag entries
	// behind the leader.
	ReasonLearnerCatchingUp = "LearnerCatchingUp"
	// ReasonTooManyLearners (Wait): more than one learner exists and none may be removed.
	ReasonTooManyLearners = "TooManyLearners"
	// ReasonNoLeader (Wait): no healthy member reports a healthy leader.
	ReasonNoLeader = "NoLeader"
	// ReasonMemberUnhealthy (Wait): a voter is unhealthy; nothing is added until it recovers or
	// its machine is no longer desired.
	ReasonMemberUnhealthy = "MemberUnhealthy"
	// ReasonQuorumAtRisk (Wait): the change that is due would leave fewer healthy voters than a
	// majority.
	ReasonQuorumAtRisk = "QuorumAtRisk"
	// ReasonWaitingForReplacement (Wait): a voter no machine wants is kept until the desired
	// machine replacing it has been promoted.
	ReasonWaitingForReplacement = "WaitingForReplacement"
	// ReasonWaitingForMachine (Wait): a desired machine has no member and is not Ready.
	ReasonWaitingForMachine = "WaitingForMachine"
	// ReasonEtcdUnavailable (Wait, from Reconcile only, with an error): the member list could
	// not be read: no quorum, or no endpoint answers.
	ReasonEtcdUnavailable = "EtcdUnavailable"
)

// Action is one step towards the desired membership.
type Action struct {
	// Kind is the action.
	Kind Kind
	// Reason is a CamelCase word (the Reason* constants) for a condition's reason.
	Reason string
	// Message says what and why in a sentence, for a condition's message and logs.
	Message string
	// Machine is the desired machine the action concerns, if any (AddLearner, Promote, the
	// Waits about a joining learner, Remove of a member with a machine name).
	Machine string
	// ID is the member the action concerns; for AddLearner it is set by Reconcile once the
	// learner exists.
	ID uint64
	// PeerURL is the peer URL of the member concerned (AddLearner: the one to add).
	PeerURL string
	// Members is, when the action comes from Reconcile, the member list after the action as far
	// as known (for AddLearner, etcd's own answer). A joining machine's --initial-cluster is
	// built from it with InitialCluster.
	Members []Member
}

// String is a short form for logs: "Remove cp-3 (8e9e05c52164694d): ScaleDown".
func (a Action) String() string {
	s := string(a.Kind)
	if a.Machine != "" {
		s += " " + a.Machine
	}
	if a.ID != 0 {
		s += fmt.Sprintf(" (%s)", HexID(a.ID))
	} else if a.Kind == AddLearner {
		s += " " + a.PeerURL
	}
	return s + ": " + a.Reason
}

// Changes reports whether the action changes the membership.
func (a Action) Changes() bool {
	return a.Kind == AddLearner || a.Kind == Promote || a.Kind == Remove
}
