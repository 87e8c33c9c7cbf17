package tracetool

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"strings"
	"time"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/replay"
)

// Defaults of MinimizeOptions.
const (
	// DefaultMaxTries bounds the replays one minimization runs.
	DefaultMaxTries = 200000
	// DefaultMaxByteUnits is the longest stream the byte phase works
	// on: it costs about four replays per byte when nothing more can go.
	DefaultMaxByteUnits = 16 << 10
	// maxRounds bounds the rounds of the four phases.
	maxRounds = 8
	// maxCache bounds the candidates remembered (about 80 bytes each);
	// past it the memory starts afresh.
	maxCache = 1 << 18
	// stepsPerTry bounds the candidates met again, per replay allowed.
	stepsPerTry = 16
)

// MinimizeOptions bounds a minimization.
type MinimizeOptions struct {
	MaxTries     int // 0: DefaultMaxTries
	MaxByteUnits int // 0: DefaultMaxByteUnits; < 0 skips the byte phase
}

// Size is how big a stream is, in the units the minimizer removes.
type Size struct {
	Deliveries int   `json:"deliveries"` // TX deliveries
	Frames     int64 `json:"frames"`     // frames a Session finds, torn ones included
	Bytes      int   `json:"bytes"`      // TX bytes
}

// String renders the size as the minimizer's report prints it.
func (s Size) String() string {
	return fmt.Sprintf("%d deliveries, %d frames, %d bytes", s.Deliveries, s.Frames, s.Bytes)
}

// PhaseResult is what one phase of one round did.
type PhaseResult struct {
	Round int    `json:"round"`          // from 1
	Phase string `json:"phase"`          // deliveries, frames, bytes or joins
	Units int    `json:"units"`          // units it started with
	Kept  int    `json:"kept"`           // units it kept
	Tries int    `json:"tries"`          // replays it ran
	Note  string `json:"note,omitempty"` // why the phase did not run, when it did not
}

// MinimizeResult is a minimization's result.
type MinimizeResult struct {
	Stream *replay.Stream `json:"-"`      // the minimized stream
	Before Size           `json:"before"` // the input's size
	After  Size           `json:"after"`  // the minimized stream's size
	// Tries counts the candidates replayed (the property checked), the
	// baseline not included; CacheHits the candidates met again and not
	// replayed.
	Tries     int           `json:"tries"`
	CacheHits int           `json:"cache_hits"` // candidates met again, answered from the cache
	Elapsed   time.Duration `json:"elapsed_ns"` // wall time of the search
	Phases    []PhaseResult `json:"phases"`     // every phase of every round, in order
	// Minimal says the search ran to its end, a last round removing
	// nothing: removing any one more delivery, frame or byte loses the
	// property (bytes only where the byte phase ran: see BytesSkipped).
	// False when MaxTries stopped it.
	Minimal bool `json:"minimal"`
	// BytesSkipped says the last round's byte phase did not run: the
	// stream was longer than MaxByteUnits.
	BytesSkipped bool `json:"bytes_skipped"`
}

// Minimize reduces s, which must show c's property (c.Baseline returned
// true), to a stream that still shows it and loses it when any one
// more unit is removed. It runs delta debugging (ddmin) over four kinds
// of unit in turn, and repeats the four while a round removes
// something:
//
//  1. deliveries: whole deliveries are dropped;
//  2. frames: the stream is cut at the frames the Assembler finds
//     (intact or torn) and at the bytes between them (resync garbage,
//     a truncated tail), and such pieces are dropped;
//  3. bytes: single bytes are dropped (on streams of at most
//     MaxByteUnits bytes);
//  4. joins: the boundaries between deliveries are dropped, joining
//     neighbours into one delivery at the later one's time.
//
// Every byte kept keeps the time of the delivery it came in, so frames
// keep their clocks. Every candidate is replayed through c (a
// dispatch.Session, and replay.CheckStream for violations); candidates
// met again are not replayed twice.
func Minimize(s *replay.Stream, c *Checker, opt MinimizeOptions) *MinimizeResult {
	start := time.Now()
	if opt.MaxTries <= 0 {
		opt.MaxTries = DefaultMaxTries
	}
	if opt.MaxByteUnits == 0 {
		opt.MaxByteUnits = DefaultMaxByteUnits
	}
	m := &minimizer{c: c, seen: map[[sha256.Size]byte]bool{}, maxTries: opt.MaxTries}
	res := &MinimizeResult{Before: SizeOf(s)}
	cur := s
	m.seen[streamKey(s)] = true
	settled := false
	for round := 1; round <= maxRounds && !m.stopped(); round++ {
		res.BytesSkipped = false
		before := SizeOf(cur)
		for _, ph := range []string{"deliveries", "frames", "bytes", "joins"} {
			if m.stopped() {
				break
			}
			pr := PhaseResult{Round: round, Phase: ph}
			t0 := c.Runs()
			var units int
			var build func(keep []int) *replay.Stream
			switch ph {
			case "deliveries":
				units, build = cur.Deliveries(), deliveriesBuilder(cur)
			case "frames":
				segs := frameSegments(cur)
				units, build = len(segs), segmentsBuilder(cur, segs)
			case "bytes":
				if opt.MaxByteUnits < 0 || len(cur.Data) > opt.MaxByteUnits {
					pr.Note = fmt.Sprintf("skipped: %d bytes left, over the byte phase's bound of %d", len(cur.Data), max(opt.MaxByteUnits, 0))
					res.Phases = append(res.Phases, pr)
					res.BytesSkipped = true
					continue
				}
				units, build = len(cur.Data), bytesBuilder(cur)
			case "joins":
				units, build = max(cur.Deliveries()-1, 0), joinsBuilder(cur)
			}
			m.gen++ // a new set of units: keys of earlier phases do not apply
			keep := ddmin(units, func(keep []int) bool { return m.test(keep, build) }, m.stopped)
			if len(keep) < units {
				cur = build(keep)
			}
			pr.Units, pr.Kept, pr.Tries = units, len(keep), c.Runs()-t0
			res.Phases = append(res.Phases, pr)
		}
		if after := SizeOf(cur); after == before && !m.stopped() {
			settled = true
			break
		}
	}
	res.Stream = cur
	res.After = SizeOf(cur)
	res.Tries = m.runs
	res.CacheHits = m.hits
	res.Minimal = settled
	res.Elapsed = time.Since(start)
	return res
}

