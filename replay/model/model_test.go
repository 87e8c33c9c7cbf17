package model

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"hash/crc32"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// The test helpers below build streams by hand, without wire's encoders,
// so that a mistake shared by wire and the model cannot hide itself.

// rawHeader encodes a header with every field given explicitly.
func rawHeader(tag, length, crc, pad uint32) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b[0:], tag)
	binary.LittleEndian.PutUint32(b[4:], length)
	binary.LittleEndian.PutUint32(b[8:], crc)
	binary.LittleEndian.PutUint32(b[12:], pad)
	return b
}

// tagOf packs four characters big-endian, as the wire format does.
func tagOf(s string) uint32 {
	return uint32(s[0])<<24 | uint32(s[1])<<16 | uint32(s[2])<<8 | uint32(s[3])
}

// frame is an intact frame of tag (four characters) carrying p.
func frame(tag string, p []byte) []byte {
	return append(rawHeader(tagOf(tag), uint32(len(p)), crc32.ChecksumIEEE(p), 0), p...)
}

// badCRC is frame with its crc field off by one.
func badCRC(tag string, p []byte) []byte {
	return append(rawHeader(tagOf(tag), uint32(len(p)), crc32.ChecksumIEEE(p)+1, 0), p...)
}

// withPad is frame with a non-zero pad field and a correct crc.
func withPad(tag string, p []byte, pad uint32) []byte {
	return append(rawHeader(tagOf(tag), uint32(len(p)), crc32.ChecksumIEEE(p), pad), p...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func repeat(b []byte, n int) []byte { return bytes.Repeat(b, n) }

func snrq(id, kind uint32, tag []byte) []byte {
	p := make([]byte, 72)
	binary.LittleEndian.PutUint32(p[0:], id)
	binary.LittleEndian.PutUint32(p[4:], kind)
	copy(p[8:], tag)
	return p
}

func korq(id, op uint32, arg, arg2 uint64) []byte {
	p := make([]byte, 24)
	binary.LittleEndian.PutUint32(p[0:], id)
	binary.LittleEndian.PutUint32(p[4:], op)
	binary.LittleEndian.PutUint64(p[8:], arg)
	binary.LittleEndian.PutUint64(p[16:], arg2)
	return p
}

func kadr(physPlus1, pageOffset, textPlus1 uint64) []byte {
	p := make([]byte, 24)
	binary.LittleEndian.PutUint64(p[0:], physPlus1)
	binary.LittleEndian.PutUint64(p[8:], pageOffset)
	binary.LittleEndian.PutUint64(p[16:], textPlus1)
	return p
}

func step(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }

func shaHex(p []byte) string {
	s := sha256.Sum256(p)
	return hex.EncodeToString(s[:])
}

// verdictsOf lists each frame's Verdict in order.
func verdictsOf(r Result) []string {
	v := make([]string, 0, len(r.Frames))
	for _, f := range r.Frames {
		v = append(v, f.Verdict)
	}
	return v
}

var verdictTags = []string{"SCEN", "STIM", "STEN", "EXIT", "TEST", "CRSH", "SOUT", "SERR",
	"SCLG", "PMET", "RAWO", "PRAW", "DMSG", "EXCX", "PROB", "WPRF"}

// TestTagSpellings pins the hand-packed tag names used by the tests to
// the wire constants, so the gate tests below exercise the real values.
func TestTagSpellings(t *testing.T) {
	want := map[string]wire.Tag{
		"SRDY": wire.SysRdy, "SCDX": wire.SchedExit, "SNRQ": wire.SnapshotRequest,
		"KORQ": wire.KernelOpRequest, "KADR": wire.KernelAddrs, "SCPP": wire.WatchdogPause,
		"SCRR": wire.WatchdogResume, "STEP": wire.Step, "SCST": wire.ScenarioStart,
		"LIFE": wire.Lifecycle, "SCEN": wire.Scenario, "STIM": wire.Stimulus,
		"STEN": wire.StepEnd, "EXIT": wire.Exit, "TEST": wire.TestResult, "CRSH": wire.Crash,
		"SOUT": wire.Stdout, "SERR": wire.Stderr, "SCLG": wire.SchedLog,
		"PMET": wire.PerfMetrics, "RAWO": wire.RawOutput, "PRAW": wire.ProbeRaw,
		"DMSG": wire.Dmesg, "EXCX": wire.ExitContext, "PROB": wire.Probe,
		"WPRF": wire.GuestProfile,
		"SNRP": wire.SnapshotReply, "KORP": wire.KernelOpReply,
	}
	require.Len(t, want, 28)
	for s, tag := range want {
		assert.Equal(t, uint32(tag), tagOf(s), s)
	}
	assert.Equal(t, uint32(0x53434458), tagOf("SCDX"))
}

func TestGates(t *testing.T) {
	tests := []struct {
		name   string
		stream []byte
		want   []string                  // verdict of each frame
		check  func(*testing.T, Outcome) // further checks on the outcome
	}{
		// SRDY
		{"SRDY accepted", frame("SRDY", nil), []string{""}, func(t *testing.T, o Outcome) {
			assert.True(t, o.SysRdy)
			assert.Empty(t, o.Verdicts, "internal tags never bucket")
		}},
		{"SRDY with payload is shape", frame("SRDY", []byte{0}), []string{ReasonShape}, func(t *testing.T, o Outcome) {
			assert.False(t, o.SysRdy)
		}},
		{"SRDY twice", cat(frame("SRDY", nil), frame("SRDY", nil)), []string{"", ReasonOneshotRepeat}, func(t *testing.T, o Outcome) {
			assert.True(t, o.SysRdy)
		}},
		{"mis-shaped SRDY does not use the one-shot", cat(frame("SRDY", []byte{1}), frame("SRDY", nil)),
			[]string{ReasonShape, ""}, func(t *testing.T, o Outcome) { assert.True(t, o.SysRdy) }},
		{"torn SRDY does not use the one-shot", cat(badCRC("SRDY", nil), frame("SRDY", nil)),
			[]string{ReasonCRC, ""}, func(t *testing.T, o Outcome) { assert.True(t, o.SysRdy) }},
		{"SRDY with pad", withPad("SRDY", nil, 1), []string{ReasonPad}, func(t *testing.T, o Outcome) {
			assert.False(t, o.SysRdy)
		}},
		{"crc is judged before pad", rawHeader(tagOf("SRDY"), 0, 7, 1), []string{ReasonCRC}, nil},
		{"pad is judged before shape", withPad("SRDY", []byte{1}, 2), []string{ReasonPad}, nil},
		{"shape is judged before oneshot_repeat", cat(frame("SRDY", nil), frame("SRDY", []byte{1})),
			[]string{"", ReasonShape}, nil},

		// SCDX
		{"SCDX accepted", frame("SCDX", []byte("boom")), []string{""}, func(t *testing.T, o Outcome) {
			assert.True(t, o.Killed)
			assert.Equal(t, uint64(1), o.KillSignals)
			assert.Equal(t, []Verdict{{Tag: "SCDX", Len: 4, SHA256: shaHex([]byte("boom"))}}, o.Verdicts)
		}},
		{"SCDX twice counts two kill signals", cat(frame("SCDX", nil), frame("SCDX", nil)), []string{"", ""},
			func(t *testing.T, o Outcome) {
				assert.Equal(t, uint64(2), o.KillSignals)
				assert.Len(t, o.Verdicts, 2)
			}},
		{"torn SCDX has no effect", badCRC("SCDX", []byte("boom")), []string{ReasonCRC}, func(t *testing.T, o Outcome) {
			assert.False(t, o.Killed)
			assert.Zero(t, o.KillSignals)
			assert.Empty(t, o.Verdicts)
		}},
		{"SCDX with pad has no effect", withPad("SCDX", nil, 0x80000000), []string{ReasonPad}, func(t *testing.T, o Outcome) {
			assert.False(t, o.Killed)
		}},

		// SNRQ
		{"SNRQ capture accepted", frame("SNRQ", snrq(7, 1, []byte("boot"))), []string{""}, func(t *testing.T, o Outcome) {
			assert.Equal(t, []SnapshotRequest{{ID: 7, Kind: 1, Tag: "boot"}}, o.SnapshotRequests)
			assert.Empty(t, o.Verdicts)
		}},
		{"SNRQ watch with a full 64-byte UTF-8 tag accepted",
			frame("SNRQ", snrq(8, 2, []byte(string(bytes.Repeat([]byte("é"), 32))))), []string{""},
			func(t *testing.T, o Outcome) {
				assert.Equal(t, []SnapshotRequest{{ID: 8, Kind: 2, Tag: string(bytes.Repeat([]byte("é"), 32))}}, o.SnapshotRequests)
			}},
		{"SNRQ with an empty tag accepted", frame("SNRQ", snrq(9, 1, nil)), []string{""}, func(t *testing.T, o Outcome) {
			assert.Equal(t, []SnapshotRequest{{ID: 9, Kind: 1, Tag: ""}}, o.SnapshotRequests)
		}},
		{"SNRQ kind 0", frame("SNRQ", snrq(1, 0, nil)), []string{ReasonShape}, nil},
		{"SNRQ kind 3", frame("SNRQ", snrq(1, 3, nil)), []string{ReasonShape}, nil},
		{"SNRQ 71 bytes", frame("SNRQ", snrq(1, 1, nil)[:71]), []string{ReasonShape}, nil},
		{"SNRQ 73 bytes", frame("SNRQ", append(snrq(1, 1, nil), 0)), []string{ReasonShape}, nil},
		{"SNRQ empty", frame("SNRQ", nil), []string{ReasonShape}, nil},
		{"SNRQ tag not UTF-8", frame("SNRQ", snrq(1, 1, []byte{'a', 0xff, 'b'})), []string{ReasonShape}, nil},
		{"SNRQ tag cut mid-rune", frame("SNRQ", snrq(1, 1, append(bytes.Repeat([]byte("a"), 63), 0xc3))),
			[]string{ReasonShape}, nil},
		{"SNRQ bytes after the NUL", frame("SNRQ", snrq(1, 1, []byte{'a', 0, 'b'})), []string{ReasonShape}, nil},
		{"torn SNRQ", badCRC("SNRQ", snrq(1, 1, []byte("x"))), []string{ReasonCRC}, func(t *testing.T, o Outcome) {
			assert.Empty(t, o.SnapshotRequests)
		}},

		// KORQ
		{"KORQ accepted", frame("KORQ", korq(3, 4, 1<<40, 6)), []string{""}, func(t *testing.T, o Outcome) {
			assert.Equal(t, []KernelOp{{ID: 3, Op: 4, Arg: 1 << 40, Arg2: 6}}, o.KernelOps)
			assert.Empty(t, o.Verdicts)
		}},
		{"KORQ 23 bytes", frame("KORQ", korq(3, 4, 5, 6)[:23]), []string{ReasonShape}, nil},
		{"KORQ 25 bytes", frame("KORQ", append(korq(3, 4, 5, 6), 0)), []string{ReasonShape}, nil},
		{"KORQ with pad", withPad("KORQ", korq(3, 4, 5, 6), 1), []string{ReasonPad}, func(t *testing.T, o Outcome) {
			assert.Empty(t, o.KernelOps)
		}},

		// KADR
		{"KADR accepted", frame("KADR", kadr(0x1000001, 0xffff888000000000, 0xffffffff81000001)), []string{""},
			func(t *testing.T, o Outcome) {
				require.NotNil(t, o.KASLR)
				assert.Equal(t, KASLR{PhysBase: 0x1000000, PageOffsetBase: 0xffff888000000000, TextAddr: 0xffffffff81000000}, *o.KASLR)
				assert.Empty(t, o.Verdicts)
			}},
		{"KADR with zero page_offset_base accepted", frame("KADR", kadr(1, 0, 1)), []string{""},
			func(t *testing.T, o Outcome) { assert.Equal(t, &KASLR{}, o.KASLR) }},
		{"KADR phys_base+1 zero", frame("KADR", kadr(0, 5, 1)), []string{ReasonShape}, func(t *testing.T, o Outcome) {
			assert.Nil(t, o.KASLR)
		}},
		{"KADR text_addr+1 zero", frame("KADR", kadr(1, 5, 0)), []string{ReasonShape}, nil},
		{"KADR 23 bytes", frame("KADR", kadr(1, 2, 3)[:23]), []string{ReasonShape}, nil},
		{"KADR 25 bytes", frame("KADR", append(kadr(1, 2, 3), 0)), []string{ReasonShape}, nil},
		{"KADR twice keeps the first", cat(frame("KADR", kadr(11, 12, 13)), frame("KADR", kadr(21, 22, 23))),
			[]string{"", ReasonOneshotRepeat}, func(t *testing.T, o Outcome) {
				assert.Equal(t, &KASLR{PhysBase: 10, PageOffsetBase: 12, TextAddr: 12}, o.KASLR)
			}},
		{"mis-shaped KADR does not use the one-shot", cat(frame("KADR", kadr(0, 1, 1)), frame("KADR", kadr(2, 3, 4))),
			[]string{ReasonShape, ""}, func(t *testing.T, o Outcome) {
				assert.Equal(t, &KASLR{PhysBase: 1, PageOffsetBase: 3, TextAddr: 3}, o.KASLR)
			}},
		{"torn KADR does not use the one-shot", cat(badCRC("KADR", kadr(1, 1, 1)), frame("KADR", kadr(2, 3, 4))),
			[]string{ReasonCRC, ""}, func(t *testing.T, o Outcome) {
				assert.Equal(t, &KASLR{PhysBase: 1, PageOffsetBase: 3, TextAddr: 3}, o.KASLR)
			}},

		// SCPP / SCRR (time semantics are in TestWatchdogTime)
		{"SCPP accepted", frame("SCPP", nil), []string{""}, func(t *testing.T, o Outcome) {
			assert.Equal(t, uint64(1), o.WatchdogPauses)
			assert.Empty(t, o.Verdicts)
		}},
		{"SCPP with payload", frame("SCPP", []byte{0}), []string{ReasonShape}, func(t *testing.T, o Outcome) {
			assert.Zero(t, o.WatchdogPauses)
		}},
		{"SCPP while paused", cat(frame("SCPP", nil), frame("SCPP", nil)), []string{"", ReasonOutOfOrder},
			func(t *testing.T, o Outcome) { assert.Equal(t, uint64(1), o.WatchdogPauses) }},
		{"SCPP SCRR SCPP", cat(frame("SCPP", nil), frame("SCRR", nil), frame("SCPP", nil)), []string{"", "", ""},
			func(t *testing.T, o Outcome) { assert.Equal(t, uint64(2), o.WatchdogPauses) }},
		{"SCRR when not paused", frame("SCRR", nil), []string{ReasonOutOfOrder}, nil},
		{"SCRR twice", cat(frame("SCPP", nil), frame("SCRR", nil), frame("SCRR", nil)), []string{"", "", ReasonOutOfOrder}, nil},
		{"SCRR with payload", cat(frame("SCPP", nil), frame("SCRR", []byte{0})), []string{"", ReasonShape}, nil},
		{"shape is judged before out_of_order", frame("SCRR", []byte{0}), []string{ReasonShape}, nil},
		{"torn SCPP does not pause", cat(badCRC("SCPP", nil), frame("SCRR", nil)), []string{ReasonCRC, ReasonOutOfOrder},
			func(t *testing.T, o Outcome) { assert.Zero(t, o.WatchdogPauses) }},

		// STEP
		{"STEP accepted", frame("STEP", step(0x1234)), []string{""}, func(t *testing.T, o Outcome) {
			assert.Equal(t, uint16(0x1234), o.Step)
			assert.Empty(t, o.Verdicts)
		}},
		{"STEP last one wins", cat(frame("STEP", step(5)), frame("STEP", step(3))), []string{"", ""},
			func(t *testing.T, o Outcome) { assert.Equal(t, uint16(3), o.Step) }},
		{"STEP 1 byte", frame("STEP", []byte{5}), []string{ReasonShape}, func(t *testing.T, o Outcome) {
			assert.Zero(t, o.Step)
		}},
		{"STEP 3 bytes", frame("STEP", []byte{5, 0, 0}), []string{ReasonShape}, nil},
		{"torn STEP", badCRC("STEP", step(9)), []string{ReasonCRC}, func(t *testing.T, o Outcome) {
			assert.Zero(t, o.Step)
		}},

		// SCST
		{"SCST accepted", frame("SCST", []byte("s")), []string{""}, func(t *testing.T, o Outcome) {
			assert.Equal(t, []Verdict{{Tag: "SCST", Len: 1, SHA256: shaHex([]byte("s"))}}, o.Verdicts)
		}},
		{"torn SCST", badCRC("SCST", nil), []string{ReasonCRC}, func(t *testing.T, o Outcome) {
			assert.Empty(t, o.Verdicts)
		}},

		// LIFE
		{"LIFE 1..4 accepted", cat(frame("LIFE", []byte{1}), frame("LIFE", []byte{2}), frame("LIFE", []byte{3}), frame("LIFE", []byte{4})),
			[]string{"", "", "", ""}, func(t *testing.T, o Outcome) {
				require.Len(t, o.Verdicts, 4)
				assert.Equal(t, Verdict{Tag: "LIFE", Len: 1, SHA256: shaHex([]byte{4})}, o.Verdicts[3])
			}},
		{"LIFE 0", frame("LIFE", []byte{0}), []string{ReasonShape}, func(t *testing.T, o Outcome) {
			assert.Empty(t, o.Verdicts)
		}},
		{"LIFE 5", frame("LIFE", []byte{5}), []string{ReasonShape}, nil},
		{"LIFE empty", frame("LIFE", nil), []string{ReasonShape}, nil},
		{"LIFE 2 bytes", frame("LIFE", []byte{1, 0}), []string{ReasonShape}, nil},

		// Host→guest and unknown tags
		{"SNRP intact is forged", frame("SNRP", make([]byte, 520)), []string{ReasonForgedTag}, func(t *testing.T, o Outcome) {
			assert.Empty(t, o.Verdicts)
		}},
		{"KORP intact is forged", frame("KORP", nil), []string{ReasonForgedTag}, nil},
		{"torn SNRP is crc", badCRC("SNRP", nil), []string{ReasonCRC}, nil},
		{"KORP with pad is pad", withPad("KORP", nil, 1), []string{ReasonPad}, nil},
		{"unknown tag intact", frame("ABCD", []byte("x")), []string{ReasonUnknownTag}, func(t *testing.T, o Outcome) {
			assert.Empty(t, o.Verdicts)
		}},
		{"unknown tag with pad is pad", withPad("ABCD", nil, 1), []string{ReasonPad}, nil},
		{"lower-case spelling is unknown", frame("scdx", nil), []string{ReasonUnknownTag}, func(t *testing.T, o Outcome) {
			assert.False(t, o.Killed)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Evaluate(tc.stream, nil, nil)
			assert.Equal(t, tc.want, verdictsOf(r))
			assert.Equal(t, int64(len(tc.stream)), r.Bytes)
			assert.Equal(t, int64(len(tc.want)), r.FrameCount)
			assertCounts(t, r)
			if tc.check != nil {
				tc.check(t, r.Outcome)
			}
		})
	}
}

// assertCounts checks that the per-reason counters of the outcome equal
// the reasons of the framed frames.
func assertCounts(t *testing.T, r Result) {
	t.Helper()
	var want Rejected
	for _, f := range r.Frames {
		want.count(f.Verdict)
	}
	got := r.Outcome.Rejected
	got.Oversize, got.ResyncBytes, got.TruncatedTailBytes = 0, 0, 0
	assert.Equal(t, want, got)
}

func TestPlainVerdictTags(t *testing.T) {
	for _, tag := range verdictTags {
		t.Run(tag, func(t *testing.T) {
			p := []byte("payload of " + tag)
			r := Evaluate(cat(frame(tag, p), badCRC(tag, p), withPad(tag, p, 1)), nil, nil)
			assert.Equal(t, []string{"", ReasonCRC, ReasonPad}, verdictsOf(r))
			assert.Equal(t, []Verdict{{Tag: tag, Len: uint32(len(p)), SHA256: shaHex(p)}}, r.Outcome.Verdicts)
			assert.False(t, r.Outcome.Killed)
		})
	}
}

func TestQueueBudgets(t *testing.T) {
	tests := []struct {
		name    string
		payload func(i int) []byte
		tag     string
		queued  func(Outcome) int
	}{
		{"SNRQ", func(i int) []byte { return snrq(uint32(i), 1, []byte("t")) }, "SNRQ",
			func(o Outcome) int { return len(o.SnapshotRequests) }},
		{"KORQ", func(i int) []byte { return korq(uint32(i), 1, 0, 0) }, "KORQ",
			func(o Outcome) int { return len(o.KernelOps) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s []byte
			// Rejected frames do not spend the budget.
			for i := 0; i < 70; i++ {
				s = append(s, badCRC(tc.tag, tc.payload(i))...)
				s = append(s, frame(tc.tag, tc.payload(i)[:10])...)
			}
			for i := 0; i < MaxQueued+2; i++ {
				s = append(s, frame(tc.tag, tc.payload(i))...)
			}
			r := Evaluate(s, nil, nil)
			assert.Equal(t, MaxQueued, tc.queued(r.Outcome))
			assert.Equal(t, uint64(2), r.Outcome.Rejected.Overflow)
			assert.Equal(t, uint64(70), r.Outcome.Rejected.CRC)
			assert.Equal(t, uint64(70), r.Outcome.Rejected.Shape)
			// A mis-shaped frame past the budget is shape, not overflow.
			r = Evaluate(append(s, frame(tc.tag, nil)...), nil, nil)
			assert.Equal(t, ReasonShape, r.Frames[len(r.Frames)-1].Verdict)
			assert.Equal(t, uint64(2), r.Outcome.Rejected.Overflow)
		})
	}
	// The two budgets are separate.
	var s []byte
	for i := 0; i < MaxQueued; i++ {
		s = append(s, frame("SNRQ", snrq(uint32(i), 2, nil))...)
		s = append(s, frame("KORQ", korq(uint32(i), 0, 0, 0))...)
	}
	r := Evaluate(s, nil, nil)
	assert.Len(t, r.Outcome.SnapshotRequests, MaxQueued)
	assert.Len(t, r.Outcome.KernelOps, MaxQueued)
	assert.Zero(t, r.Outcome.Rejected.Overflow)
	assert.Equal(t, uint32(MaxQueued-1), r.Outcome.KernelOps[MaxQueued-1].ID)
}

func TestFraming(t *testing.T) {
	oversize := rawHeader(0, wire.MaxPayload+1, 0, 0)
	srdy := frame("SRDY", nil)
	scdx := frame("SCDX", []byte("bye"))

	// An oversize header whose crc and pad fields, read from offset 8,
	// form an intact SRDY header (tag SRDY, len 0) once 8 more zero bytes
	// (crc of the empty payload, pad) follow.
	overlapping := cat(rawHeader(0x01020304, 0xffffffff, tagOf("SRDY"), 0), make([]byte, 8))

	// Three bytes, then an intact SCDX frame: read from offset 0, the
	// header's len field (bytes 4..7) is the last three tag bytes of the
	// SCDX header and the first byte of its len, which is oversize. The
	// plausible SCDX header starts 3 bytes into the oversize one.
	inside3 := cat([]byte{0xaa, 0xbb, 0xcc}, scdx)
	require.Greater(t, binary.LittleEndian.Uint32(inside3[4:]), uint32(wire.MaxPayload))
	// An oversize header with a listed tag, 4 bytes of garbage, then an
	// intact SCDX frame starting 20 bytes after the oversize header's
	// first byte.
	after20 := cat(rawHeader(tagOf("SCDX"), 0xffffffff, 0, 0), repeat([]byte{0xee}, 4), scdx)

	tests := []struct {
		name     string
		stream   []byte
		offsets  []int64 // offsets of the framed frames
		verdicts []string
		rejected Rejected // the framing counters; reason counters come from verdicts
	}{
		{"empty stream", nil, []int64{}, []string{}, Rejected{}},
		{"one frame", srdy, []int64{0}, []string{""}, Rejected{}},
		{"back to back", cat(srdy, scdx, srdy), []int64{0, 16, 35}, []string{"", "", ReasonOneshotRepeat}, Rejected{}},
		{"len MaxPayload is not oversize", rawHeader(tagOf("SCDX"), wire.MaxPayload, 0, 0), []int64{}, []string{},
			Rejected{TruncatedTailBytes: 16}},
		{"oversize then a valid frame", cat(oversize, scdx), []int64{16}, []string{""},
			Rejected{Oversize: 1, ResyncBytes: 16}},
		{"oversize at the end", oversize, []int64{}, []string{}, Rejected{Oversize: 1, ResyncBytes: 1, TruncatedTailBytes: 15}},
		{"plausible header inside the oversize header", overlapping, []int64{8}, []string{""},
			Rejected{Oversize: 1, ResyncBytes: 8}},
		{"plausible header 3 bytes after the oversize header's start", inside3, []int64{3}, []string{""},
			Rejected{Oversize: 1, ResyncBytes: 3}},
		{"plausible header 20 bytes after the oversize header's start", after20, []int64{20}, []string{""},
			Rejected{Oversize: 1, ResyncBytes: 20}},
		{"plausible but torn header ends the resync", cat(oversize, badCRC("SCDX", []byte("x")), srdy), []int64{16, 33},
			[]string{ReasonCRC, ""}, Rejected{Oversize: 1, ResyncBytes: 16}},
		{"nested oversize headers counted once", cat(oversize, oversize, rawHeader(tagOf("SCDX"), 0xffffffff, 0, 0), srdy),
			[]int64{48}, []string{""}, Rejected{Oversize: 1, ResyncBytes: 48}},
		{"resync skips a listed tag with pad", cat(oversize, withPad("SCDX", nil, 1), srdy), []int64{32}, []string{""},
			Rejected{Oversize: 1, ResyncBytes: 32}},
		{"resync skips an unlisted tag with sane len", cat(oversize, frame("ABCD", nil), srdy), []int64{32}, []string{""},
			Rejected{Oversize: 1, ResyncBytes: 32}},
		{"resync stops at a host-to-guest tag", cat(oversize, frame("KORP", nil)), []int64{16}, []string{ReasonForgedTag},
			Rejected{Oversize: 1, ResyncBytes: 16}},
		{"garbage then a frame", cat(repeat([]byte{0xab}, 37), scdx), []int64{37}, []string{""},
			Rejected{Oversize: 1, ResyncBytes: 37}},
		{"oversize again after a resync counts again", cat(oversize, srdy, oversize, scdx), []int64{16, 48}, []string{"", ""},
			Rejected{Oversize: 2, ResyncBytes: 32}},
		{"resync runs into end of stream", cat(oversize, repeat([]byte{0xee}, 10)), []int64{}, []string{},
			Rejected{Oversize: 1, ResyncBytes: 11, TruncatedTailBytes: 15}},
		{"resync finds a frame cut by end of stream", cat(oversize, scdx[:18]), []int64{}, []string{},
			Rejected{Oversize: 1, ResyncBytes: 16, TruncatedTailBytes: 18}},
		{"unlisted tag with sane len is framed", cat(make([]byte, 16), srdy), []int64{0, 16},
			[]string{ReasonUnknownTag, ""}, Rejected{}},
		{"pad with sane len is framed", cat(withPad("SCDX", []byte("abc"), 9), srdy), []int64{0, 19},
			[]string{ReasonPad, ""}, Rejected{}},
		{"oversize with pad is oversize", cat(rawHeader(tagOf("SCDX"), 0x7fffffff, 0, 1), srdy), []int64{16}, []string{""},
			Rejected{Oversize: 1, ResyncBytes: 16}},
		{"partial header at the end", cat(srdy, scdx[:10]), []int64{0}, []string{""}, Rejected{TruncatedTailBytes: 10}},
		{"partial payload at the end", cat(srdy, scdx[:17]), []int64{0}, []string{""}, Rejected{TruncatedTailBytes: 17}},
		{"15 bytes only", repeat([]byte{0xff}, 15), []int64{}, []string{}, Rejected{TruncatedTailBytes: 15}},
		{"header only, payload missing", rawHeader(tagOf("SCDX"), 100, 0, 0), []int64{}, []string{},
			Rejected{TruncatedTailBytes: 16}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Evaluate(tc.stream, nil, nil)
			offsets := make([]int64, 0, len(r.Frames))
			for _, f := range r.Frames {
				offsets = append(offsets, f.Offset)
			}
			assert.Equal(t, tc.offsets, offsets)
			assert.Equal(t, tc.verdicts, verdictsOf(r))
			assert.Equal(t, int64(len(tc.verdicts)), r.FrameCount)
			assert.Equal(t, int64(len(tc.stream)), r.Bytes)
			got := r.Outcome.Rejected
			assert.Equal(t, tc.rejected.Oversize, got.Oversize, "oversize")
			assert.Equal(t, tc.rejected.ResyncBytes, got.ResyncBytes, "resync_bytes")
			assert.Equal(t, tc.rejected.TruncatedTailBytes, got.TruncatedTailBytes, "truncated_tail_bytes")
			assertCounts(t, r)

			// Every byte is framed, dropped by a resync, or in the tail.
			var framed int64
			for _, f := range r.Frames {
				framed += 16 + int64(f.Len)
			}
			assert.Equal(t, int64(len(tc.stream)), framed+int64(got.ResyncBytes)+int64(got.TruncatedTailBytes))
		})
	}
}

func TestFrameFields(t *testing.T) {
	r := Evaluate(cat(frame("SCDX", []byte("ab")), append(rawHeader(tagOf("SCDX"), 1, 0, 3), 'z')), nil, nil)
	require.Len(t, r.Frames, 2)
	assert.Equal(t, Frame{Offset: 0, Tag: tagOf("SCDX"), Len: 2, CRCOK: true, PadOK: true}, r.Frames[0])
	assert.Equal(t, Frame{Offset: 18, Tag: tagOf("SCDX"), Len: 1, CRCOK: false, PadOK: false, Verdict: ReasonCRC}, r.Frames[1])
}

func TestLargestPayload(t *testing.T) {
	p := bytes.Repeat([]byte{0x5a}, wire.MaxPayload)
	r := Evaluate(cat(frame("DMSG", p), frame("SRDY", nil)), nil, nil)
	assert.Equal(t, []string{"", ""}, verdictsOf(r))
	require.Len(t, r.Outcome.Verdicts, 1)
	assert.Equal(t, Verdict{Tag: "DMSG", Len: wire.MaxPayload, SHA256: shaHex(p)}, r.Outcome.Verdicts[0])
}

func TestWatchdogTime(t *testing.T) {
	scpp := frame("SCPP", nil) // 16 bytes each
	scrr := frame("SCRR", nil)
	scst := frame("SCST", nil)

	tests := []struct {
		name      string
		stream    []byte
		starts    []int64
		times     []int64
		pauses    uint64
		pauseNs   int64
		frameTime []int64
	}{
		{"nil clock puts everything at 0", cat(scpp, scrr), nil, nil, 1, 0, []int64{0, 0}},
		{"one delivery per frame", cat(scpp, scrr), []int64{0, 16}, []int64{100, 350}, 1, 250, []int64{100, 350}},
		{"frame takes the time of its last byte",
			cat(scpp, scrr), []int64{0, 8, 24, 31}, []int64{10, 20, 30, 40}, 1, 20, []int64{20, 40}},
		{"one delivery holds both", cat(scpp, scrr), []int64{0}, []int64{500}, 1, 0, []int64{500, 500}},
		{"empty delivery does not hold the byte",
			cat(scpp, scrr), []int64{0, 16, 16}, []int64{10, 20, 70}, 1, 60, []int64{10, 70}},
		{"spans add up", cat(scpp, scrr, scpp, scrr), []int64{0, 16, 32, 48}, []int64{0, 5, 100, 107}, 2, 12,
			[]int64{0, 5, 100, 107}},
		{"an open pause is not counted", cat(scpp, scrr, scpp), []int64{0, 16, 32}, []int64{1, 4, 9}, 2, 3,
			[]int64{1, 4, 9}},
		{"rejected SCRR does not close the span", cat(scpp, frame("SCRR", []byte{1}), scrr),
			[]int64{0, 16, 33}, []int64{0, 50, 80}, 1, 80, []int64{0, 50, 80}},
		{"SCST does not end a pause", cat(scpp, scst, scrr), []int64{0, 16, 32}, []int64{2, 3, 4}, 1, 2,
			[]int64{2, 3, 4}},
		{"times beyond starts are ignored", cat(scpp, scrr), []int64{0}, []int64{5, 9}, 1, 0, []int64{5, 5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Evaluate(tc.stream, tc.starts, tc.times)
			assert.Equal(t, tc.pauses, r.Outcome.WatchdogPauses)
			assert.Equal(t, tc.pauseNs, r.Outcome.WatchdogPauseNs)
			got := make([]int64, 0, len(r.Frames))
			for _, f := range r.Frames {
				got = append(got, f.Time)
			}
			assert.Equal(t, tc.frameTime, got)
		})
	}
}

func TestScenarioStarts(t *testing.T) {
	s := cat(frame("SCST", nil), badCRC("SCST", nil), frame("SCST", []byte("x")))
	r := Evaluate(s, []int64{0, 16, 32}, []int64{7, 8, 9})
	assert.Equal(t, []int64{7, 9}, r.ScenarioStarts)
	assert.Len(t, r.Outcome.Verdicts, 2)
	assert.Nil(t, Evaluate(frame("SRDY", nil), nil, nil).ScenarioStarts)
}

// emptyDigest is the SHA-256 of no bytes, written out by hand.
const emptyDigest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

const emptyOutcomeJSON = `{"killed":false,"kill_signals":0,"sys_rdy":false,` +
	`"snapshot_requests":[],"kernel_ops":[],"kaslr":null,"step":0,` +
	`"watchdog_pauses":0,"watchdog_pause_ns":0,"verdicts":[],` +
	`"verdicts_dropped":0,"verdicts_dropped_sha256":"` + emptyDigest + `",` +
	`"rejected":{"crc":0,"pad":0,"unknown_tag":0,"forged_tag":0,"shape":0,` +
	`"oneshot_repeat":0,"overflow":0,"out_of_order":0,` +
	`"oversize":0,"resync_bytes":0,"truncated_tail_bytes":0}}`

func TestOutcomeJSON(t *testing.T) {
	t.Run("empty stream", func(t *testing.T) {
		b, err := json.Marshal(Evaluate(nil, nil, nil).Outcome)
		require.NoError(t, err)
		assert.Equal(t, emptyOutcomeJSON, string(b))
	})
	t.Run("zero value", func(t *testing.T) {
		b, err := json.Marshal(Outcome{})
		require.NoError(t, err)
		assert.Equal(t, emptyOutcomeJSON, string(b))
		b, err = json.Marshal(&Outcome{})
		require.NoError(t, err)
		assert.Equal(t, emptyOutcomeJSON, string(b))
	})
	t.Run("populated", func(t *testing.T) {
		s := cat(
			frame("SRDY", nil),
			frame("SNRQ", snrq(1, 2, []byte("snap"))),
			frame("KORQ", korq(2, 3, 4, 5)),
			frame("KADR", kadr(11, 22, 33)),
			frame("STEP", step(6)),
			frame("SCPP", nil),
			frame("SCRR", nil),
			frame("SCDX", []byte("x")),
			badCRC("SCDX", nil),
			withPad("SCDX", nil, 1),
			frame("ABCD", nil),
			frame("SNRP", nil),
			frame("LIFE", []byte{9}),
			frame("SRDY", nil),
			frame("SNRQ", nil), // shape again
			frame("SCRR", nil),
			rawHeader(0, 0xffffffff, 0, 0),
			frame("SRDY", nil)[:5],
		)
		r := Evaluate(s, []int64{0, 218}, []int64{0, 42}) // SCPP ends at 217, SCRR at 233
		b, err := json.Marshal(r.Outcome)
		require.NoError(t, err)
		want := `{"killed":true,"kill_signals":1,"sys_rdy":true,` +
			`"snapshot_requests":[{"id":1,"kind":2,"tag":"snap"}],` +
			`"kernel_ops":[{"id":2,"op":3,"arg":4,"arg2":5}],` +
			`"kaslr":{"phys_base":10,"page_offset_base":22,"text_addr":32},"step":6,` +
			`"watchdog_pauses":1,"watchdog_pause_ns":42,` +
			`"verdicts":[{"tag":"SCDX","len":1,"sha256":"` + shaHex([]byte("x")) + `"}],` +
			`"verdicts_dropped":0,"verdicts_dropped_sha256":"` + emptyDigest + `",` +
			`"rejected":{"crc":1,"pad":1,"unknown_tag":1,"forged_tag":1,"shape":2,` +
			`"oneshot_repeat":1,"overflow":0,"out_of_order":1,` +
			`"oversize":1,"resync_bytes":6,"truncated_tail_bytes":15}}`
		assert.Equal(t, want, string(b))

		// The JSON decodes back into the same outcome.
		var back Outcome
		require.NoError(t, json.Unmarshal(b, &back))
		assert.Equal(t, r.Outcome, back)
	})
}

// droppedEntry is one dropped verdict as §3 folds it into
// verdicts_dropped_sha256: the tag as the header carries it (u32 LE), the
// len (u32 LE), then the payload. Tests spell the tag bytes out by hand.
func droppedEntry(tagLE [4]byte, p []byte) []byte {
	b := append(tagLE[:], byte(len(p)), byte(len(p)>>8), byte(len(p)>>16), byte(len(p)>>24))
	return append(b, p...)
}

// Tag fields as the header carries them: the u32 value little-endian,
// so the four characters come out reversed.
var (
	stimLE = [4]byte{'M', 'I', 'T', 'S'} // STIM 0x5354494D
	wprfLE = [4]byte{'F', 'R', 'P', 'W'} // WPRF 0x57505246
	scdxLE = [4]byte{'X', 'D', 'C', 'S'} // SCDX 0x53434458
	scstLE = [4]byte{'T', 'S', 'C', 'S'} // SCST 0x53435354
	lifeLE = [4]byte{'E', 'F', 'I', 'L'} // LIFE 0x4C494645
)

func TestVerdictBudget(t *testing.T) {
	require.Equal(t, 65536, MaxVerdicts)
	full := repeat(frame("STIM", nil), MaxVerdicts) // exactly the budget
	emptyStim := Verdict{Tag: "STIM", Len: 0, SHA256: emptyDigest}

	// checkFull checks what every run below shares: the budget is full,
	// and its entries are the STIMs of full.
	checkFull := func(t *testing.T, r Result) {
		t.Helper()
		require.Len(t, r.Outcome.Verdicts, MaxVerdicts)
		assert.Equal(t, emptyStim, r.Outcome.Verdicts[0])
		assert.Equal(t, emptyStim, r.Outcome.Verdicts[MaxVerdicts-1])
		for i, f := range r.Frames[:MaxVerdicts] {
			if f.Verdict != "" {
				require.Failf(t, "frame of full rejected", "frame %d: %q", i, f.Verdict)
			}
		}
	}

	t.Run("exactly MaxVerdicts drops nothing", func(t *testing.T) {
		r := Evaluate(full, nil, nil)
		checkFull(t, r)
		assert.Zero(t, r.Outcome.VerdictsDropped)
		assert.Equal(t, emptyDigest, r.Outcome.VerdictsDroppedSHA256)
	})

	t.Run("three past the budget", func(t *testing.T) {
		status := []byte{0x0b, 0, 0, 0} // SCDX with a 4-byte status
		s := cat(full, frame("STIM", []byte("a")), frame("WPRF", []byte("bc")), frame("SCDX", status))
		r := Evaluate(s, nil, nil)
		checkFull(t, r)
		assert.Equal(t, []string{"", "", ""}, verdictsOf(r)[MaxVerdicts:])
		assert.Equal(t, uint64(3), r.Outcome.VerdictsDropped)
		assert.True(t, r.Outcome.Killed, "a dropped SCDX still kills")
		assert.Equal(t, uint64(1), r.Outcome.KillSignals)

		want := sha256.Sum256(cat(
			[]byte{0x4d, 0x49, 0x54, 0x53, 1, 0, 0, 0, 'a'},
			[]byte{0x46, 0x52, 0x50, 0x57, 2, 0, 0, 0, 'b', 'c'},
			[]byte{0x58, 0x44, 0x43, 0x53, 4, 0, 0, 0, 0x0b, 0, 0, 0},
		))
		assert.Equal(t, hex.EncodeToString(want[:]), r.Outcome.VerdictsDroppedSHA256)

		b, err := json.Marshal(r.Outcome)
		require.NoError(t, err)
		assert.Contains(t, string(b), `"verdicts_dropped":3,"verdicts_dropped_sha256":"`+hex.EncodeToString(want[:])+`","rejected":`)
	})

	t.Run("order of the dropped verdicts matters", func(t *testing.T) {
		a := Evaluate(cat(full, frame("STIM", []byte("a")), frame("STIM", []byte("b"))), nil, nil)
		b := Evaluate(cat(full, frame("STIM", []byte("b")), frame("STIM", []byte("a"))), nil, nil)
		assert.Equal(t, uint64(2), a.Outcome.VerdictsDropped)
		assert.Equal(t, uint64(2), b.Outcome.VerdictsDropped)
		assert.NotEqual(t, a.Outcome.VerdictsDroppedSHA256, b.Outcome.VerdictsDroppedSHA256)
	})

	t.Run("rejected and internal frames do not spend the budget", func(t *testing.T) {
		s := cat(badCRC("STIM", nil), withPad("STIM", nil, 1), frame("LIFE", []byte{0}), frame("ABCD", nil),
			frame("SRDY", nil), frame("STEP", step(1)), full)
		r := Evaluate(s, nil, nil)
		assert.Len(t, r.Outcome.Verdicts, MaxVerdicts)
		assert.Zero(t, r.Outcome.VerdictsDropped)
		assert.Equal(t, emptyDigest, r.Outcome.VerdictsDroppedSHA256)
	})

	// One frame after a full budget.
	tests := []struct {
		name    string
		extra   []byte
		verdict string
		dropped []byte // what the dropped digest covers; nil: nothing dropped
		check   func(*testing.T, Result)
	}{
		{"intact STIM is dropped (positive control)", frame("STIM", []byte("a")), "",
			droppedEntry(stimLE, []byte("a")), nil},
		{"torn STIM changes nothing", badCRC("STIM", []byte("a")), ReasonCRC, nil, nil},
		{"STIM with pad changes nothing", withPad("STIM", []byte("a"), 1), ReasonPad, nil, nil},
		{"intact WPRF is dropped", frame("WPRF", []byte("bc")), "", droppedEntry(wprfLE, []byte("bc")), nil},
		{"intact SCDX is dropped and still kills", frame("SCDX", []byte("st")), "", droppedEntry(scdxLE, []byte("st")),
			func(t *testing.T, r Result) {
				assert.True(t, r.Outcome.Killed)
				assert.Equal(t, uint64(1), r.Outcome.KillSignals)
			}},
		{"torn SCDX does not kill", badCRC("SCDX", []byte("st")), ReasonCRC, nil, func(t *testing.T, r Result) {
			assert.False(t, r.Outcome.Killed)
			assert.Zero(t, r.Outcome.KillSignals)
		}},
		{"intact SCST is dropped and still starts the scenario", frame("SCST", nil), "", droppedEntry(scstLE, nil),
			func(t *testing.T, r Result) { assert.Equal(t, []int64{77}, r.ScenarioStarts) }},
		{"torn SCST starts nothing", badCRC("SCST", nil), ReasonCRC, nil,
			func(t *testing.T, r Result) { assert.Empty(t, r.ScenarioStarts) }},
		{"well-shaped LIFE is dropped", frame("LIFE", []byte{2}), "", droppedEntry(lifeLE, []byte{2}), nil},
		{"mis-shaped LIFE is shape, not dropped", frame("LIFE", []byte{9}), ReasonShape, nil, nil},
		{"internal frame is not dropped", frame("SRDY", nil), "", nil,
			func(t *testing.T, r Result) { assert.True(t, r.Outcome.SysRdy) }},
		{"unknown tag is not dropped", frame("ABCD", []byte("a")), ReasonUnknownTag, nil, nil},
		{"forged tag is not dropped", frame("KORP", nil), ReasonForgedTag, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := cat(full, tc.extra)
			r := Evaluate(s, []int64{0, int64(len(full))}, []int64{0, 77})
			checkFull(t, r)
			require.Len(t, r.Frames, MaxVerdicts+1)
			assert.Equal(t, tc.verdict, r.Frames[MaxVerdicts].Verdict)
			assertCounts(t, r)
			want := sha256.Sum256(tc.dropped)
			assert.Equal(t, hex.EncodeToString(want[:]), r.Outcome.VerdictsDroppedSHA256)
			if tc.dropped == nil {
				assert.Zero(t, r.Outcome.VerdictsDropped)
				assert.Equal(t, emptyDigest, r.Outcome.VerdictsDroppedSHA256)
			} else {
				assert.Equal(t, uint64(1), r.Outcome.VerdictsDropped)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

func TestDroppedDigestAlwaysSet(t *testing.T) {
	for name, s := range map[string][]byte{
		"empty stream":     nil,
		"internal only":    frame("SRDY", nil),
		"one verdict":      frame("STIM", []byte("a")),
		"garbage":          repeat([]byte{0xff}, 40),
		"truncated header": frame("SCDX", nil)[:7],
	} {
		t.Run(name, func(t *testing.T) {
			o := Evaluate(s, nil, nil).Outcome
			assert.Zero(t, o.VerdictsDropped)
			assert.Equal(t, emptyDigest, o.VerdictsDroppedSHA256)
		})
	}
}
