package etcdcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DefaultDialTimeout is Config.DialTimeout's default.
const DefaultDialTimeout = 5 * time.Second

// Config says how to reach a workload cluster's etcd.
type Config struct {
	// Endpoints are client URLs (https://ip:2379) of some members; one reachable voter is
	// enough. Members replaces them with the client URLs of the started voters it sees, so the
	// client follows the membership as it changes.
	Endpoints []string
	// CA is the etcd CA certificate (PEM) the members' serving certificates are checked against.
	CA []byte
	// Cert and Key are a client certificate and key (PEM) signed by the etcd CA.
	Cert, Key []byte
	// DialTimeout bounds connection set-up; 0 means DefaultDialTimeout.
	DialTimeout time.Duration
}

// EtcdClient is the Client over go.etcd.io/etcd/client/v3 with mutual TLS. It is safe for
// concurrent use.
type EtcdClient struct {
	cfg clientv3.Config
	cli *clientv3.Client

	mu sync.Mutex
	// last is the member list of the last successful Members call.
	last []Member
}

var _ Client = (*EtcdClient)(nil)

// NewClient returns a Client for the members at cfg.Endpoints. It does not wait for a
// connection: the first call reports an unreachable cluster.
func NewClient(cfg Config) (*EtcdClient, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcdcluster: no endpoints")
	}
	for _, ep := range cfg.Endpoints {
		if !strings.HasPrefix(ep, "https://") {
			return nil, fmt.Errorf("etcdcluster: endpoint %q is not https://host:port", ep)
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cfg.CA) {
		return nil, errors.New("etcdcluster: the etcd CA is not a PEM certificate")
	}
	pair, err := tls.X509KeyPair(cfg.Cert, cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("etcdcluster: client certificate: %w", err)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	ccfg := clientv3.Config{
		Endpoints:   slices.Clone(cfg.Endpoints),
		DialTimeout: cfg.DialTimeout,
		TLS: &tls.Config{
			RootCAs:      pool,
			Certificates: []tls.Certificate{pair},
			MinVersion:   tls.VersionTLS12,
		},
		Logger: zap.NewNop(),
	}
	cli, err := clientv3.New(ccfg)
	if err != nil {
		return nil, fmt.Errorf("etcdcluster: %w", err)
	}
	return &EtcdClient{cfg: ccfg, cli: cli}, nil
}

// Members implements Client. After a successful list the client's endpoints become the client
// URLs of the started voters (learners refuse most requests).
func (c *EtcdClient) Members(ctx context.Context) ([]Member, error) {
	resp, err := c.cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", mapErr(err))
	}
	ms := members(resp.Members)
	c.mu.Lock()
	c.last = ms
	c.mu.Unlock()
	var eps []string
	for _, m := range ms {
		if m.Started() && !m.IsLearner {
			eps = append(eps, m.ClientURLs...)
		}
	}
	if len(eps) > 0 && !sameStrings(eps, c.cli.Endpoints()) {
		c.cli.SetEndpoints(eps...)
	}
	return ms, nil
}

// AddLearner implements Client.
//
// etcd derives a new member's ID from its peer URLs and the current Unix second, and refuses an
// ID it has removed ("member not found"): re-adding a peer URL in the second its previous member
// was removed fails. Nothing is committed then, so AddLearner retries once in the next second.
func (c *EtcdClient) AddLearner(ctx context.Context, peerURL string) (Member, []Member, error) {
	resp, err := c.cli.MemberAddAsLearner(ctx, []string{peerURL})
	if err != nil && errors.Is(rpctypes.Error(err), rpctypes.ErrMemberNotFound) {
		select {
		case <-ctx.Done():
			return Member{}, nil, fmt.Errorf("add learner %s: %w", peerURL, ctx.Err())
		case <-time.After(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 50*time.Millisecond))):
		}
		resp, err = c.cli.MemberAddAsLearner(ctx, []string{peerURL})
	}
	if err != nil {
		return Member{}, nil, fmt.Errorf("add learner %s: %w", peerURL, mapErr(err))
	}
	if resp.Member == nil {
		return Member{}, nil, fmt.Errorf("add learner %s: etcd returned no member", peerURL)
	}
	return member(resp.Member), members(resp.Members), nil
}

// Promote implements Client.
func (c *EtcdClient) Promote(ctx context.Context, id uint64) error {
	if _, err := c.cli.MemberPromote(ctx, id); err != nil {
		return memberErr("promote", id, mapErr(err))
	}
	return nil
}

// Remove implements Client. The request is not sent to the member being removed (as far as the
// last member list tells its client URLs): that member stops as soon as it applies its own
// removal and would answer "server stopped" to a change that was made.
func (c *EtcdClient) Remove(ctx context.Context, id uint64) error {
	c.mu.Lock()
	var leaving []string
	for _, m := range c.last {
		if m.ID == id {
			leaving = m.ClientURLs
		}
	}
	c.mu.Unlock()
	eps := slices.DeleteFunc(c.cli.Endpoints(), func(ep string) bool { return slices.Contains(leaving, ep) })
	if len(eps) > 0 && len(leaving) > 0 {
		c.cli.SetEndpoints(eps...)
	}
	if _, err := c.cli.MemberRemove(ctx, id); err != nil {
		return memberErr("remove", id, mapErr(err))
	}
	return nil
}

