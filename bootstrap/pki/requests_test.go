package pki

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
)

func TestAPIServerCertSANs(t *testing.T) {
	req, err := APIServerCert(APIServerNames{
		NodeNames:    []string{"CP-1", "cp-2"},
		NodeIPs:      []net.IP{net.ParseIP("192.0.2.11"), net.ParseIP("192.0.2.12"), net.ParseIP("192.0.2.11")},
		ServiceCIDR:  "10.96.0.0/12",
		DNSDomain:    "corp.local",
		EndpointHost: "API.example.com",
		ExtraSANs:    []string{"203.0.113.7", "[2001:db8::1]", "kubernetes"},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantDNS := []string{"cp-1", "cp-2", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.corp.local", "localhost", "api.example.com"}
	wantIPs := []string{"10.96.0.1", "192.0.2.11", "192.0.2.12", "127.0.0.1", "::1", "203.0.113.7", "2001:db8::1"}
	if !slices.Equal(req.DNSNames, wantDNS) {
		t.Errorf("DNS SANs\n got %q\nwant %q", req.DNSNames, wantDNS)
	}
	if got := ipStrings(req.IPs); !slices.Equal(got, wantIPs) {
		t.Errorf("IP SANs\n got %q\nwant %q", got, wantIPs)
	}
	if req.CommonName != "kube-apiserver" || req.Usage != UsageServer || req.Issuer != ClusterCA {
		t.Errorf("request %+v", req)
	}

	// An IP endpoint lands in the IP SANs.
	req, err = APIServerCert(APIServerNames{NodeIPs: []net.IP{net.ParseIP("192.0.2.11")},
		ServiceCIDR: "fd00:10:96::/112", DNSDomain: "cluster.local", EndpointHost: "198.51.100.10"})
	if err != nil {
		t.Fatal(err)
	}
	if got := ipStrings(req.IPs); !slices.Contains(got, "198.51.100.10") || got[0] != "fd00:10:96::1" {
		t.Errorf("IP SANs %q: want the IPv6 service IP first and the endpoint IP", got)
	}
}

func TestRequestBuilderErrors(t *testing.T) {
	ok := APIServerNames{NodeNames: []string{"cp-1"}, NodeIPs: []net.IP{net.ParseIP("192.0.2.1")},
		ServiceCIDR: "10.96.0.0/12", DNSDomain: "cluster.local"}
	with := func(f func(*APIServerNames)) APIServerNames { n := ok; f(&n); return n }
	cases := map[string]func() error{
		"serviceCIDR": func() error {
			_, err := APIServerCert(with(func(n *APIServerNames) { n.ServiceCIDR = "10.96.0.1/12" }))
			return err
		},
		"dnsDomain": func() error {
			_, err := APIServerCert(with(func(n *APIServerNames) { n.DNSDomain = "bad_domain" }))
			return err
		},
		"endpointHost": func() error {
			_, err := APIServerCert(with(func(n *APIServerNames) { n.EndpointHost = "https://api:6443" }))
			return err
		},
		"nodeNames[0]": func() error {
			_, err := APIServerCert(with(func(n *APIServerNames) { n.NodeNames = []string{"a b"} }))
			return err
		},
		"nodeIPs": func() error {
			_, err := APIServerCert(with(func(n *APIServerNames) { n.NodeIPs = nil }))
			return err
		},
		"extraSANs[0]": func() error {
			_, err := APIServerCert(with(func(n *APIServerNames) { n.ExtraSANs = []string{"*.x"} }))
			return err
		},
		"nodeName": func() error { _, err := EtcdPeerCert("", net.ParseIP("192.0.2.1")); return err },
		"nodeIP":   func() error { _, err := EtcdServerCert("cp-1", nil); return err },
		"nodeIPs ": func() error { _, err := KubeletServingCert("n1"); return err },
		"nodeName ": func() error {
			_, err := KubeletClientCert("Node_1")
			return err
		},
	}
	for field, f := range cases {
		err := f()
		if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), strings.TrimSpace(field)+":") {
			t.Errorf("%s: err = %v, want ErrInvalidRequest naming the field", field, err)
		}
	}
}

func TestMemberAndNodeRequests(t *testing.T) {
	ip := net.ParseIP("192.0.2.11")
	peer, err := EtcdPeerCert("cp-1", ip)
	if err != nil {
		t.Fatal(err)
	}
	if peer.CommonName != "cp-1" || peer.Usage != UsagePeer || peer.Issuer != EtcdCA ||
		!slices.Equal(peer.DNSNames, []string{"cp-1", "localhost"}) ||
		!slices.Equal(ipStrings(peer.IPs), []string{"192.0.2.11", "127.0.0.1", "::1"}) {
		t.Errorf("etcd peer request %+v", peer)
	}
	kc, err := KubeletClientCert("worker-1")
	if err != nil || kc.CommonName != "system:node:worker-1" || !slices.Equal(kc.Organizations, []string{"system:nodes"}) || kc.Usage != UsageClient {
		t.Errorf("kubelet client %+v, %v", kc, err)
	}
	ks, err := KubeletServingCert("worker-1", ip)
	if err != nil || ks.Usage != UsageServer || !slices.Equal(ks.DNSNames, []string{"worker-1"}) {
		t.Errorf("kubelet serving %+v, %v", ks, err)
	}
	for _, r := range []CertRequest{APIServerKubeletClientCert(), APIServerEtcdClientCert(), FrontProxyClientCert(),
		EtcdHealthcheckClientCert(), AdminCert(), ControllerManagerCert(), SchedulerCert(), KubeProxyCert()} {
		if err := r.Validate(); err != nil || r.Usage != UsageClient {
			t.Errorf("%s: %v (usage %s)", r, err, r.Usage)
		}
	}
	for _, r := range []CertRequest{ControllerManagerServingCert(), SchedulerServingCert()} {
		if err := r.Validate(); err != nil || r.Usage != UsageServer || r.Issuer != ClusterCA ||
			!slices.Equal(r.DNSNames, []string{"localhost"}) || !slices.Equal(ipStrings(r.IPs), []string{"127.0.0.1", "::1"}) {
			t.Errorf("%s: %+v, %v", r, r, err)
		}
	}
	if a := AdminCert(); !slices.Equal(a.Organizations, []string{"system:masters"}) {
		t.Errorf("admin organizations %q", a.Organizations)
	}
	if c := APIServerKubeletClientCert(); len(c.Organizations) != 0 {
		t.Errorf("apiserver-kubelet-client organizations %q, want none (kubeadm 1.37)", c.Organizations)
	}
}

func TestNthIP(t *testing.T) {
	for _, tc := range []struct {
		cidr string
		n    int64
		want string
	}{
		{"10.96.0.0/12", 1, "10.96.0.1"},
		{"10.96.0.0/12", 10, "10.96.0.10"},
		{"10.0.0.0/30", 2, "10.0.0.2"},
		{"fd00::/108", 10, "fd00::a"},
		{"10.255.255.0/24", 254, "10.255.255.254"},
	} {
		ip, err := NthIP(tc.cidr, tc.n)
		if err != nil || ip.String() != tc.want {
			t.Errorf("NthIP(%s, %d) = %v, %v; want %s", tc.cidr, tc.n, ip, err, tc.want)
		}
	}
	for _, bad := range []struct {
		cidr string
		n    int64
	}{{"10.0.0.0/30", 3}, {"10.0.0.0/32", 1}, {"10.0.0.1/24", 1}, {"nope", 1}, {"10.0.0.0/24", -1}} {
		if ip, err := NthIP(bad.cidr, bad.n); err == nil {
			t.Errorf("NthIP(%s, %d) = %v, want an error", bad.cidr, bad.n, ip)
		}
	}
}
