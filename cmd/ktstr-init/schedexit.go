package main

import (
	"context"
	"time"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// standinStatus is the exit status of the built-in stand-in scheduler.
const standinStatus = 7

// schedExitScenario runs workers under a supervised scheduler that
// dies half-way through: ktstr.scheduler if given, else a stand-in that
// exits with status 7. The agent sends SCDX with the status; the host is
// expected to stop the run at once, so the TEST that follows the
// workload is only seen when it does not.
func schedExitScenario() scenario {
	return scenario{
		name:          "sched-exit",
		help:          "a supervised scheduler dies mid-run; the agent sends SCDX and the host stops the VM",
		ownsScheduler: true,
		run:           runSchedExit,
	}
}

func runSchedExit(ctx context.Context, a *agent) (int, error) {
	cfg := a.cfg
	if err := a.sendJSON(wire.Scenario, map[string]any{
		"scenario": "sched-exit", "phase": "begin", "workers": cfg.Workers, "duration_ns": cfg.Duration,
	}); err != nil {
		return 1, err
	}
	if err := a.sendJSON(wire.ScenarioStart, map[string]any{"scenario": "sched-exit", "t_ns": a.since()}); err != nil {
		return 1, err
	}
	path, args := cfg.Scheduler, []string(nil)
	if path == "" {
		path = a.self
		args = []string{"sched-standin", "-delay", (cfg.Duration / 2).String(), "-status", "7"}
	}
	if err := a.sendStep(1, "start scheduler", map[string]any{"path": path}); err != nil {
		return 1, err
	}
	s, err := a.startScheduler(path, args...)
	if err != nil {
		return 1, err
	}
	defer s.stop()
	if err := a.sendStep(2, "run workers", map[string]any{"workers": cfg.Workers}); err != nil {
		return 1, err
	}
	began := time.Now()
	res, err := runWorkers(ctx, a, cfg.Workers, cfg.Duration, nil)
	if err != nil {
		return 1, err
	}
	// Still here: the host did not stop the run on SCDX.
	tr := testResult{Scenario: "sched-exit", DurationNS: int64(time.Since(began)), Workload: res}
	select {
	case <-s.done:
		st := s.status
		tr.Scheduler = &st
		tr.Reason = "scheduler died but the host did not stop the run"
	default:
		tr.Reason = "scheduler outlived the workload"
	}
	if err := a.sendJSON(wire.TestResult, tr); err != nil {
		return 1, err
	}
	return 1, nil
}
