package etcdcluster_test

import (
	"fmt"
	"time"

	"github.com/basalt-dev/basalt/controllers/etcdcluster"
)

// Next decides one step at a time. Here cp-1 runs alone and three machines are desired: the
// first step adds cp-2 as a learner; once cp-2 has started and caught up it is promoted.
func ExampleNext() {
	desired := []etcdcluster.DesiredMember{
		{Name: "cp-1", PeerURL: "https://10.0.0.1:2380", Ready: true},
		{Name: "cp-2", PeerURL: "https://10.0.0.2:2380", Ready: true},
		{Name: "cp-3", PeerURL: "https://10.0.0.3:2380", Ready: true},
	}
	cp1 := etcdcluster.Member{ID: 0x1, Name: "cp-1", PeerURLs: []string{"https://10.0.0.1:2380"}, ClientURLs: []string{"https://10.0.0.1:2379"}}
	healthy := func(id, index uint64) etcdcluster.Health {
		return etcdcluster.Health{Healthy: true, MemberID: id, Leader: 0x1, RaftTerm: 2, RaftIndex: 5000, RaftAppliedIndex: index}
	}

	a := etcdcluster.Next(desired, etcdcluster.Observed{
		Members: []etcdcluster.Member{cp1},
		Health:  map[uint64]etcdcluster.Health{0x1: healthy(0x1, 5000)},
		Now:     time.Now(),
	})
	fmt.Println(a)

	cp2 := etcdcluster.Member{ID: 0x2, Name: "cp-2", PeerURLs: []string{"https://10.0.0.2:2380"}, ClientURLs: []string{"https://10.0.0.2:2379"}, IsLearner: true}
	a = etcdcluster.Next(desired, etcdcluster.Observed{
		Members: []etcdcluster.Member{cp1, cp2},
		Health:  map[uint64]etcdcluster.Health{0x1: healthy(0x1, 5000), 0x2: healthy(0x2, 1200)},
		Now:     time.Now(),
	})
	fmt.Println(a)
	fmt.Println(a.Message)

	a = etcdcluster.Next(desired, etcdcluster.Observed{
		Members: []etcdcluster.Member{cp1, cp2},
		Health:  map[uint64]etcdcluster.Health{0x1: healthy(0x1, 5000), 0x2: healthy(0x2, 4990)},
		Now:     time.Now(),
	})
	fmt.Println(a)
	// Output:
	// AddLearner cp-2 https://10.0.0.2:2380: ScaleUp
	// Wait cp-2 (2): LearnerCatchingUp
	// learner cp-2 (2) is catching up: applied index 1200 is 3800 entries behind the leader's commit index 5000 (promoted at 1000 or fewer)
	// Promote cp-2 (2): LearnerCaughtUp
}
