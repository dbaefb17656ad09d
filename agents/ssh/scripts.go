package ssh

import (
	"path"
	"strings"

	"github.com/basalt-dev/basalt/agents/protocol"
)

// The scripts below run with `sh -c` on the host, as root, each after preamble(). They print
// key=value lines on stdout for Install to read and explain failures on stderr. They are written
// for a POSIX sh (dash, busybox ash, bash).

// preamble defines the paths (under Root) and the helpers every script uses.
func (in *Installer) preamble() string {
	root := strings.TrimRight(path.Clean("/"+in.Root), "/")
	var b strings.Builder
	b.WriteString("set -eu\n")
	b.WriteString("R=" + shellQuote(root) + "\n")
	b.WriteString(`BIN="$R"` + shellQuote(protocol.AgentBinaryPath) + "\n")
	b.WriteString("UNIT_NAME=" + shellQuote(protocol.AgentUnit) + "\n")
	b.WriteString(`UNIT="$R"` + shellQuote(protocol.AgentUnitPath) + "\n")
	b.WriteString(`PIDFILE="$R"` + shellQuote(protocol.AgentPIDFile) + "\n")
	b.WriteString(`LOG="$R"` + shellQuote(protocol.AgentLogFile) + "\n")
	b.WriteString(`BOOT="$R"` + shellQuote(protocol.BootstrapPath) + "\n")
	b.WriteString(`CERT="$R"` + shellQuote(protocol.CertFile) + "\n")
	b.WriteString(scriptHelpers)
	return b.String()
}

const scriptHelpers = `
has_systemd() { [ -d "$R/run/systemd/system" ]; }
# ours PID: the process runs the agent binary (guards against a recycled pid; a zombie has no
# command line and does not count).
ours() {
	c=$(tr '\000' ' ' 2>/dev/null <"/proc/$1/cmdline") || return 1
	case "$c" in *"$BIN"*) return 0 ;; esac
	return 1
}
# agent_pid prints the pid of the agent started without systemd, if it runs.
agent_pid() {
	[ -f "$PIDFILE" ] || return 1
	p=$(cat "$PIDFILE" 2>/dev/null) || return 1
	case "$p" in '' | *[!0-9]*) return 1 ;; esac
	ours "$p" || return 1
	echo "$p"
}
# stop_pid stops the agent started without systemd: TERM, then KILL after 10s.
stop_pid() {
	p=$(agent_pid) || { rm -f "$PIDFILE"; return 0; }
	kill "$p" 2>/dev/null || true
	i=0
	while ours "$p"; do
		i=$((i + 1))
		if [ "$i" -ge 100 ]; then kill -9 "$p" 2>/dev/null || true; fi
		if [ "$i" -ge 150 ]; then echo "the agent (pid $p) does not stop" >&2; return 2; fi
		sleep 0.1
	done
	rm -f "$PIDFILE"
	echo stopped=yes
}
`

// scriptProbe reports the host's state; it changes nothing.
const scriptProbe = `
command -v sha256sum >/dev/null 2>&1 || { echo "sha256sum is not installed on the host (coreutils)" >&2; exit 3; }
echo "arch=$(uname -m)"
if has_systemd; then echo init=systemd; else echo init=supervisor; fi
if [ -f "$BIN" ]; then set -- $(sha256sum <"$BIN"); echo "binary=$1"; fi
if [ -f "$UNIT" ]; then set -- $(sha256sum <"$UNIT"); echo "unit=$1"; fi
if [ -s "$CERT" ]; then echo registered=yes; echo "cert=$(grep -v -e '-----' "$CERT" | tr -d '\n\r ')"; fi
if has_systemd; then
	if systemctl is-active --quiet "$UNIT_NAME" 2>/dev/null; then echo running=yes; fi
elif agent_pid >/dev/null; then
	echo running=yes
fi
`

// scriptUploadBinary reads the agent from stdin, checks it against $SHA and renames it into place.
const scriptUploadBinary = `
mkdir -p "${BIN%/*}"
tmp="$BIN.upload.$$"
trap 'rm -f "$tmp"' EXIT
(umask 077 && cat >"$tmp")
set -- $(sha256sum <"$tmp")
if [ "$1" != "$SHA" ]; then
	echo "the uploaded agent has sha256 $1, want $SHA; the installed binary is unchanged" >&2
	exit 4
fi
chmod 0755 "$tmp"
mv -f "$tmp" "$BIN"
trap - EXIT
`

