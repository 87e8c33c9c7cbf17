package fuzz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/fuzz/internal/oracle"
	"github.com/ktstr/ktstr/internal/libfuzzer"
)

// codecs are the decoders FuzzPayloads checks. They are parameters so
// that the positive control can hand the same checks broken decoders.
type codecs struct {
	snrq func([]byte) (wire.SnapshotRequestPayload, error)
	korq func([]byte) (wire.KernelOpRequestPayload, error)
	kadr func([]byte) (wire.KernelAddrsPayload, error)
}

// wireCodecs are the production decoders of dispatch/wire.
var wireCodecs = codecs{wire.DecodeSnapshotRequest, wire.DecodeKernelOpRequest, wire.DecodeKernelAddrs}

// values are the fields FuzzPayloads encodes and decodes back.
type values struct {
	ID, Kind uint32
	A, B, C  uint64
	Tag      string
}

// FuzzPayloads checks the decoders and encoders of the fixed payloads
// (SNRQ, KORQ, KADR) in both directions:
//
//   - bytes p: every wrong size is rejected with wire.ErrShape; a
//     right-sized payload is accepted exactly when the plain
//     restatement of the gate table in fuzz/internal/oracle accepts it
//     (for SNRQ the tag rule, valid UTF-8 up to the first NUL and only
//     NULs after it, written without package utf8); every rejection
//     wraps ErrShape; an accepted payload decodes to the fields at their
//     offsets and re-encodes to the same bytes.
//   - values v: the encoding puts each field at its offset, and decoding
//     it gives v back whenever the restatement accepts the bytes.
func FuzzPayloads(f *testing.F) {
	if libfuzzer.Enabled() {
		snrq := wire.NewSnapshotRequest(7, wire.SnapshotCapture, "tag")
		b, _ := snrq.AppendBinary(nil)
		korq := wire.KernelOpRequestPayload{RequestID: 1, Op: 2, Arg: 3, Arg2: 4}
		k, _ := korq.AppendBinary(nil)
		kadr := wire.NewKernelAddrs(1<<24, 0xffff888000000000, 1<<24)
		a, _ := kadr.AppendBinary(nil)
		v := values{ID: 7, Kind: 1, A: 1, B: 2, C: 3, Tag: "watch"}
		for _, p := range [][]byte{b, k, a, {}, make([]byte, 23), make([]byte, 25), make([]byte, 71), make([]byte, 72), make([]byte, 73)} {
			f.Add(p, v.ID, v.Kind, v.A, v.B, v.C, v.Tag)
		}
		f.Add(b, uint32(0), uint32(2), uint64(0), uint64(0), uint64(1), strings.Repeat("x", 63)+"é") // a rune cut by the 64-byte field
		f.Add(a, uint32(1), uint32(3), uint64(1), uint64(0), uint64(0), "a\x00b")
	}
	export := libfuzzer.Exporter()
	f.Fuzz(func(t *testing.T, p []byte, id, kind uint32, a, b, c uint64, tag string) {
		if export != nil {
			export(t, p, id, kind, a, b, c, tag)
		}
		if msg := checkPayloads(wireCodecs, p, values{ID: id, Kind: kind, A: a, B: b, C: c, Tag: tag}); len(msg) > 0 {
			t.Fatal(strings.Join(msg, "\n"))
		}
	})
}

