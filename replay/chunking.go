package replay

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/ktstr/ktstr/dispatch"
)

// Chunking says how replay splits the recorded bytes into feeds. The
// outcome must not depend on it (invariant 6); the clock always follows
// the recorded deliveries.
type Chunking struct {
	Kind ChunkKind
	Seed uint64 // for ChunkRandom
}

// ChunkKind names a chunking strategy.
type ChunkKind int

// Chunking strategies.
const (
	ChunkRecorded ChunkKind = iota // one feed per recorded delivery
	ChunkWhole                     // the whole stream in one feed
	ChunkBytes                     // one feed per byte
	ChunkRandom                    // random splits within and across deliveries
)

// ParseChunking reads "recorded", "whole", "bytes" or "random:SEED".
func ParseChunking(s string) (Chunking, error) {
	switch {
	case s == "" || s == "recorded":
		return Chunking{Kind: ChunkRecorded}, nil
	case s == "whole":
		return Chunking{Kind: ChunkWhole}, nil
	case s == "bytes":
		return Chunking{Kind: ChunkBytes}, nil
	case strings.HasPrefix(s, "random:"):
		seed, err := strconv.ParseUint(strings.TrimPrefix(s, "random:"), 10, 64)
		if err != nil {
			return Chunking{}, fmt.Errorf("chunking %q: the seed must be an unsigned integer, e.g. random:42", s)
		}
		return Chunking{Kind: ChunkRandom, Seed: seed}, nil
	case s == "random":
		return Chunking{Kind: ChunkRandom, Seed: 1}, nil
	}
	return Chunking{}, fmt.Errorf("chunking %q: use recorded, whole, bytes or random:SEED", s)
}

// String returns the form ParseChunking reads.
func (c Chunking) String() string {
	switch c.Kind {
	case ChunkWhole:
		return "whole"
	case ChunkBytes:
		return "bytes"
	case ChunkRandom:
		return "random:" + strconv.FormatUint(c.Seed, 10)
	}
	return "recorded"
}

// splitter cuts deliveries into feeds per a Chunking and feeds them to
// an engine, each piece with the time of the delivery its bytes came
// from. Random chunking both splits deliveries and, by holding a tail
// back, joins it with the next delivery: that piece goes in with a mark
// for each delivery, so every frame keeps its delivery's time however
// the bytes are cut. ChunkWhole is not a splitter's: the caller feeds the
// whole stream, joined, itself.
type splitter struct {
	c      Chunking
	e      *engine
	rng    *rand.Rand
	held   []byte // random: a tail held back to join with the next delivery
	heldT  int64  // its delivery's time
	joined []byte
	marks  [2]dispatch.Mark
}

func newSplitter(c Chunking, e *engine) *splitter {
	return &splitter{c: c, e: e, rng: rand.New(rand.NewPCG(c.Seed, 0x6b74737472))}
}

// split feeds the pieces of one delivery of b received at t.
func (sp *splitter) split(t int64, b []byte) {
	switch sp.c.Kind {
	case ChunkRecorded:
		sp.e.feed(t, b)
	case ChunkBytes:
		for i := range b {
			sp.e.feed(t, b[i:i+1])
		}
	case ChunkRandom:
		boundary := 0 // bytes of b[...] that came from the held tail
		if len(sp.held) > 0 {
			sp.joined = append(append(sp.joined[:0], sp.held...), b...)
			boundary, b = len(sp.held), sp.joined
			sp.held = sp.held[:0]
		}
		off := 0
		for off < len(b) {
			n := 1 + sp.rng.IntN(min(len(b)-off, 1+sp.rng.IntN(4096)))
			if off+n == len(b) && off >= boundary && sp.rng.IntN(4) == 0 {
				// Hold the tail back: it joins the next delivery.
				sp.held, sp.heldT = append(sp.held[:0], b[off:]...), t
				return
			}
			switch piece := b[off : off+n]; {
			case off+n <= boundary:
				sp.e.feed(sp.heldT, piece)
			case off >= boundary:
				sp.e.feed(t, piece)
			default:
				sp.marks = [2]dispatch.Mark{{Off: 0, Time: sp.heldT}, {Off: boundary - off, Time: t}}
				sp.e.feedJoined(piece, sp.marks[:])
			}
			off += n
		}
	}
}

// flush feeds anything held back.
func (sp *splitter) flush() {
	if len(sp.held) > 0 {
		sp.e.feed(sp.heldT, sp.held)
		sp.held = sp.held[:0]
	}
}
