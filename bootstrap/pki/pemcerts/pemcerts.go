// Package pemcerts parses CA bundles: PEM text holding certificates and nothing else. It imports
// only the standard library, so the agent and the boot-argument parser can use it.
package pemcerts

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// Parse returns the certificates of a PEM bundle. It fails unless b holds at least one block,
// every block is a CERTIFICATE that parses, and nothing but white space surrounds them.
func Parse(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a PEM block of type %q; only CERTIFICATE blocks belong in a CA bundle", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 || len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("not PEM certificates and nothing else (-----BEGIN CERTIFICATE-----)")
	}
	return certs, nil
}
