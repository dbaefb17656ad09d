package service

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/atomicfile"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// spawn starts p's process: record first (pid 0, fresh nonce), then the process, then the record
// with pid and start time. The caller owns p (no goroutine supervises it yet, or it is the
// supervising goroutine itself).
func (s *Supervisor) spawn(p *proc) error {
	p.mu.Lock()
	p.rec.Nonce = newNonce()
	p.rec.PID, p.rec.StartTime, p.rec.Completed = 0, 0, false
	rec := p.rec
	p.mu.Unlock()
	if err := s.writeRecord(&rec); err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	svc := rec.Service
	logf, err := os.OpenFile(s.logPath(svc.Name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(svc.Argv[0], svc.Argv[1:]...)
	cmd.Env = append(Environ(svc), ServiceEnv+"="+svc.Name, NonceEnv+"="+rec.Nonce)
	cmd.Dir = "/"
	// An *os.File is handed to the child as is (no pipe through the agent), so the process keeps
	// logging when the agent is gone.
	cmd.Stdout, cmd.Stderr = logf, logf
	// A session (and so a process group) of its own: no controlling terminal, and the whole group
	// can be signalled on stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	_, _ = fmt.Fprintf(logf, "--- basalt-agent: starting %s (hash %.12s) at %s\n", svc.Name, rec.Hash, time.Now().UTC().Format(time.RFC3339))
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	_, _, startTime, _ := procInfo(pid)
	exited := make(chan struct{})
	p.mu.Lock()
	p.rec.PID, p.rec.StartTime = pid, startTime
	p.exited, p.startedAt, p.message = exited, time.Now(), "running"
	rec = p.rec
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		code := 0
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			code = -1
		}
		p.mu.Lock()
		p.exitCode = code
		p.mu.Unlock()
		close(exited)
	}()
	if err := s.writeRecord(&rec); err != nil {
		s.Logger.Error("Cannot record a started service process", "service", svc.Name, "pid", pid, "error", err)
	}
	s.Logger.Info("Started service process", "service", svc.Name, "pid", pid, "hash", rec.Hash)
	return nil
}

// watchAdopted closes p.exited when the adopted process (not a child of this agent, so there is
// no Wait) is gone.
func (s *Supervisor) watchAdopted(p *proc) {
	p.mu.Lock()
	pid, st, exited := p.rec.PID, p.rec.StartTime, p.exited
	p.startedAt = time.Now()
	p.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.everyPoll(func() bool {
			if alive(pid, st) {
				return true
			}
			close(exited)
			return false
		})
	}()
}

// everyPoll calls f every PollInterval until the supervisor detaches or f returns false.
func (s *Supervisor) everyPoll(f func() bool) {
	t := time.NewTicker(s.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-s.detach:
			return
		case <-t.C:
		}
		if !f() {
			return
		}
	}
}

// superviseLocked starts the goroutine that restarts p's process when it exits. s.mu is held.
func (s *Supervisor) superviseLocked(p *proc) {
	p.mu.Lock()
	p.stop, p.finished = make(chan struct{}), make(chan struct{})
	stop, finished := p.stop, p.finished
	p.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(finished)
		s.supervise(p, stop)
	}()
}

func (s *Supervisor) supervise(p *proc, stop chan struct{}) {
	failures := 0
	for {
		p.mu.Lock()
		exited := p.exited
		p.mu.Unlock()
		select {
		case <-stop:
			return
		case <-s.detach:
			return
		case <-exited:
		}
		p.mu.Lock()
		code, ran, svc := p.exitCode, time.Since(p.startedAt), p.rec.Service
		p.mu.Unlock()
		if svc.Restart == plan.RestartOnFailure && code == 0 {
			p.mu.Lock()
			p.rec.Completed, p.message = true, "completed"
			rec := p.rec
			p.mu.Unlock()
			s.Logger.Info("Service process completed", "service", svc.Name)
			if err := s.writeRecord(&rec); err != nil {
				s.Logger.Error("Cannot record a completed service", "service", svc.Name, "error", err)
			}
			select {
			case <-stop:
			case <-s.detach:
			}
			return
		}
		if ran >= s.StableAfter {
			failures = 0
		}
		failures++
		delay := s.backoff(failures)
		p.mu.Lock()
		p.message = fmt.Sprintf("restarting in %s after exit status %d", delay, code)
		p.mu.Unlock()
		s.Logger.Warn("Service process exited; restarting", "service", svc.Name, "exitCode", code, "ran", ran.Round(time.Millisecond), "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-stop:
			t.Stop()
			return
		case <-s.detach:
			t.Stop()
			return
		case <-t.C:
		}
		if err := s.spawn(p); err != nil {
			s.Logger.Error("Cannot restart service process", "service", svc.Name, "error", err)
			closed := make(chan struct{})
			close(closed)
			p.mu.Lock()
			p.exited, p.exitCode, p.startedAt, p.message = closed, -1, time.Now(), "start failed: "+err.Error()
			p.mu.Unlock()
		}
	}
}

