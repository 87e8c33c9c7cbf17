package frames

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
	"testing"

	gofuzz "github.com/google/gofuzz"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/fuzz/internal/oracle"
	"github.com/ktstr/ktstr/internal/libfuzzer"
	"github.com/ktstr/ktstr/replay"
)

// frameSpec is one frame FuzzFrames writes: a tag, a payload (raw, or
// well-formed for the tag so that its gate can pass) and at most one
// corruption.
type frameSpec struct {
	Tag        uint8 // index into fuzzTags, modulo its length
	WellFormed bool  // encode a payload of the right shape for Tag from the fields below
	Payload    []byte
	ID, Kind   uint32
	Arg, Arg2  uint64
	Corrupt    uint8  // corruption, modulo corruptKinds; corruptNone and above: none
	Cut        uint16 // which crc bit, pad value, truncation point or excess length
}

// framesInput is the structure FuzzFrames decodes its bytes into.
type framesInput struct {
	Frames []frameSpec
	// Burst repeats frame BurstOf (Burst%10)·8 more times in place, so
	// that a sequence can pass the 64-entry SNRQ and KORQ budgets
	// (the decoder caps Frames at 24).
	Burst, BurstOf uint8
	// Disturb allows the corruptions that move frame boundaries
	// (truncation, oversize length, interleaving); without it the frames
	// stay on their own boundaries and the outcome is known from the
	// structure (see structural).
	Disturb    bool
	Interleave bool  // with Disturb: interleave two frames byte by byte (racing writers)
	Pair       uint8 // which two: Pair and the one after it
	Splits     []uint16
}

// Corruptions a frame can carry: the value of Corrupt modulo
// corruptKinds. Half the values mean none, so most frames of a sequence
// are intact.
const (
	corruptCRC      = iota // flip one bit of the crc field: torn
	corruptPad             // non-zero pad: torn
	corruptTruncate        // cut the frame short; the next frame follows at once (needs Disturb)
	corruptOversize        // a len above MaxPayload: the assembler resyncs (needs Disturb)
	corruptNone
	corruptKinds = 2 * corruptNone
)

// unlistedTags are tags outside the gate table: one printable, one not.
var unlistedTags = []wire.Tag{0x5A5A5A5A, 1}

// fuzzTags returns the tags FuzzFrames chooses from: the whole gate
// table, host→guest tags included, and the unlisted ones.
func fuzzTags() []wire.Tag { return append(wire.Tags(), unlistedTags...) }

// tag returns the spec's tag.
func (f *frameSpec) tag() wire.Tag {
	tags := fuzzTags()
	return tags[int(f.Tag)%len(tags)]
}

// corruption returns the spec's corruption, corruptNone for none.
// Without disturb the boundary-moving ones count as none.
func (f *frameSpec) corruption(disturb bool) int {
	c := int(f.Corrupt) % corruptKinds
	switch {
	case c >= corruptNone:
		return corruptNone
	case !disturb && (c == corruptTruncate || c == corruptOversize):
		return corruptNone
	}
	return c
}

// payload returns the spec's payload: for WellFormed specs of tags with
// a fixed layout, an encoding of that layout from the spec's fields made
// with the wire encoders (a well-formed payload can still fail its gate:
// an SNRQ tag with bytes after a NUL, a KADR address of 2⁶⁴−1).
func (f *frameSpec) payload() []byte {
	if !f.WellFormed {
		return f.Payload
	}
	switch f.tag() {
	case wire.SysRdy, wire.WatchdogPause, wire.WatchdogResume:
		return nil
	case wire.SnapshotRequest:
		r := wire.NewSnapshotRequest(f.ID, 1+f.Kind%2, strings.ToValidUTF8(string(f.Payload), "?"))
		b, _ := r.AppendBinary(nil)
		return b
	case wire.KernelOpRequest:
		r := wire.KernelOpRequestPayload{RequestID: f.ID, Op: f.Kind, Arg: f.Arg, Arg2: f.Arg2}
		b, _ := r.AppendBinary(nil)
		return b
	case wire.KernelAddrs:
		k := wire.NewKernelAddrs(f.Arg, f.Arg2, uint64(f.ID)<<12)
		b, _ := k.AppendBinary(nil)
		return b
	case wire.Step:
		return binary.LittleEndian.AppendUint16(nil, uint16(f.ID))
	case wire.Lifecycle:
		return []byte{byte(1 + f.Kind%4)}
	}
	return f.Payload
}