// checkPayloads runs FuzzPayloads' checks on the bytes p and the values
// v with decoders c, and returns what is wrong.
func checkPayloads(c codecs, p []byte, v values) []string {
	var bad []string
	fail := func(format string, a ...any) { bad = append(bad, fmt.Sprintf(format, a...)) }
	le := binary.LittleEndian

	// Bytes → value → bytes.
	if r, err := c.snrq(p); checkVerdict(fail, "SNRQ", p, oracle.SnapshotRequestValid(p), err) {
		if r.RequestID != le.Uint32(p) || r.Kind != le.Uint32(p[4:]) || !bytes.Equal(r.Tag[:], p[8:]) {
			fail("SNRQ decodes %s to %+v, not its fields", describe(p), r)
		}
		roundTrip(fail, "SNRQ", p, &r)
	}
	if r, err := c.korq(p); checkVerdict(fail, "KORQ", p, len(p) == wire.KernelOpRequestSize, err) {
		if r.RequestID != le.Uint32(p) || r.Op != le.Uint32(p[4:]) || r.Arg != le.Uint64(p[8:]) || r.Arg2 != le.Uint64(p[16:]) {
			fail("KORQ decodes %s to %+v, not its fields", describe(p), r)
		}
		roundTrip(fail, "KORQ", p, &r)
	}
	if r, err := c.kadr(p); checkVerdict(fail, "KADR", p, oracle.KernelAddrsValid(p), err) {
		if r.PhysBasePlus1 != le.Uint64(p) || r.PageOffsetBase != le.Uint64(p[8:]) || r.TextAddrPlus1 != le.Uint64(p[16:]) ||
			r.PhysBase() != le.Uint64(p)-1 || r.TextAddr() != le.Uint64(p[16:])-1 {
			fail("KADR decodes %s to %+v, not its fields", describe(p), r)
		}
		roundTrip(fail, "KADR", p, &r)
	}

	// Value → bytes → value.
	sr := wire.NewSnapshotRequest(v.ID, v.Kind, v.Tag)
	sb, _ := sr.AppendBinary(nil)
	var tagField [wire.SnapshotTagMax]byte
	copy(tagField[:], v.Tag)
	if len(sb) != wire.SnapshotRequestSize || le.Uint32(sb) != v.ID || le.Uint32(sb[4:]) != v.Kind || !bytes.Equal(sb[8:], tagField[:]) {
		fail("SNRQ encodes %+v as %s, not the layout", v, describe(sb))
	} else if back, err := c.snrq(sb); checkVerdict(fail, "SNRQ", sb, oracle.SnapshotRequestValid(sb), err) && back != sr {
		fail("SNRQ %+v comes back as %+v", sr, back)
	}
	kr := wire.KernelOpRequestPayload{RequestID: v.ID, Op: v.Kind, Arg: v.A, Arg2: v.B}
	kb, _ := kr.AppendBinary(nil)
	if len(kb) != wire.KernelOpRequestSize || le.Uint32(kb) != v.ID || le.Uint32(kb[4:]) != v.Kind || le.Uint64(kb[8:]) != v.A || le.Uint64(kb[16:]) != v.B {
		fail("KORQ encodes %+v as %s, not the layout", kr, describe(kb))
	} else if back, err := c.korq(kb); checkVerdict(fail, "KORQ", kb, true, err) && back != kr {
		fail("KORQ %+v comes back as %+v", kr, back)
	}
	ar := wire.KernelAddrsPayload{PhysBasePlus1: v.A, PageOffsetBase: v.B, TextAddrPlus1: v.C}
	ab, _ := ar.AppendBinary(nil)
	if len(ab) != wire.KernelAddrsSize || le.Uint64(ab) != v.A || le.Uint64(ab[8:]) != v.B || le.Uint64(ab[16:]) != v.C {
		fail("KADR encodes %+v as %s, not the layout", ar, describe(ab))
	} else if back, err := c.kadr(ab); checkVerdict(fail, "KADR", ab, oracle.KernelAddrsValid(ab), err) && back != ar {
		fail("KADR %+v comes back as %+v", ar, back)
	}
	if n := wire.NewKernelAddrs(v.A, v.B, v.C); n.PhysBase() != v.A || n.PageOffsetBase != v.B || n.TextAddr() != v.C {
		fail("NewKernelAddrs(%#x, %#x, %#x) gives %+v", v.A, v.B, v.C, n)
	}
	return bad
}

// checkVerdict checks one decoder's verdict on p against want (the
// restatement's) and reports whether both accepted p, which is when the
// decoded value can be checked further.
func checkVerdict(fail func(string, ...any), name string, p []byte, want bool, err error) bool {
	switch {
	case want && err != nil:
		fail("%s rejects %s, which the gate table accepts: %v", name, describe(p), err)
	case !want && err == nil:
		fail("%s accepts %s, which the gate table rejects", name, describe(p))
	case err != nil && !errors.Is(err, wire.ErrShape):
		fail("%s rejects %s with an error that does not wrap ErrShape: %v", name, describe(p), err)
	}
	return want && err == nil
}

// roundTrip checks that the value decoded from p encodes back to p.
func roundTrip(fail func(string, ...any), name string, p []byte, v interface{ AppendBinary([]byte) ([]byte, error) }) {
	if out, err := v.AppendBinary(nil); err != nil || !bytes.Equal(out, p) {
		fail("%s decodes %s and encodes it back as %s (%v)", name, describe(p), describe(out), err)
	}
}

// describe names a payload in a failure message.
func describe(p []byte) string {
	return fmt.Sprintf("a %d-byte payload %x", len(p), p[:min(len(p), 80)])
}

// TestPlainUTF8 pins the hand-written UTF-8 rule to package utf8's on
// the edge cases, so a disagreement in FuzzPayloads points at wire.
func TestPlainUTF8(t *testing.T) {
	for _, s := range []string{
		"", "ascii", "é", "€", "𝄞", "\u07ff", "\u0800", "\uffff", "\U00010000", "\U0010ffff",
		"\xc0\x80", "\xc1\xbf", "\xe0\x9f\xbf", "\xf0\x8f\xbf\xbf", // overlong
		"\xed\xa0\x80", "\xed\xbf\xbf", // surrogates
		"\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "\xfe", // past U+10FFFF, never valid
		"\x80", "\xc3", "\xe2\x82", "\xf0\x9d\x84", "a\xc3", // stray continuation, cut short
		"\xc3\x28", "\xe2\x28\xa1", // bad continuation
	} {
		if got, want := oracle.PlainUTF8([]byte(s)), utf8.ValidString(s); got != want {
			t.Errorf("%q: PlainUTF8 says %v, package utf8 %v", s, got, want)
		}
	}
}

