package vip

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// microTime is the wire form of a Kubernetes MicroTime (RFC 3339, microseconds).
const microTime = "2006-01-02T15:04:05.000000Z07:00"

// errConflict is a write that lost to another writer (HTTP 409): read the Lease again.
var errConflict = errors.New("the Lease changed under us")

// maxBody bounds what is read of an API server's answer.
const maxBody = 1 << 20

// record is the part of a coordination.k8s.io/v1 Lease the election uses.
type record struct {
	Holder          string
	DurationSeconds int32
	Acquire, Renew  time.Time
	Transitions     int32
	resourceVersion string
}

// wireLease is the JSON of a Lease.
type wireLease struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Metadata   wireMetadata `json:"metadata"`
	Spec       wireSpec     `json:"spec"`
}

type wireMetadata struct {
	Name            string            `json:"name"`
	Namespace       string            `json:"namespace"`
	ResourceVersion string            `json:"resourceVersion,omitempty"`
	Labels          map[string]string `json:"labels,omitempty"`
}

type wireSpec struct {
	HolderIdentity       *string `json:"holderIdentity,omitempty"`
	LeaseDurationSeconds *int32  `json:"leaseDurationSeconds,omitempty"`
	AcquireTime          string  `json:"acquireTime,omitempty"`
	RenewTime            string  `json:"renewTime,omitempty"`
	LeaseTransitions     *int32  `json:"leaseTransitions,omitempty"`
}

// leaseClient reads and writes one Lease over the Kubernetes REST API.
type leaseClient struct {
	client          func() (*http.Client, error)
	server          string // https://host:port
	namespace, name string
}

func (c *leaseClient) url(item bool) string {
	u := strings.TrimRight(c.server, "/") + "/apis/coordination.k8s.io/v1/namespaces/" + url.PathEscape(c.namespace) + "/leases"
	if item {
		u += "/" + url.PathEscape(c.name)
	}
	return u
}

// get returns the Lease, or nil when there is none.
func (c *leaseClient) get(ctx context.Context) (*record, error) {
	var l wireLease
	status, err := c.do(ctx, http.MethodGet, c.url(true), nil, &l)
	if status == http.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r := &record{resourceVersion: l.Metadata.ResourceVersion}
	if l.Spec.HolderIdentity != nil {
		r.Holder = *l.Spec.HolderIdentity
	}
	if l.Spec.LeaseDurationSeconds != nil {
		r.DurationSeconds = *l.Spec.LeaseDurationSeconds
	}
	if l.Spec.LeaseTransitions != nil {
		r.Transitions = *l.Spec.LeaseTransitions
	}
	r.Acquire, _ = time.Parse(microTime, l.Spec.AcquireTime)
	r.Renew, _ = time.Parse(microTime, l.Spec.RenewTime)
	return r, nil
}

// write creates the Lease (r.resourceVersion empty) or replaces it if it is still at
// r.resourceVersion; errConflict when someone else wrote first.
func (c *leaseClient) write(ctx context.Context, r *record) error {
	l := wireLease{APIVersion: "coordination.k8s.io/v1", Kind: "Lease",
		Metadata: wireMetadata{Name: c.name, Namespace: c.namespace, ResourceVersion: r.resourceVersion,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "basalt"}},
		Spec: wireSpec{HolderIdentity: &r.Holder, LeaseDurationSeconds: &r.DurationSeconds, LeaseTransitions: &r.Transitions}}
	if !r.Acquire.IsZero() {
		l.Spec.AcquireTime = r.Acquire.UTC().Format(microTime)
	}
	if !r.Renew.IsZero() {
		l.Spec.RenewTime = r.Renew.UTC().Format(microTime)
	}
	method, u := http.MethodPut, c.url(true)
	if r.resourceVersion == "" {
		method, u = http.MethodPost, c.url(false)
	}
	var out wireLease
	status, err := c.do(ctx, method, u, &l, &out)
	if status == http.StatusConflict {
		return errConflict
	}
	if err != nil {
		return err
	}
	r.resourceVersion = out.Metadata.ResourceVersion
	return nil
}

// do sends one request and decodes a 2xx answer into out; the status is returned with any error.
func (c *leaseClient) do(ctx context.Context, method, u string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "basalt-agent/vip")
	hc, err := c.client()
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		var st struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(b, &st)
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %s", method, u, resp.Status, st.Message)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: %w", method, u, err)
	}
	return resp.StatusCode, nil
}
