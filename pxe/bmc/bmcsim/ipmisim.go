package bmcsim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// IPMISim runs OpenIPMI's ipmi_sim (Debian package openipmi) as the IPMI v2.0 BMC of a System.
// ipmi_sim speaks RMCP+ on a loopback UDP port and implements the chassis commands itself; for
// power and boot device it runs its "chassis_control" program, which here is the test binary
// re-executed (ChassisHelperMain) and forwarded over a unix socket to System. With QEMUSerialPort
// set, ipmi_sim also listens for QEMU's external BMC device (QEMUArgs), so the VM has a KCS
// interface backed by the same BMC.
//
// Tests that use IPMISim call ChassisHelperMain first thing in their TestMain.
type IPMISim struct {
	// Dir holds the configuration, ipmi_sim's state and the control socket. Required.
	Dir string
	// Username and Password of the one (administrator) account. Required; at most 16 and 20
	// characters.
	Username, Password string
	// System is the machine whose power and boot device the BMC controls. Required.
	System System
	// Port is the RMCP+ UDP port on 127.0.0.1. Default: a free port.
	Port int
	// QEMUSerialPort, when not zero, is the TCP port on 127.0.0.1 where ipmi_sim waits for QEMU's
	// ipmi-bmc-extern chardev (see QEMUArgs).
	QEMUSerialPort int
	// Log receives ipmi_sim's output. Default io.Discard.
	Log io.Writer

	cmd  *exec.Cmd
	done chan struct{}
	ln   net.Listener
	wg   sync.WaitGroup

	mu    sync.Mutex
	calls []string
}

// chassisEnv names the control socket in the environment of the re-executed test binary.
const chassisEnv = "BMCSIM_CHASSIS_SOCKET"

// LookIPMISim reports whether ipmi_sim is installed, with the command that installs it.
func LookIPMISim() error {
	if _, err := exec.LookPath("ipmi_sim"); err != nil {
		return fmt.Errorf("ipmi_sim not found: install it with pxe/image/ensure-debs.sh openipmi (make test does): %w", err)
	}
	return nil
}

// QEMUArgs are the QEMU arguments that connect a VM's KCS interface to this BMC.
func (s *IPMISim) QEMUArgs() []string {
	return []string{
		"-chardev", fmt.Sprintf("socket,id=ipmi0,host=127.0.0.1,port=%d,reconnect=1", s.QEMUSerialPort),
		"-device", "ipmi-bmc-extern,id=bmc0,chardev=ipmi0",
		"-device", "isa-ipmi-kcs,bmc=bmc0",
	}
}

// Addr is the BMC's RMCP+ address, host:port.
func (s *IPMISim) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// Calls are the chassis control requests ipmi_sim made, e.g. "set power 1", "set boot pxe".
func (s *IPMISim) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

func freeUDPPort() (int, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = c.Close() }()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// Start writes ipmi_sim's configuration, starts it and waits until it answers an RMCP ping.
func (s *IPMISim) Start(ctx context.Context) error {
	if s.Dir == "" || s.System == nil || s.Username == "" || s.Password == "" {
		return errors.New("bmcsim: IPMISim needs Dir, System, Username and Password")
	}
	if err := LookIPMISim(); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if s.Port == 0 {
		if s.Port, err = freeUDPPort(); err != nil {
			return err
		}
	}
	sock := filepath.Join(s.Dir, "chassis.sock")
	_ = os.Remove(sock)
	s.ln, err = net.Listen("unix", sock)
	if err != nil {
		return err
	}
	s.wg.Add(1)
	go s.serve()

	state := filepath.Join(s.Dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "name \"bmcsim\"\nset_working_mc 0x20\n")
	fmt.Fprintf(&conf, "  startlan 1\n    addr 127.0.0.1 %d\n    priv_limit admin\n", s.Port)
	for _, p := range []string{"callback", "user", "operator", "admin"} {
		fmt.Fprintf(&conf, "    allowed_auths_%s md5\n", p)
	}
	fmt.Fprintf(&conf, "    guid a123456789abcdefa123456789abcdef\n  endlan\n")
	if s.QEMUSerialPort != 0 {
		fmt.Fprintf(&conf, "  serial kcs 127.0.0.1 %d codec VM ipmb 0x20\n", s.QEMUSerialPort)
	}
	fmt.Fprintf(&conf, "  chassis_control \"%s=%s %s\"\n", chassisEnv, sock, exe)
	fmt.Fprintf(&conf, "  user 2 true \"%s\" \"%s\" admin 10 md5\n", s.Username, s.Password)
	confPath := filepath.Join(s.Dir, "lan.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o600); err != nil {
		return err
	}
	emu := "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nsel_enable 0x20 1000 0x0a\nmc_enable 0x20\n"
	emuPath := filepath.Join(s.Dir, "bmcsim.emu")
	if err := os.WriteFile(emuPath, []byte(emu), 0o600); err != nil {
		return err
	}
	s.cmd = exec.Command("ipmi_sim", "-n", "-c", confPath, "-f", emuPath, "-s", state)
	out := s.Log
	if out == nil {
		out = io.Discard
	}
	s.cmd.Stdout, s.cmd.Stderr = out, out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("starting ipmi_sim: %w", err)
	}
	s.done = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.done) }()

	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := rmcpPing(s.Addr()); err == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("ipmi_sim exited at start (%s): see its log", s.cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.Close()
			return errors.New("ipmi_sim did not answer an RMCP ping within 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rmcpPing sends an ASF presence ping (RMCP class 6) and waits for the pong.
func rmcpPing(addr string) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	ping := []byte{0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x80, 0x01, 0x00, 0x00}
	if _, err := c.Write(ping); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if n < 9 || buf[8] != 0x40 {
		return fmt.Errorf("not an RMCP pong: % x", buf[:n])
	}
	return nil
}

// Close stops ipmi_sim and the control socket.
func (s *IPMISim) Close() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	if s.ln != nil {
		_ = s.ln.Close()
		s.wg.Wait()
	}
}

