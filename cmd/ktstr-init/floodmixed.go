package main

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// floodMixedScenario floods the bulk port, for the run's duration, with
// every tag of the gate table intact and torn (bad crc, pad ≠ 0),
// unknown tags, forged host→guest tags, and oversize headers followed
// by garbage, each kind repeated in a long run before the next kind. The
// stream is pre-built from a fixed seed into a few large buffers that
// are written whole, over and over. A SCEN summary then says what was
// written, and an SCDX with status 0 makes the host stop the run.
//
// Three tags are only ever sent torn, never intact: SNRQ (the host would
// freeze the guest for a snapshot per frame), SCDX (the first would stop
// the run; the intact one closes the scenario) and CRSH (the run would
// end as a guest crash).
func floodMixedScenario() scenario {
	return scenario{
		name: "flood-mixed",
		help: "long runs of every tag intact and torn, unknown and forged tags, oversize headers and garbage, for the duration; SCEN counts them, then SCDX stops the run",
		run:  runFloodMixed,
	}
}

// floodMixedSeed seeds the generator the flood-mixed stream is built
// from, so every run writes the same bytes.
const floodMixedSeed = 0x6b74737472 // "ktstr"

// Sizes of the flood-mixed stream.
const (
	// floodMixedRunBytes is about how many bytes one run of repeats
	// takes: a unit is repeated floodMixedRunBytes/len(unit) times,
	// clamped to [floodMixedMinRepeat, floodMixedMaxRepeat], so a run
	// of 16-byte frames is thousands of frames long.
	floodMixedRunBytes  = 64 << 10
	floodMixedMinRepeat = 8
	floodMixedMaxRepeat = 4096
	// floodMixedBufferMax caps one buffer, i.e. one write; buffers are
	// cut between units, so each starts and ends on a frame boundary.
	floodMixedBufferMax = 1 << 20
	// floodMixedPayloadMax caps every payload and garbage run.
	floodMixedPayloadMax = 4 << 10
)

// floodMixedNeverIntact are the tags flood-mixed only sends torn (see
// floodMixedScenario).
var floodMixedNeverIntact = map[wire.Tag]bool{
	wire.SnapshotRequest: true,
	wire.SchedExit:       true,
	wire.Crash:           true,
}

// floodCounts is what the host's Assembler makes of some flood bytes.
type floodCounts struct {
	Frames      int64 // frames framed, torn ones included
	Oversize    int64 // headers declaring more than wire.MaxPayload
	ResyncBytes int64 // bytes dropped resynchronising after them
}

func (c *floodCounts) add(d floodCounts, times int64) {
	c.Frames += d.Frames * times
	c.Oversize += d.Oversize * times
	c.ResyncBytes += d.ResyncBytes * times
}

// floodKind is one unit of the flood-mixed stream, repeated in a run: a
// frame, an SCPP/SCRR pair, or an oversize header, its garbage and the
// intact frame the host resynchronises on.
type floodKind struct {
	what   string
	unit   []byte
	counts floodCounts
}

// floodRun is a floodKind repeated.
type floodRun struct {
	kind   floodKind
	repeat int
}

// floodMixedPlan is the flood-mixed stream: the buffers written in
// order, over and over, and what the host's Assembler makes of each.
type floodMixedPlan struct {
	runs    []floodRun
	buffers [][]byte
	counts  []floodCounts // counts[i] is for buffers[i]
}

