// Package etcdcluster changes the membership of a workload cluster's etcd one safe step at a
// time, so that etcd never loses quorum (design §6).
//
// The package has three layers:
//
//   - Client, a narrow interface over the seven etcd calls the Cluster controller needs (member
//     list, add a learner, promote, remove, move the leader, per-endpoint health, close), with
//     Basalt's own small types (Member, Health) and sentinel errors (ErrLearnerNotReady,
//     ErrTooManyLearners, ErrMemberNotFound, ...). NewClient implements it over
//     go.etcd.io/etcd/client/v3 with mutual TLS; no etcd type leaves this package.
//   - Next, a pure function: given the desired machines and what was observed (members and the
//     health of each), it returns exactly one Action: AddLearner, Promote, Remove, Wait (with a
//     reason and a message fit for a condition) or None.
//   - Reconcile: observe through a Client, decide with Next, execute at most one change and
//     return it. It may be called again after a crash at any point.
//
// # Rules
//
// The rules, and the order they are tried in, are listed in docs/etcd.md with their reasons. In
// short: the first member initialises the cluster alone; every other member joins as a learner
// and is promoted only once healthy and caught up with the leader; there is never more than one
// membership change in flight (at most one learner, no add while a member is unhealthy); a voter
// is removed only if the healthy voters left are a majority of the voters left, and a healthy
// voter is never removed while that would shrink the cluster below the desired size (so an old
// member is kept until its replacement is promoted); learners of vanished machines, learners
// that never started within Policy.JoinTimeout, and members no machine wants are removed, one at
// a time.
//
// A typical scale-up from one to three members, one Reconcile per arrow:
//
//	{cp-1}  --AddLearner cp-2-->  {cp-1, cp-2 (learner, unstarted)}
//	        --Wait WaitingForJoin (cp-2's agent starts etcd with InitialCluster(...))-->
//	        --Wait LearnerCatchingUp--> --Promote cp-2-->  {cp-1, cp-2}
//	        --AddLearner cp-3--> ... --Promote cp-3-->  {cp-1, cp-2, cp-3}  --None-->
//
// and back down to one (desired = {cp-1}; followers go before the leader, and Reconcile hands the
// leadership to a remaining voter before removing the leader):
//
//	{cp-1, cp-2, cp-3} --Remove cp-2--> {cp-1, cp-3} --Remove cp-3--> {cp-1} --None-->
package etcdcluster
