package agentserver

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"testing"
)

// FuzzDecodeStatus: whatever an agent sends as a status report, decoding never panics, and a report
// that is accepted converts to the API types and survives a round trip.
func FuzzDecodeStatus(f *testing.F) {
	for _, s := range []string{
		`{"agentVersion":"v1"}`,
		`{"agentVersion":"v1","planHash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","steps":[{"step":"file:/etc/x","ok":true},{"step":"service:etcd","ok":false,"error":"exit 1"}],"components":[{"name":"etcd","healthy":true,"time":"2026-01-01T00:00:00Z"}],"hardware":{"cpus":4,"memoryBytes":8589934592,"disks":[{"name":"vda","sizeBytes":1073741824,"rotational":true}],"nics":[{"name":"eth0","mac":"52:54:00:12:34:56","addresses":["10.0.0.2/24"],"speedMbps":-1}],"system":{"vendor":"QEMU"}}}`,
		`{"agentVersion":"v1","hardware":null}`,
		`{"agentVersion":"v1"} trailing`,
		`{"agentVersion":"\ud800"}`,
		`[]`, `null`, ``, `{"components":[{"name":"etcd","time":"not a time"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeStatus(bytes.NewReader(b))
		if err != nil {
			return
		}
		if st.Hardware != nil {
			_ = convertHardware(st.Hardware)
		}
		_ = convertComponents(st.Components)
		enc, err := json.Marshal(st)
		if err != nil {
			return // e.g. a time beyond year 9999 decodes but does not encode
		}
		if _, err := decodeStatus(bytes.NewReader(enc)); err != nil {
			t.Fatalf("an accepted report does not decode after a round trip: %v\n%s", err, enc)
		}
	})
}

// FuzzDecodeRegister: decoding a registration (JSON and the CSR inside) never panics.
func FuzzDecodeRegister(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		f.Fatal(err)
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	good, _ := json.Marshal(map[string]any{"token": "abcdef.0123456789abcdef", "csr": csrPEM, "agentVersion": "v1"})
	f.Add(good)
	for _, s := range []string{
		`{"token":"abcdef.0123456789abcdef","csr":"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0KLS0tLS1FTkQgQ0VSVElGSUNBVEUgUkVRVUVTVC0tLS0tCg==","agentVersion":"v1"}`,
		`{"token":"x","csr":"not base64","agentVersion":"v1"}`,
		`{"token":"x","csr":null}`, `{}`, `[`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, csr, err := decodeRegister(bytes.NewReader(b))
		if err != nil {
			return
		}
		if req == nil || csr == nil || csr.PublicKey == nil {
			t.Fatalf("decodeRegister accepted %q without a request and a key", b)
		}
	})
}

// FuzzParseCSR: arbitrary PEM and DER never panic the CSR checks.
func FuzzParseCSR(f *testing.F) {
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseCSR(b)
		_, _ = parseCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: b}))
	})
}
