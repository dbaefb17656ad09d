package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/basalt-dev/basalt/test/e2e/bed"
)

// apiServerSampler watches the kube-apiservers of a set of control-plane hosts while Plans roll
// out: every half second it asks each for /readyz at its own address (all at once) and records
// the samples in which more than one was not ready; every two seconds it reads each one's
// process ID. Restarting one control-plane node at a time means no such sample and one new
// process per restart.
type apiServerSampler struct {
	stop chan struct{}
	done sync.WaitGroup

	mu       sync.Mutex
	samples  int
	overlaps []string
	// run counts the consecutive samples with more than one not ready; worst is its maximum.
	run, worst int
	notReady   map[string]int
	pids       map[string][]string
}

func sampleAPIServers(ctx context.Context, hosts []*bed.Host) *apiServerSampler {
	s := &apiServerSampler{stop: make(chan struct{}), notReady: map[string]int{}, pids: map[string][]string{}}
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		// Only readiness is read here; the certificates are checked by servingCertIssuedAt.
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
		DisableKeepAlives: true,
	}}
	ready := func(h *bed.Host) bool {
		resp, err := hc.Get("https://" + net.JoinHostPort(h.IP, "6443") + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	s.done.Add(2)
	go func() {
		defer s.done.Done()
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			at := time.Now().UTC().Format("15:04:05.0")
			res := make([]bool, len(hosts))
			var wg sync.WaitGroup
			for i, h := range hosts {
				wg.Go(func() { res[i] = ready(h) })
			}
			wg.Wait()
			var down []string
			for i, ok := range res {
				if !ok {
					down = append(down, hosts[i].Name)
				}
			}
			s.mu.Lock()
			s.samples++
			for _, d := range down {
				s.notReady[d]++
			}
			if len(down) > 1 {
				s.run++
				s.worst = max(s.worst, s.run)
				if len(s.overlaps) < 20 {
					s.overlaps = append(s.overlaps, at+" "+strings.Join(down, "+"))
				}
			} else {
				s.run = 0
			}
			s.mu.Unlock()
		}
	}()
	go func() {
		defer s.done.Done()
		for {
			for _, h := range hosts {
				out, err := h.Run(ctx, "pgrep -x kube-apiserver || true")
				pid := strings.TrimSpace(out)
				if err != nil || pid == "" {
					continue
				}
				s.mu.Lock()
				if l := s.pids[h.Name]; len(l) == 0 || l[len(l)-1] != pid {
					s.pids[h.Name] = append(l, pid)
				}
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-time.After(2 * time.Second):
			}
		}
	}()
	return s
}

// finish stops the sampler and returns what it saw: the samples with more than one API server
// not ready and the longest run of them in a row (a probe of a busy server on a loaded machine
// may time out once; two servers restarted together are unready for seconds), the count of
// not-ready samples per host, the processes seen per host in order, and the number of samples.
func (s *apiServerSampler) finish() (overlaps []string, worst int, notReady map[string]int, pids map[string][]string, samples int) {
	close(s.stop)
	s.done.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.overlaps), s.worst, s.notReady, s.pids, s.samples
}

// servingCertIssuedAt is when the kube-apiserver at ip:6443 had its serving certificate issued
// (NotBefore is backdated by five minutes, bootstrap/pki).
func servingCertIssuedAt(ctx context.Context, ip string) (time.Time, error) {
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // the certificate itself is what is read
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", net.JoinHostPort(ip, "6443"))
	if err != nil {
		return time.Time{}, err
	}
	defer func() { _ = conn.Close() }()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return time.Time{}, fmt.Errorf("%s:6443 sent no certificate", ip)
	}
	return certs[0].NotBefore.Add(5 * time.Minute), nil
}
