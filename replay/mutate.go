package replay

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// span is one frame's place in a stream.
type span struct {
	off, len int // header offset, total length (header + payload)
	tag      wire.Tag
}

// frameSpans frames s with a Session, as every path does (mutations
// target frame boundaries, so they need those, not gate results).
func frameSpans(data []byte) []span {
	var out []span
	dispatch.NewSession().Feed(0, data, func(m *dispatch.Message, _ dispatch.Result) {
		out = append(out, span{off: int(m.Offset), len: wire.HeaderSize + len(m.Payload), tag: m.Tag})
	})
	return out
}

// Operator mutates a stream. It returns false when the stream offers it
// nothing to work on (no frame with a payload, say).
type Operator struct {
	Name string
	Doc  string
	Fn   func(r *rand.Rand, s *Stream, frames []span) (*Stream, bool)
}

// Operators returns every mutation operator, in report order.
func Operators() []Operator {
	return []Operator{
		{"payload-bitflip", "flip one payload bit of a frame (torn: crc)", payloadBitflip},
		{"crc-flip", "flip one bit of a frame's crc field (torn: crc)", crcFlip},
		{"truncate-frame", "cut a frame short; the stream continues after it", truncateFrame},
		{"drop-bytes", "drop 1–16 bytes anywhere", dropBytes},
		{"duplicate-frame", "repeat a frame right after itself", duplicateFrame},
		{"forge-snrp", "insert an intact SNAPSHOT_REPLY (host→guest tag) on TX", forgeTag(wire.SnapshotReply, wire.SnapshotReplySize)},
		{"forge-korp", "insert an intact KERNEL_OP_REPLY (host→guest tag) on TX", forgeTag(wire.KernelOpReply, 24)},
		{"unknown-tag", "insert an intact frame with an unlisted tag", unknownTag},
		{"nonzero-pad", "set a frame's pad field, keeping its crc valid", nonzeroPad},
		{"srdy-smuggle", "insert an intact SYS_RDY carrying a payload", srdySmuggle},
		{"repeat-srdy", "insert an extra intact SYS_RDY", insertFrame(wire.SysRdy, nil)},
		{"repeat-kadr", "insert an extra intact KADR", insertFrame(wire.KernelAddrs, kadrPayload())},
		{"oversize", "set a frame's length past MaxPayload", oversize},
		{"interleave", "interleave two frames as unlocked concurrent writers would", interleave},
		{"resplit", "same bytes, new random delivery boundaries", resplit},
		{"merge", "merge adjacent deliveries", merge},
	}
}

func kadrPayload() []byte {
	k := wire.NewKernelAddrs(0x2000000, 0xffff888000000000, 0xffffffff82000000)
	b, _ := k.AppendBinary(nil)
	return b
}

// splice replaces data[pos:pos+del] with ins, moving delivery starts
// after pos so every surviving byte keeps its delivery.
func splice(s *Stream, pos, del int, ins []byte) *Stream {
	out := &Stream{
		Data:   make([]byte, 0, len(s.Data)-del+len(ins)),
		Starts: make([]int64, 0, len(s.Starts)),
		Times:  make([]int64, 0, len(s.Times)),
	}
	out.Data = append(append(append(out.Data, s.Data[:pos]...), ins...), s.Data[pos+del:]...)
	d := int64(len(ins) - del)
	for i, st := range s.Starts {
		switch {
		case st <= int64(pos):
		case st < int64(pos+del):
			st = int64(pos + len(ins)) // the delivery lost its first bytes
		default:
			st += d
		}
		if n := len(out.Starts); n > 0 && out.Starts[n-1] > st {
			st = out.Starts[n-1]
		}
		out.Starts = append(out.Starts, st)
		out.Times = append(out.Times, s.Times[i])
	}
	return out
}

func pick(r *rand.Rand, frames []span, ok func(span) bool) (span, bool) {
	var c []span
	for _, f := range frames {
		if ok(f) {
			c = append(c, f)
		}
	}
	if len(c) == 0 {
		return span{}, false
	}
	return c[r.IntN(len(c))], true
}

func anyFrame(span) bool { return true }

func payloadBitflip(r *rand.Rand, s *Stream, frames []span) (*Stream, bool) {
	f, ok := pick(r, frames, func(f span) bool { return f.len > wire.HeaderSize })
	if !ok {
		return nil, false
	}
	out := splice(s, 0, 0, nil)
	i := f.off + wire.HeaderSize + r.IntN(f.len-wire.HeaderSize)
	out.Data[i] ^= 1 << r.IntN(8)
	return out, true
}