// encode returns the spec's bytes on the wire.
func (f *frameSpec) encode(disturb bool) []byte {
	p := f.payload()
	h := wire.Header{Tag: f.tag(), Len: uint32(len(p)), CRC: wire.Checksum(p)}
	c := f.corruption(disturb)
	switch c {
	case corruptCRC:
		h.CRC ^= 1 << (f.Cut % 32)
	case corruptPad:
		h.Pad = 1 + uint32(f.Cut)
	case corruptOversize:
		h.Len = wire.MaxPayload + 1 + uint32(f.Cut)
	}
	b := append(wire.AppendHeader(nil, h), p...)
	if c == corruptTruncate {
		b = b[:int(f.Cut)%len(b)]
	}
	return b
}

// sequence returns the frames in stream order, the burst expanded.
func (in *framesInput) sequence() []frameSpec {
	n := int(in.Burst%10) * 8
	if n == 0 || len(in.Frames) == 0 {
		return in.Frames
	}
	i := int(in.BurstOf) % len(in.Frames)
	seq := make([]frameSpec, 0, len(in.Frames)+n)
	seq = append(seq, in.Frames[:i+1]...)
	for range n {
		seq = append(seq, in.Frames[i])
	}
	return append(seq, in.Frames[i+1:]...)
}

// build turns the input into a stream, split at in.Splits. It returns
// the frames in stream order and whether every frame stayed on its own
// boundaries (no truncation, oversize or interleaving), which is when
// the outcome can be told from the structure alone.
func (in *framesInput) build() (s *replay.Stream, seq []frameSpec, framed bool) {
	seq = in.sequence()
	encoded := make([][]byte, len(seq))
	framed = true
	for i := range seq {
		encoded[i] = seq[i].encode(in.Disturb)
		if c := seq[i].corruption(in.Disturb); c == corruptTruncate || c == corruptOversize {
			framed = false
		}
	}
	if in.Disturb && in.Interleave && len(encoded) >= 2 {
		i := int(in.Pair) % (len(encoded) - 1)
		encoded[i] = interleave(encoded[i], encoded[i+1])
		encoded = append(encoded[:i+1], encoded[i+2:]...)
		framed = false
	}
	var data []byte
	for _, e := range encoded {
		data = append(data, e...)
	}
	s = &replay.Stream{}
	prev := 0
	for i, sp := range in.Splits {
		cut := prev + int(sp)%(len(data)-prev+1)
		if cut > prev {
			s.Append(int64(i+1), data[prev:cut])
			prev = cut
		}
	}
	s.Append(int64(len(in.Splits)+1), data[prev:])
	return s, seq, framed
}

// interleave merges a and b byte by byte, as two writers racing on one
// port without a lock.
func interleave(a, b []byte) []byte {
	out := make([]byte, 0, len(a)+len(b))
	for i := 0; i < max(len(a), len(b)); i++ {
		if i < len(a) {
			out = append(out, a[i])
		}
		if i < len(b) {
			out = append(out, b[i])
		}
	}
	return out
}

// summary is the part of an outcome the structure of a well-framed
// input determines: everything but the clock-dependent pause span.
type summary struct {
	Frames         int64
	Killed         bool
	KillSignals    uint64
	SysRdy         bool
	Snapshots      []uint32 // request ids, in order
	KernelOps      []uint32 // request ids, in order
	KASLR          *dispatch.KASLR
	Step           uint16
	WatchdogPauses uint64
	Verdicts       []string // "TAG/len", in order
	Rejected       dispatch.Rejected
}

