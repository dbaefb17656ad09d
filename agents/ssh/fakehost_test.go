package ssh_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// fakeHost is an SSH server on loopback that runs every exec request for real, with /bin/sh -c,
// as the test's user, the way sshd runs a command with the user's shell. It records what clients
// did, so tests can assert, for instance, that a client refused the host key before
// authenticating or opening a session.
type fakeHost struct {
	t      *testing.T
	addr   *net.TCPAddr
	key    ssh.Signer
	client ssh.PublicKey // the only key allowed to log in
	// env is the environment of the commands; tests put fake tools first in PATH.
	env []string

	mu     sync.Mutex
	events []string
}

// newFakeHost starts a host with a fresh ed25519 host key (h.key) plus extraKeys, accepting logins
// by the client key.
func newFakeHost(t *testing.T, client ssh.PublicKey, extraKeys ...ssh.Signer) *fakeHost {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &fakeHost{t: t, addr: ln.Addr().(*net.TCPAddr), key: hostKey, client: client, env: os.Environ()}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			h.record("auth " + meta.User())
			if bytes.Equal(key.Marshal(), h.client.Marshal()) {
				return &ssh.Permissions{}, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	cfg.AddHostKey(hostKey)
	for _, k := range extraKeys {
		cfg.AddHostKey(k)
	}

	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.serve(nc, cfg)
			}()
		}
	}()
	return h
}

func (h *fakeHost) record(e string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, e)
}

// Events returns what happened so far: "connect", "handshake failed", "auth <user>",
// "session", "exec <command>".
func (h *fakeHost) Events() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.events...)
}

// Count returns how many events start with prefix.
func (h *fakeHost) Count(prefix string) int {
	n := 0
	for _, e := range h.Events() {
		if strings.HasPrefix(e, prefix) {
			n++
		}
	}
	return n
}

func (h *fakeHost) serve(nc net.Conn, cfg *ssh.ServerConfig) {
	defer func() { _ = nc.Close() }()
	h.record("connect")
	sc, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		h.record("handshake failed")
		return
	}
	defer func() { _ = sc.Close() }()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	for nch := range chans {
		if nch.ChannelType() != "session" {
			_ = nch.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, chReqs, err := nch.Accept()
		if err != nil {
			continue
		}
		h.record("session")
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.session(ch, chReqs)
		}()
	}
	wg.Wait()
}

// session answers one exec request by running the command, then closes the channel.
func (h *fakeHost) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer func() { _ = ch.Close() }()
	for req := range reqs {
		if req.Type != "exec" {
			_ = req.Reply(false, nil)
			continue
		}
		var payload struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
			_ = req.Reply(false, nil)
			continue
		}
		h.record("exec " + payload.Command)
		_ = req.Reply(true, nil)
		cmd := exec.Command("/bin/sh", "-c", payload.Command)
		cmd.Env = h.env
		cmd.Stdin = ch
		cmd.Stdout = ch
		cmd.Stderr = ch.Stderr()
		status := 0
		if err := cmd.Run(); err != nil {
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				status = exit.ExitCode()
			} else {
				_, _ = fmt.Fprintln(ch.Stderr(), err)
				status = 127
			}
		}
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
		return
	}
}