func crcFlip(r *rand.Rand, s *Stream, frames []span) (*Stream, bool) {
	f, ok := pick(r, frames, anyFrame)
	if !ok {
		return nil, false
	}
	out := splice(s, 0, 0, nil)
	out.Data[f.off+8+r.IntN(4)] ^= 1 << r.IntN(8)
	return out, true
}

func truncateFrame(r *rand.Rand, s *Stream, frames []span) (*Stream, bool) {
	f, ok := pick(r, frames, anyFrame)
	if !ok {
		return nil, false
	}
	cut := 1 + r.IntN(f.len-1)
	return splice(s, f.off+cut, f.len-cut, nil), true
}

func dropBytes(r *rand.Rand, s *Stream, _ []span) (*Stream, bool) {
	if len(s.Data) == 0 {
		return nil, false
	}
	pos := r.IntN(len(s.Data))
	n := min(1+r.IntN(16), len(s.Data)-pos)
	return splice(s, pos, n, nil), true
}

func duplicateFrame(r *rand.Rand, s *Stream, frames []span) (*Stream, bool) {
	f, ok := pick(r, frames, anyFrame)
	if !ok {
		return nil, false
	}
	return splice(s, f.off+f.len, 0, bytes.Clone(s.Data[f.off:f.off+f.len])), true
}

// boundary returns a random frame boundary (or 0 for an empty stream).
func boundary(r *rand.Rand, frames []span) int {
	if len(frames) == 0 {
		return 0
	}
	f := frames[r.IntN(len(frames))]
	if r.IntN(2) == 0 {
		return f.off
	}
	return f.off + f.len
}

func forgeTag(tag wire.Tag, size int) func(*rand.Rand, *Stream, []span) (*Stream, bool) {
	return func(r *rand.Rand, s *Stream, frames []span) (*Stream, bool) {
		p := make([]byte, size)
		binary.LittleEndian.PutUint32(p, r.Uint32())
		binary.LittleEndian.PutUint32(p[4:], 1)
		return splice(s, boundary(r, frames), 0, wire.AppendFrame(nil, tag, p)), true
	}
}

func unknownTag(r *rand.Rand, s *Stream, frames []span) (*Stream, bool) {
	var tag wire.Tag
	for tag = wire.Tag(r.Uint32()); tag.Listed(); tag = wire.Tag(r.Uint32()) {
	}
	p := make([]byte, r.IntN(64))
	return splice(s, boundary(r, frames), 0, wire.AppendFrame(nil, tag, p)), true
}

func nonzeroPad(r *rand.Rand, s *Stream, frames []span) (*Stream, bool) {
	f, ok := pick(r, frames, anyFrame)
	if !ok {
		return nil, false
	}
	out := splice(s, 0, 0, nil)
	binary.LittleEndian.PutUint32(out.Data[f.off+12:], 1+r.Uint32N(0xFFFFFFFE))
	return out, true
}

func srdySmuggle(r *rand.Rand, s *Stream, frames []span) (*Stream, bool) {
	p := []byte("smuggled")[:1+r.IntN(8)]
	return splice(s, boundary(r, frames), 0, wire.AppendFrame(nil, wire.SysRdy, p)), true
}

func insertFrame(tag wire.Tag, payload []byte) func(*rand.Rand, *Stream, []span) (*Stream, bool) {
	return func(r *rand.Rand, s *Stream, frames []span) (*Stream, bool) {
		return splice(s, boundary(r, frames), 0, wire.AppendFrame(nil, tag, payload)), true
	}
}

func oversize(r *rand.Rand, s *Stream, frames []span) (*Stream, bool) {
	f, ok := pick(r, frames, anyFrame)
	if !ok {
		return nil, false
	}
	out := splice(s, 0, 0, nil)
	binary.LittleEndian.PutUint32(out.Data[f.off+4:], wire.MaxPayload+1+r.Uint32N(1<<30))
	return out, true
}

// interleave mixes two adjacent frames in pieces, as two writers sharing
// the port without a lock would.
func interleave(r *rand.Rand, s *Stream, frames []span) (*Stream, bool) {
	if len(frames) < 2 {
		return nil, false
	}
	i := r.IntN(len(frames) - 1)
	a, b := frames[i], frames[i+1]
	if a.off+a.len != b.off {
		return nil, false
	}
	fa, fb := s.Data[a.off:a.off+a.len], s.Data[b.off:b.off+b.len]
	mixed := make([]byte, 0, len(fa)+len(fb))
	for len(fa) > 0 || len(fb) > 0 {
		n := min(len(fa), 1+r.IntN(24))
		mixed, fa = append(mixed, fa[:n]...), fa[n:]
		n = min(len(fb), 1+r.IntN(24))
		mixed, fb = append(mixed, fb[:n]...), fb[n:]
	}
	return splice(s, a.off, a.len+b.len, mixed), true
}

