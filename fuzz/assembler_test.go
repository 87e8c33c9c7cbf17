package fuzz

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"testing"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/fuzz/internal/seeds"
	"github.com/ktstr/ktstr/internal/libfuzzer"
)

// FuzzAssembler frames one stream under two different splittings, and
// once whole, with the production dispatch.Assembler, and requires the
// same messages and the same stream counts from all three (invariant
// 6). Each splitting is spelled by a byte string (see split); the second
// runs on the first's Assembler after Reset. Along the way every message
// must be the bytes of the stream at its offset, the Assembler's buffer
// must stay within dispatch.MaxBuffered (invariant 7), and after Finish
// every byte must be accounted for exactly once: framed, dropped by a
// resync, or left in the truncated tail. Splits A and B also dispatch
// each message as it comes, B with the Sinks as the Assembler's Keeper
// (verdict payloads copied as their CRC is checked), and the two
// Outcomes, verdict payloads included, must be equal.
func FuzzAssembler(f *testing.F) {
	streams, err := seeds.Streams()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range streams {
		// The recorded deliveries as the first split, a few shapes
		// against them.
		var rec []byte
		for i := range s.Deliveries() {
			rec = append(rec, splitSpec(len(s.Delivery(i)))...)
		}
		f.Add(s.Data, rec, []byte{})
		f.Add(s.Data, []byte{0}, []byte{7, 200, 254, 1, 0x80})
	}
	export := libfuzzer.Exporter()
	f.Fuzz(func(t *testing.T, stream, splitA, splitB []byte) {
		if export != nil {
			export(t, stream, splitA, splitB)
		}
		if p := checkAssembler(stream, splitA, splitB); len(p) > 0 {
			t.Fatalf("%d problem(s) with a %d-byte stream split %x and %x:\n  %s", len(p), len(stream), splitA, splitB, joinLines(p))
		}
	})
}

// frameRecord is one message as the Assembler returned it, copied.
type frameRecord struct {
	Tag     wire.Tag
	Payload string
	CRC     uint32
	CRCOK   bool
	PadOK   bool
	Offset  int64
}

func (r frameRecord) String() string {
	return fmt.Sprintf("%s len=%d crc=%08x crcok=%v padok=%v at %d", r.Tag, len(r.Payload), r.CRC, r.CRCOK, r.PadOK, r.Offset)
}

// checkAssembler is the body of FuzzAssembler; it returns the problems
// found.
func checkAssembler(stream, splitA, splitB []byte) []string {
	var p problems
	a := dispatch.NewAssembler()
	framesA, statsA := assemble(a, stream, splitA, &p)
	a.Reset()
	framesB, statsB := assemble(a, stream, splitB, &p)
	framesW, statsW := assemble(dispatch.NewAssembler(), stream, nil, &p)
	p.compare("split A", "split B", framesA, framesB, statsA, statsB)
	p.compare("split A", "one feed", framesA, framesW, statsA, statsW)
	// The Session frames as its Assembler does, and judges alike
	// however it is fed.
	sa, sb := dispatch.NewSession(), dispatch.NewSession()
	framesSA := sessionFrames(sa, stream, splitA)
	framesSB := sessionFrames(sb, stream, splitB)
	outA, outB := sa.Finish(), sb.Finish()
	p.compare("Assembler, split A", "Session, split A", framesA, framesSA, statsA, sa.Stats())
	p.compare("Session, split A", "Session, split B", framesSA, framesSB, sa.Stats(), sb.Stats())
	for _, d := range outB.Diff(&outA) {
		p.addf("the Session's outcome for split B differs from split A's: %s", d)
	}
	return p.list
}

// split cuts stream into feeds as spec says, cycling through its bytes:
// 0xff feeds everything left; any other byte b feeds the next 1+b>>1
// bytes (1–128), and its low bit set means "feed again before draining
// Next", so pieces pile up in the Assembler's queue. An empty spec feeds
// the stream whole.
func split(stream, spec []byte, feed func(p []byte, drain bool)) {
	for i := 0; len(stream) > 0; i++ {
		n, drain := len(stream), true
		if len(spec) > 0 {
			if b := spec[i%len(spec)]; b != 0xff {
				n, drain = min(1+int(b>>1), len(stream)), b&1 == 0
			}
		}
		feed(stream[:n], drain || n == len(stream))
		stream = stream[n:]
	}
}