// backoff is BackoffInitial·2^(failures-1), at most BackoffMax.
func (s *Supervisor) backoff(failures int) time.Duration {
	d := s.BackoffInitial
	for i := 1; i < failures && d < s.BackoffMax; i++ {
		d *= 2
	}
	return min(d, s.BackoffMax)
}

// terminate ends supervision of p, then stops its process: SIGTERM to its process group, SIGKILL
// after StopGrace.
func (s *Supervisor) terminate(p *proc) {
	p.mu.Lock()
	stop, finished := p.stop, p.finished
	p.stop = nil
	p.mu.Unlock()
	if stop != nil {
		close(stop)
		<-finished
	}
	p.mu.Lock()
	pid, st, exited, name := p.rec.PID, p.rec.StartTime, p.exited, p.rec.Service.Name
	p.mu.Unlock()
	if exited == nil || pid == 0 {
		return
	}
	gone := func() bool {
		select {
		case <-exited:
			return true
		default:
			return !alive(pid, st)
		}
	}
	waitGone := func(d time.Duration) bool {
		deadline := time.Now().Add(d)
		for !gone() {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(20 * time.Millisecond)
		}
		return true
	}
	if gone() {
		return
	}
	s.Logger.Info("Stopping service process", "service", name, "pid", pid)
	signalGroup(pid, syscall.SIGTERM)
	if waitGone(s.StopGrace) {
		return
	}
	s.Logger.Warn("Service process ignored SIGTERM; killing it", "service", name, "pid", pid, "grace", s.StopGrace)
	signalGroup(pid, syscall.SIGKILL)
	if !waitGone(10 * time.Second) {
		s.Logger.Error("Service process survived SIGKILL", "service", name, "pid", pid)
	}
}

// signalGroup signals the process group of pid when pid leads one (every process the
// Supervisor starts does), else pid alone.
func signalGroup(pid int, sig syscall.Signal) {
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
		_ = syscall.Kill(-pid, sig)
		return
	}
	_ = syscall.Kill(pid, sig)
}

func (s *Supervisor) logPath(name string) string { return filepath.Join(s.LogDir, name+".log") }

// rotateLoop rotates the logs of the supervised services when they grow past LogMaxBytes.
func (s *Supervisor) rotateLoop() {
	defer s.wg.Done()
	s.everyPoll(func() bool {
		s.mu.Lock()
		var names []string
		for n := range s.procs {
			names = append(names, n)
		}
		s.mu.Unlock()
		for _, n := range names {
			if err := RotateLog(s.logPath(n), s.LogMaxBytes, s.LogKeep); err != nil {
				s.Logger.Warn("Cannot rotate a service log", "service", n, "error", err)
			}
		}
		return true
	})
}

// RotateLog rotates path when it is larger than maxBytes: path.<keep> is dropped, path.<i>
// becomes path.<i+1>, a copy of path becomes path.1 and path is truncated. Copy-and-truncate
// (logrotate's copytruncate) is used because the process holds path open in append mode and
// cannot be told to reopen it; the lines written between the copy and the truncation are lost.
func RotateLog(path string, maxBytes int64, keep int) error {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() <= maxBytes {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	if keep > 0 {
		_ = os.Remove(fmt.Sprintf("%s.%d", path, keep))
		for i := keep - 1; i >= 1; i-- {
			if err := os.Rename(fmt.Sprintf("%s.%d", path, i), fmt.Sprintf("%s.%d", path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		if err := copyFile(path, path+".1"); err != nil {
			return err
		}
	}
	return os.Truncate(path, 0)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return atomicfile.WriteFrom(dst, 0o640, atomicfile.Options{}, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}
