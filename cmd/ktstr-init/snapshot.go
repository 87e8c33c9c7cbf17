package main

import (
	"context"
	"time"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// replyTimeout bounds the wait for one SNRP.
const replyTimeout = 30 * time.Second

// snapshotScenario asks the host for a capture and a watchpoint (SNRQ)
// and waits for each SNRP on the port's RX side.
func snapshotScenario() scenario {
	return scenario{
		name: "snapshot",
		help: "send SNRQ (capture, then watch) and wait for each SNRP from the host",
		run:  runSnapshot,
	}
}

// replyResult is one answered request in the TEST payload.
type replyResult struct {
	ID        uint32 `json:"id"`
	Kind      uint32 `json:"kind"`
	Status    uint32 `json:"status"`
	Reason    string `json:"reason"`
	LatencyNS int64  `json:"latency_ns"`
	Error     string `json:"error,omitempty"`
}

func runSnapshot(ctx context.Context, a *agent) (int, error) {
	if err := a.sendJSON(wire.Scenario, map[string]any{"scenario": "snapshot", "phase": "begin"}); err != nil {
		return 1, err
	}
	if err := a.sendJSON(wire.ScenarioStart, map[string]any{"scenario": "snapshot", "t_ns": a.since()}); err != nil {
		return 1, err
	}
	reqs := []wire.SnapshotRequestPayload{
		wire.NewSnapshotRequest(1, wire.SnapshotCapture, "snapshot-capture"),
		wire.NewSnapshotRequest(2, wire.SnapshotWatch, "snapshot-watch"),
	}
	var results []replyResult
	pass := true
	for i, r := range reqs {
		if err := a.sendStep(uint16(i+1), "snapshot request", map[string]any{"id": r.RequestID, "kind": r.Kind, "tag": r.TagString()}); err != nil {
			return 1, err
		}
		p, _ := r.AppendBinary(nil)
		sent := time.Now()
		if err := a.send(wire.SnapshotRequest, p); err != nil {
			return 1, err
		}
		wctx, cancel := context.WithTimeout(ctx, replyTimeout)
		rep, err := a.waitReply(wctx, r.RequestID)
		cancel()
		rr := replyResult{ID: r.RequestID, Kind: r.Kind, LatencyNS: int64(time.Since(sent))}
		if err != nil {
			rr.Error = err.Error()
			pass = false
		} else {
			rr.Status, rr.Reason = rep.Status, rep.ReasonString()
			// A capture must succeed; a watch may be refused, but must be answered.
			if r.Kind == wire.SnapshotCapture && rep.Status != wire.SnapshotOK {
				pass = false
			}
		}
		results = append(results, rr)
		if err := a.sendJSON(wire.StepEnd, map[string]any{"step": i + 1, "t_ns": a.since()}); err != nil {
			return 1, err
		}
	}
	if err := a.sendJSON(wire.TestResult, map[string]any{"scenario": "snapshot", "pass": pass, "replies": results}); err != nil {
		return 1, err
	}
	if err := a.sendJSON(wire.Scenario, map[string]any{"scenario": "snapshot", "phase": "end", "pass": pass}); err != nil {
		return 1, err
	}
	if !pass {
		return 1, nil
	}
	return 0, nil
}
