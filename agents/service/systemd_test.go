package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// fakeSystemd is an in-process systemctl: it loads unit files from the unit folder on
// daemon-reload, tracks enabled and active units, and counts (re)starts per unit.
type fakeSystemd struct {
	unitDir string
	version string
	loaded  map[string]string // unit → content at the last daemon-reload
	enabled map[string]bool
	active  map[string]bool
	starts  map[string]int
	// startedFrom is the loaded content each unit was last started from.
	startedFrom map[string]string
	calls       []string
	failRestart bool
}

func newFakeSystemd(dir string) *fakeSystemd {
	return &fakeSystemd{unitDir: dir, version: "systemd 252 (252.36-1~deb12u1)\n+PAM +AUDIT", loaded: map[string]string{},
		enabled: map[string]bool{}, active: map[string]bool{}, starts: map[string]int{}, startedFrom: map[string]string{}}
}

func (f *fakeSystemd) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	f.calls = append(f.calls, strings.Join(args, " "))
	if name != "systemctl" {
		return nil, fmt.Errorf("unexpected command %s", name)
	}
	unit := args[len(args)-1]
	start := func() error {
		if _, ok := f.loaded[unit]; !ok {
			return fmt.Errorf("Unit %s not found.", unit)
		}
		f.active[unit] = true
		f.starts[unit]++
		f.startedFrom[unit] = f.loaded[unit]
		return nil
	}
	switch args[0] {
	case "--version":
		return []byte(f.version), nil
	case "daemon-reload":
		f.loaded = map[string]string{}
		entries, _ := os.ReadDir(f.unitDir)
		for _, e := range entries {
			b, _ := os.ReadFile(filepath.Join(f.unitDir, e.Name()))
			f.loaded[e.Name()] = string(b)
		}
	case "enable":
		if _, ok := f.loaded[unit]; !ok {
			return nil, fmt.Errorf("Unit file %s does not exist.", unit)
		}
		f.enabled[unit] = true
		if args[1] == "--now" && !f.active[unit] {
			return nil, start()
		}
	case "restart":
		if f.failRestart {
			return nil, errors.New("Job for " + unit + " failed")
		}
		return nil, start()
	case "disable":
		delete(f.enabled, unit)
		delete(f.active, unit)
	case "stop":
		delete(f.active, unit)
	case "is-active":
		if f.active[unit] {
			return []byte("active\n"), nil
		}
		return []byte("inactive\n"), errors.New("exit status 3")
	case "show":
		state := "inactive"
		if f.active[unit] {
			state = "active"
		}
		return []byte("ActiveState=" + state + "\nSubState=running\nMainPID=4242\n"), nil
	default:
		return nil, fmt.Errorf("unexpected systemctl %v", args)
	}
	return nil, nil
}

