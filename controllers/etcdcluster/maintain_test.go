package etcdcluster_test

import (
	"testing"
	"time"

	"github.com/basalt-dev/basalt/controllers/etcdcluster"
)

func TestNextMaintenance(t *testing.T) {
	const mib = 1 << 20
	now := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	member := func(ep string, size, inUse int64, ok bool) etcdcluster.MemberStatus {
		return etcdcluster.MemberStatus{Endpoint: ep, Answered: ok,
			Health: etcdcluster.Health{Healthy: ok, DBSize: size, DBSizeInUse: inUse, Revision: 500}}
	}
	noSpace := []etcdcluster.Alarm{{MemberID: 1, Type: etcdcluster.AlarmNoSpace}}
	p := etcdcluster.MaintenancePolicy{Quota: 100 * mib}
	for _, tc := range []struct {
		name    string
		o       etcdcluster.MaintenanceObserved
		kind    etcdcluster.MaintenanceKind
		target  string
		reason  string
		revison int64
	}{
		{name: "steady", o: etcdcluster.MaintenanceObserved{Members: []etcdcluster.MemberStatus{member("a", 10*mib, 9*mib, true), member("b", 10*mib, 9*mib, true)}},
			kind: etcdcluster.MaintainNone},
		{name: "fragmented: the most fragmented member first", o: etcdcluster.MaintenanceObserved{Members: []etcdcluster.MemberStatus{
			member("a", 80*mib, 30*mib, true), member("b", 90*mib, 10*mib, true), member("c", 10*mib, 9*mib, true)}},
			kind: etcdcluster.MaintainDefragment, target: "b", reason: "Fragmented"},
		{name: "fragmented but defragmented a minute ago", o: etcdcluster.MaintenanceObserved{Members: []etcdcluster.MemberStatus{member("b", 90*mib, 10*mib, true)},
			State: etcdcluster.MaintenanceState{LastDefrag: now.Add(-time.Minute)}},
			kind: etcdcluster.MaintainNone},
		{name: "fragmented but a member is down: never take a second one out", o: etcdcluster.MaintenanceObserved{Members: []etcdcluster.MemberStatus{
			member("a", 90*mib, 10*mib, true), member("b", 90*mib, 10*mib, true), member("c", 0, 0, false)}},
			kind: etcdcluster.MaintainNone},
		{name: "small free space is left alone", o: etcdcluster.MaintenanceObserved{Members: []etcdcluster.MemberStatus{member("a", 4*mib, 1*mib, true)}},
			kind: etcdcluster.MaintainNone},
		{name: "NOSPACE: compact first", o: etcdcluster.MaintenanceObserved{Alarms: noSpace, Members: []etcdcluster.MemberStatus{member("a", 100*mib, 100*mib, true)}},
			kind: etcdcluster.MaintainCompact, reason: "SpaceExceeded", revison: 500},
		{name: "NOSPACE after compaction: defragment, even right after another", o: etcdcluster.MaintenanceObserved{Alarms: noSpace,
			Members: []etcdcluster.MemberStatus{member("a", 100*mib, 5*mib, true), member("b", 100*mib, 5*mib, true), member("c", 20*mib, 5*mib, true)},
			State:   etcdcluster.MaintenanceState{CompactedRevision: 500, LastDefrag: now.Add(-time.Second)}},
			kind: etcdcluster.MaintainDefragment, target: "a", reason: "SpaceExceeded"},
		{name: "NOSPACE, all defragmented: disarm", o: etcdcluster.MaintenanceObserved{Alarms: noSpace,
			Members: []etcdcluster.MemberStatus{member("a", 5*mib, 5*mib, true), member("b", 5*mib, 5*mib, true)},
			State:   etcdcluster.MaintenanceState{CompactedRevision: 500}},
			kind: etcdcluster.MaintainDisarm, reason: "SpaceRecovered"},
		{name: "NOSPACE, still full of live data: wait and say so", o: etcdcluster.MaintenanceObserved{Alarms: noSpace,
			Members: []etcdcluster.MemberStatus{member("a", 95*mib, 95*mib, true)},
			State:   etcdcluster.MaintenanceState{CompactedRevision: 500}},
			kind: etcdcluster.MaintainWait, reason: "SpaceExceeded"},
		{name: "NOSPACE, a member silent: no disarm yet", o: etcdcluster.MaintenanceObserved{Alarms: noSpace,
			Members: []etcdcluster.MemberStatus{member("a", 5*mib, 5*mib, true), member("b", 5*mib, 5*mib, true), member("c", 0, 0, false)},
			State:   etcdcluster.MaintenanceState{CompactedRevision: 500}},
			kind: etcdcluster.MaintainWait, reason: "SpaceExceeded"},
		{name: "no majority answers", o: etcdcluster.MaintenanceObserved{Alarms: noSpace,
			Members: []etcdcluster.MemberStatus{member("a", 5*mib, 5*mib, true), member("b", 0, 0, false), member("c", 0, 0, false)}},
			kind: etcdcluster.MaintainWait, reason: "NoQuorum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Now = now
			a := etcdcluster.NextMaintenance(tc.o, p)
			if a.Kind != tc.kind || a.Endpoint != tc.target || a.Reason != tc.reason || a.Revision != tc.revison {
				t.Fatalf("NextMaintenance = %+v, want %s %q reason %q revision %d", a, tc.kind, tc.target, tc.reason, tc.revison)
			}
			if a.Kind != etcdcluster.MaintainNone && a.Message == "" {
				t.Fatal("no message")
			}
		})
	}
}
