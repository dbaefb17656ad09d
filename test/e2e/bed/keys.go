package bed

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"

	"golang.org/x/crypto/ssh"
)

// KeyPair is an ed25519 SSH key in the forms the bed and its users need.
type KeyPair struct {
	// Signer signs with the private key (client authentication, or a test SSH server's host key).
	Signer ssh.Signer
	// Public is the public key; for a host key this is what a client pins.
	Public ssh.PublicKey
	// PrivatePEM is the private key in OpenSSH PEM form, as sshd and ssh(1) read it, and as a
	// Host's privateKeySecretRef Secret holds it.
	PrivatePEM []byte
	// AuthorizedKey is the public key as one authorized_keys (or known_hosts key) line.
	AuthorizedKey []byte
}

// NewKeyPair generates a fresh ed25519 key pair. comment ends up in the PEM and the public line.
func NewKeyPair(comment string) (*KeyPair, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("ssh signer: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("ssh public key: %w", err)
	}
	line := ssh.MarshalAuthorizedKey(sshPub) // ends in "\n"
	if comment != "" {
		line = append(line[:len(line)-1], []byte(" "+comment+"\n")...)
	}
	return &KeyPair{
		Signer:        signer,
		Public:        sshPub,
		PrivatePEM:    pem.EncodeToMemory(block),
		AuthorizedKey: line,
	}, nil
}
