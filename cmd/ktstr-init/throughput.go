package main

import (
	"context"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// throughputFrame is the payload size of each frame the throughput
// scenario writes: the output-frame cap, so the port sees large writes
// as a chatty scheduler's log would produce.
const throughputFrame = maxOutputFrame

// throughputScenario writes SOUT frames to the bulk port as fast as the
// port takes them for the run's duration and reports the rate the guest
// saw. It is how `make bench` compares recording through ktstr with a
// plain QEMU chardev file: the same guest, the same writes, only the
// host side differs.
func throughputScenario() scenario {
	return scenario{
		name: "throughput",
		help: "write 64 KiB SOUT frames for the duration; TEST reports the guest's write rate",
		run:  runThroughput,
	}
}

func runThroughput(ctx context.Context, a *agent) (int, error) {
	if err := a.sendJSON(wire.ScenarioStart, map[string]any{"scenario": "throughput", "t_ns": a.since()}); err != nil {
		return 1, err
	}
	payload := make([]byte, throughputFrame)
	for i := range payload {
		payload[i] = "ktstr throughput\n"[i%17]
	}
	// One frame built once: the loop measures the port, not the encoder.
	frame := wire.AppendFrame(nil, wire.Stdout, payload)
	// The writer stays on vCPU 0. Left to migrate, it ran at one of two
	// rates (about 100 or 60 MB/s under TCG, host unchanged), which hid
	// the host-side difference the scenario exists to measure.
	// The thread gets its old affinity back before other goroutines may
	// run on it again.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var was, cpu0 unix.CPUSet
	cpu0.Set(0)
	if err := unix.SchedGetaffinity(0, &was); err != nil {
		a.logf("throughput: read the writer's CPU affinity: %v", err)
	} else if err := unix.SchedSetaffinity(0, &cpu0); err != nil {
		a.logf("throughput: pin the writer to CPU 0: %v", err)
	} else {
		defer unix.SchedSetaffinity(0, &was)
	}
	start := time.Now()
	deadline := start.Add(a.cfg.Duration)
	var written int64
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if err := a.writeRaw(frame); err != nil {
			return 1, err
		}
		written += int64(len(frame))
	}
	elapsed := time.Since(start)
	err := a.sendJSON(wire.TestResult, map[string]any{
		"scenario":   "throughput",
		"pass":       written > 0,
		"bytes":      written,
		"elapsed_ns": elapsed.Nanoseconds(),
		"mb_per_s":   float64(written) / elapsed.Seconds() / 1e6,
	})
	if err != nil {
		return 1, err
	}
	return 0, nil
}