// splitSpec returns the spec bytes that feed n bytes as one piece (for
// n ≤ 128) or as 128-byte pieces and a remainder, each drained.
func splitSpec(n int) []byte {
	var spec []byte
	for ; n > 128; n -= 128 {
		spec = append(spec, 127<<1)
	}
	if n > 0 {
		spec = append(spec, byte(n-1)<<1)
	}
	return spec
}

// sessionFrames feeds stream to s split per spec (a Session drains
// every feed) and returns the frames it handed back.
func sessionFrames(s *dispatch.Session, stream, spec []byte) []frameRecord {
	var frames []frameRecord
	split(stream, spec, func(piece []byte, _ bool) {
		s.Feed(0, piece, func(m *dispatch.Message, _ dispatch.Result) {
			frames = append(frames, frameRecord{Tag: m.Tag, Payload: string(m.Payload), CRC: m.CRC, CRCOK: m.CRCOK, PadOK: m.PadOK, Offset: m.Offset})
		})
	})
	return frames
}

// assemble frames stream with a, split per spec, checking each message
// against the stream and the buffer bound, and returns the messages and
// the final counts.
func assemble(a *dispatch.Assembler, stream, spec []byte, p *problems) ([]frameRecord, dispatch.Stats) {
	var frames []frameRecord
	var framed int64 // header and payload bytes of the frames returned
	split(stream, spec, func(piece []byte, drain bool) {
		a.Feed(piece)
		for drain {
			m, ok := a.Next()
			if !ok {
				break
			}
			r := frameRecord{Tag: m.Tag, Payload: string(m.Payload), CRC: m.CRC, CRCOK: m.CRCOK, PadOK: m.PadOK, Offset: m.Offset}
			p.message(stream, r, frames)
			frames = append(frames, r)
			framed += int64(wire.HeaderSize + len(m.Payload))
		}
		if b := a.Buffered(); b > dispatch.MaxBuffered || a.BufferCap() > dispatch.MaxBuffered {
			p.addf("assembler holds %d bytes in a %d-byte buffer, past the bound of %d", b, a.BufferCap(), dispatch.MaxBuffered)
		}
	})
	st := a.Finish()
	if st.Bytes != int64(len(stream)) || st.Frames != int64(len(frames)) {
		p.addf("stats count %d bytes and %d frames, the stream has %d bytes and %d frames were returned", st.Bytes, st.Frames, len(stream), len(frames))
	}
	if sum := framed + st.ResyncBytes + st.TruncatedTailBytes; sum != int64(len(stream)) {
		p.addf("%d bytes framed + %d resync + %d tail = %d, not the stream's %d bytes", framed, st.ResyncBytes, st.TruncatedTailBytes, sum, len(stream))
	}
	// An oversize header is not plausible, so the resync it starts drops
	// at least its first byte. Not necessarily all 16: a plausible header
	// may start inside it, and at the end of the stream the bytes a
	// resync has not judged are tail (docs/protocol.md).
	if st.Oversize > st.ResyncBytes {
		p.addf("%d oversize headers but only %d resync bytes (each drops at least its first byte)", st.Oversize, st.ResyncBytes)
	}
	return frames, st
}

// problems collects what the checks find, keeping the first few.
type problems struct{ list []string }

const maxProblems = 10

func (p *problems) addf(format string, a ...any) {
	if len(p.list) < maxProblems {
		p.list = append(p.list, fmt.Sprintf(format, a...))
	}
}