// scriptWriteBootstrap reads the bootstrap JSON from stdin and writes it 0600 in a 0700 folder.
const scriptWriteBootstrap = `
umask 077
mkdir -p "${BOOT%/*}"
chmod 0700 "${BOOT%/*}"
tmp="$BOOT.tmp.$$"
trap 'rm -f "$tmp"' EXIT
cat >"$tmp"
chmod 0600 "$tmp"
mv -f "$tmp" "$BOOT"
trap - EXIT
`

// scriptStartSystemd installs the unit read from stdin when $WRITE_UNIT=1, enables it, and
// restarts it when $RESTART=1 or starts it when it is not active.
const scriptStartSystemd = `
command -v systemctl >/dev/null 2>&1 || { echo "systemd is PID 1 but systemctl is not installed" >&2; exit 3; }
if [ "$WRITE_UNIT" = 1 ]; then
	mkdir -p "${UNIT%/*}"
	tmp="$UNIT.tmp.$$"
	trap 'rm -f "$tmp"' EXIT
	cat >"$tmp"
	chmod 0644 "$tmp"
	mv -f "$tmp" "$UNIT"
	trap - EXIT
	systemctl daemon-reload
fi
systemctl enable --quiet "$UNIT_NAME"
if [ "$RESTART" = 1 ]; then
	systemctl restart "$UNIT_NAME"
	echo started=yes
elif ! systemctl is-active --quiet "$UNIT_NAME"; then
	systemctl start "$UNIT_NAME"
	echo started=yes
fi
`

// scriptStartSupervisor starts the agent detached when it does not run, after stopping it when
// $RESTART=1. The agent gets its own session (setsid), ignores the hangup of the SSH session
// (nohup), and holds none of the session's file descriptors.
const scriptStartSupervisor = `
if command -v setsid >/dev/null 2>&1; then SETSID=setsid; else SETSID=; fi
if [ "$RESTART" = 1 ]; then stop_pid >/dev/null; fi
if ! agent_pid >/dev/null; then
	mkdir -p "${PIDFILE%/*}" "${LOG%/*}"
	rm -f "$PIDFILE"
	# The child writes its own pid before it becomes the agent (exec keeps the pid), so the
	# pidfile is right whether or not setsid had to fork.
	$SETSID nohup sh -c 'echo $$ >"$1.tmp" && mv -f "$1.tmp" "$1" && shift && exec "$@"' basalt-agent-start \
		"$PIDFILE" "$BIN"@ARGS@ >>"$LOG" 2>&1 </dev/null &
	i=0
	until [ -s "$PIDFILE" ]; do
		i=$((i + 1))
		if [ "$i" -ge 50 ]; then echo "the agent did not start; the end of $LOG:" >&2; tail -n 20 "$LOG" >&2 || true; exit 5; fi
		sleep 0.1
	done
	sleep 0.5
	if ! agent_pid >/dev/null; then
		echo "the agent exited right after it started; the end of $LOG:" >&2
		tail -n 20 "$LOG" >&2 || true
		exit 5
	fi
	echo started=yes
fi
`

// scriptUninstall stops the agent and removes every path the installer writes.
const scriptUninstall = `
stopped=no
if has_systemd && command -v systemctl >/dev/null 2>&1; then
	if systemctl is-active --quiet "$UNIT_NAME" 2>/dev/null; then stopped=yes; fi
	systemctl disable --now --quiet "$UNIT_NAME" >/dev/null 2>&1 || true
fi
if agent_pid >/dev/null; then stop_pid >/dev/null; stopped=yes; fi
rm -rf@PATHS@
if has_systemd && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
	systemctl reset-failed "$UNIT_NAME" >/dev/null 2>&1 || true
fi
echo "stopped=$stopped"
`

// uninstallScript is scriptUninstall with protocol.InstalledPaths filled in.
func uninstallScript() string {
	var paths strings.Builder
	for _, p := range strings.Fields(protocol.InstalledPaths) {
		paths.WriteString(` "$R"` + shellQuote(p))
	}
	return strings.Replace(scriptUninstall, "@PATHS@", paths.String(), 1)
}

// supervisorScript is scriptStartSupervisor with the agent's arguments filled in.
func (in *Installer) supervisorScript() string {
	var args strings.Builder
	for _, a := range in.AgentArgs {
		args.WriteString(" " + shellQuote(a))
	}
	return strings.Replace(scriptStartSupervisor, "@ARGS@", args.String(), 1)
}

// unit renders the systemd unit of the agent.
func (in *Installer) unit() []byte {
	root := strings.TrimRight(path.Clean("/"+in.Root), "/")
	return protocol.AgentUnitFile(root+protocol.AgentBinaryPath, in.AgentArgs)
}

// shellQuote quotes s as one word for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
