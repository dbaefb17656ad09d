package bmc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// TestIPMIChildCrashIsAProtocolError: when the process that runs an IPMI operation dies (go-ipmi
// panicking in one of its goroutines on a malformed reply: testdata/crashers/README.md), the
// manager gets a ProtocolError that quotes the panic, and a child that hangs is cut off at the
// timeout as Unreachable; the manager itself goes on.
func TestIPMIChildCrashIsAProtocolError(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	m, err := newIPMI(Config{Protocol: basaltv1.BMCIPMI, Address: "192.0.2.1", Timeout: time.Second,
		Credentials: Credentials{Username: "admin", Password: "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, body string
		reason     Reason
		says       string
	}{
		{"panic", `cat >/dev/null; echo 'panic: runtime error: slice bounds out of range [:-114]' >&2; echo 'goroutine 4 [running]:' >&2; exit 2`,
			ReasonProtocolError, "broke the IPMI client (panic: runtime error: slice bounds out of range [:-114])"},
		{"hang", `exec sleep 60`, ReasonUnreachable, "no result within 1s"},
		{"garbage", `cat >/dev/null; echo not-json`, ReasonProtocolError, "unreadable answer"},
		{"classified", `cat >/dev/null; echo '{"reason":"AuthenticationFailed","error":"the BMC refused user \"admin\""}'`,
			ReasonAuthFailed, "refused user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &isolatedIPMI{inner: m, exe: script(tc.name, tc.body)}
			_, err := c.PowerState(context.Background())
			var be *Error
			if !errors.As(err, &be) || be.Reason != tc.reason || !strings.Contains(be.Error(), tc.says) {
				t.Fatalf("PowerState = %v, want a %s error saying %q", err, tc.reason, tc.says)
			}
		})
	}
	// And through the real child: this test binary runs the operation (init sees the variable).
	c, err := newIsolatedIPMI(Config{Protocol: basaltv1.BMCIPMI, Address: "127.0.0.1:1", Timeout: 300 * time.Millisecond,
		Credentials: Credentials{Username: "admin", Password: "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PowerState(context.Background()); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("PowerState of nothing through the child = %v, want a classified error naming the address", err)
	}
}
