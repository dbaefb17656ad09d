package bmc_test

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/pxe/bmc"
	"github.com/basalt-dev/basalt/pxe/bmc/bmcsim"
)

// hostileBMC serves the Redfish simulator, except that the n-th request of an operation gets the
// reply the fuzzer made (status and body) instead of the simulator's.
type hostileBMC struct {
	sim *bmcsim.Redfish

	mu      sync.Mutex
	seen    int
	replace int
	status  int
	body    []byte
}

func (h *hostileBMC) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.seen++
	mine := h.seen == h.replace
	status, body := h.status, h.body
	h.mu.Unlock()
	if !mine {
		h.sim.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path == "/redfish/v1/SessionService/Sessions" {
		// Let a forged login look like one, so the client goes on to use it.
		w.Header().Set("X-Auth-Token", "forged")
		w.Header().Set("Location", "/redfish/v1/SessionService/Sessions/forged")
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (h *hostileBMC) arm(replace, status int, body []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seen, h.replace, h.status, h.body = 0, replace, status, body
}

var (
	hostileOnce sync.Once
	hostile     *hostileBMC
	hostileCtl  bmc.Controller
)

// FuzzRedfishReply answers one request of a power or boot operation with any status and body —
// a broken or hostile BMC — and checks that the driver never panics and either succeeds or returns
// a classified *bmc.Error (the Host's BMCReachable reason), within its timeout. Every execution is a whole HTTPS
// exchange (about 40 a second here), hence its CI budget.
//
// fuzz-budget: 2000x
func FuzzRedfishReply(f *testing.F) {
	sys := `{"@odata.id":"/redfish/v1/Systems/1","Id":"1","PowerState":"On","Boot":{"BootSourceOverrideTarget":"None",` +
		`"BootSourceOverrideTarget@Redfish.AllowableValues":["Pxe","Hdd"]},"Actions":{"#ComputerSystem.Reset":` +
		`{"target":"/redfish/v1/Systems/1/Actions/ComputerSystem.Reset","ResetType@Redfish.AllowableValues":["On","ForceOff"]}}}`
	for op := range uint8(5) {
		for n := range uint8(6) {
			f.Add(op, n, uint16(200), []byte(sys))
		}
	}
	f.Add(uint8(0), uint8(1), uint16(200), []byte(`{"Systems":{"@odata.id":"/redfish/v1/Systems"},"Links":{"Sessions":{"@odata.id":"/x"}}}`))
	f.Add(uint8(0), uint8(3), uint16(200), []byte(`{"Members":[{"@odata.id":"/redfish/v1/Systems/1"},{"@odata.id":"/redfish/v1/Systems/2"}]}`))
	f.Add(uint8(1), uint8(4), uint16(200), []byte(`{"PowerState":"Off","Actions":{}}`))
	f.Add(uint8(2), uint8(4), uint16(200), []byte(`{"PowerState":"On","Actions":{"#ComputerSystem.Reset":{"target":"http://[::1]:0/x"}}}`))
	f.Add(uint8(3), uint8(4), uint16(401), []byte(`{"error":{"code":"Base.1.0.NoValidSession"}}`))
	f.Add(uint8(0), uint8(2), uint16(500), []byte(`{"error":{"@Message.ExtendedInfo":[null]}}`))
	f.Add(uint8(0), uint8(4), uint16(200), []byte(`null`))
	f.Add(uint8(0), uint8(4), uint16(200), []byte(`[]`))
	f.Fuzz(func(t *testing.T, op, n uint8, status uint16, body []byte) {
		hostileOnce.Do(func() {
			hostile = &hostileBMC{sim: &bmcsim.Redfish{Username: rfUser, Password: rfPass, System: &bmcsim.MemorySystem{}}}
			srv := httptest.NewTLSServer(hostile)
			ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
			var err error
			hostileCtl, err = bmc.New(bmc.Config{Protocol: basaltv1.BMCRedfish, Address: srv.URL,
				Credentials: bmc.Credentials{Username: rfUser, Password: rfPass, CA: ca}, Timeout: 5 * time.Second})
			if err != nil {
				panic(err)
			}
		})
		code := int(status)%500 + 100 // 100..599
		if code < 200 {
			code += 100 // 1xx replies are not final: net/http would wait for the next one
		}
		hostile.arm(int(n%8)+1, code, body)
		driveBMC(t, hostileCtl, op, 20*time.Second)
	})
}

// driveBMC runs operation op (power state, on, off, cycle or next boot) against c and checks what
// a broken BMC may cause: success, or a classified *bmc.Error with a message, within limit; never
// a panic (the fuzzer reports one).
func driveBMC(t *testing.T, c bmc.Controller, op uint8, limit time.Duration) {
	t.Helper()
	ctx := context.Background()
	began := time.Now()
	var err error
	switch op % 5 {
	case 0:
		var st bmc.PowerState
		st, err = c.PowerState(ctx)
		if err == nil && st != bmc.PowerOn && st != bmc.PowerOff && st != bmc.PowerUnknown {
			t.Fatalf("PowerState = %q", st)
		}
	case 1:
		err = c.PowerOn(ctx)
	case 2:
		err = c.PowerOff(ctx)
	case 3:
		err = c.PowerCycle(ctx)
	case 4:
		err = c.SetNextBoot(ctx, bmc.DevicePXE, false)
	}
	var be *bmc.Error
	if err != nil && !errors.As(err, &be) {
		t.Fatalf("operation %d: unclassified error %T: %v", op%5, err, err)
	}
	if err != nil && (be.Reason == "" || strings.TrimSpace(err.Error()) == "") {
		t.Fatalf("operation %d: error without a reason or message: %#v", op%5, err)
	}
	if took := time.Since(began); took > limit {
		t.Fatalf("operation %d took %s, more than %s", op%5, took, limit)
	}
}

// TestRedfishReplyTooLarge: a BMC that answers with more than the reply bound gets a
// ProtocolError, and the manager reads no more than the bound.
func TestRedfishReplyTooLarge(t *testing.T) {
	sim := &bmcsim.Redfish{Username: rfUser, Password: rfPass, System: &bmcsim.MemorySystem{}}
	var sent int64
	var mu sync.Mutex
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/redfish/v1/Systems/1" {
			sim.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"Id":"1","Name":"`)) // a name that never ends
		chunk := []byte(strings.Repeat("x", 1<<16))
		for range 256 { // 16 MiB
			n, err := w.Write(chunk)
			mu.Lock()
			sent += int64(n)
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	c, err := bmc.New(bmc.Config{Protocol: basaltv1.BMCRedfish, Address: srv.URL + "/redfish/v1/Systems/1",
		Credentials: bmc.Credentials{Username: rfUser, Password: rfPass, CA: ca}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.PowerState(context.Background())
	if bmc.ReasonOf(err) != bmc.ReasonProtocolError || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("PowerState against a 16 MiB reply: %v (reason %q), want a ProtocolError about its size", err, bmc.ReasonOf(err))
	}
}
