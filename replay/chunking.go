package replay

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
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

// splitter cuts deliveries into feeds per a Chunking. Random chunking
// both splits deliveries and, by holding pieces back, merges across
// delivery boundaries.
type splitter struct {
	c    Chunking
	rng  *rand.Rand
	held []byte // random: bytes held back to merge with the next delivery
}

func newSplitter(c Chunking) *splitter {
	return &splitter{c: c, rng: rand.New(rand.NewPCG(c.Seed, 0x6b74737472))}
}

// split calls feed with the pieces of one delivery. For ChunkWhole it
// feeds nothing; the caller feeds the whole stream at the end.
func (sp *splitter) split(b []byte, feed func([]byte)) {
	switch sp.c.Kind {
	case ChunkRecorded:
		feed(b)
	case ChunkBytes:
		for i := range b {
			feed(b[i : i+1])
		}
	case ChunkRandom:
		if len(sp.held) > 0 {
			b = append(sp.held, b...)
			sp.held = nil
		}
		for len(b) > 0 {
			n := 1 + sp.rng.IntN(min(len(b), 1+sp.rng.IntN(4096)))
			if n == len(b) && sp.rng.IntN(4) == 0 {
				// Hold the tail back: it is merged with the next delivery.
				sp.held = append([]byte(nil), b...)
				return
			}
			feed(b[:n])
			b = b[n:]
		}
	}
}

// flush feeds anything held back.
func (sp *splitter) flush(feed func([]byte)) {
	if len(sp.held) > 0 {
		feed(sp.held)
		sp.held = nil
	}
}
