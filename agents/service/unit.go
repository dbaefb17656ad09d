package service

import (
	"fmt"
	"strings"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// UnitPrefix starts the name of every unit the agent writes: basalt-<service>.service.
const UnitPrefix = "basalt-"

// UnitName is the systemd unit of a service.
func UnitName(service string) string { return UnitPrefix + service + ".service" }

// UnitOptions are the parts of a unit that do not come from the Plan.
type UnitOptions struct {
	// Hash is written into a comment, for people reading the unit.
	Hash string
	// RestartDelay is the delay before the first restart.
	RestartDelay time.Duration
	// RestartMaxDelay caps the delay when RestartSteps is on.
	RestartMaxDelay time.Duration
	// RestartSteps turns on systemd's exponential restart backoff (RestartSteps= and
	// RestartMaxDelaySec=, systemd 254 and later). Older systemd restarts every RestartDelay.
	RestartSteps bool
	// StopTimeout is TimeoutStopSec: SIGTERM, then SIGKILL after this long.
	StopTimeout time.Duration
	// KeepChildren sets KillMode=process and Delegate=yes (a container runtime: stopping or
	// restarting it must not kill the containers' shims). Otherwise KillMode=mixed: SIGTERM to the
	// main process, SIGKILL to whatever is left when StopTimeout expires.
	KeepChildren bool
}

// RenderUnit renders the systemd unit of svc. The same input gives the same bytes.
//
// Dependencies become After= and Wants=, not Requires=: Requires= would restart (or stop) a
// service whenever one of its dependencies is restarted (or stopped), and the agent restarts
// only the services whose own definition changed. The agent itself waits for a dependency's
// probe before it (re)starts a dependent.
func RenderUnit(svc plan.Service, o UnitOptions) ([]byte, error) {
	if err := checkService(svc); err != nil {
		return nil, err
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Written by basalt-agent from this host's Plan; local changes are overwritten.")
	w("# basalt-service-hash: %s", o.Hash)
	w("[Unit]")
	w("Description=Basalt %s", svc.Name)
	deps := []string{"network-online.target"}
	for _, d := range svc.After {
		deps = append(deps, UnitName(d))
	}
	w("After=%s", strings.Join(deps, " "))
	w("Wants=%s", strings.Join(deps, " "))
	// Never give up restarting: the agent, not systemd's start limit, decides when a service is
	// broken.
	w("StartLimitIntervalSec=0")
	w("")
	w("[Service]")
	w("Type=simple")
	w("ExecStart=%s", QuoteCommandLine(svc.Argv))
	for _, kv := range Environ(svc) {
		w("Environment=%s", quoteWord(kv, false))
	}
	switch svc.Restart {
	case plan.RestartOnFailure:
		w("Restart=on-failure")
	default:
		w("Restart=always")
	}
	w("RestartSec=%s", seconds(o.RestartDelay, time.Second))
	if o.RestartSteps {
		w("RestartSteps=10")
		w("RestartMaxDelaySec=%s", seconds(o.RestartMaxDelay, time.Minute))
	}
	if o.KeepChildren {
		w("KillMode=process")
		w("Delegate=yes")
	} else {
		w("KillMode=mixed")
	}
	w("TimeoutStopSec=%s", seconds(o.StopTimeout, 30*time.Second))
	w("LimitNOFILE=1048576")
	w("")
	w("[Install]")
	w("WantedBy=multi-user.target")
	return []byte(b.String()), nil
}

func seconds(d, def time.Duration) string {
	if d <= 0 {
		d = def
	}
	if d%time.Second == 0 {
		return fmt.Sprintf("%d", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

// QuoteCommandLine renders argv as a systemd command line (ExecStart=): every word that is not
// plainly safe is double-quoted with C escapes, "$" is doubled (no variable expansion) and "%"
// is doubled (no specifier expansion), so systemd passes exactly argv to the process.
func QuoteCommandLine(argv []string) string {
	words := make([]string, len(argv))
	for i, a := range argv {
		words[i] = quoteWord(a, true)
	}
	return strings.Join(words, " ")
}

// quoteWord quotes one word of a command line (dollar true) or one Environment= assignment
// (dollar false: systemd does not expand variables there).
func quoteWord(s string, dollar bool) string {
	safe := s != "" && s != ";"
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && !strings.ContainsRune("/_-.,:=+@", c) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '"':
			b.WriteString(`\"`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '%':
			b.WriteString("%%")
		case c == '$' && dollar:
			b.WriteString("$$")
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