// message checks one message against the stream it came from and the
// messages before it.
func (p *problems) message(stream []byte, r frameRecord, before []frameRecord) {
	end := r.Offset + int64(wire.HeaderSize+len(r.Payload))
	if r.Offset < 0 || end > int64(len(stream)) {
		p.addf("message %s lies outside the %d-byte stream", r, len(stream))
		return
	}
	if n := len(before); n > 0 {
		prev := before[n-1]
		if r.Offset < prev.Offset+int64(wire.HeaderSize+len(prev.Payload)) {
			p.addf("message %s overlaps the one before, %s", r, prev)
		}
	}
	h := stream[r.Offset:]
	le := binary.LittleEndian
	if wire.Tag(le.Uint32(h)) != r.Tag || le.Uint32(h[4:]) != uint32(len(r.Payload)) || le.Uint32(h[8:]) != r.CRC ||
		string(h[wire.HeaderSize:end-r.Offset]) != r.Payload {
		p.addf("message %s is not the frame in the stream at its offset", r)
	}
	if r.CRCOK != (crc32.ChecksumIEEE([]byte(r.Payload)) == r.CRC) || r.PadOK != (le.Uint32(h[12:]) == 0) {
		p.addf("message %s misjudges its crc or pad", r)
	}
}

// compare reports where two framings of one stream differ.
func (p *problems) compare(nameA, nameB string, a, b []frameRecord, sa, sb dispatch.Stats) {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			p.addf("%s and %s differ at message %d: %s vs %s", nameA, nameB, i, a[i], b[i])
			return
		}
	}
	if len(a) != len(b) {
		p.addf("%s gives %d messages, %s %d", nameA, len(a), nameB, len(b))
	}
	if sa != sb {
		p.addf("%s and %s count differently: %+v vs %+v", nameA, nameB, sa, sb)
	}
}

func joinLines(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += "\n  "
		}
		out += x
	}
	return out
}

// TestAssemblerChecksCatchDifferences is the positive control of
// FuzzAssembler's checks: they must flag framings that differ, messages
// that are not the stream's bytes, and counts that do not add up.
func TestAssemblerChecksCatchDifferences(t *testing.T) {
	one := wire.AppendFrame(nil, wire.Stimulus, []byte("payload"))
	two := append(wire.AppendFrame(nil, wire.SysRdy, nil), one...)
	var p problems
	fa, sa := assemble(dispatch.NewAssembler(), one, nil, &p)
	fb, sb := assemble(dispatch.NewAssembler(), two, nil, &p)
	if len(p.list) > 0 {
		t.Fatalf("negative: two clean streams framed with problems: %v", p.list)
	}
	p.compare("one", "two", fa, fb, sa, sb)
	if len(p.list) == 0 {
		t.Error("different streams must compare different")
	}

	p = problems{}
	r := fa[0]
	r.Offset = 1
	p.message(one, r, nil)
	if len(p.list) == 0 {
		t.Error("a message at the wrong offset must be flagged")
	}

	p = problems{}
	r = fa[0]
	r.CRCOK = !r.CRCOK
	p.message(one, r, nil)
	if len(p.list) == 0 {
		t.Error("a misjudged crc must be flagged")
	}

	p = problems{}
	p.message(two, fb[0], fb[1:])
	if len(p.list) == 0 {
		t.Error("an overlapping message must be flagged")
	}
}

// TestSplit pins down the split spec.
func TestSplit(t *testing.T) {
	stream := make([]byte, 300)
	tests := []struct {
		spec   []byte
		pieces []int
		drains []bool
	}{
		{nil, []int{300}, []bool{true}},
		{[]byte{0xff}, []int{300}, []bool{true}},
		{[]byte{0}, repeatInt(1, 300), repeatBool(true, 300)},
		{[]byte{254, 1}, []int{128, 1, 128, 1, 42}, []bool{true, false, true, false, true}},
		{splitSpec(300), []int{128, 128, 44}, []bool{true, true, true}},
	}
	for _, tt := range tests {
		var pieces []int
		var drains []bool
		split(stream, tt.spec, func(p []byte, drain bool) {
			pieces, drains = append(pieces, len(p)), append(drains, drain)
		})
		if !slices.Equal(tt.pieces, pieces) || !slices.Equal(tt.drains, drains) {
			t.Errorf("spec %x: pieces %v drains %v, want %v and %v", tt.spec, pieces, drains, tt.pieces, tt.drains)
		}
	}
}

func repeatInt(v, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func repeatBool(v bool, n int) []bool {
	s := make([]bool, n)
	for i := range s {
		s[i] = v
	}
	return s
}
