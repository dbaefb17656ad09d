package bmc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// PowerState is a machine's power as its BMC reports it.
type PowerState string

// Power states.
const (
	PowerOn      PowerState = "On"
	PowerOff     PowerState = "Off"
	PowerUnknown PowerState = "Unknown"
)

// Device is a boot device a BMC can select for the next boot.
type Device string

// Boot devices.
const (
	// DevicePXE boots from the network (Redfish "Pxe", IPMI "force PXE").
	DevicePXE Device = "PXE"
	// DeviceDisk boots from the local disk (Redfish "Hdd", IPMI "force boot from default hard drive").
	DeviceDisk Device = "Disk"
)

// PowerController turns a machine on and off through its BMC. Every method is bounded by the
// Config's Timeout and the context, whichever ends first; every call opens and closes its own
// session, so a controller may be kept or rebuilt freely.
type PowerController interface {
	// PowerState reads the power state.
	PowerState(ctx context.Context) (PowerState, error)
	// PowerOn turns the machine on; it succeeds when the machine is already on.
	PowerOn(ctx context.Context) error
	// PowerOff cuts the power at once (no guest shutdown); it succeeds when the machine is off.
	PowerOff(ctx context.Context) error
	// PowerCycle restarts a machine that is on (hard reset) and turns on one that is off.
	PowerCycle(ctx context.Context) error
}

// BootController selects the device a machine boots from.
type BootController interface {
	// SetNextBoot makes the next boot (persistent=false) or every boot (persistent=true) start
	// from dev. It takes effect at the next power-on or reset.
	SetNextBoot(ctx context.Context, dev Device, persistent bool) error
}

// Controller is everything Basalt asks of a BMC.
type Controller interface {
	PowerController
	BootController
}

// Secret keys of BMC credentials.
const (
	// SecretUsername is the key of the BMC user name.
	SecretUsername = "username"
	// SecretPassword is the key of the BMC password.
	SecretPassword = "password"
	// SecretCA is the optional key of a PEM CA bundle that signs a Redfish BMC's certificate.
	SecretCA = "ca.crt"
)

// Credentials log in to a BMC. They only ever come from a Secret (CredentialsFromSecret).
type Credentials struct {
	Username string
	Password string
	// CA is a PEM bundle that the Redfish BMC's certificate must chain to, instead of the system
	// roots. Ignored by IPMI.
	CA []byte
}

// String hides the password, so Credentials never leak into logs.
func (c Credentials) String() string { return "user " + c.Username + " (password hidden)" }

// CredentialsFromSecret reads "username", "password" and optionally "ca.crt" from a Secret. The
// error names the Secret and the key that is missing.
func CredentialsFromSecret(s *corev1.Secret) (Credentials, error) {
	if s == nil {
		return Credentials{}, &Error{Reason: ReasonCredentialsInvalid, Err: errors.New("no credentials Secret")}
	}
	c := Credentials{
		Username: strings.TrimSpace(string(s.Data[SecretUsername])),
		Password: string(s.Data[SecretPassword]),
		CA:       s.Data[SecretCA],
	}
	var missing []string
	if c.Username == "" {
		missing = append(missing, SecretUsername)
	}
	if c.Password == "" {
		missing = append(missing, SecretPassword)
	}
	if len(missing) > 0 {
		return Credentials{}, &Error{Reason: ReasonCredentialsInvalid, Err: fmt.Errorf(
			"secret %s/%s has no %s: put the BMC user name under %q and the password under %q",
			s.Namespace, s.Name, strings.Join(missing, " or "), SecretUsername, SecretPassword)}
	}
	return c, nil
}

// Config is how to reach one BMC.
type Config struct {
	// Protocol is redfish or ipmi.
	Protocol basaltv1.BMCProtocol
	// Address is, for Redfish, an https URL: "https://bmc[:port]" (the service must have exactly
	// one system) or "https://bmc[:port]/redfish/v1/Systems/<id>"; "redfish://" is read as
	// "https://". For IPMI it is "host", "host:port" or "ipmi://host[:port]" (port 623 by default).
	Address string
	// Credentials log in.
	Credentials Credentials
	// InsecureSkipVerify turns off verification of a Redfish BMC's certificate. Off by default;
	// prefer a CA in the Secret.
	InsecureSkipVerify bool
	// BootMode is the firmware the machine boots with; IPMI marks a boot device EFI for uefi.
	BootMode basaltv1.BootMode
	// Timeout bounds each operation, connection and login included. Default 30 seconds.
	Timeout time.Duration
}

// DefaultTimeout bounds one BMC operation when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// New returns the Controller for cfg. It checks the address and credentials but does not
// contact the BMC.
func New(cfg Config) (Controller, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Credentials.Username == "" || cfg.Credentials.Password == "" {
		return nil, &Error{Reason: ReasonCredentialsInvalid, Err: errors.New("BMC user name and password are required")}
	}
	switch cfg.Protocol {
	case basaltv1.BMCRedfish:
		return newRedfish(cfg)
	case basaltv1.BMCIPMI:
		return newIsolatedIPMI(cfg)
	default:
		return nil, &Error{Reason: ReasonInvalidAddress, Err: fmt.Errorf("BMC protocol %q is not supported: use redfish or ipmi", cfg.Protocol)}
	}
}

// ForHost builds the Controller of a Host's spec.bmc with the credentials in secret (the Secret
// that spec.bmc.credentialsSecretRef names). It fails when the Host has no spec.bmc.
func ForHost(host *basaltv1.Host, secret *corev1.Secret) (Controller, error) {
	if host.Spec.BMC == nil {
		return nil, &Error{Reason: ReasonInvalidAddress, Err: errors.New("the Host has no spec.bmc")}
	}
	creds, err := CredentialsFromSecret(secret)
	if err != nil {
		return nil, err
	}
	cfg := Config{
		Protocol:           host.Spec.BMC.Protocol,
		Address:            host.Spec.BMC.Address,
		Credentials:        creds,
		InsecureSkipVerify: host.Spec.BMC.DisableCertificateVerification,
	}
	if host.Spec.Boot != nil {
		cfg.BootMode = host.Spec.Boot.Mode
	}
	return New(cfg)
}

// withTimeout bounds one operation.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}