type minimizer struct {
	c        *Checker
	seen     map[[sha256.Size]byte]bool // candidates replayed, and whether they passed
	hits     int
	maxTries int
	runs     int
	gen      uint64 // which phase's units a keep set indexes
}

func (m *minimizer) stopped() bool {
	return m.runs >= m.maxTries || m.runs+m.hits >= stepsPerTry*m.maxTries
}

// test replays the candidate that keeps the given units, unless it was
// replayed before. A candidate is known by its phase and keep set (met
// again, it is not even built) and by its content (its bytes and
// deliveries with their times: dropping either of two equal bytes gives
// one candidate, replayed once).
func (m *minimizer) test(keep []int, build func([]int) *replay.Stream) bool {
	k := keepKey(m.gen, keep)
	if ok, found := m.seen[k]; found {
		m.hits++
		return ok
	}
	if len(m.seen) >= maxCache {
		clear(m.seen)
	}
	cand := build(keep)
	ck := streamKey(cand)
	if ok, found := m.seen[ck]; found {
		m.hits++
		m.seen[k] = ok
		return ok
	}
	m.runs++
	ok := m.c.Check(cand)
	m.seen[k], m.seen[ck] = ok, ok
	return ok
}

// streamKey identifies a candidate by its content: its bytes and its
// deliveries with their times.
func streamKey(s *replay.Stream) [sha256.Size]byte {
	h := sha256.New()
	var b [16]byte
	h.Write([]byte("stream"))
	for i := range s.Deliveries() {
		binary.LittleEndian.PutUint64(b[:], uint64(s.Starts[i]))
		binary.LittleEndian.PutUint64(b[8:], uint64(s.Times[i]))
		h.Write(b[:])
	}
	binary.LittleEndian.PutUint64(b[:], uint64(len(s.Data)))
	h.Write(b[:8])
	h.Write(s.Data)
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// keepKey identifies a candidate of one phase by the units it keeps,
// written as runs of consecutive units (ddmin's subsets are few runs).
func keepKey(gen uint64, keep []int) [sha256.Size]byte {
	b := make([]byte, 0, 64)
	b = append(b, "keep"...)
	b = binary.LittleEndian.AppendUint64(b, gen)
	for i := 0; i < len(keep); {
		j := i + 1
		for j < len(keep) && keep[j] == keep[j-1]+1 {
			j++
		}
		b = binary.AppendUvarint(b, uint64(keep[i]))
		b = binary.AppendUvarint(b, uint64(j-i))
		i = j
	}
	return sha256.Sum256(b)
}

// SizeOf measures s: its deliveries, the frames a Session finds in it
// and its bytes.
func SizeOf(s *replay.Stream) Size {
	sess := dispatch.NewSession()
	for i := range s.Deliveries() {
		sess.Feed(s.Times[i], s.Delivery(i), nil)
	}
	sess.Finish()
	return Size{Deliveries: s.Deliveries(), Frames: sess.Stats().Frames, Bytes: len(s.Data)}
}

func deliveriesBuilder(s *replay.Stream) func([]int) *replay.Stream {
	return func(keep []int) *replay.Stream {
		out := &replay.Stream{}
		for _, i := range keep {
			out.Append(s.Times[i], s.Delivery(i))
		}
		return out
	}
}

// segment is a byte range [a, b) of a stream.
type segment struct{ a, b int }

// frameSegments cuts s at the frames a Session finds in it: each frame
// (header and payload) is a segment, and so is each run of bytes
// between frames (dropped by a resync) and the truncated tail.
func frameSegments(s *replay.Stream) []segment {
	var segs []segment
	pos := 0
	sess := dispatch.NewSession()
	fn := func(m *dispatch.Message, _ dispatch.Result) {
		a := int(m.Offset)
		if a > pos {
			segs = append(segs, segment{pos, a})
		}
		pos = a + wire.HeaderSize + len(m.Payload)
		segs = append(segs, segment{a, pos})
	}
	for i := range s.Deliveries() {
		sess.Feed(s.Times[i], s.Delivery(i), fn)
	}
	if pos < len(s.Data) {
		segs = append(segs, segment{pos, len(s.Data)})
	}
	return segs
}

func segmentsBuilder(s *replay.Stream, segs []segment) func([]int) *replay.Stream {
	return func(keep []int) *replay.Stream {
		// Kept segments that touch form runs, copied a delivery at a time.
		var runs []segment
		n := 0
		for _, k := range keep {
			sg := segs[k]
			n += sg.b - sg.a
			if l := len(runs); l > 0 && runs[l-1].b == sg.a {
				runs[l-1].b = sg.b
				continue
			}
			runs = append(runs, sg)
		}
		out := &replay.Stream{Data: make([]byte, 0, n)}
		from, j := -1, 0 // the source delivery of out's last delivery; the current one
		for _, r := range runs {
			a, b := r.a, r.b
			for a < b {
				for j+1 < s.Deliveries() && s.Starts[j+1] <= int64(a) {
					j++
				}
				e := b
				if j+1 < s.Deliveries() {
					e = min(b, int(s.Starts[j+1]))
				}
				if from != j {
					out.Starts = append(out.Starts, int64(len(out.Data)))
					out.Times = append(out.Times, s.Times[j])
					from = j
				}
				out.Data = append(out.Data, s.Data[a:e]...)
				a = e
			}
		}
		return out
	}
}

func bytesBuilder(s *replay.Stream) func([]int) *replay.Stream {
	segs := make([]segment, len(s.Data))
	for i := range segs {
		segs[i] = segment{i, i + 1}
	}
	return segmentsBuilder(s, segs)
}

// joinsBuilder's unit i is the boundary before delivery i+1; dropping it
// joins that delivery to the one before, at the later delivery's time.
func joinsBuilder(s *replay.Stream) func([]int) *replay.Stream {
	return func(keep []int) *replay.Stream {
		out := &replay.Stream{}
		if s.Deliveries() == 0 {
			return out
		}
		out.Append(s.Times[0], s.Delivery(0))
		k := 0
		for i := 1; i < s.Deliveries(); i++ {
			if k < len(keep) && keep[k] == i-1 {
				k++
				out.Append(s.Times[i], s.Delivery(i))
				continue
			}
			out.Data = append(out.Data, s.Delivery(i)...)
			out.Times[len(out.Times)-1] = s.Times[i]
		}
		return out
	}
}

// Note says, for the minimized trace's metadata, what was minimized and
// how far.
func (r *MinimizeResult) Note(prop Property) string {
	minimal := "1-minimal"
	switch {
	case !r.Minimal:
		minimal = "stopped at the tries bound, not minimal"
	case r.BytesSkipped:
		minimal = "1-minimal in deliveries and frames, bytes not tried"
	}
	return fmt.Sprintf("minimized until %s: deliveries %d→%d, frames %d→%d, bytes %d→%d in %d tries (%s)",
		prop, r.Before.Deliveries, r.After.Deliveries, r.Before.Frames, r.After.Frames, r.Before.Bytes, r.After.Bytes, r.Tries, minimal)
}

// MinimizedMeta returns the metadata of the minimized trace: the
// original's, with Extra noting where it came from, the property and
// the reduction, and what was left out.
func MinimizedMeta(meta capture.Meta, from string, prop Property, r *MinimizeResult, keptOutcome bool) capture.Meta {
	extra := maps.Clone(meta.Extra)
	if extra == nil {
		extra = map[string]string{}
	}
	extra["minimized_from"] = from
	extra["minimized_until"] = prop.String()
	extra["minimized"] = r.Note(prop)
	left := []string{"RX deliveries", "events"}
	if !keptOutcome {
		left = append(left, "the END record's outcome (the minimized stream no longer produces it)")
	}
	extra["minimized_dropped"] = strings.Join(left, ", ")
	meta.Extra = extra
	return meta
}

// WriteTrace writes s as a trace: meta, s's deliveries as TX DATA
// records on the bulk port, and end when it is not nil.
func WriteTrace(dst io.Writer, s *replay.Stream, meta capture.Meta, end *capture.End) error {
	w, err := capture.NewWriter(dst, meta)
	if err != nil {
		return err
	}
	for i := range s.Deliveries() {
		if err := w.WriteData(capture.TX, capture.BulkPort, s.Times[i], s.Delivery(i)); err != nil {
			w.Close()
			return err
		}
	}
	if end != nil {
		if err := w.WriteEnd(*end); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}
