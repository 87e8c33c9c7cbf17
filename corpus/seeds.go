// Package corpus holds the project's seed streams: the byte streams of
// the ported seed tests, adversarial cases, and (as checked-in trace
// files under corpus/real) small traces recorded from real runs. Replay
// tests, the mutation campaign and the fuzz targets all start from them,
// and `ktstr corpus export` turns traces into Go fuzz corpus files.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) these are prepared bytes, standing in for the tap.
package corpus

import (
	"bytes"
	"encoding/binary"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// Seed is one named TX stream, split into the deliveries it arrives in.
type Seed struct {
	Name       string
	Deliveries [][]byte
}

// Bytes returns the whole stream.
func (s Seed) Bytes() []byte { return bytes.Join(s.Deliveries, nil) }

func frame(tag wire.Tag, p []byte) []byte { return wire.AppendFrame(nil, tag, p) }

func torn(tag wire.Tag, p []byte) []byte {
	b := wire.AppendHeader(nil, wire.Header{Tag: tag, Len: uint32(len(p)), CRC: wire.Checksum(p) ^ 0xFFFFFFFF})
	return append(b, p...)
}

func padded(tag wire.Tag, p []byte) []byte {
	b := wire.AppendHeader(nil, wire.Header{Tag: tag, Len: uint32(len(p)), CRC: wire.Checksum(p), Pad: 1})
	return append(b, p...)
}

func snrq(id uint32, tag string) []byte {
	r := wire.NewSnapshotRequest(id, wire.SnapshotCapture, tag)
	b, _ := r.AppendBinary(nil)
	return b
}

func one(frames ...[]byte) [][]byte { return [][]byte{bytes.Join(frames, nil)} }

// Seeds returns every seed stream. The first group mirrors the ported
// seed tests of package dispatch scenario for scenario.
func Seeds() []Seed {
	exit := binary.LittleEndian.AppendUint32(nil, 0xFFFFFFFF)
	kadr := wire.NewKernelAddrs(0x1000000, 0xffff888000000000, 0xffffffff81000000)
	kadrBytes, _ := kadr.AppendBinary(nil)
	korq := wire.KernelOpRequestPayload{RequestID: 1, Op: 2, Arg: 3, Arg2: 4}
	korqBytes, _ := korq.AppendBinary(nil)
	oversize := wire.AppendHeader(nil, wire.Header{Tag: wire.Stdout, Len: wire.MaxPayload + 1})

	flood := make([][]byte, 0, 70)
	for i := range 70 {
		flood = append(flood, frame(wire.SnapshotRequest, snrq(uint32(i), "flood")))
	}

	return []Seed{
		// The seed tests (crc_defense and dispatch_match).
		{"sched-exit-torn-crc", one(torn(wire.SchedExit, []byte("exit-payload")))},
		{"sched-exit-valid-crc", one(frame(wire.SchedExit, []byte("exit-payload")))},
		{"sched-exit-torn-among-valid", one(torn(wire.SchedExit, []byte("first")), frame(wire.Stimulus, []byte("valid")), torn(wire.SchedExit, []byte("second")))},
		{"snapshot-request-torn", one(torn(wire.SnapshotRequest, snrq(7, "snap_dump")))},
		{"snapshot-request-valid", one(frame(wire.SnapshotRequest, snrq(42, "valid_tag")))},
		{"snapshot-request-mixed", one(frame(wire.SnapshotRequest, snrq(1, "first")), torn(wire.SnapshotRequest, snrq(2, "torn")), frame(wire.SnapshotRequest, snrq(3, "third")))},
		{"both-gates-torn", one(torn(wire.SchedExit, []byte("sched-exit")), torn(wire.SnapshotRequest, snrq(99, "tag")))},
		{"sys-rdy-torn", one(torn(wire.SysRdy, nil))},
		{"sys-rdy-valid", one(frame(wire.SysRdy, nil))},
		{"sys-rdy-twice", one(frame(wire.SysRdy, nil), frame(wire.SysRdy, nil))},
		{"sys-rdy-and-sched-exit", one(frame(wire.SysRdy, nil), frame(wire.SchedExit, []byte("exit-payload")))},
		{"unknown-tag", one(frame(wire.Tag(0xDEADBEEF), []byte("unknown-payload")))},
		{"sched-exit-minus-one", one(frame(wire.SchedExit, exit))},
		{"snapshot-reply-on-tx", one(frame(wire.SnapshotReply, []byte("forged-reply")))},
		{"sys-rdy-smuggled", one(frame(wire.SysRdy, []byte("smuggled-bytes")))},
		{"sys-rdy-across-feeds", [][]byte{frame(wire.SysRdy, nil), frame(wire.SysRdy, nil)}},
		{"interleaved-batch", one(frame(wire.SysRdy, nil), frame(wire.SchedExit, []byte("exit")), frame(wire.SnapshotRequest, snrq(7, "snap")), frame(wire.Stimulus, []byte("stim-payload")))},
		{"multiple-sched-exit", one(frame(wire.SchedExit, []byte("first")), frame(wire.SchedExit, []byte("second")), frame(wire.SchedExit, []byte("third")))},
		{"sched-exit-mixed-crc", one(frame(wire.SchedExit, []byte("valid-1")), torn(wire.SchedExit, []byte("torn")), frame(wire.SchedExit, []byte("valid-2")))},

		// Adversarial cases.
		{"every-row", [][]byte{
			frame(wire.SysRdy, nil),
			frame(wire.KernelAddrs, kadrBytes),
			frame(wire.ScenarioStart, []byte("steady")),
			frame(wire.Step, []byte{1, 0}),
			frame(wire.Stimulus, []byte("stim")),
			frame(wire.WatchdogPause, nil),
			frame(wire.WatchdogResume, nil),
			frame(wire.KernelOpRequest, korqBytes),
			frame(wire.Lifecycle, []byte{2}),
			frame(wire.TestResult, []byte(`{"passed":true}`)),
			frame(wire.PerfMetrics, []byte(`{"ctx_switches":12}`)),
			frame(wire.RawOutput, []byte("raw")),
			frame(wire.ProbeRaw, []byte{1, 2, 3}),
			frame(wire.Dmesg, []byte("<6>sched_ext: enabled")),
			frame(wire.ExitContext, []byte("exit context")),
			frame(wire.Probe, []byte(`{"probe":"p"}`)),
			frame(wire.GuestProfile, []byte("profile blob")),
			frame(wire.Exit, []byte{0, 0, 0, 0}),
			frame(wire.SchedExit, []byte{7, 0, 0, 0}),
		}},
		{"forged-and-repeats", one(
			frame(wire.SysRdy, nil), frame(wire.SysRdy, nil),
			frame(wire.KernelAddrs, kadrBytes), frame(wire.KernelAddrs, kadrBytes),
			frame(wire.SnapshotReply, make([]byte, wire.SnapshotReplySize)),
			frame(wire.KernelOpReply, make([]byte, 24)),
			frame(wire.WatchdogResume, nil), frame(wire.WatchdogPause, nil), frame(wire.WatchdogPause, nil),
			frame(wire.WatchdogResume, []byte{1}), frame(wire.KernelOpRequest, []byte("short")),
			padded(wire.SchedExit, []byte{1}),
		)},
		{"oversize-resync", one(frame(wire.SysRdy, nil), oversize, []byte("garbage!"), frame(wire.SchedExit, []byte("after")))},
		{"snapshot-flood", flood},
		{"partial-tail", one(frame(wire.SysRdy, nil), frame(wire.Stimulus, []byte("cut off here"))[:20])},
		{"split-everywhere", func() [][]byte {
			s := bytes.Join([][]byte{frame(wire.SysRdy, nil), frame(wire.Stimulus, bytes.Repeat([]byte("x"), 100)), frame(wire.SchedExit, []byte{1})}, nil)
			var out [][]byte
			for i := 0; i < len(s); i += 7 {
				out = append(out, s[i:min(i+7, len(s))])
			}
			return out
		}()},
	}
}