// summarize reads the summary off a dispatch outcome.
func summarize(out dispatch.Outcome, st dispatch.Stats) summary {
	s := summary{
		Frames: st.Frames, Killed: out.Killed, KillSignals: out.KillSignals, SysRdy: out.SysRdy,
		KASLR: out.KASLR, Step: out.Step, WatchdogPauses: out.WatchdogPauses, Rejected: out.Rejected,
	}
	for _, r := range out.SnapshotRequests {
		s.Snapshots = append(s.Snapshots, r.ID)
	}
	for _, k := range out.KernelOps {
		s.KernelOps = append(s.KernelOps, k.ID)
	}
	for _, v := range out.Verdicts {
		s.Verdicts = append(s.Verdicts, fmt.Sprintf("%s/%d", v.Tag, v.Len))
	}
	return s
}

// expect computes the summary a well-framed sequence must produce from
// the generator's choices alone, restating the gate table of
// docs/protocol.md row by row. Payload shapes are judged with this
// package's own restatements (oracle.SnapshotRequestValid, oracle.KernelAddrsValid), not wire's
// decoders, so the expectation shares nothing with Dispatch or the
// reference model but the constants.
func expect(seq []frameSpec) summary {
	var e summary
	reject := &e.Rejected
	paused := false
	le := binary.LittleEndian
	for i := range seq {
		f := &seq[i]
		e.Frames++
		switch f.corruption(false) {
		case corruptCRC:
			reject.CRC++
			continue
		case corruptPad:
			reject.Pad++
			continue
		}
		t, p := f.tag(), f.payload()
		switch t.Class() {
		case wire.Unknown:
			reject.UnknownTag++
			continue
		case wire.HostToGuest:
			reject.ForgedTag++
			continue
		}
		switch t {
		case wire.SysRdy:
			switch {
			case len(p) != 0:
				reject.Shape++
			case e.SysRdy:
				reject.OneshotRepeat++
			default:
				e.SysRdy = true
			}
		case wire.SnapshotRequest:
			switch {
			case !oracle.SnapshotRequestValid(p):
				reject.Shape++
			case len(e.Snapshots) == 64:
				reject.Overflow++
			default:
				e.Snapshots = append(e.Snapshots, le.Uint32(p))
			}
		case wire.KernelOpRequest:
			switch {
			case len(p) != 24:
				reject.Shape++
			case len(e.KernelOps) == 64:
				reject.Overflow++
			default:
				e.KernelOps = append(e.KernelOps, le.Uint32(p))
			}
		case wire.KernelAddrs:
			switch {
			case !oracle.KernelAddrsValid(p):
				reject.Shape++
			case e.KASLR != nil:
				reject.OneshotRepeat++
			default:
				e.KASLR = &dispatch.KASLR{PhysBase: le.Uint64(p) - 1, PageOffsetBase: le.Uint64(p[8:]), TextAddr: le.Uint64(p[16:]) - 1}
			}
		case wire.WatchdogPause, wire.WatchdogResume:
			switch {
			case len(p) != 0:
				reject.Shape++
			case paused == (t == wire.WatchdogPause):
				reject.OutOfOrder++
			default:
				paused = !paused
				if paused {
					e.WatchdogPauses++
				}
			}
		case wire.Step:
			if len(p) != 2 {
				reject.Shape++
			} else {
				e.Step = le.Uint16(p)
			}
		case wire.Lifecycle:
			if len(p) != 1 || p[0] < 1 || p[0] > 4 {
				reject.Shape++
			} else {
				e.Verdicts = append(e.Verdicts, fmt.Sprintf("%s/%d", t, len(p)))
			}
		default: // every other listed tag is a verdict tag without a gate of its own
			if t == wire.SchedExit {
				e.Killed = true
				e.KillSignals++
			}
			e.Verdicts = append(e.Verdicts, fmt.Sprintf("%s/%d", t, len(p)))
		}
	}
	return e
}

// structural compares what dispatch made of a well-framed sequence with
// what the structure dictates, and returns the differences.
func structural(seq []frameSpec, out dispatch.Outcome, st dispatch.Stats) []string {
	want, got := expect(seq), summarize(out, st)
	var diff []string
	wv, gv := reflect.ValueOf(want), reflect.ValueOf(got)
	for i := range wv.NumField() {
		w, g := wv.Field(i).Interface(), gv.Field(i).Interface()
		if !reflect.DeepEqual(w, g) && !(isEmpty(wv.Field(i)) && isEmpty(gv.Field(i))) {
			diff = append(diff, fmt.Sprintf("%s: the structure says %s, dispatch gave %s", wv.Type().Field(i).Name, show(w), show(g)))
		}
	}
	return diff
}

