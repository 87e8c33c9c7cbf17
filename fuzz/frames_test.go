package fuzz

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	gofuzz "github.com/google/gofuzz"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/replay"
)

// frameSpec is one frame FuzzFrames writes: a tag, a payload (raw, or
// well-formed for the tag so its gate can pass) and at most one
// corruption.
type frameSpec struct {
	Tag        uint8 // index into fuzzTags; past its end: an unlisted tag
	WellFormed bool  // encode a payload of the right shape for Tag
	Payload    []byte
	ID, Kind   uint32
	Arg, Arg2  uint64
	Corrupt    uint8 // corruption, modulo corruptKinds
	Cut        uint16
}

// framesInput is the structure FuzzFrames decodes its bytes into.
type framesInput struct {
	Frames     []frameSpec
	Interleave bool  // interleave two frames byte by byte (racing writers)
	Pair       uint8 // which two frames
	Splits     []uint16
}

// Corruptions a frame can carry.
const (
	corruptNone     = iota
	corruptCRC      // flip a bit of the crc field: torn
	corruptPad      // non-zero pad: torn
	corruptTruncate // cut the frame short; the next frame follows at once
	corruptOversize // a len above MaxPayload: the assembler resyncs
	corruptKinds
)

// fuzzTags returns the tags FuzzFrames chooses from: the whole gate
// table, host→guest tags included, and two unlisted ones.
func fuzzTags() []wire.Tag {
	return append(wire.Tags(), wire.Tag(0x5A5A5A5A), wire.Tag(1))
}

// tag returns the spec's tag.
func (f *frameSpec) tag() wire.Tag {
	tags := fuzzTags()
	return tags[int(f.Tag)%len(tags)]
}

// payload returns the spec's payload: for WellFormed specs of tags with
// a fixed layout, an encoding of that layout from the spec's fields.
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
func (f *frameSpec) encode() []byte {
	p := f.payload()
	h := wire.Header{Tag: f.tag(), Len: uint32(len(p)), CRC: wire.Checksum(p)}
	switch f.Corrupt % corruptKinds {
	case corruptCRC:
		h.CRC ^= 1 << (f.Cut % 32)
	case corruptPad:
		h.Pad = 1 + uint32(f.Cut)
	case corruptOversize:
		h.Len = wire.MaxPayload + 1 + uint32(f.Cut)
	}
	b := append(wire.AppendHeader(nil, h), p...)
	if f.Corrupt%corruptKinds == corruptTruncate {
		b = b[:int(f.Cut)%len(b)]
	}
	return b
}

