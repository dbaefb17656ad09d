package bmc_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/pxe/bmc"
	"github.com/basalt-dev/basalt/pxe/bmc/bmcsim"
)

const (
	rfUser = "root"
	rfPass = "calvin-0f-redfish"
)

// redfishServer serves the Redfish simulator in front of sys over TLS until the test ends, and
// returns it with the PEM of its (self-signed) certificate.
func redfishServer(t *testing.T, f *bmcsim.Redfish) (*httptest.Server, []byte) {
	t.Helper()
	if f.Username == "" {
		f.Username, f.Password = rfUser, rfPass
	}
	srv := httptest.NewTLSServer(f)
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return srv, ca
}

func redfishController(t *testing.T, cfg bmc.Config) bmc.Controller {
	t.Helper()
	cfg.Protocol = basaltv1.BMCRedfish
	if cfg.Credentials.Username == "" {
		cfg.Credentials.Username, cfg.Credentials.Password = rfUser, rfPass
	}
	c, err := bmc.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRedfishPowerAndBoot drives every Controller method over real HTTPS against the Redfish
// simulator, checks the machine's state after each, and checks that every call logged out.
func TestRedfishPowerAndBoot(t *testing.T) {
	sys := &bmcsim.MemorySystem{}
	f := &bmcsim.Redfish{System: sys}
	srv, ca := redfishServer(t, f)
	c := redfishController(t, bmc.Config{Address: srv.URL, Credentials: bmc.Credentials{Username: rfUser, Password: rfPass, CA: ca}})
	ctx := context.Background()

	if st, err := c.PowerState(ctx); err != nil || st != bmc.PowerOff {
		t.Fatalf("PowerState = %s, %v; want Off", st, err)
	}
	if err := c.SetNextBoot(ctx, bmc.DevicePXE, false); err != nil {
		t.Fatal(err)
	}
	if dev, persistent := sys.BootOverride(); dev != bmcsim.BootPXE || persistent {
		t.Fatalf("override %q persistent=%v, want Pxe once", dev, persistent)
	}
	if err := c.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	if on, _ := sys.PowerState(ctx); !on {
		t.Fatal("off after PowerOn")
	}
	if dev, _ := sys.BootOverride(); dev != bmcsim.BootNone {
		t.Fatalf("one-time override %q survived the boot", dev)
	}
	if err := c.PowerOn(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := c.SetNextBoot(ctx, bmc.DeviceDisk, true); err != nil {
		t.Fatal(err)
	}
	if dev, persistent := sys.BootOverride(); dev != bmcsim.BootDisk || !persistent {
		t.Fatalf("override %q persistent=%v, want Hdd continuous", dev, persistent)
	}
	if err := c.PowerCycle(ctx); err != nil {
		t.Fatal(err)
	}
	if sys.Resets() != 1 {
		t.Fatalf("%d resets after PowerCycle of a running machine, want 1", sys.Resets())
	}
	if err := c.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := c.PowerState(ctx); err != nil || st != bmc.PowerOff {
		t.Fatalf("PowerState = %s, %v; want Off", st, err)
	}
	if err := c.PowerOff(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	// PowerCycle of a machine that is off turns it on.
	if err := c.PowerCycle(ctx); err != nil {
		t.Fatal(err)
	}
	if on, _ := sys.PowerState(ctx); !on {
		t.Fatal("PowerCycle left an off machine off")
	}
	created, deleted := f.SessionsCreated()
	if created == 0 || created != deleted || f.SessionsOpen() != 0 {
		t.Fatalf("sessions: %d created, %d deleted, %d open; every call must log out", created, deleted, f.SessionsOpen())
	}
}

// TestRedfishSystemInAddress: a system named in the address is used; one that does not exist is
// an error naming it.
func TestRedfishSystemInAddress(t *testing.T) {
	sys := &bmcsim.MemorySystem{}
	srv, ca := redfishServer(t, &bmcsim.Redfish{System: sys, SystemID: "node-7"})
	creds := bmc.Credentials{Username: rfUser, Password: rfPass, CA: ca}
	c := redfishController(t, bmc.Config{Address: srv.URL + "/redfish/v1/Systems/node-7", Credentials: creds})
	if err := c.PowerOn(context.Background()); err != nil {
		t.Fatal(err)
	}
	if on, _ := sys.PowerState(context.Background()); !on {
		t.Fatal("system node-7 not powered on")
	}
	c = redfishController(t, bmc.Config{Address: srv.URL + "/redfish/v1/Systems/1", Credentials: creds})
	_, err := c.PowerState(context.Background())
	if bmc.ReasonOf(err) != bmc.ReasonProtocolError || !strings.Contains(err.Error(), "/redfish/v1/Systems/1") {
		t.Fatalf("missing system: %v (reason %s)", err, bmc.ReasonOf(err))
	}
}

// TestRedfishBasicAuthWithoutSessionService: a BMC with no SessionService is driven with HTTP
// Basic authentication.
func TestRedfishBasicAuthWithoutSessionService(t *testing.T) {
	sys := &bmcsim.MemorySystem{}
	f := &bmcsim.Redfish{System: sys, NoSessions: true}
	srv, ca := redfishServer(t, f)
	c := redfishController(t, bmc.Config{Address: srv.URL, Credentials: bmc.Credentials{Username: rfUser, Password: rfPass, CA: ca}})
	if err := c.PowerOn(context.Background()); err != nil {
		t.Fatal(err)
	}
	if on, _ := sys.PowerState(context.Background()); !on {
		t.Fatal("not powered on")
	}
	if created, _ := f.SessionsCreated(); created != 0 {
		t.Fatalf("%d sessions created on a service without SessionService", created)
	}
}

// TestRedfishRefusals: each way a BMC connection fails yields the reason a user acts on, a
// message that says what to fix, and never the password.
func TestRedfishRefusals(t *testing.T) {
	sys := &bmcsim.MemorySystem{}
	srv, ca := redfishServer(t, &bmcsim.Redfish{System: sys})
	otherCA := selfSignedPEM(t)

	// A port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	_ = ln.Close()

	// A server that accepts and never answers.
	hang := make(chan struct{})
	hung := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hang }))
	t.Cleanup(func() { close(hang); hung.Close() })
	hungCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hung.Certificate().Raw})

	for _, tc := range []struct {
		name     string
		cfg      bmc.Config
		reason   bmc.Reason
		mentions string
	}{
		{"system roots do not trust a self-signed BMC", bmc.Config{Address: srv.URL,
			Credentials: bmc.Credentials{Username: rfUser, Password: rfPass}}, bmc.ReasonCertificateInvalid, "ca.crt"},
		{"a CA that did not sign the BMC's certificate", bmc.Config{Address: srv.URL,
			Credentials: bmc.Credentials{Username: rfUser, Password: rfPass, CA: otherCA}}, bmc.ReasonCertificateInvalid, "disableCertificateVerification"},
		{"wrong password", bmc.Config{Address: srv.URL,
			Credentials: bmc.Credentials{Username: rfUser, Password: "wrong-password-123", CA: ca}}, bmc.ReasonAuthFailed, `user "root"`},
		{"unknown user", bmc.Config{Address: srv.URL,
			Credentials: bmc.Credentials{Username: "nobody", Password: rfPass, CA: ca}}, bmc.ReasonAuthFailed, "username"},
		{"nothing listens", bmc.Config{Address: "https://" + closedAddr, Timeout: 5 * time.Second,
			Credentials: bmc.Credentials{Username: rfUser, Password: rfPass}}, bmc.ReasonUnreachable, "spec.bmc.address"},
		{"the BMC never answers", bmc.Config{Address: hung.URL, Timeout: 500 * time.Millisecond,
			Credentials: bmc.Credentials{Username: rfUser, Password: rfPass, CA: hungCA}}, bmc.ReasonUnreachable, "no answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := redfishController(t, tc.cfg)
			_, err := c.PowerState(context.Background())
			if err == nil {
				t.Fatal("PowerState succeeded")
			}
			var be *bmc.Error
			if !errors.As(err, &be) || be.Reason != tc.reason {
				t.Fatalf("reason %s, want %s: %v", bmc.ReasonOf(err), tc.reason, err)
			}
			if !strings.Contains(err.Error(), tc.mentions) {
				t.Fatalf("error does not mention %q: %v", tc.mentions, err)
			}
			if strings.Contains(err.Error(), tc.cfg.Credentials.Password) {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
	if on, _ := sys.PowerState(context.Background()); on {
		t.Fatal("a refused client changed the power state")
	}
}

// TestRedfishInsecureSkipVerify: with verification turned off, a self-signed BMC is accepted.
func TestRedfishInsecureSkipVerify(t *testing.T) {
	sys := &bmcsim.MemorySystem{}
	srv, _ := redfishServer(t, &bmcsim.Redfish{System: sys})
	c := redfishController(t, bmc.Config{Address: srv.URL, InsecureSkipVerify: true})
	if err := c.PowerOn(context.Background()); err != nil {
		t.Fatal(err)
	}
	if on, _ := sys.PowerState(context.Background()); !on {
		t.Fatal("not powered on")
	}
}

// selfSignedPEM is a CA certificate that signed nothing the tests serve.
func selfSignedPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
