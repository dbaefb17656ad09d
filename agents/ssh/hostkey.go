package ssh

import (
	"bytes"
	"crypto/rsa"
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/crypto/ssh"
)

// HostKeyMismatchError says the host presented an SSH host key that is neither pinned nor the
// one recorded on first contact. Nothing was sent to the host: the connection was closed during
// the key exchange, before authentication.
type HostKeyMismatchError struct {
	// Address is host:port.
	Address string
	// Presented is the SHA256 fingerprint of the key the host presented.
	Presented string
	// Expected are the SHA256 fingerprints of the keys that would have been accepted.
	Expected []string
	// PresentedKey is the key itself, e.g. to show it in authorized_keys format.
	PresentedKey ssh.PublicKey
	// Pinned is true when Expected came from pinned keys (spec.ssh.hostKeys), false when it is the
	// key recorded on first contact (status.sshHostKey).
	Pinned bool
}

func (e *HostKeyMismatchError) Error() string {
	source := "recorded on first contact"
	if e.Pinned {
		source = "pinned"
	}
	typ := ""
	if e.PresentedKey != nil {
		typ = " (" + e.PresentedKey.Type() + ")"
	}
	return fmt.Sprintf("ssh %s: host key mismatch: the host presented %s%s, but the %s key is %s; "+
		"nothing was sent to the host. If the host was reinstalled on purpose, pin its new key or clear the recorded one",
		e.Address, e.Presented, typ, source, strings.Join(e.Expected, " or "))
}

// hostKeyPolicy decides which host key to accept: one of pinned when any are given, else
// recorded when set, else whatever the host presents (trust on first use).
type hostKeyPolicy struct {
	pinned   []ssh.PublicKey
	recorded ssh.PublicKey
}

func (p hostKeyPolicy) expected() []ssh.PublicKey {
	if len(p.pinned) > 0 {
		return p.pinned
	}
	if p.recorded != nil {
		return []ssh.PublicKey{p.recorded}
	}
	return nil
}

// callback returns the HostKeyCallback. It stores the presented key in *presented and, on a
// mismatch, the error in *mismatch, so the caller can return them even though x/crypto/ssh wraps
// the callback's error.
func (p hostKeyPolicy) callback(presented *ssh.PublicKey, mismatch **HostKeyMismatchError) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		*presented = key
		want := p.expected()
		if len(want) == 0 {
			return nil // trust on first use: the caller records the key
		}
		for _, k := range want {
			if bytes.Equal(k.Marshal(), key.Marshal()) {
				return nil
			}
		}
		e := &HostKeyMismatchError{
			Address:      hostname,
			Presented:    ssh.FingerprintSHA256(key),
			PresentedKey: key,
			Pinned:       len(p.pinned) > 0,
		}
		for _, k := range want {
			e.Expected = append(e.Expected, ssh.FingerprintSHA256(k))
		}
		*mismatch = e
		return e
	}
}

// algorithms restricts the host key algorithms offered to the types of the expected keys, so a
// host with several keys presents one that can match (otherwise a host with an ed25519 and an RSA
// key, pinned by its RSA key, would present ed25519 and look like a mismatch). nil means the
// library's defaults.
func (p hostKeyPolicy) algorithms() []string {
	var algos []string
	add := func(a ...string) {
		for _, x := range a {
			if !contains(algos, x) {
				algos = append(algos, x)
			}
		}
	}
	for _, k := range p.expected() {
		switch k.Type() {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
		default:
			add(k.Type())
		}
	}
	return algos
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// SignerFromSecretData parses an SSH private key as a Secret holds it: PEM (PKCS#1, PKCS#8, SEC 1)
// or OpenSSH format, unencrypted. RSA keys shorter than 2048 bits are refused. The error never
// contains key material.
func SignerFromSecretData(data []byte) (ssh.Signer, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, errors.New("ssh private key: empty")
	}
	raw, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, errors.New("ssh private key: encrypted with a passphrase; store an unencrypted key in the Secret")
		}
		return nil, fmt.Errorf("ssh private key: %w", err)
	}
	if k, ok := raw.(*rsa.PrivateKey); ok && k.N.BitLen() < 2048 {
		return nil, fmt.Errorf("ssh private key: RSA key of %d bits, want at least 2048", k.N.BitLen())
	}
	signer, err := ssh.NewSignerFromKey(raw)
	if err != nil {
		return nil, fmt.Errorf("ssh private key: %w", err)
	}
	return signer, nil
}

// ParseHostKey parses one public key in authorized_keys format ("ssh-ed25519 AAAA... comment"),
// as spec.ssh.hostKeys and status.sshHostKey hold them.
func ParseHostKey(s string) (ssh.PublicKey, error) {
	k, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(s)))
	if err != nil {
		return nil, fmt.Errorf("ssh host key %q: %w", abbreviate(s), err)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("ssh host key %q: more than one key", abbreviate(s))
	}
	return k, nil
}

// ParseHostKeys parses every entry of spec.ssh.hostKeys; the error names the entry.
func ParseHostKeys(keys []string) ([]ssh.PublicKey, error) {
	out := make([]ssh.PublicKey, 0, len(keys))
	for i, s := range keys {
		k, err := ParseHostKey(s)
		if err != nil {
			return nil, fmt.Errorf("hostKeys[%d]: %w", i, err)
		}
		out = append(out, k)
	}
	return out, nil
}

// MarshalHostKey returns k in authorized_keys format without a trailing newline, as
// status.sshHostKey records it.
func MarshalHostKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