// TestPayloadsOracle: the production decoders pass FuzzPayloads' checks
// on known payloads, and (the positive control) each broken decoder
// below is caught on the payload that exposes it.
func TestPayloadsOracle(t *testing.T) {
	good := wire.NewSnapshotRequest(1, wire.SnapshotWatch, "watch")
	g, _ := good.AppendBinary(nil)
	afterNUL := bytes.Clone(g)
	afterNUL[8+10] = 'x'
	badUTF8 := bytes.Clone(g)
	badUTF8[8] = 0xff
	k := wire.NewKernelAddrs(0, 0, 0)
	kadr, _ := k.AppendBinary(nil)
	v := values{ID: 1, Kind: 2, A: 3, B: 4, C: 5, Tag: "t"}

	for _, p := range [][]byte{g, afterNUL, badUTF8, kadr, {}, make([]byte, 24), make([]byte, 73), bytes.Repeat([]byte{0xff}, 72)} {
		if got := checkPayloads(wireCodecs, p, v); len(got) > 0 {
			t.Errorf("%x: %v", p, got)
		}
	}
	if !oracle.SnapshotRequestValid(g) {
		t.Error("a well-formed SNRQ is invalid")
	}
	if oracle.SnapshotRequestValid(afterNUL) {
		t.Error("a byte after the tag's NUL is valid")
	}
	if oracle.SnapshotRequestValid(badUTF8) {
		t.Error("invalid UTF-8 in the tag is valid")
	}

	lenient := wireCodecs
	lenient.snrq = func(p []byte) (wire.SnapshotRequestPayload, error) {
		if len(p) != wire.SnapshotRequestSize {
			return wire.SnapshotRequestPayload{}, wire.ErrShape
		}
		var r wire.SnapshotRequestPayload
		r.RequestID, r.Kind = binary.LittleEndian.Uint32(p), binary.LittleEndian.Uint32(p[4:])
		copy(r.Tag[:], p[8:])
		return r, nil // no kind or tag check
	}
	anySize := wireCodecs
	anySize.korq = func(p []byte) (wire.KernelOpRequestPayload, error) {
		return wire.DecodeKernelOpRequest(append(bytes.Clone(p), make([]byte, 24)...)[:24])
	}
	plainErr := wireCodecs
	plainErr.kadr = func(p []byte) (wire.KernelAddrsPayload, error) {
		r, err := wire.DecodeKernelAddrs(p)
		if err != nil {
			err = errors.New("bad KADR")
		}
		return r, err
	}
	swapped := wireCodecs
	swapped.korq = func(p []byte) (wire.KernelOpRequestPayload, error) {
		r, err := wire.DecodeKernelOpRequest(p)
		r.Arg, r.Arg2 = r.Arg2, r.Arg
		return r, err
	}
	noPlusOne := wireCodecs
	noPlusOne.kadr = func(p []byte) (wire.KernelAddrsPayload, error) {
		if len(p) != wire.KernelAddrsSize {
			return wire.KernelAddrsPayload{}, wire.ErrShape
		}
		le := binary.LittleEndian
		return wire.KernelAddrsPayload{PhysBasePlus1: le.Uint64(p), PageOffsetBase: le.Uint64(p[8:]), TextAddrPlus1: le.Uint64(p[16:])}, nil
	}
	tests := []struct {
		name  string
		c     codecs
		p     []byte
		v     values
		catch string
	}{
		{"SNRQ with a byte after the NUL accepted", lenient, afterNUL, v, "SNRQ accepts"},
		{"SNRQ with invalid UTF-8 accepted", lenient, badUTF8, v, "SNRQ accepts"},
		{"SNRQ of kind 3 accepted on the way back", lenient, nil, values{Kind: 3}, "SNRQ accepts"},
		{"KORQ of 23 bytes accepted", anySize, make([]byte, 23), v, "KORQ accepts"},
		{"KORQ of 25 bytes accepted", anySize, make([]byte, 25), v, "KORQ accepts"},
		{"KADR rejected without ErrShape", plainErr, make([]byte, 3), v, "does not wrap ErrShape"},
		{"KADR with a zero +1 field accepted", noPlusOne, make([]byte, 24), values{A: 1}, "KADR accepts"},
		{"KORQ fields swapped", swapped, make([]byte, 3), values{A: 1, B: 2}, "comes back as"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkPayloads(wireCodecs, tt.p, tt.v); len(got) > 0 {
				t.Fatalf("negative: the production decoders fail: %v", got)
			}
			got := checkPayloads(tt.c, tt.p, tt.v)
			if !strings.Contains(strings.Join(got, "\n"), tt.catch) {
				t.Errorf("the check should report %q, got %q", tt.catch, got)
			}
		})
	}
}