// build turns the input into a stream, split at in.Splits, and says
// whether every frame stayed on its own boundaries (no truncation,
// oversize or interleaving), which is when the expected outcome can be
// told from the structure alone.
func (in *framesInput) build() (s *replay.Stream, framed bool) {
	encoded := make([][]byte, len(in.Frames))
	framed = true
	for i := range in.Frames {
		encoded[i] = in.Frames[i].encode()
		if c := in.Frames[i].Corrupt % corruptKinds; c == corruptTruncate || c == corruptOversize {
			framed = false
		}
	}
	if in.Interleave && len(encoded) >= 2 {
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
	return s, framed
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

// expectation is what a framed input must produce, computed from the
// structure alone with the gate table's rules (ARCHITECTURE §3).
type expectation struct {
	frames               int64
	killSignals          uint64
	verdicts             int
	crc, pad             uint64
	unknownTag, forgedTg uint64
}

func expect(in *framesInput) expectation {
	var e expectation
	for i := range in.Frames {
		f := &in.Frames[i]
		e.frames++
		switch f.Corrupt % corruptKinds {
		case corruptCRC:
			e.crc++
			continue
		case corruptPad:
			e.pad++
			continue
		}
		t := f.tag()
		switch t.Class() {
		case wire.Unknown:
			e.unknownTag++
		case wire.HostToGuest:
			e.forgedTg++
		case wire.Verdict:
			if t == wire.Lifecycle {
				if v, err := wire.DecodeLifecycle(f.payload()); err != nil || v < wire.LifecycleMin || v > wire.LifecycleMax {
					continue
				}
			}
			e.verdicts++
			if t == wire.SchedExit {
				e.killSignals++
			}
		}
	}
	return e
}

// check runs one structured input: the invariants and the model
// (replay.CheckStream, as FuzzDispatch), then, when the frames kept
// their boundaries, the counts the structure dictates. It returns what
// was wrong.
func (in *framesInput) check() []string {
	s, framed := in.build()
	out, st, v := replay.CheckStream(s, replay.Chunking{Kind: replay.ChunkRecorded})
	if len(v) > 0 || !framed {
		return v
	}
	e := expect(in)
	got := expectation{
		frames: st.Frames, killSignals: out.KillSignals, verdicts: len(out.Verdicts),
		crc: out.Rejected.CRC, pad: out.Rejected.Pad,
		unknownTag: out.Rejected.UnknownTag, forgedTg: out.Rejected.ForgedTag,
	}
	if got != e {
		v = append(v, fmt.Sprintf("structure says %+v, dispatch gave %+v", e, got))
	}
	if out.Killed != (e.killSignals > 0) {
		v = append(v, fmt.Sprintf("killed=%v with %d intact SCDX", out.Killed, e.killSignals))
	}
	if out.Rejected.Oversize != 0 || out.Rejected.ResyncBytes != 0 || out.Rejected.TruncatedTailBytes != 0 {
		v = append(v, fmt.Sprintf("well-framed input needed resync or left a tail: %+v", out.Rejected))
	}
	return v
}

// decodeFrames builds a framesInput from fuzz bytes with gofuzz, with
// bounds that keep one execution small.
func decodeFrames(data []byte) framesInput {
	var in framesInput
	gofuzz.NewFromGoFuzz(data).NilChance(0).NumElements(0, 24).MaxDepth(4).Fuzz(&in)
	return in
}

// FuzzFrames builds frame sequences with github.com/google/gofuzz —
// tags from the whole gate table and beyond, payloads raw or
// well-formed for their tag, torn crc, non-zero pad, truncation,
// oversize lengths, two frames interleaved as by racing writers, and
// arbitrary delivery splits — and checks each sequence like
// FuzzDispatch (invariants 1–8 and 10, and 6 against a second split).
// Where no frame lost its boundaries it also checks the counts the
// structure dictates: every torn frame counted under its reason, every
// intact verdict frame bucketed, SCDX killing exactly when an intact one
// was sent.
func FuzzFrames(f *testing.F) {
	for _, seed := range [][]byte{
		{},
		[]byte("frames"),
		[]byte("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f"),
		[]byte(strings.Repeat("\xff\x00\x81\x7e", 64)),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := decodeFrames(data)
		if v := in.check(); len(v) > 0 {
			t.Fatalf("%d problem(s) with %d frames:\n  %s", len(v), len(in.Frames), strings.Join(v, "\n  "))
		}
	})
}

// TestFramesOracle gives FuzzFrames' oracle known inputs: well-formed
// sequences it must accept as they are, and a wrong expectation it must
// report (the positive control: the structural check can fail).
func TestFramesOracle(t *testing.T) {
	intact := func(tag wire.Tag, p string) frameSpec { return frameSpec{Tag: tagIndex(t, tag), Payload: []byte(p)} }
	torn := func(tag wire.Tag, c uint8) frameSpec {
		f := intact(tag, "x")
		f.Corrupt = c
		return f
	}
	tests := []struct {
		name   string
		in     framesInput
		killed string // "yes", "no", or "" where framing makes it unpredictable
	}{
		{"one intact SCDX kills", framesInput{Frames: []frameSpec{intact(wire.SchedExit, "\x07\x00\x00\x00")}}, "yes"},
		{"torn SCDX does not", framesInput{Frames: []frameSpec{torn(wire.SchedExit, corruptCRC), torn(wire.SchedExit, corruptPad)}}, "no"},
		{"forged and unknown", framesInput{Frames: []frameSpec{intact(wire.SnapshotReply, ""), {Tag: 255, Payload: []byte("?")}}}, "no"},
		{"well-formed internals", framesInput{Frames: []frameSpec{
			{Tag: tagIndex(t, wire.SysRdy), WellFormed: true},
			{Tag: tagIndex(t, wire.SnapshotRequest), WellFormed: true, ID: 3, Payload: []byte("tag")},
			{Tag: tagIndex(t, wire.KernelAddrs), WellFormed: true, Arg: 1 << 24},
			{Tag: tagIndex(t, wire.Lifecycle), WellFormed: true, Kind: 2},
		}, Splits: []uint16{5, 17, 40}}, "no"},
		{"interleaved writers", framesInput{Frames: []frameSpec{intact(wire.Stdout, "aaaa"), intact(wire.SchedExit, "")}, Interleave: true}, ""},
		{"truncated then intact", framesInput{Frames: []frameSpec{{Tag: tagIndex(t, wire.Stdout), Payload: []byte("abc"), Corrupt: corruptTruncate, Cut: 9}, intact(wire.SchedExit, "")}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Empty(t, tt.in.check())
			if tt.killed != "" {
				s, _ := tt.in.build()
				out, _, _ := replay.CheckStream(s, replay.Chunking{Kind: replay.ChunkWhole})
				assert.Equal(t, tt.killed == "yes", out.Killed)
			}
		})
	}

	// Positive control: an expectation that disagrees with dispatch is
	// reported. A frame marked intact but encoded with a bad crc makes
	// the structure promise a kill that dispatch rightly refuses.
	in := framesInput{Frames: []frameSpec{intact(wire.SchedExit, "")}}
	s, _ := in.build()
	s.Data[8] ^= 1 // the crc field, behind the structure's back
	out, st, v := replay.CheckStream(s, replay.Chunking{Kind: replay.ChunkRecorded})
	require.Empty(t, v, "the stream itself is fine")
	e := expect(&in)
	assert.NotEqual(t, e.killSignals, out.KillSignals, "the structural check would catch it")
	assert.Equal(t, int64(1), st.Frames)
}

// TestDecodeFramesIsDeterministic: the same bytes give the same
// structure, so a crasher reproduces.
func TestDecodeFramesIsDeterministic(t *testing.T) {
	data := []byte("deterministic input for gofuzz \x00\x01\x02\xfe\xff")
	a, b := decodeFrames(data), decodeFrames(data)
	assert.Equal(t, a, b)
	sa, _ := a.build()
	sb, _ := b.build()
	assert.Equal(t, sa, sb)
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
