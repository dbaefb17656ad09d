package bmc_test

import (
	"context"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/pxe/bmc"
	"github.com/basalt-dev/basalt/pxe/bmc/bmcsim"
	"github.com/basalt-dev/basalt/pxe/internal/testenv"
)

// ipmiTamper is a UDP proxy in front of ipmi_sim that changes the n-th reply of an operation: a
// real RMCP+ session (so the fuzzer reaches the RAKP exchange, the encrypted and authenticated
// session messages and the commands' answers) with one reply replaced, overwritten in part or cut
// short.
type ipmiTamper struct {
	conn    *net.UDPConn // the clients' side
	backend *net.UDPAddr

	mu     sync.Mutex
	seen   int
	n      int
	mode   uint8
	offset int
	data   []byte
}

func (p *ipmiTamper) arm(n int, mode uint8, offset int, data []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen, p.n, p.mode, p.offset, p.data = 0, n, mode, offset, data
}

// tamper returns the reply the client gets instead of reply.
func (p *ipmiTamper) tamper(reply []byte) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen++
	if p.seen != p.n {
		return reply
	}
	switch p.mode % 3 {
	case 0: // replaced
		return p.data
	case 1: // overwritten from offset
		out := append([]byte(nil), reply...)
		off := p.offset % (len(out) + 1)
		for i, b := range p.data {
			if off+i < len(out) {
				out[off+i] = b
			} else {
				out = append(out, b)
			}
		}
		return out
	default: // cut short
		return reply[:p.offset%(len(reply)+1)]
	}
}

// serve relays datagrams: each client gets a backend socket of its own, and the backend's replies
// pass through tamper on their way back.
func (p *ipmiTamper) serve() {
	var mu sync.Mutex
	backs := map[string]*net.UDPConn{}
	buf := make([]byte, 64<<10)
	for {
		n, from, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		mu.Lock()
		back := backs[from.String()]
		if back == nil {
			back, err = net.DialUDP("udp", nil, p.backend)
			if err != nil {
				mu.Unlock()
				continue
			}
			backs[from.String()] = back
			go func(back *net.UDPConn, client *net.UDPAddr) {
				rb := make([]byte, 64<<10)
				for {
					m, err := back.Read(rb)
					if err != nil {
						return
					}
					_, _ = p.conn.WriteToUDP(p.tamper(append([]byte(nil), rb[:m]...)), client)
				}
			}(back, from)
		}
		mu.Unlock()
		_, _ = back.Write(buf[:n])
	}
}

var (
	tamperOnce sync.Once
	tamper     *ipmiTamper
	tamperErr  error
	tamperCtl  bmc.Controller
)

// FuzzIPMIReply answers one datagram of a real RMCP+ session with ipmi_sim (the handshake, the
// chassis status, a chassis control or the boot options) with something else — replaced, partly
// overwritten or cut short — and checks that the driver never panics and either succeeds or
// returns a classified *bmc.Error, within its timeout. A reply the client drops costs it a
// timeout (half a second here), so it runs a few executions a second, hence its CI budget.
//
// fuzz-budget: 300x
func FuzzIPMIReply(f *testing.F) {
	for n := range uint8(10) {
		f.Add(uint8(0), n, uint8(1), uint16(16), []byte{0xff, 0xff, 0xff, 0xff})
		f.Add(uint8(1), n, uint8(2), uint16(20), []byte(nil))
	}
	f.Add(uint8(2), uint8(0), uint8(0), uint16(0), []byte{0x06, 0x00, 0xff, 0x07, 0x06, 0x10})
	f.Add(uint8(3), uint8(4), uint8(1), uint16(8), []byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, op, n, mode uint8, offset uint16, data []byte) {
		tamperOnce.Do(func() {
			if tamperErr = testenv.EnsureDebs("openipmi"); tamperErr != nil {
				return
			}
			sim := &bmcsim.IPMISim{Dir: mustTempDir(), Username: "admin", Password: "s3cret-pw", System: &bmcsim.MemorySystem{}}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if tamperErr = sim.Start(ctx); tamperErr != nil {
				return
			}
			backend, err := net.ResolveUDPAddr("udp", sim.Addr())
			if err != nil {
				tamperErr = err
				return
			}
			conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				tamperErr = err
				return
			}
			tamper = &ipmiTamper{conn: conn, backend: backend}
			go tamper.serve()
			tamperCtl, tamperErr = bmc.New(bmc.Config{Protocol: "ipmi", Address: conn.LocalAddr().String(),
				Credentials: bmc.Credentials{Username: "admin", Password: "s3cret-pw"}, Timeout: 500 * time.Millisecond})
		})
		if tamperErr != nil {
			t.Fatalf("ipmi_sim behind the tampering proxy: %v", tamperErr)
		}
		tamper.arm(int(n%12)+1, mode, int(offset), data)
		driveBMC(t, tamperCtl, op, 10*time.Second)
	})
}

// mustTempDir is a folder for ipmi_sim's files that lives as long as the fuzzing process (a fuzz
// target has no test to clean it up after).
func mustTempDir() string {
	dir, err := os.MkdirTemp("", "basalt-ipmi-fuzz-")
	if err != nil {
		panic(err)
	}
	return dir
}
