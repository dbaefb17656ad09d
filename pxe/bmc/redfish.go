package bmc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/schemas"
)

// redfish drives a BMC over Redfish with gofish. Each operation logs in (a session, or HTTP Basic
// when the service has no SessionService), acts and logs out.
type redfish struct {
	cfg Config
	// endpoint is scheme://host[:port].
	endpoint string
	// systemPath is the ComputerSystem's URI, or "" to use the service's only system.
	systemPath string
	http       *http.Client
}

const redfishSystemsPrefix = "/redfish/v1/Systems/"

func newRedfish(cfg Config) (*redfish, error) {
	raw := strings.TrimSpace(cfg.Address)
	if rest, ok := strings.CutPrefix(raw, "redfish://"); ok {
		raw = "https://" + rest
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, &Error{Reason: ReasonInvalidAddress, Err: fmt.Errorf(
			"redfish address %q is not a URL: use https://<bmc>[:port] or https://<bmc>/redfish/v1/Systems/<id>", cfg.Address)}
	}
	if u.Scheme != "https" {
		return nil, &Error{Reason: ReasonInvalidAddress, Err: fmt.Errorf(
			"redfish address %q must use https (the password would cross the network in clear): use https://%s%s", cfg.Address, u.Host, u.Path)}
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, &Error{Reason: ReasonInvalidAddress, Err: fmt.Errorf(
			"redfish address %q must be a plain URL: no user info, query or fragment (credentials belong in the Secret)", u.Redacted())}
	}
	r := &redfish{cfg: cfg, endpoint: u.Scheme + "://" + u.Host}
	switch p := strings.TrimSuffix(u.Path, "/"); {
	case p == "" || p == "/redfish/v1":
	case strings.HasPrefix(p, redfishSystemsPrefix) && !strings.Contains(strings.TrimPrefix(p, redfishSystemsPrefix), "/"):
		r.systemPath = p
	default:
		return nil, &Error{Reason: ReasonInvalidAddress, Err: fmt.Errorf(
			"redfish address path %q is not a system: use https://%s or https://%s/redfish/v1/Systems/<id>", u.Path, u.Host, u.Host)}
	}

	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify} //nolint:gosec // opt-in per Host, documented
	if len(cfg.Credentials.CA) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.Credentials.CA) {
			return nil, &Error{Reason: ReasonCredentialsInvalid, Err: fmt.Errorf(
				"the %q key of the BMC Secret holds no PEM certificate: put the BMC's CA (or its self-signed certificate) there in PEM form", SecretCA)}
		}
		tlsCfg.RootCAs = pool
	}
	dialTimeout := min(10*time.Second, cfg.Timeout)
	r.http = &http.Client{
		Timeout: cfg.Timeout,
		Transport: cappedTransport{&http.Transport{
			// BMC networks are reached directly: no proxy from the manager's environment.
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: dialTimeout}).DialContext,
			TLSClientConfig:       tlsCfg,
			TLSHandshakeTimeout:   dialTimeout,
			ResponseHeaderTimeout: cfg.Timeout,
			MaxIdleConnsPerHost:   1,
			IdleConnTimeout:       30 * time.Second,
			ForceAttemptHTTP2:     true,
		}},
	}
	return r, nil
}

// maxRedfishReply bounds one Redfish reply body. A ComputerSystem with every link is tens of KiB;
// a BMC that sends more (a broken or hostile one) gets an error, not the manager's memory.
const maxRedfishReply = 4 << 20

// cappedTransport cuts every reply body at maxRedfishReply.
type cappedTransport struct{ rt http.RoundTripper }

func (c cappedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	resp.Body = &cappedBody{rc: resp.Body, left: maxRedfishReply}
	return resp, nil
}

// cappedBody reads at most left bytes and fails if the body has more.
type cappedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("the BMC's reply is larger than %d bytes", maxRedfishReply)
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }

// session logs in and finds the system. The caller must call logout.
func (r *redfish) session(ctx context.Context) (*gofish.APIClient, *schemas.ComputerSystem, error) {
	conf := gofish.ClientConfig{
		Endpoint:          r.endpoint,
		Username:          r.cfg.Credentials.Username,
		Password:          r.cfg.Credentials.Password,
		HTTPClient:        r.http,
		NoModifyTransport: true,
	}
	c, err := gofish.ConnectContext(ctx, conf)
	if err != nil && !isAuthError(err) && !isCertError(err) && !isNetError(err) {
		// A service without a usable SessionService: HTTP Basic on every request instead.
		conf.BasicAuth = true
		c, err = gofish.ConnectContext(ctx, conf)
	}
	if err != nil {
		return nil, nil, r.classify(err, "logging in")
	}
	var sys *schemas.ComputerSystem
	if r.systemPath != "" {
		sys, err = schemas.GetComputerSystem(c, r.systemPath)
		if err != nil {
			logout(c)
			return nil, nil, r.classify(err, "reading system "+r.systemPath)
		}
		return c, sys, nil
	}
	systems, err := c.Service.Systems()
	if err != nil {
		logout(c)
		return nil, nil, r.classify(err, "listing systems")
	}
	if len(systems) != 1 {
		logout(c)
		ids := make([]string, 0, len(systems))
		for _, s := range systems {
			ids = append(ids, s.ODataID)
		}
		return nil, nil, &Error{Reason: ReasonInvalidAddress, Err: fmt.Errorf(
			"the Redfish service at %s manages %d systems %v: name one in spec.bmc.address, e.g. %s%s<id>",
			r.endpoint, len(systems), ids, r.endpoint, redfishSystemsPrefix)}
	}
	return c, systems[0], nil
}

// logout ends the session; a BMC that forgets to answer does not hold the caller (bounded by the
// HTTP client's timeout).
func logout(c *gofish.APIClient) {
	c.Logout()
}

// isAuthError says whether a Redfish error is a refused login.
func isAuthError(err error) bool {
	var e *schemas.Error
	return errors.As(err, &e) && (e.HTTPReturnedStatusCode == http.StatusUnauthorized || e.HTTPReturnedStatusCode == http.StatusForbidden)
}

// classify turns a gofish or net/http error into an Error that says what to fix.
func (r *redfish) classify(err error, doing string) error {
	switch {
	case isCertError(err):
		return &Error{Reason: ReasonCertificateInvalid, Err: fmt.Errorf(
			"%s at %s: the BMC's TLS certificate did not verify (%w): put the CA that signs it (or the certificate itself) under %q in the BMC Secret, or set spec.bmc.disableCertificateVerification",
			doing, r.endpoint, unwrapURL(err), SecretCA)}
	case isAuthError(err):
		return &Error{Reason: ReasonAuthFailed, Err: fmt.Errorf(
			"%s at %s: the BMC refused user %q: check %q and %q in the BMC Secret and the account's role on the BMC",
			doing, r.endpoint, r.cfg.Credentials.Username, SecretUsername, SecretPassword)}
	case isNetError(err):
		return &Error{Reason: ReasonUnreachable, Err: fmt.Errorf(
			"%s at %s: no answer within %s (%w): check spec.bmc.address, the port, and that the manager can reach the BMC network",
			doing, r.endpoint, r.cfg.Timeout, unwrapURL(err))}
	}
	return &Error{Reason: ReasonProtocolError, Err: fmt.Errorf("%s at %s: %w", doing, r.endpoint, err)}
}

// unwrapURL drops net/http's "Get <url>:" prefix, which repeats the endpoint.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// do logs in, runs fn on the system and logs out. gofish trusts what it decodes (a Systems
// collection that is JSON null dereferences nil in gofish v0.26, found by FuzzRedfishReply): a
// panic on the way is the BMC's broken reply, reported as a ProtocolError, never the manager's
// crash.
func (r *redfish) do(ctx context.Context, fn func(sys *schemas.ComputerSystem) error) (err error) {
	ctx, cancel := withTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			err = &Error{Reason: ReasonProtocolError, Err: fmt.Errorf(
				"talking to the Redfish service at %s: its reply broke the Redfish client (%v): check the BMC's firmware", r.endpoint, p)}
		}
	}()
	c, sys, err := r.session(ctx)
	if err != nil {
		return err
	}
	defer logout(c)
	return fn(sys)
}

