package protocol

import "strings"

// AgentUnitFile renders the systemd unit (AgentUnit) that runs the agent at binary with args:
// the SSH installer writes it on hosts where systemd is PID 1, and osdisk writes it into a
// whole-disk OS image it installs, so both run the agent the same way.
func AgentUnitFile(binary string, args []string) []byte {
	exec := []string{systemdQuote(binary)}
	for _, a := range args {
		exec = append(exec, systemdQuote(a))
	}
	return []byte(`# Installed by Basalt. Removed when Basalt uninstalls the agent or wipes the disk.
[Unit]
Description=Basalt node agent
Documentation=https://github.com/basalt-dev/basalt/blob/main/docs/agent.md
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=0

[Service]
Type=simple
ExecStart=` + strings.Join(exec, " ") + `
Restart=always
RestartSec=5s

[Install]
WantedBy=multi-user.target
`)
}

// systemdQuote quotes s as one word of an ExecStart line.
func systemdQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if s != "" && !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `"`, `\"`)
	return `"` + s + `"`
}
