package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/agents/protocol"
)

// FuzzRegisterResponse: the answer to a registration comes from the network. Whatever it holds,
// decoding and checkCertificate never panic, and an accepted answer carries a certificate for
// the agent's own key that names the Host the answer names.
func FuzzRegisterResponse(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: protocol.IdentityPrefix + "ns/node-1"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		f.Fatal(err)
	}
	good, err := json.Marshal(protocol.RegisterResponse{Certificate: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Namespace: "ns", Host: "node-1"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"certificate":"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==","namespace":"ns","host":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var resp protocol.RegisterResponse
		if json.Unmarshal(b, &resp) != nil {
			return
		}
		if checkCertificate(resp.Certificate, key, &resp) != nil {
			return
		}
		blk, _ := pem.Decode(resp.Certificate)
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatalf("accepted a certificate that does not parse: %v", err)
		}
		if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) || resp.Host == "" ||
			cert.Subject.CommonName != protocol.IdentityPrefix+resp.Namespace+"/"+resp.Host {
			t.Fatalf("accepted %+v for certificate %q", resp, cert.Subject.CommonName)
		}
	})
}
