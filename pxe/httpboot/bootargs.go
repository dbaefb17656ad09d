package httpboot

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/bootstrap/pki/pemcerts"
)

// Kernel command-line parameters that carry an agent's protocol.Bootstrap. The initramfs /init
// (pxe/image) reads them from /proc/cmdline and writes protocol.BootstrapPath, which is byte for
// byte json.Marshal of the Bootstrap: every value is restricted to characters that need no
// escaping in JSON, in iPXE scripts or on the kernel command line.
const (
	// ArgServer is the agent API's base URL: https://host[:port], host a DNS name or an IP
	// address ([v6] in brackets).
	ArgServer = "basalt.server"
	// ArgCA is the CA bundle to pin: the PEM bytes in standard base64 with padding, which is
	// also how encoding/json writes the []byte field Bootstrap.CA, so /init copies it as is.
	ArgCA = "basalt.ca"
	// ArgToken is the one-time bootstrap token "<id>.<secret>", lowercase letters and digits.
	ArgToken = "basalt.token"
	// ArgBootIf names the interface the host booted from, PXELINUX style: BOOTIF=01-<mac with
	// dashes>. /init runs DHCP on that interface first.
	ArgBootIf = "BOOTIF"
	// ArgRoot is the label of the host's root filesystem on its local disk (see CheckRootLabel
	// for its form): /init mounts the ext4 filesystem with that label and switches to it when it
	// holds a finished install, and otherwise runs the agent from RAM with the bootstrap, if the
	// command line has one. It is not part of the Bootstrap (ParseBootstrapArgs ignores it).
	ArgRoot = "basalt.root"
)

// RootLabel is the default label of a host's root filesystem on its local disk: what
// provisioning writes, and Target.Root's usual value.
const RootLabel = "basalt-root"

// MaxCommandLine bounds the kernel command line the script passes: x86 kernels keep 2048 bytes
// (COMMAND_LINE_SIZE, with the NUL), and on UEFI iPXE puts the image name in front.
const MaxCommandLine = 2000

// maxCABytes bounds the decoded CA bundle (a few certificates; an ECDSA CA is about 600 bytes).
const maxCABytes = 4096

var (
	serverRE = regexp.MustCompile(`^https://[A-Za-z0-9.:\[\]-]+/?$`)
	tokenRE  = regexp.MustCompile(`^[a-z0-9]{1,64}\.[a-z0-9]{1,64}$`)
	caRE     = regexp.MustCompile(`^[A-Za-z0-9+/]+={0,2}$`)
	rootRE   = regexp.MustCompile(`^[a-z0-9-]{1,16}$`)
)

// CheckRootLabel reports whether label may be an ArgRoot value: 1 to 16 lowercase letters,
// digits and dashes. That fits an ext4 label (at most 16 bytes) and needs no escaping in an iPXE
// script, on the kernel command line or in /init's shell.
func CheckRootLabel(label string) error {
	if !rootRE.MatchString(label) {
		return fmt.Errorf("root filesystem label %q must be 1 to 16 lowercase letters, digits and dashes", label)
	}
	return nil
}

func checkServer(s string) error {
	u, err := url.Parse(s)
	if !serverRE.MatchString(s) || err != nil || u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("bootstrap server %q must be https://host[:port]", s)
	}
	return nil
}

func checkCA(ca []byte) error {
	if len(ca) == 0 || len(ca) > maxCABytes {
		return fmt.Errorf("bootstrap CA must be 1 to %d bytes of PEM", maxCABytes)
	}
	if _, err := pemcerts.Parse(ca); err != nil {
		return fmt.Errorf("bootstrap CA: %w", err)
	}
	return nil
}

func checkToken(t string) error {
	if !tokenRE.MatchString(t) {
		// The token itself is never put in an error: errors end up in logs.
		return errors.New("bootstrap token must be <id>.<secret> of lowercase letters and digits")
	}
	return nil
}

// BootstrapArgs encodes b as kernel command-line parameters (ArgServer, ArgCA, ArgToken, in that
// order). It refuses a Bootstrap whose values do not fit the restricted forms above; the error
// never contains the token.
func BootstrapArgs(b protocol.Bootstrap) ([]string, error) {
	if err := checkServer(b.Server); err != nil {
		return nil, err
	}
	if err := checkCA(b.CA); err != nil {
		return nil, err
	}
	if err := checkToken(b.Token); err != nil {
		return nil, err
	}
	return []string{
		ArgServer + "=" + b.Server,
		ArgCA + "=" + base64.StdEncoding.EncodeToString(b.CA),
		ArgToken + "=" + b.Token,
	}, nil
}

// ParseBootstrapArgs reads a Bootstrap from a kernel command line (the content of /proc/cmdline).
// Each of the three parameters must appear exactly once and hold a value BootstrapArgs would
// write; other parameters are ignored. It is the Go twin of /init's reader (pxe/image), which the
// tests hold to the same answers.
func ParseBootstrapArgs(cmdline string) (protocol.Bootstrap, error) {
	if len(cmdline) > 4*MaxCommandLine {
		return protocol.Bootstrap{}, errors.New("kernel command line too long")
	}
	vals := map[string]string{}
	for _, f := range strings.Fields(cmdline) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || (k != ArgServer && k != ArgCA && k != ArgToken) {
			continue
		}
		if _, dup := vals[k]; dup {
			return protocol.Bootstrap{}, fmt.Errorf("%s is given twice", k)
		}
		vals[k] = v
	}
	for _, k := range []string{ArgServer, ArgCA, ArgToken} {
		if _, ok := vals[k]; !ok {
			return protocol.Bootstrap{}, fmt.Errorf("%s is missing", k)
		}
	}
	b := protocol.Bootstrap{Server: vals[ArgServer], Token: vals[ArgToken]}
	if !caRE.MatchString(vals[ArgCA]) {
		return protocol.Bootstrap{}, fmt.Errorf("%s is not standard base64", ArgCA)
	}
	ca, err := base64.StdEncoding.Strict().DecodeString(vals[ArgCA])
	if err != nil {
		return protocol.Bootstrap{}, fmt.Errorf("%s is not standard base64", ArgCA)
	}
	b.CA = ca
	if err := checkServer(b.Server); err != nil {
		return protocol.Bootstrap{}, err
	}
	if err := checkCA(b.CA); err != nil {
		return protocol.Bootstrap{}, err
	}
	if err := checkToken(b.Token); err != nil {
		return protocol.Bootstrap{}, err
	}
	return b, nil
}

// BootIf is the BOOTIF parameter value of a MAC address in its canonical form
// ("52:54:00:12:34:56" → "01-52-54-00-12-34-56").
func BootIf(mac string) string {
	return "01-" + strings.ReplaceAll(mac, ":", "-")
}
