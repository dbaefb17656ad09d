package agentserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/bootstrap/artifacts"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// Limits on what an agent may send, beyond protocol.MaxRequestBytes.
const (
	maxVersionLen   = 64
	maxStepLen      = 1024
	maxStepError    = 4096
	maxSteps        = 4096
	maxComponents   = 256
	maxComponentMsg = 1024
	maxNameLen      = 256
	maxDisks        = 1024
	maxNICs         = 1024
	maxAddresses    = 64
	maxCPUs         = 1 << 20
	maxRSABits      = 8192
)

// decodeStrict decodes exactly one JSON value into v: unknown fields and trailing data are
// errors. It never panics, whatever r holds.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	var extra json.RawMessage
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return err
	default:
		return errors.New("unexpected data after the JSON object")
	}
}

// decodeStatus reads and validates a status report.
func decodeStatus(r io.Reader) (*protocol.Status, error) {
	st := &protocol.Status{}
	if err := decodeStrict(r, st); err != nil {
		return nil, err
	}
	if err := validateStatus(st); err != nil {
		return nil, err
	}
	return st, nil
}

// decodeRegister reads a registration request and parses its CSR.
func decodeRegister(r io.Reader) (*protocol.RegisterRequest, *x509.CertificateRequest, error) {
	req := &protocol.RegisterRequest{}
	if err := decodeStrict(r, req); err != nil {
		return nil, nil, err
	}
	if err := checkText("agentVersion", req.AgentVersion, 1, maxVersionLen); err != nil {
		return nil, nil, err
	}
	if req.Token == "" {
		return nil, nil, errors.New("token: required")
	}
	csr, err := parseCSR(req.CSR)
	if err != nil {
		return nil, nil, err
	}
	return req, csr, nil
}

// decodeRenew reads and checks a RenewRequest.
func decodeRenew(r io.Reader) (*x509.CertificateRequest, error) {
	req := &protocol.RenewRequest{}
	if err := decodeStrict(r, req); err != nil {
		return nil, err
	}
	return parseCSR(req.CSR)
}