func resplit(r *rand.Rand, s *Stream, _ []span) (*Stream, bool) {
	if len(s.Data) == 0 {
		return nil, false
	}
	out := &Stream{Data: bytes.Clone(s.Data)}
	for off := 0; off < len(s.Data); off += 1 + r.IntN(256) {
		out.Starts = append(out.Starts, int64(off))
		out.Times = append(out.Times, s.TimeAt(int64(off)))
	}
	return out, true
}

func merge(r *rand.Rand, s *Stream, _ []span) (*Stream, bool) {
	if s.Deliveries() < 2 {
		return nil, false
	}
	out := &Stream{Data: bytes.Clone(s.Data)}
	for i := range s.Deliveries() {
		if i > 0 && r.IntN(2) == 0 {
			continue // joined to the delivery before it
		}
		out.Starts = append(out.Starts, s.Starts[i])
		out.Times = append(out.Times, s.Times[i])
	}
	return out, true
}

// OperatorStats counts one operator's mutants in a campaign.
type OperatorStats struct {
	Name       string
	Mutants    int
	Frames     int64
	Torn       uint64 // frames rejected as crc or pad
	Rejected   uint64 // frames rejected for any reason
	Violations int    // mutants with at least one violation
}

// Failure is a mutant that broke an invariant.
type Failure struct {
	Operator   string
	Index      int
	Stream     *Stream
	Violations []string
}

// Campaign is the result of a mutation campaign over one stream.
type Campaign struct {
	Operators []OperatorStats
	Failures  []Failure
	// Interrupted says the campaign's context ended it before its n
	// mutants: the rest is what was made and checked up to then.
	Interrupted bool
}

// Mutate makes n mutants of s, spread evenly over the operators, and
// checks each (invariants 1–8 and 10). It is deterministic for a seed.
func Mutate(s *Stream, n int, seed uint64) *Campaign {
	return MutateContext(context.Background(), s, n, seed)
}

// MutateContext is Mutate that stops early, with Interrupted set, once
// ctx is done: a long campaign answers an interrupt with what it found.
func MutateContext(ctx context.Context, s *Stream, n int, seed uint64) *Campaign {
	ops := Operators()
	r := rand.New(rand.NewPCG(seed, 0x6d757461))
	frames := frameSpans(s.Data)
	c := &Campaign{Operators: make([]OperatorStats, len(ops))}
	for i := range ops {
		c.Operators[i].Name = ops[i].Name
	}
	for i := range n {
		if ctx.Err() != nil {
			c.Interrupted = true
			break
		}
		k := i % len(ops)
		m, ok := ops[k].Fn(r, s, frames)
		if !ok {
			continue
		}
		// Mutants compound sometimes: a second operator on top.
		if r.IntN(4) == 0 {
			j := r.IntN(len(ops))
			if m2, ok := ops[j].Fn(r, m, frameSpans(m.Data)); ok {
				m = m2
			}
		}
		out, st, viol := CheckStream(m, Chunking{Kind: ChunkRandom, Seed: r.Uint64()})
		opStats := &c.Operators[k]
		opStats.Mutants++
		opStats.Frames += st.Frames
		opStats.Torn += out.Rejected.CRC + out.Rejected.Pad
		for _, reason := range dispatch.Reasons() {
			opStats.Rejected += out.Rejected.Count(reason)
		}
		if len(viol) > 0 {
			opStats.Violations++
			c.Failures = append(c.Failures, Failure{Operator: ops[k].Name, Index: i, Stream: m, Violations: viol})
		}
	}
	return c
}

// Total returns the number of mutants and of failing mutants.
func (c *Campaign) Total() (mutants, failing int) {
	for _, o := range c.Operators {
		mutants += o.Mutants
		failing += o.Violations
	}
	return mutants, failing
}

// WriteTable prints the per-operator table.
func (c *Campaign) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operator\tmutants\tframes\ttorn\trejected\tviolations\t")
	for _, o := range c.Operators {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t\n", o.Name, o.Mutants, o.Frames, o.Torn, o.Rejected, o.Violations)
	}
	m, f := c.Total()
	fmt.Fprintf(tw, "total\t%d\t\t\t\t%d\t\n", m, f)
	tw.Flush()
	if len(c.Failures) > 0 {
		sort.SliceStable(c.Failures, func(i, j int) bool { return c.Failures[i].Index < c.Failures[j].Index })
		for _, f := range c.Failures[:min(5, len(c.Failures))] {
			fmt.Fprintf(w, "mutant %d (%s): %s\n", f.Index, f.Operator, strings.Join(f.Violations[:min(2, len(f.Violations))], "; "))
		}
	}
}
