package httpboot

import (
	"bytes"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"text/template"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// Action is what a host's script makes it do; it is the action label of
// basalt_pxe_http_scripts_total.
type Action string

// Actions.
const (
	// ActionAgent boots the agent's kernel and initramfs with the host's bootstrap, with
	// basalt.root when the host has a root filesystem on its local disk, or both.
	ActionAgent Action = "agent"
	// ActionLocalDisk boots the installed system: "exit" to the UEFI boot manager, which goes on
	// to the next boot option; "sanboot --no-describe --drive 0x80" on BIOS.
	ActionLocalDisk Action = "local_disk"
	// ActionExit leaves network boot to the next boot device: no Host has the MAC.
	ActionExit Action = "exit"
	// ActionWait sleeps and asks again: the host is known but has nothing to boot yet, or the
	// manager could not answer.
	ActionWait Action = "wait"
	// ActionRefused is served instead of an agent script that would carry a bootstrap token to
	// a request the server does not admit (see Server): it says why, sleeps, runs DHCP again
	// unless the reason is the rate limit, and asks again. It never carries a token.
	ActionRefused Action = "refused"
)

// Delays in the scripts.
const (
	// RetrySeconds is how long a script waits before asking for the script again, after a
	// failed download or while the host has nothing to boot.
	RetrySeconds = 10
	// WaitSeconds is the delay of ActionWait.
	WaitSeconds = 30
	// LocalDiskFailSeconds is how long a script that could not boot the local disk waits before
	// it returns to the firmware, so that a broken disk cannot make a fast PXE loop.
	LocalDiskFailSeconds = 60
)

var (
	// safeURLRE is what may stand in a script's URL: no spaces, quotes, $ { } (iPXE settings),
	// | & (iPXE operators) or # (comments).
	safeURLRE = regexp.MustCompile(`^https?://[A-Za-z0-9._~:/?=%\[\]@+,;-]+$`)
	hostRE    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
	stateRE   = regexp.MustCompile(`^[A-Za-z]{1,32}$`)
	argRE     = regexp.MustCompile(`^[A-Za-z0-9._~:/?=%@+,;-]+$`)
)

func checkURL(u string) error {
	p, err := url.Parse(u)
	if !safeURLRE.MatchString(u) || err != nil || p.Host == "" {
		return fmt.Errorf("URL %q is not an http(s) URL of plain characters", u)
	}
	return nil
}

// scriptData fills the templates; every field is checked before rendering.
type scriptData struct {
	MAC          string
	Host         string
	State        string
	ScriptURL    string
	KernelURL    string
	InitramfsURL string
	CommandLine  string
	Why          string
	Seconds      int
	// DHCP makes the refused script run DHCP again before it asks again.
	DHCP bool
}

var scripts = template.Must(template.New("").Parse(`
{{- define "agent" -}}
#!ipxe
# Basalt: {{.Host}} ({{.State}}) boots the agent from the network.
echo Basalt: {{.Host}} ({{.State}}) boots the agent
kernel --name vmlinuz {{.KernelURL}} {{.CommandLine}} || goto retry
initrd --name initramfs {{.InitramfsURL}} || goto retry
boot || goto retry
:retry
echo Basalt: booting the agent failed; asking again in {{.Seconds}} seconds
sleep {{.Seconds}}
chain --replace --autofree {{.ScriptURL}}
{{end}}

{{- define "local_disk" -}}
#!ipxe
# Basalt: {{.Host}} ({{.State}}) boots the installed system from its local disk.
echo Basalt: {{.Host}} ({{.State}}) boots from its local disk
iseq ${platform} efi && goto efi || goto bios
:efi
exit
:bios
sanboot --no-describe --drive 0x80 || goto failed
:failed
echo Basalt: the local disk did not boot; returning to the firmware in {{.Seconds}} seconds
sleep {{.Seconds}}
exit 1
{{end}}

{{- define "exit" -}}
#!ipxe
# Basalt: no Host has the MAC address {{.MAC}}: leave it to the next boot device.
echo Basalt: no Host has the MAC address {{.MAC}}
exit
{{end}}

{{- define "refused" -}}
#!ipxe
# Basalt: {{.Why}}; asking again in {{.Seconds}} seconds.
echo Basalt: {{.Why}}
echo Basalt: asking again in {{.Seconds}} seconds
sleep {{.Seconds}}
{{if .DHCP -}}
dhcp || echo Basalt: DHCP failed
{{end -}}
chain --replace --autofree {{.ScriptURL}}
{{end}}

{{- define "wait" -}}
#!ipxe
# Basalt: {{.Why}}; asking again in {{.Seconds}} seconds.
echo Basalt: {{.Why}}; asking again in {{.Seconds}} seconds
sleep {{.Seconds}}
chain --replace --autofree {{.ScriptURL}}
{{end}}
`))

func render(a Action, d scriptData) ([]byte, error) {
	var b bytes.Buffer
	if err := scripts.ExecuteTemplate(&b, string(a), d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// script decides and renders the script of one host. The decision, in order:
//
//	Target.Known false                 → ActionExit
//	Root set but not a valid label     → error (the host gets the wait script)
//	State Provisioned, Root set,       → ActionAgent with basalt.root=<Root>, and the bootstrap
//	Agent set                            only if one is given: /init switches to the installed
//	                                     system on the local disk, whose agent has its identity
//	LocalDisk, or State Provisioned    → ActionLocalDisk, whatever else is set (no boot loops)
//	and Agent nil, or neither Diskless
//	nor Root set
//	Agent set                          → ActionAgent, plus basalt.root=<Root> when Root is set
//	                                     (for a Provisioned Diskless host, the agent is its
//	                                     installed system: it re-registers and applies its
//	                                     Plan; it never reboots the host, so nothing loops)
//	otherwise                          → ActionWait
//
// A zero Agent.Bootstrap is allowed only with Root set. It fails when a value would not be safe
// in a script or on a kernel command line; the error never contains the token.
func (s *Server) script(mac string, t Target) (Action, []byte, error) {
	d := scriptData{MAC: mac, ScriptURL: s.scriptURL(mac)}
	action := t.action()
	if action == ActionExit {
		b, err := render(ActionExit, d)
		return ActionExit, b, err
	}
	if t.Root != "" {
		if err := CheckRootLabel(t.Root); err != nil {
			return ActionWait, nil, err
		}
	}
	d.Host, d.State = t.Host, string(t.State)
	if !hostRE.MatchString(d.Host) || len(d.Host) > 253+1+63 {
		d.Host = "host " + mac // a name that is not a namespace/name is not put in the script
	}
	if !stateRE.MatchString(d.State) {
		d.State = "unknown state"
	}
	switch action {
	case ActionLocalDisk:
		d.Seconds = LocalDiskFailSeconds
	case ActionAgent:
		if err := s.agentData(&d, mac, t.Agent, t.Root); err != nil {
			return ActionAgent, nil, err
		}
		d.Seconds = RetrySeconds
	default:
		d.Why, d.Seconds = d.Host+" ("+d.State+") has nothing to boot yet", WaitSeconds
	}
	b, err := render(action, d)
	return action, b, err
}

// action is what t boots, as script decides it (but for a bad Root, which fails the script).
func (t Target) action() Action {
	switch {
	case !t.Known:
		return ActionExit
	case t.LocalDisk,
		t.State == basaltv1.HostStateProvisioned && t.Agent == nil,
		t.State == basaltv1.HostStateProvisioned && !t.Diskless && t.Root == "":
		return ActionLocalDisk
	case t.Agent != nil:
		return ActionAgent
	}
	return ActionWait
}

// refusedScript is the script served instead of one with a token to a request from an address
// that admit refused for reason. It names the MAC address and the request's address, never the
// Host's address or anything of the target. Refused for its address, a host runs DHCP again:
// that is how the DHCP server learns its address after a restart, or after it expired.
func (s *Server) refusedScript(mac, reason string, from netip.Addr) []byte {
	d := scriptData{MAC: mac, ScriptURL: s.scriptURL(mac), Seconds: RetrySeconds, DHCP: true}
	switch reason {
	case RefusedRateLimited:
		d.Why, d.Seconds, d.DHCP = "too many boot scripts with a token for "+mac+" lately", WaitSeconds, false
	case RefusedNoAddress:
		d.Why = "no address is known for " + mac + " (no reservation, no recent DHCP); the script with its token is not served"
	default:
		d.Why = "the script with the token of " + mac + " is not served to " + from.Unmap().String() + ", which is not its address"
	}
	b, err := render(ActionRefused, d)
	if err != nil {
		panic(err) // a fixed template with checked data
	}
	return b
}

// agentData fills the agent script's URLs and kernel command line: initrd=initramfs, KernelArgs,
// ExtraArgs, BOOTIF, then basalt.root when root is set, then the bootstrap unless it is zero
// (which needs root).
func (s *Server) agentData(d *scriptData, mac string, a *AgentBoot, root string) error {
	d.KernelURL, d.InitramfsURL = a.KernelURL, a.InitramfsURL
	if d.KernelURL == "" {
		d.KernelURL = strings.TrimRight(s.BaseURL, "/") + PathKernel
	}
	if d.InitramfsURL == "" {
		d.InitramfsURL = strings.TrimRight(s.BaseURL, "/") + PathInitramfs
	}
	for _, u := range []string{d.KernelURL, d.InitramfsURL} {
		if err := checkURL(u); err != nil {
			return err
		}
	}
	var boot []string
	if b := a.Bootstrap; root == "" || b.Server != "" || len(b.CA) != 0 || b.Token != "" {
		// Without root a zero Bootstrap fails here, as it always has; a partial one always does.
		var err error
		if boot, err = BootstrapArgs(b); err != nil {
			return err
		}
	}
	// initrd= names the initramfs for the kernel's EFI stub, which loads it from iPXE's file
	// system on UEFI; BIOS kernels get it from iPXE's bzImage loader and ignore the parameter.
	args := []string{"initrd=initramfs"}
	args = append(args, s.kernelArgs()...)
	for _, x := range a.ExtraArgs {
		if !argRE.MatchString(x) {
			return fmt.Errorf("kernel argument %q has characters that are not allowed", x)
		}
		switch k, _, _ := strings.Cut(x, "="); k {
		case ArgServer, ArgCA, ArgToken, ArgRoot:
			// Not quoted: it may hold a token.
			return fmt.Errorf("kernel argument %s belongs to the bootstrap or the root filesystem, not ExtraArgs", k)
		}
		args = append(args, x)
	}
	args = append(args, ArgBootIf+"="+BootIf(mac))
	if root != "" {
		args = append(args, ArgRoot+"="+root) // checked by script
	}
	args = append(args, boot...)
	d.CommandLine = strings.Join(args, " ")
	if len(d.CommandLine) > MaxCommandLine {
		return fmt.Errorf("kernel command line is %d bytes; at most %d fit", len(d.CommandLine), MaxCommandLine)
	}
	return nil
}

// waitScript is the script of a host whose target could not be read.
func (s *Server) waitScript(mac string) []byte {
	b, err := render(ActionWait, scriptData{
		MAC: mac, ScriptURL: s.scriptURL(mac), Seconds: RetrySeconds,
		Why: "the manager cannot answer for " + mac + " now",
	})
	if err != nil {
		panic(err) // a fixed template with checked data
	}
	return b
}