// isEmpty reports a nil or empty slice, which compare equal here.
func isEmpty(v reflect.Value) bool { return v.Kind() == reflect.Slice && v.Len() == 0 }

// show formats a summary field, following pointers.
func show(v any) string {
	if k, ok := v.(*dispatch.KASLR); ok && k != nil {
		return fmt.Sprintf("%+v", *k)
	}
	return fmt.Sprintf("%+v", v)
}

// check runs one structured input: the invariants and the model
// (replay.CheckStream, as package fuzz's dispatch target), then, when the frames kept
// their boundaries, the summary the structure dictates. It returns what
// was wrong.
func (in *framesInput) check() []string {
	s, seq, framed := in.build()
	out, st, v := replay.CheckStream(s, replay.Chunking{Kind: replay.ChunkRecorded})
	if len(v) > 0 || !framed {
		return v
	}
	return structural(seq, out, st)
}

// decodeFrames builds a framesInput from fuzz bytes with gofuzz, with
// bounds that keep one execution small. gofuzz reads 8 bytes per choice
// and, when they run out, continues from a generator seeded by the
// first 8, so every input yields a whole structure.
func decodeFrames(data []byte) framesInput {
	var in framesInput
	gofuzz.NewFromGoFuzz(data).NilChance(0).NumElements(0, 24).MaxDepth(4).Fuzz(&in)
	return in
}

// FuzzFrames builds frame sequences with github.com/google/gofuzz —
// tags from the whole gate table and beyond, payloads raw or
// well-formed for their tag, torn crc, non-zero pad, truncation,
// oversize lengths, two frames interleaved as by racing writers, bursts
// past the queue budgets, and arbitrary delivery splits — and checks
// each stream like package fuzz's dispatch target (invariants 1–8 and
// 10, and 6 against a second split). Where no frame lost its boundaries it also checks the
// outcome against the one the structure dictates (structural): each
// torn frame counted under its reason and without effect, each intact
// verdict frame bucketed in order, the kill flag set exactly when an
// intact SCDX was sent, the internal effects and rejections the gate
// table gives, and no resync or tail.
func FuzzFrames(f *testing.F) {
	if libfuzzer.Enabled() {
		for _, seed := range [][]byte{
			{},
			[]byte("frames"),
			[]byte("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f"),
			[]byte(strings.Repeat("\xff\x00\x81\x7e", 64)),
		} {
			f.Add(seed)
		}
	}
	export := libfuzzer.Exporter()
	f.Fuzz(func(t *testing.T, data []byte) {
		if export != nil {
			export(t, data)
		}
		in := decodeFrames(data)
		if v := in.check(); len(v) > 0 {
			t.Fatalf("%d problem(s) with %d frames (%d after the burst):\n  %s", len(v), len(in.Frames), len(in.sequence()), strings.Join(v, "\n  "))
		}
	})
}

// spec returns an intact frame of tag with a raw payload.
func spec(t *testing.T, tag wire.Tag, payload string) frameSpec {
	return frameSpec{Tag: tagIndex(t, tag), Payload: []byte(payload), Corrupt: corruptNone}
}

// wellFormed returns an intact frame of tag with a well-formed payload.
func wellFormed(t *testing.T, tag wire.Tag, id uint32) frameSpec {
	return frameSpec{Tag: tagIndex(t, tag), WellFormed: true, ID: id, Arg: 1 << 24, Corrupt: corruptNone}
}

// torn returns f with corruption c.
func torn(f frameSpec, c uint8) frameSpec {
	f.Corrupt = c
	return f
}

