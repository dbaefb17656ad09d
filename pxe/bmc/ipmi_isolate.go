package bmc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// IPMI operations run in a child process of whatever binary links this package (the manager, a
// test binary): go-ipmi decodes replies in goroutines of its own, where a panic on a malformed
// reply cannot be recovered and would end the manager (pxe/bmc/testdata/crashers/README.md has
// the reply that did). The child is the same executable started with ipmiHelperEnv set: this
// package's init runs the one operation the parent wrote to its stdin, writes the result to its
// stdout and exits, before main or the test framework starts. A child that dies is the BMC's
// broken reply, a ProtocolError on the Host. The credentials travel on stdin, never in argv or
// the environment.

// ipmiHelperEnv, set to "1", makes a binary linking this package run one IPMI operation.
const ipmiHelperEnv = "BASALT_BMC_IPMI_HELPER"

// ipmiHelperGrace is how much longer than Config.Timeout the parent waits for the child, which
// bounds its own operation by Config.Timeout.
const ipmiHelperGrace = 5 * time.Second

// maxHelperOutput bounds what the parent reads of the child's stdout and stderr.
const maxHelperOutput = 64 << 10

func init() {
	if os.Getenv(ipmiHelperEnv) == "1" {
		os.Exit(ipmiHelperMain(os.Stdin, os.Stdout))
	}
}

// IPMI operations a child runs.
const (
	opPowerState  = "power-state"
	opPowerOn     = "power-on"
	opPowerOff    = "power-off"
	opPowerCycle  = "power-cycle"
	opSetNextBoot = "set-next-boot"
)

// ipmiRequest is what the parent writes to the child.
type ipmiRequest struct {
	Address    string            `json:"address"`
	Username   string            `json:"username"`
	Password   string            `json:"password"`
	BootMode   basaltv1.BootMode `json:"bootMode,omitempty"`
	Timeout    time.Duration     `json:"timeout"`
	Op         string            `json:"op"`
	Device     Device            `json:"device,omitempty"`
	Persistent bool              `json:"persistent,omitempty"`
}

// ipmiReply is what the child writes back.
type ipmiReply struct {
	Power  PowerState `json:"power,omitempty"`
	Reason Reason     `json:"reason,omitempty"`
	Error  string     `json:"error,omitempty"`
}

// ipmiHelperMain runs one operation; its exit code is 0 whenever it wrote a reply.
func ipmiHelperMain(in io.Reader, out io.Writer) int {
	var req ipmiRequest
	if err := json.NewDecoder(io.LimitReader(in, maxHelperOutput)).Decode(&req); err != nil {
		fmt.Fprintln(os.Stderr, "reading the IPMI request:", err)
		return 3
	}
	m, err := newIPMI(Config{Protocol: basaltv1.BMCIPMI, Address: req.Address, BootMode: req.BootMode, Timeout: req.Timeout,
		Credentials: Credentials{Username: req.Username, Password: req.Password}})
	var rep ipmiReply
	if err == nil {
		ctx := context.Background()
		switch req.Op {
		case opPowerState:
			rep.Power, err = m.PowerState(ctx)
		case opPowerOn:
			err = m.PowerOn(ctx)
		case opPowerOff:
			err = m.PowerOff(ctx)
		case opPowerCycle:
			err = m.PowerCycle(ctx)
		case opSetNextBoot:
			err = m.SetNextBoot(ctx, req.Device, req.Persistent)
		default:
			err = fmt.Errorf("unknown IPMI operation %q", req.Op)
		}
	}
	if err != nil {
		rep.Reason, rep.Error = ReasonProtocolError, err.Error()
		var be *Error
		if errors.As(err, &be) {
			rep.Reason = be.Reason
		}
	}
	if err := json.NewEncoder(out).Encode(rep); err != nil {
		return 3
	}
	return 0
}

// isolatedIPMI is the Controller of an IPMI BMC whose every operation runs in a child process.
type isolatedIPMI struct {
	inner *ipmi
	exe   string
}

func newIsolatedIPMI(cfg Config) (Controller, error) {
	m, err := newIPMI(cfg)
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the manager's executable to run IPMI in: %w", err)
	}
	return &isolatedIPMI{inner: m, exe: exe}, nil
}

// run runs req in a child and returns its reply, or the error that stands for it.
func (m *isolatedIPMI) run(ctx context.Context, req ipmiRequest) (ipmiReply, error) {
	cfg := m.inner.cfg
	req.Address, req.Username, req.Password = cfg.Address, cfg.Credentials.Username, cfg.Credentials.Password
	req.BootMode, req.Timeout = cfg.BootMode, cfg.Timeout
	body, err := json.Marshal(req)
	if err != nil {
		return ipmiReply{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout+ipmiHelperGrace)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.exe)
	cmd.Env = append(os.Environ(), ipmiHelperEnv+"=1")
	cmd.Stdin = bytes.NewReader(body)
	var stdout, stderr limitedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var rep ipmiReply
	if runErr == nil {
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			return ipmiReply{}, &Error{Reason: ReasonProtocolError, Err: fmt.Errorf("talking IPMI to %s: unreadable answer of the IPMI process: %w", m.inner.endpoint(), err)}
		}
		if rep.Reason != "" {
			return rep, &Error{Reason: rep.Reason, Err: errors.New(rep.Error)}
		}
		return rep, nil
	}
	if ctx.Err() != nil {
		return ipmiReply{}, &Error{Reason: ReasonUnreachable, Err: fmt.Errorf(
			"talking IPMI to %s: no result within %s: check spec.bmc.address and port (UDP), and that the manager can reach it", m.inner.endpoint(), cfg.Timeout)}
	}
	return ipmiReply{}, &Error{Reason: ReasonProtocolError, Err: fmt.Errorf(
		"talking IPMI to %s: its reply broke the IPMI client (%s): check the BMC's firmware", m.inner.endpoint(), crashLine(stderr.String(), runErr))}
}

// crashLine is the first line of a Go panic in the child's stderr, else how it ended.
func crashLine(stderr string, err error) string {
	for line := range strings.Lines(stderr) {
		if strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") {
			return strings.TrimSpace(line)
		}
	}
	return err.Error()
}

// limitedBuffer keeps the first maxHelperOutput bytes written to it.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxHelperOutput - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (m *isolatedIPMI) PowerState(ctx context.Context) (PowerState, error) {
	rep, err := m.run(ctx, ipmiRequest{Op: opPowerState})
	return rep.Power, err
}

func (m *isolatedIPMI) PowerOn(ctx context.Context) error {
	_, err := m.run(ctx, ipmiRequest{Op: opPowerOn})
	return err
}

func (m *isolatedIPMI) PowerOff(ctx context.Context) error {
	_, err := m.run(ctx, ipmiRequest{Op: opPowerOff})
	return err
}

func (m *isolatedIPMI) PowerCycle(ctx context.Context) error {
	_, err := m.run(ctx, ipmiRequest{Op: opPowerCycle})
	return err
}

func (m *isolatedIPMI) SetNextBoot(ctx context.Context, dev Device, persistent bool) error {
	_, err := m.run(ctx, ipmiRequest{Op: opSetNextBoot, Device: dev, Persistent: persistent})
	return err
}