// floodMixedKinds returns every kind of unit of the flood-mixed stream,
// in a fixed order. addrs is the KADR payload its intact KADR frames
// carry (the first one reaching the host is accepted).
func floodMixedKinds(rng *rand.Rand, addrs wire.KernelAddrsPayload) []floodKind {
	var kinds []floodKind
	single := func(what string, b []byte) {
		kinds = append(kinds, floodKind{what: what, unit: b, counts: floodCounts{Frames: 1}})
	}
	for _, tag := range wire.Tags() {
		p := floodPayload(rng, tag, addrs)
		name := tag.String()
		switch {
		case floodMixedNeverIntact[tag]:
		case tag == wire.WatchdogPause:
			// A pause always followed by its resume, so the run never
			// leaves the host's watchdog paused.
			pair := wire.AppendFrame(nil, wire.WatchdogPause, nil)
			pair = wire.AppendFrame(pair, wire.WatchdogResume, nil)
			kinds = append(kinds, floodKind{what: "intact SCPP/SCRR pair", unit: pair, counts: floodCounts{Frames: 2}})
		default:
			single("intact "+name, wire.AppendFrame(nil, tag, p))
		}
		single("torn (crc) "+name, frame(tag, p, wire.Checksum(p)^0x5a5a5a5a, 0))
		single("torn (pad) "+name, frame(tag, p, wire.Checksum(p), rng.Uint32()|1))
	}
	for _, t := range []wire.Tag{0x5a5a5a5a, 0, 1, 0xffffffff, mustTag("scdx")} {
		p := floodText(rng, rng.IntN(65))
		single("intact unknown "+t.String(), wire.AppendFrame(nil, t, p))
	}
	p := floodText(rng, 32)
	single("torn (crc) unknown ZZZY", frame(mustTag("ZZZY"), p, wire.Checksum(p)^1, 0))

	// Oversize headers followed by garbage and one intact frame. Not a
	// byte of the header's len, crc or pad nor of the garbage is an
	// upper-case letter, and every tag of the gate table is four of
	// them, so no 16 bytes starting past the header's first byte and
	// before the intact frame look like a plausible header: the host
	// drops exactly the header and the garbage and frames the intact
	// frame. (Zero bytes would not do: a run of them is no plausible
	// header either, but they add nothing the high bytes do not.)
	for i, o := range []struct {
		tag     wire.Tag
		len     uint32
		pad     bool
		garbage int
	}{
		{wire.Stdout, wire.MaxPayload + 1, false, 1},
		{wire.SchedExit, 0x80808080, false, 15},
		{wire.SnapshotRequest, 0xffffffff, true, 16},
		{mustTag("ZZZZ"), 2 * wire.MaxPayload, false, 255},
		{wire.Stimulus, wire.MaxPayload + 1, true, floodMixedPayloadMax},
	} {
		h := wire.Header{Tag: o.tag, Len: o.len, CRC: rng.Uint32() | 0x80808080}
		if o.pad {
			h.Pad = rng.Uint32() | 0x80808080
		}
		b := wire.AppendHeader(nil, h)
		for range o.garbage {
			b = append(b, byte(rng.Uint32())|0x80)
		}
		b = wire.AppendFrame(b, wire.Stimulus, []byte(`{"flood-mixed":"resynced","oversize":`+strconv.Itoa(i)+`}`))
		kinds = append(kinds, floodKind{
			what:   "oversize " + o.tag.String() + " header and garbage",
			unit:   b,
			counts: floodCounts{Frames: 1, Oversize: 1, ResyncBytes: int64(wire.HeaderSize + o.garbage)},
		})
	}
	return kinds
}