// TestFramesOracle gives FuzzFrames' oracle known structures whose
// outcome is written out by hand: check must pass them, and the
// expectation must say what the table says.
func TestFramesOracle(t *testing.T) {
	scdx := spec(t, wire.SchedExit, "\x07\x00\x00\x00")
	tests := []struct {
		name  string
		in    framesInput
		check func(t *testing.T, e summary)
	}{
		{"one intact SCDX kills", framesInput{Frames: []frameSpec{scdx}}, func(t *testing.T, e summary) {
			assert.True(t, e.Killed)
			assert.Equal(t, []string{"SCDX/4"}, e.Verdicts)
		}},
		{"torn SCDX does not", framesInput{Frames: []frameSpec{torn(scdx, corruptCRC), torn(scdx, corruptPad)}}, func(t *testing.T, e summary) {
			assert.False(t, e.Killed)
			assert.Empty(t, e.Verdicts)
			assert.Equal(t, dispatch.Rejected{CRC: 1, Pad: 1}, e.Rejected)
		}},
		{"forged and unknown", framesInput{Frames: []frameSpec{spec(t, wire.SnapshotReply, ""), spec(t, unlistedTags[0], "?"), spec(t, unlistedTags[1], "")}}, func(t *testing.T, e summary) {
			assert.Equal(t, dispatch.Rejected{ForgedTag: 1, UnknownTag: 2}, e.Rejected)
			assert.Empty(t, e.Verdicts)
		}},
		{"well-formed internals", framesInput{Frames: []frameSpec{
			wellFormed(t, wire.SysRdy, 0),
			wellFormed(t, wire.SnapshotRequest, 3),
			wellFormed(t, wire.KernelOpRequest, 4),
			wellFormed(t, wire.KernelAddrs, 5),
			wellFormed(t, wire.KernelAddrs, 6),
			wellFormed(t, wire.WatchdogResume, 0),
			wellFormed(t, wire.WatchdogPause, 0),
			wellFormed(t, wire.Step, 9),
			wellFormed(t, wire.Lifecycle, 0),
			spec(t, wire.Lifecycle, "\x05"),
		}, Splits: []uint16{5, 17, 40}}, func(t *testing.T, e summary) {
			assert.True(t, e.SysRdy)
			assert.Equal(t, []uint32{3}, e.Snapshots)
			assert.Equal(t, []uint32{4}, e.KernelOps)
			assert.Equal(t, &dispatch.KASLR{PhysBase: 1 << 24, TextAddr: 5 << 12}, e.KASLR)
			assert.Equal(t, uint64(1), e.WatchdogPauses)
			assert.Equal(t, uint16(9), e.Step)
			assert.Equal(t, []string{"LIFE/1"}, e.Verdicts)
			assert.Equal(t, dispatch.Rejected{OneshotRepeat: 1, OutOfOrder: 1, Shape: 1}, e.Rejected)
		}},
		{"a burst past the SNRQ budget", framesInput{Frames: []frameSpec{wellFormed(t, wire.SnapshotRequest, 1)}, Burst: 9}, func(t *testing.T, e summary) {
			assert.Len(t, e.Snapshots, 64)
			assert.Equal(t, dispatch.Rejected{Overflow: 73 - 64}, e.Rejected)
		}},
		{"framing corruptions are ignored without Disturb", framesInput{Frames: []frameSpec{torn(scdx, corruptTruncate), torn(scdx, corruptOversize)}, Interleave: true}, func(t *testing.T, e summary) {
			assert.Equal(t, uint64(2), e.KillSignals)
		}},
		{"interleaved writers", framesInput{Frames: []frameSpec{spec(t, wire.Stdout, "aaaa"), scdx}, Disturb: true, Interleave: true}, nil},
		{"truncated then intact", framesInput{Frames: []frameSpec{torn(spec(t, wire.Stdout, "abc"), corruptTruncate), scdx}, Disturb: true}, nil},
		{"oversize then intact", framesInput{Frames: []frameSpec{torn(spec(t, wire.Stdout, "abc"), corruptOversize), scdx}, Disturb: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Empty(t, tt.in.check())
			_, seq, framed := tt.in.build()
			assert.Equal(t, tt.check != nil, framed, "framed")
			if tt.check != nil {
				tt.check(t, expect(seq))
			}
		})
	}
}

