package etcdcluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Maintainer is what etcd hygiene asks of a cluster beyond membership: alarms, compaction and
// defragmentation. EtcdClient implements it.
type Maintainer interface {
	// Alarms lists the raised alarms.
	Alarms(ctx context.Context) ([]Alarm, error)
	// Disarm clears a NOSPACE alarm of one member.
	Disarm(ctx context.Context, a Alarm) error
	// Compact compacts the key space's history up to rev and waits until it is applied; a
	// revision already compacted is not an error.
	Compact(ctx context.Context, rev int64) error
	// Defragment rewrites the backend of the member at endpoint, giving its free pages back.
	// The member serves nothing while it runs.
	Defragment(ctx context.Context, endpoint string) error
}

// Alarm is one raised etcd alarm.
type Alarm struct {
	MemberID uint64
	// Type is "NOSPACE" (the backend reached --quota-backend-bytes: etcd refuses writes) or
	// "CORRUPT".
	Type string
}

// AlarmNoSpace is the alarm etcd raises when its backend reaches the quota.
const AlarmNoSpace = "NOSPACE"

var _ Maintainer = (*EtcdClient)(nil)

// Alarms implements Maintainer.
func (c *EtcdClient) Alarms(ctx context.Context) ([]Alarm, error) {
	resp, err := c.cli.AlarmList(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing alarms: %w", mapErr(err))
	}
	var out []Alarm
	for _, a := range resp.Alarms {
		if a.Alarm == pb.AlarmType_NONE {
			continue
		}
		out = append(out, Alarm{MemberID: a.MemberID, Type: a.Alarm.String()})
	}
	return out, nil
}

// Disarm implements Maintainer.
func (c *EtcdClient) Disarm(ctx context.Context, a Alarm) error {
	if a.Type != AlarmNoSpace {
		return fmt.Errorf("etcdcluster: only %s alarms are disarmed, not %s", AlarmNoSpace, a.Type)
	}
	if _, err := c.cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: a.MemberID, Alarm: pb.AlarmType_NOSPACE}); err != nil {
		return memberErr("disarm the NOSPACE alarm of", a.MemberID, mapErr(err))
	}
	return nil
}

// Compact implements Maintainer.
func (c *EtcdClient) Compact(ctx context.Context, rev int64) error {
	if _, err := c.cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		return fmt.Errorf("compacting to revision %d: %w", rev, mapErr(err))
	}
	return nil
}

// Defragment implements Maintainer.
func (c *EtcdClient) Defragment(ctx context.Context, endpoint string) error {
	if _, err := c.cli.Defragment(ctx, endpoint); err != nil {
		return fmt.Errorf("defragmenting %s: %w", endpoint, mapErr(err))
	}
	return nil
}

// MaintenancePolicy holds the thresholds of etcd hygiene. The zero value uses the defaults.
type MaintenancePolicy struct {
	// Quota is the members' --quota-backend-bytes; 0: DefaultQuota.
	Quota int64
	// DefragFreeRatio: a member is defragmented when its free pages are at least this share of
	// its database file (default 0.5) ...
	DefragFreeRatio float64
	// DefragMinFree: ... and at least this many bytes (default 64 MiB), or at least half the
	// quota's headroom is free pages (the database grows toward the quota).
	DefragMinFree int64
	// DefragInterval is the least time between two routine defragmentations of a cluster
	// (default 10 minutes); a raised NOSPACE alarm does not wait.
	DefragInterval time.Duration
}

// minRecoverFree is the least free space worth a defragmentation while NOSPACE is raised: a
// freshly defragmented database keeps a few free pages.
const minRecoverFree = 1 << 20

// DefaultQuota is etcd's default --quota-backend-bytes, 2 GiB.
const DefaultQuota = 2 << 30

func (p MaintenancePolicy) withDefaults() MaintenancePolicy {
	if p.Quota <= 0 {
		p.Quota = DefaultQuota
	}
	if p.DefragFreeRatio <= 0 {
		p.DefragFreeRatio = 0.5
	}
	if p.DefragMinFree <= 0 {
		p.DefragMinFree = 64 << 20
	}
	if p.DefragInterval <= 0 {
		p.DefragInterval = 10 * time.Minute
	}
	return p
}

// MaintenanceKind is what one maintenance step does.
type MaintenanceKind string

