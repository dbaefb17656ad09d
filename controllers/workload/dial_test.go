package workload

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestDialFallsBackToAlternates: an endpoint that does not answer (a virtual IP nobody holds) is
// passed over for the Cluster's API servers, and a connection there ends after its lifetime.
func TestDialFallsBackToAlternates(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	_ = dead.Close() // nothing listens there any more: refused

	var asked []string
	w := &Clients{AlternateLifetime: 300 * time.Millisecond, Alternates: func(_ context.Context, ns, name string) []string {
		asked = append(asked, ns+"/"+name)
		return []string{deadAddr, "127.0.0.1:1", ln.Addr().String()}
	}}
	before := testutil.ToFloat64(alternateDials)
	dial := w.dialer("ns", "prod")
	c, err := dial(context.Background(), "tcp", deadAddr)
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) != 1 || asked[0] != "ns/prod" {
		t.Errorf("alternates asked for %v", asked)
	}
	if got := c.RemoteAddr().String(); got != ln.Addr().String() {
		t.Errorf("connected to %s, want the alternate %s", got, ln.Addr())
	}
	if got := testutil.ToFloat64(alternateDials) - before; got != 1 {
		t.Errorf("alternate dials counted %v, want 1", got)
	}
	// The connection to the alternate closes itself, so the endpoint is tried again.
	server := <-accepted
	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := server.Read(make([]byte, 1)); err == nil {
		t.Error("the connection to the alternate stayed open past its lifetime")
	}

	// An endpoint that answers is used, without asking for alternates.
	asked = nil
	c2, err := dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c2.Close()
	if len(asked) != 0 {
		t.Errorf("alternates asked for %v although the endpoint answered", asked)
	}

	// Nothing answers: the endpoint's error.
	w.Alternates = func(context.Context, string, string) []string { return []string{"127.0.0.1:1"} }
	if _, err := w.dialer("ns", "prod")(context.Background(), "tcp", deadAddr); err == nil {
		t.Error("a dial succeeded with nothing listening")
	}
}