func powerOf(s schemas.PowerState) PowerState {
	switch s {
	case schemas.OnPowerState, schemas.PoweringOffPowerState:
		return PowerOn
	case schemas.OffPowerState, schemas.PoweringOnPowerState, schemas.PausedPowerState:
		return PowerOff
	}
	return PowerUnknown
}

// PowerState implements PowerController.
func (r *redfish) PowerState(ctx context.Context) (PowerState, error) {
	st := PowerUnknown
	err := r.do(ctx, func(sys *schemas.ComputerSystem) error {
		st = powerOf(sys.PowerState)
		return nil
	})
	return st, err
}

func (r *redfish) reset(sys *schemas.ComputerSystem, t schemas.ResetType) error {
	if _, err := sys.Reset(t); err != nil {
		return r.classify(err, "reset "+string(t)+" of "+sys.ODataID)
	}
	return nil
}

// PowerOn implements PowerController.
func (r *redfish) PowerOn(ctx context.Context) error {
	return r.do(ctx, func(sys *schemas.ComputerSystem) error {
		if powerOf(sys.PowerState) == PowerOn {
			return nil
		}
		return r.reset(sys, schemas.OnResetType)
	})
}

// PowerOff implements PowerController.
func (r *redfish) PowerOff(ctx context.Context) error {
	return r.do(ctx, func(sys *schemas.ComputerSystem) error {
		if powerOf(sys.PowerState) == PowerOff {
			return nil
		}
		return r.reset(sys, schemas.ForceOffResetType)
	})
}

// PowerCycle implements PowerController: ForceRestart (or PowerCycle where ForceRestart is not
// offered) for a machine that is on, On for one that is off.
func (r *redfish) PowerCycle(ctx context.Context) error {
	return r.do(ctx, func(sys *schemas.ComputerSystem) error {
		if powerOf(sys.PowerState) == PowerOff {
			return r.reset(sys, schemas.OnResetType)
		}
		t := schemas.ForceRestartResetType
		if types, err := sys.GetSupportedResetTypes(); err == nil && len(types) > 0 &&
			!slices.Contains(types, schemas.ForceRestartResetType) && slices.Contains(types, schemas.PowerCycleResetType) {
			t = schemas.PowerCycleResetType
		}
		return r.reset(sys, t)
	})
}

// SetNextBoot implements BootController with a Boot source override (Pxe or Hdd, Once or
// Continuous).
func (r *redfish) SetNextBoot(ctx context.Context, dev Device, persistent bool) error {
	var target schemas.BootSource
	switch dev {
	case DevicePXE:
		target = schemas.PxeBootSource
	case DeviceDisk:
		target = schemas.HddBootSource
	default:
		return fmt.Errorf("boot device %q is not supported: use %s or %s", dev, DevicePXE, DeviceDisk)
	}
	enabled := schemas.OnceBootSourceOverrideEnabled
	if persistent {
		enabled = schemas.ContinuousBootSourceOverrideEnabled
	}
	return r.do(ctx, func(sys *schemas.ComputerSystem) error {
		if allowed := sys.Boot.AllowableBootSourceOverrideTargetValues; len(allowed) > 0 && !slices.Contains(allowed, target) {
			return &Error{Reason: ReasonProtocolError, Err: fmt.Errorf(
				"system %s cannot boot from %s: it offers %v", sys.ODataID, target, allowed)}
		}
		err := sys.SetBoot(&schemas.Boot{BootSourceOverrideTarget: target, BootSourceOverrideEnabled: enabled})
		if err != nil {
			return r.classify(err, "setting the boot override of "+sys.ODataID)
		}
		return nil
	})
}