// Maintenance steps.
const (
	// MaintainNone: nothing to do.
	MaintainNone MaintenanceKind = "None"
	// MaintainCompact compacts the history to the current revision (the NOSPACE recovery's
	// first step: kube-apiserver's own compaction keeps five minutes of history, which may be
	// what filled the quota).
	MaintainCompact MaintenanceKind = "Compact"
	// MaintainDefragment defragments one member.
	MaintainDefragment MaintenanceKind = "Defragment"
	// MaintainDisarm clears the NOSPACE alarms once every member is back under the quota.
	MaintainDisarm MaintenanceKind = "Disarm"
	// MaintainWait: something must change first (a member does not answer, no quorum).
	MaintainWait MaintenanceKind = "Wait"
)

// MaintenanceObserved is what maintenance decides from.
type MaintenanceObserved struct {
	// Alarms are the raised alarms.
	Alarms []Alarm
	// Members are the voters' client URLs and status (Health), in a stable order; a voter that
	// did not answer has Err set and Healthy false.
	Members []MemberStatus
	// State is what was done before.
	State MaintenanceState
	Now   time.Time
}

// MaintenanceState is what maintenance remembers of one cluster between steps. It is kept in
// memory: a manager that restarts forgets it, which at worst repeats a compaction (a no-op at a
// revision already compacted) or a defragmentation.
type MaintenanceState struct {
	// CompactedRevision is the revision maintenance last compacted to.
	CompactedRevision int64
	// LastDefrag is when a member was last defragmented; zero: never.
	LastDefrag time.Time
}

// MemberStatus is one voter as maintenance sees it.
type MemberStatus struct {
	Endpoint string
	Health
	// Answered is false when the member did not answer its status call.
	Answered bool
}

// free is the member's free pages in bytes.
func (m MemberStatus) free() int64 { return max(m.DBSize-m.DBSizeInUse, 0) }

// MaintenanceAction is the one step NextMaintenance chose.
type MaintenanceAction struct {
	Kind MaintenanceKind
	// Endpoint is the member to defragment; Revision the revision to compact to; Alarms the
	// alarms to disarm.
	Endpoint string
	Revision int64
	Alarms   []Alarm
	// Reason (CamelCase) and Message explain it.
	Reason, Message string
}