// TestFramesOracleCatches is the positive control of FuzzFrames'
// structural check: each case changes the stream behind the structure's
// back, as a broken gate would change the outcome, and structural must
// report the difference (while the stream itself breaks no invariant).
func TestFramesOracleCatches(t *testing.T) {
	snrq := wellFormed(t, wire.SnapshotRequest, 1)
	tests := []struct {
		name   string
		frames []frameSpec
		tamper func(b []byte) // b is the stream; the first frame starts at 0
		field  string
	}{
		{"a torn SCDX that kills", []frameSpec{spec(t, wire.SchedExit, "")}, func(b []byte) { b[8] ^= 1 }, "Killed"},
		{"a non-zero pad on SRDY", []frameSpec{wellFormed(t, wire.SysRdy, 0)}, func(b []byte) { b[12] = 1 }, "SysRdy"},
		{"an SNRQ of kind 3", []frameSpec{snrq}, func(b []byte) { rewrite(b, func(p []byte) { p[4] = 3 }) }, "Snapshots"},
		{"a verdict tag made unknown", []frameSpec{spec(t, wire.Stimulus, "s")}, func(b []byte) { b[0] ^= 0x20 }, "Verdicts"},
		{"a verdict tag made host-to-guest", []frameSpec{spec(t, wire.Stdout, "")}, func(b []byte) {
			binary.LittleEndian.PutUint32(b, uint32(wire.SnapshotReply))
		}, "Rejected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := framesInput{Frames: tt.frames}
			s, seq, framed := in.build()
			require.True(t, framed)
			require.Empty(t, checkStructure(t, seq, s), "negative: untouched, the outcome is the structure's")
			tt.tamper(s.Data)
			d := checkStructure(t, seq, s)
			require.NotEmpty(t, d)
			assert.Contains(t, strings.Join(d, "\n"), tt.field+":")
		})
	}
}

// checkStructure runs s through replay.CheckStream, requiring no
// violation, and returns structural's verdict on it against seq.
func checkStructure(t *testing.T, seq []frameSpec, s *replay.Stream) []string {
	t.Helper()
	out, st, v := replay.CheckStream(s, replay.Chunking{Kind: replay.ChunkRecorded})
	require.Empty(t, v)
	return structural(seq, out, st)
}

// rewrite edits the payload of the frame at the start of b and fixes its
// crc, so the frame stays intact.
func rewrite(b []byte, edit func(p []byte)) {
	p := b[wire.HeaderSize : wire.HeaderSize+binary.LittleEndian.Uint32(b[4:])]
	edit(p)
	binary.LittleEndian.PutUint32(b[8:], wire.Checksum(p))
}

// TestDecodeFrames: the same bytes give the same structure, so a
// crasher reproduces, and the decoder's output spans what the oracle
// needs: across a few hundred inputs, every corruption, both framed and
// disturbed inputs, well-formed payloads and bursts all occur.
func TestDecodeFrames(t *testing.T) {
	data := []byte("deterministic input for gofuzz \x00\x01\x02\xfe\xff")
	a, b := decodeFrames(data), decodeFrames(data)
	require.Equal(t, a, b)
	sa, _, _ := a.build()
	sb, _, _ := b.build()
	require.Equal(t, sa, sb)

	seen := map[string]bool{}
	for i := range 300 {
		in := decodeFrames(binary.LittleEndian.AppendUint64(nil, uint64(i)*0x9e3779b97f4a7c15))
		_, seq, framed := in.build()
		seen[fmt.Sprintf("framed=%v", framed)] = true
		if in.Burst%10 != 0 && len(in.Frames) > 0 {
			seen["burst"] = true
		}
		for _, f := range seq {
			seen[fmt.Sprintf("corrupt=%d", f.corruption(in.Disturb))] = true
			if f.WellFormed && len(f.Payload) > 0 {
				seen["well-formed with tag text"] = true
			}
		}
	}
	for _, k := range []string{"framed=true", "framed=false", "burst", "well-formed with tag text",
		"corrupt=0", "corrupt=1", "corrupt=2", "corrupt=3", "corrupt=4"} {
		assert.True(t, seen[k], "no decoded input has %s", k)
	}
}

// tagIndex returns the index of tag in fuzzTags.
func tagIndex(t *testing.T, tag wire.Tag) uint8 {
	t.Helper()
	for i, x := range fuzzTags() {
		if x == tag {
			return uint8(i)
		}
	}
	t.Fatalf("tag %v is not in fuzzTags", tag)
	return 0
}