// parseCSR parses a PEM certificate signing request, checks its signature and accepts only
// ECDSA P-256/P-384 and RSA keys of 2048 to 8192 bits.
func parseCSR(data []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(data)
	if block == nil || (block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST") {
		return nil, errors.New("csr: not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr: signature: %w", err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, fmt.Errorf("csr: ECDSA curve %s; want P-256 or P-384", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < 2048 || bits > maxRSABits {
			return nil, fmt.Errorf("csr: RSA key of %d bits; want 2048 to %d", bits, maxRSABits)
		}
	default:
		return nil, fmt.Errorf("csr: %T keys are not accepted; use ECDSA P-256/P-384 or RSA >= 2048", csr.PublicKey)
	}
	return csr, nil
}

// validateStatus checks lengths and counts; the error names the field.
func validateStatus(st *protocol.Status) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(checkText("agentVersion", st.AgentVersion, 1, maxVersionLen))
	add(checkHash("planHash", st.PlanHash))
	add(checkHash("applyingHash", st.ApplyingHash))
	if len(st.Steps) > maxSteps {
		add(fmt.Errorf("steps: %d entries, at most %d", len(st.Steps), maxSteps))
	} else {
		for i, s := range st.Steps {
			add(checkText(fmt.Sprintf("steps[%d].step", i), s.Step, 1, maxStepLen))
			add(checkText(fmt.Sprintf("steps[%d].error", i), s.Error, 0, maxStepError))
		}
	}
	if len(st.Components) > maxComponents {
		add(fmt.Errorf("components: %d entries, at most %d", len(st.Components), maxComponents))
	} else {
		seen := map[string]bool{}
		for i, c := range st.Components {
			field := fmt.Sprintf("components[%d]", i)
			if errs := validation.IsDNS1123Label(c.Name); len(errs) > 0 {
				add(fmt.Errorf("%s.name %q: %s", field, truncate(c.Name), strings.Join(errs, "; ")))
			} else if seen[c.Name] {
				add(fmt.Errorf("%s.name %q: listed twice", field, c.Name))
			}
			seen[c.Name] = true
			add(checkText(field+".message", c.Message, 0, maxComponentMsg))
		}
	}
	for _, fr := range []struct {
		field string
		r     *protocol.Root
	}{{"root", st.Root}, {"written", st.Written}, {"wiped", st.Wiped}} {
		field, r := fr.field, fr.r
		if r == nil {
			continue
		}
		if r.Image == "" {
			add(fmt.Errorf("%s.image: must be the sha256 of the image", field))
		}
		add(checkHash(field+".image", r.Image))
		if !plan.IsDisk(r.Disk) {
			add(fmt.Errorf("%s.disk %q: must be a disk such as /dev/vda", field, truncate(r.Disk)))
		}
		add(checkText(field+".host", r.Host, 0, maxNameLen))
		add(checkText(field+".wwn", r.WWN, 0, maxNameLen))
		add(checkText(field+".serial", r.Serial, 0, maxNameLen))
	}
	if h := st.Hardware; h != nil {
		if h.CPUs < 0 || h.CPUs > maxCPUs {
			add(fmt.Errorf("hardware.cpus: %d is out of range", h.CPUs))
		}
		if h.MemoryBytes < 0 {
			add(fmt.Errorf("hardware.memoryBytes: %d is negative", h.MemoryBytes))
		}
		if len(h.Disks) > maxDisks {
			add(fmt.Errorf("hardware.disks: %d entries, at most %d", len(h.Disks), maxDisks))
		} else {
			for i, d := range h.Disks {
				field := fmt.Sprintf("hardware.disks[%d]", i)
				add(checkText(field+".name", d.Name, 1, maxNameLen))
				add(checkText(field+".model", d.Model, 0, maxNameLen))
				add(checkText(field+".serial", d.Serial, 0, maxNameLen))
				add(checkText(field+".wwn", d.WWN, 0, maxNameLen))
				add(checkText(field+".byPath", d.ByPath, 0, maxNameLen))
				if d.SizeBytes < 0 {
					add(fmt.Errorf("%s.sizeBytes: %d is negative", field, d.SizeBytes))
				}
			}
		}
		if len(h.NICs) > maxNICs {
			add(fmt.Errorf("hardware.nics: %d entries, at most %d", len(h.NICs), maxNICs))
		} else {
			for i, n := range h.NICs {
				field := fmt.Sprintf("hardware.nics[%d]", i)
				add(checkText(field+".name", n.Name, 1, maxNameLen))
				if n.MAC != "" {
					if _, err := net.ParseMAC(n.MAC); err != nil {
						add(fmt.Errorf("%s.mac %q: not a MAC address", field, truncate(n.MAC)))
					}
				}
				if len(n.Addresses) > maxAddresses {
					add(fmt.Errorf("%s.addresses: %d entries, at most %d", field, len(n.Addresses), maxAddresses))
				} else {
					for j, a := range n.Addresses {
						if !validAddress(a) {
							add(fmt.Errorf("%s.addresses[%d] %q: not an IP address or CIDR", field, j, truncate(a)))
						}
					}
				}
			}
		}
		add(checkText("hardware.system.vendor", h.System.Vendor, 0, maxNameLen))
		add(checkText("hardware.system.product", h.System.Product, 0, maxNameLen))
		add(checkText("hardware.system.serial", h.System.Serial, 0, maxNameLen))
		if o := h.OS; o != nil && o.CgroupVersion != 0 && o.CgroupVersion != 1 && o.CgroupVersion != 2 {
			add(fmt.Errorf("hardware.os.cgroupVersion: %d; want 1, 2, or 0 when unknown", o.CgroupVersion))
		}
		if o := h.OS; o != nil {
			if len(o.Nameservers) > protocol.MaxNameservers {
				add(fmt.Errorf("hardware.os.nameservers: %d entries, at most %d", len(o.Nameservers), protocol.MaxNameservers))
			} else {
				for i, ns := range o.Nameservers {
					if a, err := netip.ParseAddr(ns); err != nil || a.Zone() != "" || a.IsLoopback() || a.String() != ns {
						add(fmt.Errorf("hardware.os.nameservers[%d] %q: not a non-loopback IP address in canonical form", i, truncate(ns)))
					}
				}
			}
		}
	}
	if len(errs) > 10 {
		errs = append(errs[:10], fmt.Errorf("and %d more", len(errs)-10))
	}
	return errors.Join(errs...)
}

func checkText(field, s string, minLen, maxLen int) error {
	switch {
	case len(s) < minLen && minLen == 1:
		return fmt.Errorf("%s: required", field)
	case len(s) > maxLen:
		return fmt.Errorf("%s: %d bytes, at most %d", field, len(s), maxLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s: not valid UTF-8", field)
	case strings.ContainsRune(s, 0):
		return fmt.Errorf("%s: contains a NUL byte", field)
	}
	return nil
}

func checkHash(field, s string) error {
	if s != "" && !artifacts.IsSHA256(s) {
		return fmt.Errorf("%s: %q is not 64 lowercase hex digits", field, truncate(s))
	}
	return nil
}

func validAddress(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	_, _, err := net.ParseCIDR(s)
	return err == nil
}

func truncate(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
