package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/bootstrap/artifacts"
)

// Client calls the manager's agent API with mutual TLS. It is the agent's PlanSource,
// StatusReporter and artifact Fetcher.
type Client struct {
	base string
	http *http.Client
}

// NewClient returns a Client for the identity.
func NewClient(id *Identity) *Client {
	tr := &http.Transport{
		TLSClientConfig:     id.TLS,
		Proxy:               nil,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 4,
	}
	return &Client{base: strings.TrimSuffix(id.Server, "/"), http: &http.Client{Transport: tr}}
}

// NextPlan long-polls for a Plan whose hash differs from applied, waiting at most wait. It
// returns nil when the manager has nothing newer.
func (c *Client) NextPlan(ctx context.Context, applied string, wait time.Duration) (*protocol.PlanResponse, error) {
	wait = min(wait, protocol.MaxPlanWait)
	ctx, cancel := context.WithTimeout(ctx, wait+30*time.Second)
	defer cancel()
	q := url.Values{protocol.QueryHash: {applied}, protocol.QueryWait: {wait.String()}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+protocol.PathPlan+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, nil
	case http.StatusOK:
	default:
		return nil, fmt.Errorf("plan: %s", answerError(resp))
	}
	var pr protocol.PlanResponse
	// A Plan carries binaries' paths and configuration, not binaries: 64 MiB is plenty.
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&pr); err != nil {
		return nil, fmt.Errorf("plan: decoding: %w", err)
	}
	if h := resp.Header.Get(protocol.HeaderPlanHash); h != "" && h != pr.Hash {
		return nil, fmt.Errorf("plan: header hash %s differs from body hash %s", h, pr.Hash)
	}
	return &pr, nil
}

// Renew asks for a new certificate for the key of req's CSR (protocol.PathRenew).
func (c *Client) Renew(ctx context.Context, req protocol.RenewRequest) (*protocol.RegisterResponse, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+protocol.PathRenew, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("renew: %s", answerError(resp))
	}
	var out protocol.RegisterResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, protocol.MaxRequestBytes)).Decode(&out); err != nil {
		return nil, fmt.Errorf("renew: answer: %w", err)
	}
	return &out, nil
}

// CloseIdleConnections closes kept-alive connections, so the next request makes a new TLS
// handshake (with a renewed certificate).
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// ReportStatus posts a status.
func (c *Client) ReportStatus(ctx context.Context, st *protocol.Status) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+protocol.PathStatus, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status: %s", resp.Status)
	}
	return nil
}

// Fetch downloads the artifact with the given sha256 from the manager's cache. The caller checks
// the bytes.
func (c *Client) Fetch(ctx context.Context, sha256 string) (io.ReadCloser, error) {
	if !artifacts.IsSHA256(sha256) {
		return nil, fmt.Errorf("artifact: %q is not a sha256", sha256)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+protocol.PathArtifacts+sha256, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("artifact %s: %w", sha256, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, fmt.Errorf("artifact %s: %s", sha256, answerError(resp))
	}
	return resp.Body, nil
}

func answerError(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if msg := strings.TrimSpace(string(b)); msg != "" {
		return resp.Status + ": " + msg
	}
	return resp.Status
}
