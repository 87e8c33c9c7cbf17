package main

import (
	"fmt"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// scheduler is a supervised scheduler process. If it dies while the
// scenario still needs it, the agent sends SCDX carrying its exit
// status, and the host stops the run.
type scheduler struct {
	cmd      *exec.Cmd
	stopping atomic.Bool
	done     chan struct{}
	status   int // valid once done is closed
}

// startScheduler starts path with args, its output going out as SCLG.
func (a *agent) startScheduler(path string, args ...string) (*scheduler, error) {
	cmd := exec.Command(path, args...)
	cmd.Stdout = frameWriter{a, wire.SchedLog}
	cmd.Stderr = frameWriter{a, wire.SchedLog}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start scheduler %s: %w", path, err)
	}
	s := &scheduler{cmd: cmd, done: make(chan struct{})}
	a.logf("scheduler %s started, pid %d", path, cmd.Process.Pid)
	a.goSafe(func() {
		_ = cmd.Wait()
		s.status = exitStatus(cmd.ProcessState)
		close(s.done)
		if s.stopping.Load() {
			return
		}
		a.logf("scheduler %s died, status %d: sending SCDX", path, s.status)
		if err := a.sendStatus(wire.SchedExit, s.status); err != nil {
			a.logf("send SCDX: %v", err)
		}
	})
	return s, nil
}

// stop ends a scheduler the scenario no longer needs; its death then
// sends no SCDX.
func (s *scheduler) stop() {
	s.stopping.Store(true)
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}
