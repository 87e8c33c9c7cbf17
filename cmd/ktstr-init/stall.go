package main

import (
	"context"
	"time"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// stallInterval is how often the stall scenario writes its one byte.
const stallInterval = time.Second

// stallScenario is a guest that hangs without powering off: it pauses
// the host's run watchdog (SCPP, never followed by SCRR), then writes one
// SOUT frame a byte at a time, one byte every stallInterval, for ever.
// Only the host's --timeout (or a signal) can end such a run; it shows
// that neither a paused watchdog nor a port that trickles slower than a
// byte a second keeps the host waiting past it.
func stallScenario() scenario {
	return scenario{
		name: "stall",
		help: "pause the watchdog, then trickle one byte a second and never power off; only --timeout ends the run",
		run:  func(ctx context.Context, a *agent) (int, error) { return stall(ctx, a, stallInterval) },
	}
}

// stall runs the stall scenario, a byte every interval, until ctx ends.
func stall(ctx context.Context, a *agent, every time.Duration) (int, error) {
	if err := a.sendJSON(wire.ScenarioStart, map[string]any{"scenario": "stall", "t_ns": a.since()}); err != nil {
		return 1, err
	}
	if err := a.send(wire.WatchdogPause, nil); err != nil {
		return 1, err
	}
	frame := wire.AppendFrame(nil, wire.Stdout, []byte("ktstr-init: stalled\n"))
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return 1, ctx.Err()
		case <-tick.C:
		}
		if err := a.writeRaw(frame[i%len(frame) : i%len(frame)+1]); err != nil {
			return 1, err
		}
	}
}