// chassisRequest is one chassis_control invocation, forwarded by the helper.
type chassisRequest struct {
	Args []string `json:"args"`
}

type chassisResponse struct {
	Out string `json:"out"`
	Err string `json:"err,omitempty"`
}

func (s *IPMISim) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { _ = conn.Close() }()
			_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
			var req chassisRequest
			if err := json.NewDecoder(conn).Decode(&req); err != nil {
				return
			}
			out, err := s.chassis(req.Args)
			resp := chassisResponse{Out: out}
			if err != nil {
				resp.Err = err.Error()
			}
			_ = json.NewEncoder(conn).Encode(resp)
		}()
	}
}

// chassis runs one ipmi_sim chassis_control request: "get power", "set power 1", "set reset 1",
// "set boot pxe|default|none", "get boot", "set shutdown 1", "set identify ...", "check ...".
func (s *IPMISim) chassis(args []string) (string, error) {
	s.mu.Lock()
	s.calls = append(s.calls, strings.Join(args, " "))
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	if len(args) == 0 {
		return "", errors.New("no operation")
	}
	op, kv := args[0], args[1:]
	if op == "check" {
		return "", nil
	}
	var out strings.Builder
	for i := 0; i < len(kv); i++ {
		name := kv[i]
		switch op {
		case "get":
			switch name {
			case "power":
				on, err := s.System.PowerState(ctx)
				if err != nil {
					return "", err
				}
				fmt.Fprintf(&out, "power:%d\n", map[bool]int{false: 0, true: 1}[on])
			case "boot":
				dev, _ := s.System.BootOverride()
				fmt.Fprintf(&out, "boot:%s\n", map[BootDevice]string{BootNone: "none", BootPXE: "pxe", BootDisk: "default"}[dev])
			default:
				return "", fmt.Errorf("cannot get %q", name)
			}
		case "set":
			if i+1 >= len(kv) {
				return "", fmt.Errorf("set %s without a value", name)
			}
			val := kv[i+1]
			i++
			var err error
			switch name {
			case "power":
				if val == "0" {
					err = s.System.ForceOff(ctx)
				} else {
					err = s.System.PowerOn(ctx)
				}
			case "reset":
				err = s.System.ForceRestart(ctx)
			case "shutdown":
				err = s.System.ForceOff(ctx)
			case "boot":
				dev, ok := map[string]BootDevice{"none": BootNone, "pxe": BootPXE, "default": BootDisk}[val]
				if !ok {
					return "", fmt.Errorf("boot device %q is not supported by this machine", val)
				}
				// ipmi_sim passes the device only, not the persistent bit: a one-time override.
				err = s.System.SetBootOverride(ctx, dev, false)
			case "identify":
			default:
				return "", fmt.Errorf("cannot set %q", name)
			}
			if err != nil {
				return "", err
			}
		default:
			return "", fmt.Errorf("unknown operation %q", op)
		}
	}
	return out.String(), nil
}

// ChassisHelperMain turns the process into ipmi_sim's chassis_control program when ipmi_sim
// started it (the environment names the control socket): it forwards its arguments to the
// IPMISim that owns the socket, prints the answer and exits. Otherwise it returns at once. Call
// it first thing in TestMain of any test package that uses IPMISim.
func ChassisHelperMain() {
	sock := os.Getenv(chassisEnv)
	if sock == "" {
		return
	}
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bmcsim chassis helper:", err)
		os.Exit(1)
	}
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	if err := json.NewEncoder(conn).Encode(chassisRequest{Args: os.Args[1:]}); err != nil {
		fmt.Fprintln(os.Stderr, "bmcsim chassis helper:", err)
		os.Exit(1)
	}
	var resp chassisResponse
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&resp); err != nil {
		fmt.Fprintln(os.Stderr, "bmcsim chassis helper:", err)
		os.Exit(1)
	}
	fmt.Print(resp.Out)
	if resp.Err != "" {
		fmt.Fprintln(os.Stderr, "bmcsim chassis helper:", resp.Err)
		os.Exit(1)
	}
	os.Exit(0)
}