func newSystemd(t *testing.T) (*Systemd, *fakeSystemd) {
	t.Helper()
	dir := t.TempDir()
	f := newFakeSystemd(filepath.Join(dir, "units"))
	if err := os.MkdirAll(f.unitDir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Systemd{UnitDir: f.unitDir, StateDir: filepath.Join(dir, "state"), Run: f}
	if err := s.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, f
}

func etcdService() plan.Service {
	return plan.Service{Name: "etcd", Argv: []string{"/opt/basalt/bin/etcd", "--name=cp-1", "--data-dir=/var/lib/etcd"}, Restart: plan.RestartAlways}
}

func TestSystemdEnsure(t *testing.T) {
	s, f := newSystemd(t)
	ctx := context.Background()
	svc := etcdService()
	unit := "basalt-etcd.service"

	changed, err := s.Ensure(ctx, svc, "h1")
	if err != nil || !changed || !f.active[unit] || !f.enabled[unit] || f.starts[unit] != 1 {
		t.Fatalf("first Ensure: changed=%v err=%v fake=%+v", changed, err, f)
	}
	// Unchanged: no reload, no restart.
	f.calls = nil
	if changed, err := s.Ensure(ctx, svc, "h1"); err != nil || changed {
		t.Fatalf("same hash: changed=%v err=%v", changed, err)
	}
	if d := cmp.Diff([]string{"is-active " + unit}, f.calls); d != "" {
		t.Errorf("calls for an unchanged service (-want +got):\n%s", d)
	}
	// Stopped behind the agent's back: started, not restarted.
	delete(f.active, unit)
	if changed, err := s.Ensure(ctx, svc, "h1"); err != nil || !changed || !f.active[unit] {
		t.Fatalf("inactive: changed=%v err=%v", changed, err)
	}
	// A flag change: rewritten, reloaded, restarted from the new unit.
	svc.Argv = append(svc.Argv, "--quota-backend-bytes=8589934592")
	if changed, err := s.Ensure(ctx, svc, "h2"); err != nil || !changed {
		t.Fatalf("new hash: changed=%v err=%v", changed, err)
	}
	if !strings.Contains(f.startedFrom[unit], "--quota-backend-bytes=8589934592") || f.starts[unit] != 3 {
		t.Errorf("not restarted from the new unit: starts=%d\n%s", f.starts[unit], f.startedFrom[unit])
	}
	st, _ := s.Status(ctx, "etcd")
	if d := cmp.Diff(State{Hash: "h2", Active: true, PID: 4242, Message: "active/running"}, st); d != "" {
		t.Errorf("status (-want +got):\n%s", d)
	}
}

// TestSystemdCrashBetweenWriteAndRestart: a restart that did not happen (the agent was killed,
// or systemctl failed) leaves the record at the old hash, so the next Ensure reloads and
// restarts even though the unit file is already up to date.
func TestSystemdCrashBetweenWriteAndRestart(t *testing.T) {
	s, f := newSystemd(t)
	ctx := context.Background()
	svc := etcdService()
	if _, err := s.Ensure(ctx, svc, "h1"); err != nil {
		t.Fatal(err)
	}
	svc.Env = map[string]string{"ETCD_SNAPSHOT_COUNT": "10000"}
	f.failRestart = true
	if _, err := s.Ensure(ctx, svc, "h2"); err == nil {
		t.Fatal("a failed restart must be an error")
	}
	if st, _ := s.Status(ctx, "etcd"); st.Hash != "h1" {
		t.Fatalf("hash recorded before the restart succeeded: %+v", st)
	}
	f.failRestart = false
	f.calls = nil
	if changed, err := s.Ensure(ctx, svc, "h2"); err != nil || !changed {
		t.Fatalf("retry: changed=%v err=%v", changed, err)
	}
	if !slices.Contains(f.calls, "daemon-reload") || !strings.Contains(f.startedFrom["basalt-etcd.service"], "ETCD_SNAPSHOT_COUNT") {
		t.Errorf("retry did not reload and restart from the new unit: %q", f.calls)
	}
}

func TestSystemdStopAndInstalled(t *testing.T) {
	s, f := newSystemd(t)
	ctx := context.Background()
	api := plan.Service{Name: "kube-apiserver", Argv: []string{"/opt/basalt/bin/kube-apiserver"}, After: []string{"etcd"}}
	for _, svc := range []plan.Service{etcdService(), api} {
		if _, err := s.Ensure(ctx, svc, "h-"+svc.Name); err != nil {
			t.Fatal(err)
		}
	}
	// The agent's own unit and a unit written just before a crash (no record yet).
	for _, u := range []string{"basalt-agent.service", "basalt-orphan.service"} {
		if err := os.WriteFile(filepath.Join(f.unitDir, u), []byte("[Service]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in, err := s.Installed(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []Installed{{Name: "etcd", Hash: "h-etcd"}, {Name: "kube-apiserver", Hash: "h-kube-apiserver", After: []string{"etcd"}}, {Name: "orphan"}}
	if d := cmp.Diff(want, in); d != "" {
		t.Errorf("installed (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"orphan", "kube-apiserver", "etcd"}, StopOrder(in)); d != "" {
		t.Errorf("stop order (-want +got):\n%s", d)
	}
	if err := s.Stop(ctx, "agent"); err == nil {
		t.Error("the agent's own unit must never be stopped")
	}
	if err := s.Stop(ctx, "kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	if f.active["basalt-kube-apiserver.service"] || f.enabled["basalt-kube-apiserver.service"] {
		t.Error("unit still active or enabled")
	}
	if _, err := os.Stat(filepath.Join(f.unitDir, "basalt-kube-apiserver.service")); !os.IsNotExist(err) {
		t.Error("unit file left behind")
	}
	// Stopping again (an interrupted Stop re-run) is fine.
	if err := s.Stop(ctx, "kube-apiserver"); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if st, _ := s.Status(ctx, "kube-apiserver"); st != (State{}) {
		t.Errorf("status after stop: %+v", st)
	}
}

func TestRenderUnit(t *testing.T) {
	svc := plan.Service{
		Name: "containerd", Argv: []string{"/opt/basalt/bin/containerd", "--config", "/etc/basalt/containerd/config.toml"},
		Env: map[string]string{"HOME": "/root", "GOTRACEBACK": "all"}, After: []string{"etcd", "setup"}, Restart: plan.RestartOnFailure,
	}
	got, err := RenderUnit(svc, UnitOptions{Hash: "abc", KeepChildren: true})
	if err != nil {
		t.Fatal(err)
	}
	want := `# Written by basalt-agent from this host's Plan; local changes are overwritten.
# basalt-service-hash: abc
[Unit]
Description=Basalt containerd
After=network-online.target basalt-etcd.service basalt-setup.service
Wants=network-online.target basalt-etcd.service basalt-setup.service
StartLimitIntervalSec=0

[Service]
Type=simple
ExecStart=/opt/basalt/bin/containerd --config /etc/basalt/containerd/config.toml
Environment=PATH=/opt/basalt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
Environment=GOTRACEBACK=all
Environment=HOME=/root
Restart=on-failure
RestartSec=1
KillMode=process
Delegate=yes
TimeoutStopSec=30
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
`
	if d := cmp.Diff(want, string(got)); d != "" {
		t.Errorf("unit (-want +got):\n%s", d)
	}
	got, _ = RenderUnit(etcdService(), UnitOptions{RestartSteps: true})
	for _, line := range []string{"RestartSteps=10\n", "RestartMaxDelaySec=60\n", "KillMode=mixed\n", "Restart=always\n"} {
		if !strings.Contains(string(got), line) {
			t.Errorf("missing %q in\n%s", line, got)
		}
	}
}

func TestSystemdVersionGatesRestartSteps(t *testing.T) {
	for v, want := range map[string]bool{"systemd 252 (252.36-1~deb12u1)": false, "systemd 256 (256.7)": true, "garbage": false} {
		s, f := newSystemd(t)
		f.version = v
		if err := s.Init(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := s.unitOptions("etcd", "h").RestartSteps; got != want {
			t.Errorf("%q: RestartSteps=%v", v, got)
		}
	}
}

func TestQuoteCommandLine(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"/bin/etcd", "--name=cp-1"}, "/bin/etcd --name=cp-1"},
		{[]string{"/bin/x", "a b", ""}, `/bin/x "a b" ""`},
		{[]string{"/bin/x", `say "hi"\now`}, `/bin/x "say \"hi\"\\now"`},
		{[]string{"/bin/x", "$HOME", "100%", ";"}, `/bin/x "$$HOME" "100%%" ";"`},
		{[]string{"/bin/x", "line1\nline2\t"}, `/bin/x "line1\nline2\t"`},
		{[]string{"/bin/x", "it's"}, `/bin/x "it's"`},
	} {
		if got := QuoteCommandLine(tc.argv); got != tc.want {
			t.Errorf("QuoteCommandLine(%q) = %s, want %s", tc.argv, got, tc.want)
		}
		if back, err := splitCommandLine(QuoteCommandLine(tc.argv)); err != nil || !slices.Equal(back, tc.argv) {
			t.Errorf("round trip of %q: %q %v", tc.argv, back, err)
		}
	}
}

// FuzzQuoteCommandLine checks that systemd's splitting (as documented in systemd.service(5):
// whitespace-separated words, double quotes, C escapes, "$$" and "%%") gives argv back.
func FuzzQuoteCommandLine(f *testing.F) {
	f.Add("/bin/x", "a b", `"q"`, "$V%s\\")
	f.Add("/bin/x", "", ";", "\x01\xff")
	f.Fuzz(func(t *testing.T, a, b, c, d string) {
		argv := []string{"/" + strings.TrimLeft(a, "/"), b, c, d}
		for _, w := range argv {
			if strings.ContainsRune(w, 0) || !utf8.ValidString(w) {
				return
			}
		}
		back, err := splitCommandLine(QuoteCommandLine(argv))
		if err != nil || !slices.Equal(back, argv) {
			t.Fatalf("round trip of %q: %q %v (line %s)", argv, back, err, QuoteCommandLine(argv))
		}
		if strings.ContainsAny(QuoteCommandLine(argv), "\n\r") {
			t.Fatalf("line break in %q", QuoteCommandLine(argv))
		}
	})
}

// splitCommandLine is an independent model of how systemd reads an ExecStart= line: specifiers
// ("%%") and variables ("$$") are resolved, then words are split on whitespace with quotes and C
// escapes.
func splitCommandLine(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, quote := false, byte(0)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case (c == '%' || c == '$') && i+1 < len(line) && line[i+1] == c:
			cur.WriteByte(c)
			i++
			inWord = true
		case c == '%' || c == '$':
			return nil, fmt.Errorf("unescaped %c at %d", c, i)
		case c == '\\':
			if i+1 >= len(line) {
				return nil, errors.New("trailing backslash")
			}
			i++
			switch line[i] {
			case 'n':
				cur.WriteByte('\n')
			case 't':
				cur.WriteByte('\t')
			case 'x':
				var v byte
				if _, err := fmt.Sscanf(line[i+1:i+3], "%02x", &v); err != nil {
					return nil, err
				}
				cur.WriteByte(v)
				i += 2
			default:
				cur.WriteByte(line[i])
			}
			inWord = true
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '\''):
			quote, inWord = c, true
		case quote == 0 && (c == ' ' || c == '\t'):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
