package routes

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// table is a fake ip command over an in-memory routing table.
type table struct {
	routes map[string]string // destination → gateway
	calls  []string
}

func (t *table) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	t.calls = append(t.calls, name+" "+strings.Join(args, " "))
	if len(args) < 6 || args[1] != "route" || args[4] != "via" {
		return nil, errors.New("unexpected command")
	}
	dst, gw := args[3], args[5]
	switch args[2] {
	case "replace":
		t.routes[dst] = gw
	case "del":
		if t.routes[dst] != gw {
			out := []byte("RTNETLINK answers: No such process\n")
			return out, errors.New("exit status 2")
		}
		delete(t.routes, dst)
	}
	return nil, nil
}

func TestReplaceAndDelete(t *testing.T) {
	tb := &table{routes: map[string]string{}}
	p := Programmer{Run: tb}
	ctx := context.Background()
	for _, r := range []plan.Route{
		{Destination: "10.244.1.0/24", Gateway: "172.28.0.12"},
		{Destination: "10.244.1.0/24", Gateway: "172.28.0.13"}, // gateway moved: replaced
		{Destination: "fd00:10:244:2::/64", Gateway: "fd00::12"},
	} {
		if err := p.Replace(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{"10.244.1.0/24": "172.28.0.13", "fd00:10:244:2::/64": "fd00::12"}
	if d := cmp.Diff(want, tb.routes); d != "" {
		t.Errorf("table (-want +got):\n%s", d)
	}
	if tb.calls[0] != "ip -4 route replace 10.244.1.0/24 via 172.28.0.12" || !strings.HasPrefix(tb.calls[2], "ip -6 ") {
		t.Errorf("commands: %q", tb.calls)
	}
	if err := p.Delete(ctx, plan.Route{Destination: "10.244.1.0/24", Gateway: "172.28.0.13"}); err != nil {
		t.Fatal(err)
	}
	// Gone already (a repeated delete after a crash): not an error.
	if err := p.Delete(ctx, plan.Route{Destination: "10.244.1.0/24", Gateway: "172.28.0.13"}); err != nil {
		t.Errorf("deleting a missing route: %v", err)
	}
	if _, ok := tb.routes["10.244.1.0/24"]; ok {
		t.Error("route not deleted")
	}
}

func TestCheck(t *testing.T) {
	for _, r := range []plan.Route{
		{Destination: "10.244.1.1/24", Gateway: "172.28.0.12"},
		{Destination: "10.244.1.0", Gateway: "172.28.0.12"},
		{Destination: "10.244.1.0/24", Gateway: "fd00::1"},
		{Destination: "10.244.1.0/24", Gateway: "node-2"},
	} {
		if _, _, err := Check(r); err == nil {
			t.Errorf("%+v accepted", r)
		}
		if err := (Programmer{Run: &table{}}).Replace(context.Background(), r); err == nil {
			t.Errorf("%+v programmed", r)
		}
	}
}

// links is a fake ip command that knows some links.
type links struct{ names map[string]bool }

func (l *links) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	if name != "ip" || len(args) != 3 || args[0] != "link" || args[1] != "delete" {
		return nil, errors.New("unexpected command")
	}
	if args[2] == "lo" {
		return []byte("RTNETLINK answers: Operation not supported\n"), errors.New("exit status 2")
	}
	if !l.names[args[2]] {
		return []byte("Cannot find device \"" + args[2] + "\"\n"), errors.New("exit status 1")
	}
	delete(l.names, args[2])
	return nil, nil
}

func TestDeleteLink(t *testing.T) {
	l := &links{names: map[string]bool{"cni0": true}}
	p := Programmer{Run: l}
	for range 2 { // the second time it is gone already: no error
		if err := p.DeleteLink(context.Background(), "cni0"); err != nil {
			t.Fatal(err)
		}
	}
	if l.names["cni0"] {
		t.Error("not deleted")
	}
	if err := p.DeleteLink(context.Background(), "lo"); err == nil {
		t.Error("another failure than a missing device is no error")
	}
}
