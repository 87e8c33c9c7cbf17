package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// consoleFloodScenario prints to the serial console as fast as the
// guest can for ktstr.duration: a guest (a kernel in a printk loop, a
// scheduler dumping its state) filling the host's console log. The host
// keeps the log within its budget (`ktstr record --max-console`); the
// run itself is a normal one and passes.
func consoleFloodScenario() scenario {
	return scenario{
		name: "console-flood",
		help: "print numbered lines to the serial console as fast as it takes them for D (the host's console log budget)",
		run: func(ctx context.Context, a *agent) (int, error) {
			return runConsoleFlood(ctx, a, a.log)
		},
	}
}

// runConsoleFlood writes numbered lines to console until the duration
// ends, then reports how much it wrote in TEST and on the console's last
// line.
func runConsoleFlood(ctx context.Context, a *agent, console io.Writer) (int, error) {
	if err := a.sendJSON(wire.Scenario, map[string]any{"scenario": "console-flood", "phase": "begin", "duration_ns": a.cfg.Duration}); err != nil {
		return 1, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Duration)
	defer cancel()
	began := time.Now()
	line := make([]byte, 0, 128)
	var written int64
	for i := 0; ctx.Err() == nil; i++ {
		line = append(line[:0], "console-flood line "...)
		line = strconv.AppendInt(line, int64(i), 10)
		line = append(line, " the quick brown fox jumps over the lazy dog, again and again and again\n"...)
		n, err := console.Write(line)
		written += int64(n)
		if err != nil {
			return 1, fmt.Errorf("console-flood: write the console: %w", err)
		}
	}
	a.logf("console-flood wrote %d bytes in %v", written, time.Since(began).Round(time.Millisecond))
	res := map[string]any{"scenario": "console-flood", "pass": true, "duration_ns": int64(time.Since(began)), "console_bytes": written}
	if err := a.sendJSON(wire.TestResult, res); err != nil {
		return 1, err
	}
	if err := a.sendJSON(wire.Scenario, map[string]any{"scenario": "console-flood", "phase": "end", "pass": true}); err != nil {
		return 1, err
	}
	return 0, nil
}
