package bmc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// ipmi drives a BMC over IPMI v2.0 (RMCP+, "lanplus") with go-ipmi. Each operation opens a
// session at operator privilege (enough for chassis control and boot options), acts and closes it.
type ipmi struct {
	cfg  Config
	host string
	port int
}

// IPMI limits of the protocol (IPMI v2.0 §13.17, §22.29).
const (
	ipmiMaxUser     = 16
	ipmiMaxPassword = 20
	ipmiDefaultPort = 623
)

func newIPMI(cfg Config) (*ipmi, error) {
	addr := strings.TrimSpace(cfg.Address)
	addr = strings.TrimPrefix(addr, "ipmi://")
	addr = strings.TrimSuffix(addr, "/")
	host, port := addr, ipmiDefaultPort
	if h, p, err := net.SplitHostPort(addr); err == nil {
		n, perr := strconv.Atoi(p)
		if perr != nil || n < 1 || n > 65535 {
			return nil, &Error{Reason: ReasonInvalidAddress, Err: fmt.Errorf("IPMI address %q has no valid port: use host or host:port (1-65535)", cfg.Address)}
		}
		host, port = h, n
	}
	if host == "" || strings.ContainsAny(host, "/?#@ ") {
		return nil, &Error{Reason: ReasonInvalidAddress, Err: fmt.Errorf("IPMI address %q is not a host: use host, host:port or ipmi://host[:port]", cfg.Address)}
	}
	if len(cfg.Credentials.Username) > ipmiMaxUser {
		return nil, &Error{Reason: ReasonCredentialsInvalid, Err: fmt.Errorf("IPMI user names are at most %d characters; %q is longer", ipmiMaxUser, cfg.Credentials.Username)}
	}
	if len(cfg.Credentials.Password) > ipmiMaxPassword {
		return nil, &Error{Reason: ReasonCredentialsInvalid, Err: fmt.Errorf("IPMI v2.0 passwords are at most %d bytes; the Secret's password is longer", ipmiMaxPassword)}
	}
	return &ipmi{cfg: cfg, host: host, port: port}, nil
}

func (m *ipmi) endpoint() string { return net.JoinHostPort(m.host, strconv.Itoa(m.port)) }

// do opens a session, runs fn and closes the session, all within the configured timeout. A
// panic in go-ipmi while it decodes what the BMC sent is the BMC's broken reply, reported as a
// ProtocolError, never the manager's crash.
func (m *ipmi) do(ctx context.Context, fn func(ctx context.Context, c *client.Client) error) (err error) {
	ctx, cancel := withTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			err = &Error{Reason: ReasonProtocolError, Err: fmt.Errorf(
				"talking IPMI to %s: its reply broke the IPMI client (%v): check the BMC's firmware", m.endpoint(), p)}
		}
	}()
	c, err := client.NewClient(m.host, m.port, m.cfg.Credentials.Username, m.cfg.Credentials.Password)
	if err != nil {
		return &Error{Reason: ReasonCredentialsInvalid, Err: err}
	}
	// One UDP exchange waits at most this long; the library retries within the deadline. The
	// cipher suites are named (17: HMAC-SHA256 + AES-CBC-128, then 3: HMAC-SHA1 + AES-CBC-128,
	// as ipmitool does) rather than discovered: some BMCs never answer Get Channel Cipher Suites
	// outside a session, which costs every login three timeouts.
	c.WithTimeout(min(5*time.Second, m.cfg.Timeout)).WithRetry(2).
		WithMaxPrivilegeLevel(types.PrivilegeLevelOperator).
		WithCipherSuiteID(types.CipherSuiteID17, types.CipherSuiteID3)
	if err := c.Connect(ctx); err != nil {
		return m.classify(err, "opening an RMCP+ session")
	}
	defer func() {
		// Closing sends Close Session; a BMC that does not answer must not hold the caller.
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		defer ccancel()
		_ = c.Close(cctx)
	}()
	return fn(ctx, c)
}

func (m *ipmi) classify(err error, doing string) error {
	var st *types.RmcpStatusError
	if errors.Is(err, client.ErrRAKPAuthentication) || (errors.As(err, &st) && isIPMIAuthStatus(st.StatusCode())) ||
		isIPMIAuthText(err.Error()) {
		return &Error{Reason: ReasonAuthFailed, Err: fmt.Errorf(
			"%s with %s: the BMC refused user %q (%w): check %q and %q in the BMC Secret, and that the user may log in over LAN at operator privilege or higher",
			doing, m.endpoint(), m.cfg.Credentials.Username, err, SecretUsername, SecretPassword)}
	}
	if isNetError(err) || strings.Contains(err.Error(), "Get Channel Authentication Capabilities failed") {
		return &Error{Reason: ReasonUnreachable, Err: fmt.Errorf(
			"%s with %s: no IPMI answer within %s: check spec.bmc.address and port (UDP), that IPMI over LAN is enabled on the BMC, and that the manager can reach it (%w)",
			doing, m.endpoint(), m.cfg.Timeout, err)}
	}
	return &Error{Reason: ReasonProtocolError, Err: fmt.Errorf("%s with %s: %w", doing, m.endpoint(), err)}
}