// NextMaintenance chooses one maintenance step. It is a pure function.
//
// With a NOSPACE alarm raised, etcd refuses every write, so recovery goes first: compact the
// history to the current revision, then defragment, one member at a time, every member with
// at least 1 MiB of free pages (most first), then disarm once every member's database is under 90% of the
// quota (disarming earlier only lets etcd raise the alarm again at the next write). Without an
// alarm, a member whose free pages are at least DefragFreeRatio of its file and DefragMinFree
// (or half its headroom to the quota) is defragmented, at most once per DefragInterval per
// cluster, and only while every voter answers and knows a leader: a member being defragmented
// serves nothing, so quorum must not hang on it. Other alarms (CORRUPT) are left to a human.
func NextMaintenance(o MaintenanceObserved, p MaintenancePolicy) MaintenanceAction {
	p = p.withDefaults()
	var noSpace []Alarm
	for _, a := range o.Alarms {
		if a.Type == AlarmNoSpace {
			noSpace = append(noSpace, a)
		}
	}
	answered := 0
	var rev int64
	for _, m := range o.Members {
		if m.Answered {
			answered++
			rev = max(rev, m.Revision)
		}
	}
	if len(o.Members) == 0 || answered <= len(o.Members)/2 {
		return MaintenanceAction{Kind: MaintainWait, Reason: "NoQuorum",
			Message: fmt.Sprintf("%d of %d voting members answer; etcd maintenance waits for a majority", answered, len(o.Members))}
	}
	byFree := slices.Clone(o.Members)
	slices.SortStableFunc(byFree, func(a, b MemberStatus) int { return int(min(max(b.free()-a.free(), -1), 1)) })

	if len(noSpace) > 0 {
		if o.State.CompactedRevision < rev {
			return MaintenanceAction{Kind: MaintainCompact, Revision: rev, Reason: "SpaceExceeded",
				Message: fmt.Sprintf("the NOSPACE alarm is raised (the database reached its %s quota): compacting the history to revision %d before defragmenting", bytesString(p.Quota), rev)}
		}
		for _, m := range byFree {
			if m.Answered && m.free() >= minRecoverFree {
				return MaintenanceAction{Kind: MaintainDefragment, Endpoint: m.Endpoint, Reason: "SpaceExceeded",
					Message: fmt.Sprintf("the NOSPACE alarm is raised: defragmenting the member at %s (%s of %s is free pages)", m.Endpoint, bytesString(m.free()), bytesString(m.DBSize))}
			}
		}
		for _, m := range o.Members {
			if !m.Answered {
				return MaintenanceAction{Kind: MaintainWait, Reason: "SpaceExceeded",
					Message: fmt.Sprintf("the NOSPACE alarm is raised: waiting for the member at %s to answer before disarming", m.Endpoint)}
			}
			if float64(m.DBSize) >= 0.9*float64(p.Quota) {
				return MaintenanceAction{Kind: MaintainWait, Reason: "SpaceExceeded",
					Message: fmt.Sprintf("the NOSPACE alarm is raised and the member at %s still holds %s of data, over 90%% of its %s quota after compaction and defragmentation: delete data or raise spec.etcd.quotaBackendBytes", m.Endpoint, bytesString(m.DBSizeInUse), bytesString(p.Quota))}
			}
		}
		return MaintenanceAction{Kind: MaintainDisarm, Alarms: noSpace, Reason: "SpaceRecovered",
			Message: fmt.Sprintf("every member is under 90%% of its %s quota after compaction and defragmentation: disarming %d NOSPACE alarm(s)", bytesString(p.Quota), len(noSpace))}
	}

	if last := o.State.LastDefrag; !last.IsZero() && o.Now.Sub(last) < p.DefragInterval {
		return MaintenanceAction{Kind: MaintainNone}
	}
	for _, m := range o.Members {
		if !m.Answered || !m.Healthy {
			return MaintenanceAction{Kind: MaintainNone}
		}
	}
	for _, m := range byFree {
		headroom := max(p.Quota-m.DBSizeInUse, 0)
		if m.free() > 0 && float64(m.free()) >= p.DefragFreeRatio*float64(m.DBSize) && (m.free() >= p.DefragMinFree || m.free() >= headroom/2) {
			return MaintenanceAction{Kind: MaintainDefragment, Endpoint: m.Endpoint, Reason: "Fragmented",
				Message: fmt.Sprintf("the member at %s is %s, of which %s is free pages: defragmenting it", m.Endpoint, bytesString(m.DBSize), bytesString(m.free()))}
		}
	}
	return MaintenanceAction{Kind: MaintainNone}
}

// maintenanceCallTimeout bounds each maintenance call but a defragmentation (listing alarms,
// compacting, disarming).
const maintenanceCallTimeout = 30 * time.Second

// Maintain observes the voters at endpoints and the alarms, chooses a step with
// NextMaintenance, makes it and records it in state.
func Maintain(ctx context.Context, cli Client, m Maintainer, endpoints []string, p MaintenancePolicy, state *MaintenanceState, now time.Time) (MaintenanceAction, error) {
	o := MaintenanceObserved{State: *state, Now: now}
	// Observation is bounded per call: a member that is gone (its host off, its packets
	// dropped) must not hold the caller's reconcile for the whole maintenance budget, which is
	// meant for a defragmentation.
	for _, ep := range endpoints {
		hctx, cancel := context.WithTimeout(ctx, DefaultProbeTimeout)
		h, err := cli.Health(hctx, ep)
		cancel()
		ms := MemberStatus{Endpoint: ep, Health: h, Answered: err == nil}
		if err != nil {
			ms.Err = err.Error()
		}
		o.Members = append(o.Members, ms)
	}
	actx, cancel := context.WithTimeout(ctx, maintenanceCallTimeout)
	alarms, err := m.Alarms(actx)
	cancel()
	if err != nil {
		return MaintenanceAction{Kind: MaintainWait, Reason: "Unreachable", Message: err.Error()}, err
	}
	o.Alarms = alarms
	a := NextMaintenance(o, p)
	switch a.Kind {
	case MaintainCompact:
		cctx, cancel := context.WithTimeout(ctx, maintenanceCallTimeout)
		err = m.Compact(cctx, a.Revision)
		cancel()
		if err == nil {
			state.CompactedRevision = a.Revision
		}
	case MaintainDefragment:
		if err = m.Defragment(ctx, a.Endpoint); err == nil {
			state.LastDefrag = now
		}
	case MaintainDisarm:
		for _, al := range a.Alarms {
			if err = m.Disarm(ctx, al); err != nil {
				break
			}
		}
	}
	return a, err
}

func bytesString(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d KiB", n>>10)
	}
}