// floodPayload returns the payload flood-mixed sends under tag: one of
// the right shape where the gate table checks the shape (so the intact
// frames reach the tag's own gate), text of a seeded size up to
// floodMixedPayloadMax for the plain verdict tags.
func floodPayload(rng *rand.Rand, tag wire.Tag, addrs wire.KernelAddrsPayload) []byte {
	le32 := binary.LittleEndian.AppendUint32
	switch tag {
	case wire.SysRdy, wire.WatchdogPause, wire.WatchdogResume:
		return nil
	case wire.SnapshotRequest:
		r := wire.NewSnapshotRequest(1, wire.SnapshotCapture, "flood-mixed")
		b, _ := r.AppendBinary(nil)
		return b
	case wire.KernelOpRequest:
		r := wire.KernelOpRequestPayload{RequestID: 1, Op: 1, Arg: 0x1000, Arg2: 8}
		b, _ := r.AppendBinary(nil)
		return b
	case wire.KernelAddrs:
		b, _ := addrs.AppendBinary(nil)
		return b
	case wire.Step:
		return binary.LittleEndian.AppendUint16(nil, 0xf1)
	case wire.Lifecycle:
		return []byte{lifeRunning}
	case wire.SchedExit, wire.Exit:
		return le32(nil, 0)
	case wire.ScenarioStart:
		return []byte(`{"scenario":"flood-mixed","filler":true}`)
	case wire.Scenario, wire.TestResult:
		// Never the summary: no "frames" field.
		return []byte(`{"scenario":"flood-mixed","filler":true}`)
	case wire.SnapshotReply:
		r := wire.NewSnapshotReply(1, wire.SnapshotOK, "forged by the guest (flood-mixed)")
		b, _ := r.AppendBinary(nil)
		return b
	case wire.KernelOpReply:
		return le32(le32(le32(le32(nil, 1), 0), 0), 0)
	case wire.Crash:
		return []byte("flood-mixed: a torn CRSH, never an intact one")
	}
	sizes := [...]int{0, 1, 16, 100, 512, floodMixedPayloadMax}
	return floodText(rng, sizes[rng.IntN(len(sizes))])
}

// floodText returns n bytes of seeded printable text.
func floodText(rng *rand.Rand, n int) []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 .,:-\n"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return b
}

func mustTag(s string) wire.Tag {
	t, ok := wire.ParseTag(s)
	if !ok {
		panic("bad tag " + s)
	}
	return t
}

// buildFloodMixed builds the flood-mixed stream: every kind, in a seeded
// order, repeated in a run, cut into buffers of at most
// floodMixedBufferMax bytes between units.
func buildFloodMixed(addrs wire.KernelAddrsPayload) floodMixedPlan {
	rng := rand.New(rand.NewPCG(floodMixedSeed, floodMixedSeed>>8))
	kinds := floodMixedKinds(rng, addrs)
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	var p floodMixedPlan
	var cur []byte
	var cnt floodCounts
	cut := func() {
		if len(cur) > 0 {
			p.buffers = append(p.buffers, cur)
			p.counts = append(p.counts, cnt)
		}
		cur, cnt = nil, floodCounts{}
	}
	for _, k := range kinds {
		r := floodRun{kind: k, repeat: min(max(floodMixedRunBytes/len(k.unit), floodMixedMinRepeat), floodMixedMaxRepeat)}
		p.runs = append(p.runs, r)
		for range r.repeat {
			if len(cur)+len(k.unit) > floodMixedBufferMax {
				cut()
			}
			if cur == nil {
				cur = make([]byte, 0, floodMixedBufferMax)
			}
			cur = append(cur, k.unit...)
			cnt.add(k.counts, 1)
		}
	}
	cut()
	return p
}

func runFloodMixed(ctx context.Context, a *agent) (int, error) {
	if err := a.sendJSON(wire.ScenarioStart, map[string]any{"scenario": "flood-mixed", "t_ns": a.since()}); err != nil {
		return 1, err
	}
	plan := buildFloodMixed(kernelAddrs())
	start := time.Now()
	deadline := start.Add(a.cfg.Duration)
	done := func() bool { return ctx.Err() != nil || !time.Now().Before(deadline) }
	var c floodCounts
	var written int64
	// The first pass is always written whole, so every kind reaches the
	// host however short the duration; later passes stop at the first
	// buffer boundary past the deadline.
pass:
	for first := true; ; first = false {
		for i, b := range plan.buffers {
			if err := a.writeRaw(b); err != nil {
				return 1, err
			}
			written += int64(len(b))
			c.add(plan.counts[i], 1)
			if !first && done() {
				break pass
			}
		}
		if done() {
			break
		}
	}
	return endFlood(a, floodSummary{
		Scenario:    "flood-mixed",
		Frames:      c.Frames,
		Bytes:       written,
		ElapsedNS:   time.Since(start).Nanoseconds(),
		Oversize:    c.Oversize,
		ResyncBytes: c.ResyncBytes,
	})
}
