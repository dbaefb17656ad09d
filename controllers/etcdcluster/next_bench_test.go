package etcdcluster_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/controllers/etcdcluster"
)

// benchCluster is five desired machines cp-1..cp-5 and an observation of their members: every
// member a healthy voter following cp-1, except as changed by tweak.
func benchCluster(tweak func(o *etcdcluster.Observed)) ([]etcdcluster.DesiredMember, etcdcluster.Observed) {
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	var desired []etcdcluster.DesiredMember
	o := etcdcluster.Observed{Health: map[uint64]etcdcluster.Health{}, Now: now}
	for i := uint64(1); i <= 5; i++ {
		peer := fmt.Sprintf("https://192.0.2.1%d:2380", i)
		desired = append(desired, etcdcluster.DesiredMember{Name: fmt.Sprintf("cp-%d", i), PeerURL: peer, Ready: true})
		o.Members = append(o.Members, etcdcluster.Member{ID: 0x8e9e05c52164694d + i, Name: fmt.Sprintf("cp-%d", i),
			PeerURLs: []string{peer}, ClientURLs: []string{fmt.Sprintf("https://192.0.2.1%d:2379", i)}})
		o.Health[0x8e9e05c52164694d+i] = etcdcluster.Health{Healthy: true, MemberID: 0x8e9e05c52164694d + i,
			Leader: 0x8e9e05c52164694d + 1, RaftTerm: 7, RaftIndex: 1_204_311, RaftAppliedIndex: 1_204_311}
	}
	if tweak != nil {
		tweak(&o)
	}
	return desired, o
}

// BenchmarkNext: the decision the Cluster controller takes on every reconcile of a 5-member etcd:
// in sync (None), the fifth member a learner that caught up (Promote), and one voter down (Wait:
// nothing is added while a voter is down).
func BenchmarkNext(b *testing.B) {
	last := uint64(0x8e9e05c52164694d + 5)
	for _, tc := range []struct {
		name  string
		tweak func(o *etcdcluster.Observed)
		want  etcdcluster.Kind
	}{
		{"5-members-in-sync", nil, etcdcluster.None},
		{"5th-learner-caught-up", func(o *etcdcluster.Observed) {
			o.Members[4].IsLearner = true
			h := o.Health[last]
			h.IsLearner, h.RaftAppliedIndex = true, h.RaftIndex-20
			o.Health[last] = h
		}, etcdcluster.Promote},
		{"1-of-5-voters-down", func(o *etcdcluster.Observed) {
			o.Health[last] = etcdcluster.Health{MemberID: last, Err: "context deadline exceeded"}
		}, etcdcluster.Wait},
	} {
		b.Run(tc.name, func(b *testing.B) {
			desired, observed := benchCluster(tc.tweak)
			b.ReportAllocs()
			for b.Loop() {
				if a := etcdcluster.Next(desired, observed); a.Kind != tc.want {
					b.Fatalf("%v, want %s", a, tc.want)
				}
			}
		})
	}
}
