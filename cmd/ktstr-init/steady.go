package main

import (
	"context"
	"time"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// maxSpread is the largest per-worker CPU spread between the two
// cgroups the steady scenario accepts: equal weights should give equal
// shares, give or take the noise of a short, emulated run.
const maxSpread = 0.35

// steadyScenario runs ktstr.workers spinning workers in two cgroups for
// ktstr.duration and reports each worker's CPU time and the spread
// between the cgroups.
func steadyScenario() scenario {
	return scenario{
		name: "steady",
		help: "N spinning workers in two cgroups for D; TEST reports CPU time per worker and the spread",
		run:  runSteady,
	}
}

// testResult is the TEST payload of the workload scenarios.
type testResult struct {
	Scenario   string         `json:"scenario"`
	Pass       bool           `json:"pass"`
	Reason     string         `json:"reason,omitempty"`
	DurationNS int64          `json:"duration_ns"`
	Workload   workloadResult `json:"workload"`
	Scheduler  *int           `json:"scheduler_exit,omitempty"`
}

func runSteady(ctx context.Context, a *agent) (int, error) {
	cfg := a.cfg
	if err := a.sendJSON(wire.Scenario, map[string]any{
		"scenario": "steady", "phase": "begin", "workers": cfg.Workers, "duration_ns": cfg.Duration,
	}); err != nil {
		return 1, err
	}
	if err := a.sendJSON(wire.ScenarioStart, map[string]any{"scenario": "steady", "t_ns": a.since()}); err != nil {
		return 1, err
	}
	if err := a.sendStep(1, "spawn workers", map[string]any{"workers": cfg.Workers, "cgroups": []string{cgroupA, cgroupB}}); err != nil {
		return 1, err
	}
	began := time.Now()
	res, err := runWorkers(ctx, a, cfg.Workers, cfg.Duration, func() error {
		if err := a.sendJSON(wire.StepEnd, map[string]any{"step": 1, "t_ns": a.since()}); err != nil {
			return err
		}
		return a.sendStep(2, "run", map[string]any{"duration_ns": cfg.Duration})
	})
	if err != nil {
		return 1, err
	}
	if err := a.sendJSON(wire.StepEnd, map[string]any{"step": 2, "t_ns": a.since()}); err != nil {
		return 1, err
	}
	if err := a.sendStep(3, "collect", nil); err != nil {
		return 1, err
	}
	tr := testResult{Scenario: "steady", DurationNS: int64(time.Since(began)), Workload: res, Pass: true}
	for _, w := range res.Workers {
		if w.Error != "" || w.Status != 0 {
			tr.Pass, tr.Reason = false, "a worker failed"
		}
	}
	if tr.Pass && res.Spread > maxSpread {
		tr.Pass, tr.Reason = false, "cgroup CPU spread above the limit"
	}
	if err := a.sendJSON(wire.TestResult, tr); err != nil {
		return 1, err
	}
	if err := a.sendJSON(wire.StepEnd, map[string]any{"step": 3, "t_ns": a.since()}); err != nil {
		return 1, err
	}
	if err := a.sendJSON(wire.Scenario, map[string]any{"scenario": "steady", "phase": "end", "pass": tr.Pass}); err != nil {
		return 1, err
	}
	if !tr.Pass {
		return 1, nil
	}
	return 0, nil
}