// isIPMIAuthText recognises a refused login in go-ipmi's message when the cause is not wrapped:
// Connect joins the failures of every cipher suite it tried with %v, which drops the error chain.
func isIPMIAuthText(msg string) bool {
	for _, s := range []types.RmcpStatusCode{types.RmcpStatusCodeUnauthorizedName, types.RmcpStatusCodeInvalidIntegrityCheckValue,
		types.RmcpStatusCodeUnauthorizedRoleOfPriLevel, types.RmcpStatusCodeInvalidRole, types.RmcpStatusCodeInvalidNameLength} {
		if strings.Contains(msg, types.NewRmcpStatusError(s).Error()) {
			return true
		}
	}
	return strings.Contains(msg, client.ErrRAKPAuthentication.Error())
}

func isIPMIAuthStatus(c types.RmcpStatusCode) bool {
	switch c {
	case types.RmcpStatusCodeUnauthorizedName, types.RmcpStatusCodeInvalidIntegrityCheckValue,
		types.RmcpStatusCodeUnauthorizedRoleOfPriLevel, types.RmcpStatusCodeInvalidRole, types.RmcpStatusCodeInvalidNameLength:
		return true
	}
	return false
}

func (m *ipmi) powerIsOn(ctx context.Context, c *client.Client) (bool, error) {
	st, err := c.GetChassisStatus(ctx)
	if err != nil {
		return false, m.classify(err, "reading the chassis status")
	}
	return st.PowerIsOn, nil
}

func (m *ipmi) control(ctx context.Context, c *client.Client, op chassis.ChassisControl, name string) error {
	if _, err := c.ChassisControl(ctx, op); err != nil {
		return m.classify(err, "chassis control "+name)
	}
	return nil
}

// PowerState implements PowerController.
func (m *ipmi) PowerState(ctx context.Context) (PowerState, error) {
	st := PowerUnknown
	err := m.do(ctx, func(ctx context.Context, c *client.Client) error {
		on, err := m.powerIsOn(ctx, c)
		if err != nil {
			return err
		}
		st = PowerOff
		if on {
			st = PowerOn
		}
		return nil
	})
	return st, err
}

// PowerOn implements PowerController.
func (m *ipmi) PowerOn(ctx context.Context) error {
	return m.do(ctx, func(ctx context.Context, c *client.Client) error {
		on, err := m.powerIsOn(ctx, c)
		if err != nil || on {
			return err
		}
		return m.control(ctx, c, chassis.ChassisControlPowerUp, "power up")
	})
}

// PowerOff implements PowerController.
func (m *ipmi) PowerOff(ctx context.Context) error {
	return m.do(ctx, func(ctx context.Context, c *client.Client) error {
		on, err := m.powerIsOn(ctx, c)
		if err != nil || !on {
			return err
		}
		return m.control(ctx, c, chassis.ChassisControlPowerDown, "power down")
	})
}

// PowerCycle implements PowerController: chassis power cycle for a machine that is on (the
// specification lets a BMC ignore it for one that is off), power up for one that is off.
func (m *ipmi) PowerCycle(ctx context.Context) error {
	return m.do(ctx, func(ctx context.Context, c *client.Client) error {
		on, err := m.powerIsOn(ctx, c)
		if err != nil {
			return err
		}
		if !on {
			return m.control(ctx, c, chassis.ChassisControlPowerUp, "power up")
		}
		return m.control(ctx, c, chassis.ChassisControlPowerCycle, "power cycle")
	})
}

// SetNextBoot implements BootController with the boot flags parameter (5) of Set System Boot
// Options: force PXE or force boot from the default hard drive, EFI when Config.BootMode is uefi.
func (m *ipmi) SetNextBoot(ctx context.Context, dev Device, persistent bool) error {
	var sel types.BootDeviceSelector
	switch dev {
	case DevicePXE:
		sel = types.BootDeviceSelectorForcePXE
	case DeviceDisk:
		sel = types.BootDeviceSelectorForceHardDrive
	default:
		return fmt.Errorf("boot device %q is not supported: use %s or %s", dev, DevicePXE, DeviceDisk)
	}
	bootType := types.BIOSBootTypeLegacy
	if m.cfg.BootMode == basaltv1.BootModeUEFI {
		bootType = types.BIOSBootTypeEFI
	}
	return m.do(ctx, func(ctx context.Context, c *client.Client) error {
		if err := c.SetBootDevice(ctx, sel, bootType, persistent); err != nil {
			return m.classify(err, "setting the boot device")
		}
		return nil
	})
}
