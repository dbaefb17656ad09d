package protocol

// Where the agent lives on a host. The SSH installer (agents/ssh) writes these paths and the agent
// reads them; InstalledPaths is what an uninstall removes.
const (
	// AgentBinaryPath is the agent executable.
	AgentBinaryPath = "/usr/local/bin/basalt-agent"
	// AgentUnit is the systemd unit that runs the agent where systemd is PID 1.
	AgentUnit = "basalt-agent.service"
	// AgentUnitPath is where AgentUnit is installed.
	AgentUnitPath = "/etc/systemd/system/" + AgentUnit
	// AgentPIDFile holds the agent's process id where it runs without systemd.
	AgentPIDFile = "/run/basalt-agent.pid"
	// LogDir holds Basalt's logs where systemd is not PID 1: the agent's own output
	// (AgentLogFile) and the logs of the services it supervises.
	LogDir = "/var/log/basalt"
	// AgentLogFile receives the agent's output where it runs without systemd.
	AgentLogFile = LogDir + "/agent.log"
	// ConfigDir and DataDir are Basalt's own directories; BootstrapPath is inside ConfigDir and
	// StateDir inside DataDir.
	ConfigDir = "/etc/basalt"
	DataDir   = "/var/lib/basalt"
	// CertFile is the agent's client certificate in StateDir. The agent writes it (atomically)
	// when registration succeeds; its presence tells the installer the agent has registered, so
	// a new bootstrap token is not needed.
	CertFile = StateDir + "/agent.crt"
)

// InstalledPaths lists, separated by spaces, everything the installer puts on a host; removing
// them (after stopping the agent) leaves no trace of the agent. Files that Plans write elsewhere
// are removed by the agent before that, not by this list.
const InstalledPaths = AgentBinaryPath + " " + AgentUnitPath + " " + AgentPIDFile + " " +
	LogDir + " " + ConfigDir + " " + DataDir
