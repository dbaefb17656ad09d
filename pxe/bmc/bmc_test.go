package bmc_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/pxe/bmc"
)

func TestCredentialsFromSecret(t *testing.T) {
	meta := metav1.ObjectMeta{Namespace: "ns", Name: "bmc-creds"}
	for _, tc := range []struct {
		name     string
		secret   *corev1.Secret
		mentions string
	}{
		{"no Secret", nil, "no credentials Secret"},
		{"no password", &corev1.Secret{ObjectMeta: meta, Data: map[string][]byte{"username": []byte("admin")}}, `ns/bmc-creds has no password`},
		{"nothing", &corev1.Secret{ObjectMeta: meta}, "no username or password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := bmc.CredentialsFromSecret(tc.secret)
			if bmc.ReasonOf(err) != bmc.ReasonCredentialsInvalid || !strings.Contains(err.Error(), tc.mentions) {
				t.Fatalf("got %v (reason %s), want CredentialsInvalid mentioning %q", err, bmc.ReasonOf(err), tc.mentions)
			}
		})
	}
	c, err := bmc.CredentialsFromSecret(&corev1.Secret{ObjectMeta: meta, Data: map[string][]byte{
		"username": []byte("admin\n"), "password": []byte("pw"), "ca.crt": []byte("PEM")}})
	if err != nil || c.Username != "admin" || c.Password != "pw" || string(c.CA) != "PEM" {
		t.Fatalf("got %+v, %v", c, err)
	}
	if strings.Contains(c.String(), "pw") {
		t.Fatalf("Credentials.String leaks the password: %s", c)
	}
}

// TestNewRefusesBadConfig: addresses and credentials that cannot work are refused before any
// network traffic, with a message that says what to write instead.
func TestNewRefusesBadConfig(t *testing.T) {
	creds := bmc.Credentials{Username: "admin", Password: "pw"}
	for _, tc := range []struct {
		name     string
		cfg      bmc.Config
		reason   bmc.Reason
		mentions string
	}{
		{"redfish over http", bmc.Config{Protocol: basaltv1.BMCRedfish, Address: "http://10.0.0.9"}, bmc.ReasonInvalidAddress, "https://10.0.0.9"},
		{"redfish bare host", bmc.Config{Protocol: basaltv1.BMCRedfish, Address: "10.0.0.9"}, bmc.ReasonInvalidAddress, "https://<bmc>"},
		{"redfish not a system", bmc.Config{Protocol: basaltv1.BMCRedfish, Address: "https://10.0.0.9/redfish/v1/Managers/1"}, bmc.ReasonInvalidAddress, "/redfish/v1/Systems/<id>"},
		{"redfish credentials in URL", bmc.Config{Protocol: basaltv1.BMCRedfish, Address: "https://root:pw@10.0.0.9"}, bmc.ReasonInvalidAddress, "Secret"},
		{"redfish CA not PEM", bmc.Config{Protocol: basaltv1.BMCRedfish, Address: "https://10.0.0.9",
			Credentials: bmc.Credentials{Username: "a", Password: "b", CA: []byte("not pem")}}, bmc.ReasonCredentialsInvalid, "ca.crt"},
		{"ipmi bad port", bmc.Config{Protocol: basaltv1.BMCIPMI, Address: "10.0.0.9:99999"}, bmc.ReasonInvalidAddress, "1-65535"},
		{"ipmi URL path", bmc.Config{Protocol: basaltv1.BMCIPMI, Address: "ipmi://10.0.0.9/x"}, bmc.ReasonInvalidAddress, "host:port"},
		{"ipmi long user", bmc.Config{Protocol: basaltv1.BMCIPMI, Address: "10.0.0.9",
			Credentials: bmc.Credentials{Username: strings.Repeat("u", 17), Password: "pw"}}, bmc.ReasonCredentialsInvalid, "16"},
		{"unknown protocol", bmc.Config{Protocol: "snmp", Address: "10.0.0.9"}, bmc.ReasonInvalidAddress, "redfish or ipmi"},
		{"no credentials", bmc.Config{Protocol: basaltv1.BMCIPMI, Address: "10.0.0.9", Credentials: bmc.Credentials{Username: "x"}}, bmc.ReasonCredentialsInvalid, "password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cfg.Credentials.Username == "" {
				tc.cfg.Credentials = creds
			}
			_, err := bmc.New(tc.cfg)
			if bmc.ReasonOf(err) != tc.reason || !strings.Contains(err.Error(), tc.mentions) {
				t.Fatalf("got %v (reason %s), want %s mentioning %q", err, bmc.ReasonOf(err), tc.reason, tc.mentions)
			}
		})
	}
	for _, ok := range []bmc.Config{
		{Protocol: basaltv1.BMCRedfish, Address: "redfish://10.0.0.9"},
		{Protocol: basaltv1.BMCRedfish, Address: "https://bmc.example:8443/redfish/v1/Systems/System.Embedded.1/"},
		{Protocol: basaltv1.BMCIPMI, Address: "10.0.0.9"},
		{Protocol: basaltv1.BMCIPMI, Address: "ipmi://[fd00::9]:6230"},
	} {
		ok.Credentials = creds
		if _, err := bmc.New(ok); err != nil {
			t.Errorf("%s %s: %v", ok.Protocol, ok.Address, err)
		}
	}
}