// MoveLeader implements Client. Only the leader accepts the request, so it lists the members,
// asks the started voters one by one (each bounded by DialTimeout) which leader they follow, and
// sends the request to that leader's client URL.
func (c *EtcdClient) MoveLeader(ctx context.Context, to uint64) error {
	ms, err := c.Members(ctx)
	if err != nil {
		return memberErr("move leadership to", to, err)
	}
	var leader uint64
	for _, m := range ms {
		if m.IsLearner || leader != 0 {
			continue
		}
		for _, ep := range m.ClientURLs {
			pctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
			h, err := c.Health(pctx, ep)
			cancel()
			if err == nil && h.Leader != 0 {
				leader = h.Leader
				break
			}
		}
	}
	if leader == 0 {
		return memberErr("move leadership to", to, errors.New("no voter answered with a leader"))
	}
	if leader == to {
		return nil
	}
	var eps []string
	for _, m := range ms {
		if m.ID == leader {
			eps = m.ClientURLs
		}
	}
	if len(eps) == 0 {
		return memberErr("move leadership to", to, fmt.Errorf("leader %s has no client URL", HexID(leader)))
	}
	cfg := c.cfg
	cfg.Endpoints = eps
	lc, err := clientv3.New(cfg)
	if err != nil {
		return memberErr("move leadership to", to, err)
	}
	defer func() { _ = lc.Close() }()
	if _, err := lc.MoveLeader(ctx, to); err != nil {
		return memberErr("move leadership to", to, mapErr(err))
	}
	return nil
}

// Health implements Client: the maintenance Status of the member at endpoint. Learners answer
// it too.
func (c *EtcdClient) Health(ctx context.Context, endpoint string) (Health, error) {
	resp, err := c.cli.Status(ctx, endpoint)
	if err != nil {
		return Health{}, fmt.Errorf("status of %s: %w", endpoint, mapErr(err))
	}
	h := Health{
		Leader:           resp.Leader,
		RaftIndex:        resp.RaftIndex,
		RaftAppliedIndex: resp.RaftAppliedIndex,
		IsLearner:        resp.IsLearner,
		DBSize:           resp.DbSize,
		DBSizeInUse:      resp.DbSizeInUse,
	}
	if resp.Header != nil {
		h.MemberID = resp.Header.MemberId
		h.RaftTerm = resp.Header.RaftTerm
		h.Revision = resp.Header.Revision
	}
	switch {
	case len(resp.Errors) > 0:
		h.Err = strings.Join(resp.Errors, "; ")
	case resp.Leader == 0:
		h.Err = "no leader"
	default:
		h.Healthy = true
	}
	return h, nil
}

// Close implements Client.
func (c *EtcdClient) Close() error { return c.cli.Close() }

func member(m interface {
	GetID() uint64
	GetName() string
	GetPeerURLs() []string
	GetClientURLs() []string
	GetIsLearner() bool
}) Member {
	return Member{ID: m.GetID(), Name: m.GetName(), PeerURLs: slices.Clone(m.GetPeerURLs()),
		ClientURLs: slices.Clone(m.GetClientURLs()), IsLearner: m.GetIsLearner()}
}

func members[M interface {
	GetID() uint64
	GetName() string
	GetPeerURLs() []string
	GetClientURLs() []string
	GetIsLearner() bool
}](in []M) []Member {
	out := make([]Member, 0, len(in))
	for _, m := range in {
		out = append(out, member(m))
	}
	return out
}

// mapErr turns the etcd errors the controller reacts to into the package's sentinels, keeping
// etcd's text.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var sentinel error
	switch e := rpctypes.Error(err); {
	case errors.Is(e, rpctypes.ErrMemberLearnerNotReady):
		sentinel = ErrLearnerNotReady
	case errors.Is(e, rpctypes.ErrTooManyLearners):
		sentinel = ErrTooManyLearners
	case errors.Is(e, rpctypes.ErrMemberNotFound):
		sentinel = ErrMemberNotFound
	case errors.Is(e, rpctypes.ErrMemberNotLearner):
		sentinel = ErrNotLearner
	case errors.Is(e, rpctypes.ErrPeerURLExist):
		sentinel = ErrPeerURLExists
	case errors.Is(e, rpctypes.ErrUnhealthy), errors.Is(e, rpctypes.ErrMemberNotEnoughStarted):
		sentinel = ErrUnhealthy
	default:
		return err
	}
	return fmt.Errorf("%w (%s)", sentinel, rpctypes.ErrorDesc(err))
}

func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
