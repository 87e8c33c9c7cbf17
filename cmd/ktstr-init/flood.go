package main

import (
	"context"
	"time"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// floodBufferSize is the size of each write of the flood scenario: this
// many bytes of back-to-back empty STIM frames.
const floodBufferSize = 64 << 10

// floodScenario writes intact empty STIM frames to the bulk port as fast
// as the port takes them for the run's duration, thousands per write, so
// the host sees the most frames per second the guest can produce. A
// SCEN summary then says how many frames were written, and an SCDX with
// status 0 makes the host stop the run.
func floodScenario() scenario {
	return scenario{
		name: "flood",
		help: "intact empty STIM frames, 64 KiB per write, for the duration; SCEN counts them, then SCDX stops the run",
		run:  runFlood,
	}
}

// floodBuffer returns floodBufferSize bytes of intact empty STIM frames:
// 16-byte headers with len 0, the crc of the empty payload and pad 0.
func floodBuffer() []byte {
	one := wire.AppendFrame(nil, wire.Stimulus, nil)
	b := make([]byte, 0, floodBufferSize)
	for len(b)+len(one) <= floodBufferSize {
		b = append(b, one...)
	}
	return b
}

// floodSummary is the payload of the SCEN frame that ends the flood
// scenarios, just before their SCDX: what the guest wrote during the
// flood and for how long. Frames counts what the host's Assembler
// frames out of those bytes (torn frames included, oversize headers
// and the garbage after them not); Oversize and ResyncBytes are only
// sent by flood-mixed.
type floodSummary struct {
	Scenario    string `json:"scenario"`
	Frames      int64  `json:"frames"`
	Bytes       int64  `json:"bytes"`
	ElapsedNS   int64  `json:"elapsed_ns"`
	Oversize    int64  `json:"oversize,omitempty"`
	ResyncBytes int64  `json:"resync_bytes,omitempty"`
}

// endFlood sends the summary and the SCDX (status 0) that stops the run.
func endFlood(a *agent, sum floodSummary) (int, error) {
	if err := a.sendJSON(wire.Scenario, sum); err != nil {
		return 1, err
	}
	if err := a.sendStatus(wire.SchedExit, 0); err != nil {
		return 1, err
	}
	return 0, nil
}

func runFlood(ctx context.Context, a *agent) (int, error) {
	if err := a.sendJSON(wire.ScenarioStart, map[string]any{"scenario": "flood", "t_ns": a.since()}); err != nil {
		return 1, err
	}
	buf := floodBuffer()
	perWrite := int64(len(buf) / wire.HeaderSize)
	start := time.Now()
	deadline := start.Add(a.cfg.Duration)
	sum := floodSummary{Scenario: "flood"}
	// At least one write, so even a tiny duration floods something.
	for {
		if err := a.writeRaw(buf); err != nil {
			return 1, err
		}
		sum.Frames += perWrite
		sum.Bytes += int64(len(buf))
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			break
		}
	}
	sum.ElapsedNS = time.Since(start).Nanoseconds()
	return endFlood(a, sum)
}
