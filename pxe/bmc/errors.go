package bmc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
)

// Reason classifies a BMC failure by what the user has to fix. The values are the reasons of the
// Host's BMCReachable condition.
type Reason string

// Reasons.
const (
	// ReasonCredentialsInvalid: the Secret is missing, or lacks "username" or "password".
	ReasonCredentialsInvalid Reason = "CredentialsInvalid"
	// ReasonInvalidAddress: spec.bmc.address or protocol cannot be used.
	ReasonInvalidAddress Reason = "AddressInvalid"
	// ReasonUnreachable: no answer (wrong address or port, firewall, BMC down, timeout).
	ReasonUnreachable Reason = "Unreachable"
	// ReasonAuthFailed: the BMC refused the user name or password.
	ReasonAuthFailed Reason = "AuthenticationFailed"
	// ReasonCertificateInvalid: the Redfish BMC's certificate did not verify.
	ReasonCertificateInvalid Reason = "CertificateInvalid"
	// ReasonProtocolError: the BMC answered but refused or did not understand the request.
	ReasonProtocolError Reason = "ProtocolError"
)

// Error is a BMC failure with the reason a user acts on. Its message says what to fix.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the Reason of err, ReasonProtocolError for an error this package did not
// classify, and "" for nil.
func ReasonOf(err error) Reason {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonProtocolError
}

// isCertError says whether err is a failed TLS certificate verification.
func isCertError(err error) bool {
	var (
		unknown   x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verifyErr *tls.CertificateVerificationError
	)
	return errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verifyErr)
}

// isNetError says whether err means the BMC did not answer.
func isNetError(err error) bool {
	var (
		opErr  *net.OpError
		dnsErr *net.DNSError
		netErr net.Error
	)
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.As(err, &opErr) || errors.As(err, &dnsErr) || (errors.As(err, &netErr) && netErr.Timeout())
}
