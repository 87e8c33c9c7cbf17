package tracetool

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/replay"
)

const hostile = "../corpus/real/hostile.zst"

// minimize runs the minimizer on s until prop, requiring that s shows it.
func minimize(t testing.TB, s *replay.Stream, recorded *dispatch.Outcome, prop string) (*MinimizeResult, Property) {
	t.Helper()
	p, err := ParseProperty(prop)
	require.NoError(t, err)
	c := NewChecker(p, recorded)
	ok, why := c.Baseline(s)
	require.True(t, ok, "%s: %s", prop, why)
	return Minimize(s, c, MinimizeOptions{}), p
}

// oneLess lists every stream one unit smaller than s: less one
// delivery, one frame segment, or one byte.
func oneLess(s *replay.Stream) []*replay.Stream {
	var out []*replay.Stream
	all := func(n int) [][]int {
		var ks [][]int
		for skip := range n {
			var k []int
			for i := range n {
				if i != skip {
					k = append(k, i)
				}
			}
			ks = append(ks, k)
		}
		return ks
	}
	for _, k := range all(s.Deliveries()) {
		out = append(out, deliveriesBuilder(s)(k))
	}
	segs := frameSegments(s)
	for _, k := range all(len(segs)) {
		out = append(out, segmentsBuilder(s, segs)(k))
	}
	for _, k := range all(len(s.Data)) {
		out = append(out, bytesBuilder(s)(k))
	}
	return out
}

// TestMinimizeHostileToOneFrame: the checked-in hostile run (508 frames
// in 57 deliveries) minimizes, for each reject reason, to the frames the
// reason needs: one frame, except a one-shot repeat (the first SRDY or
// KADR and its repeat) and overflow (64 accepted SNRQ and the 65th). The
// result shows the reason, loses it when any one more delivery, frame
// or byte goes, and takes well under a second.
func TestMinimizeHostileToOneFrame(t *testing.T) {
	l := load(t, hostile)
	tests := []struct {
		prop   string
		frames int64
	}{
		{"reject=crc", 1},
		{"reject=pad", 1},
		{"reject=unknown_tag", 1},
		{"reject=forged_tag", 1},
		{"reject=shape", 1},
		{"reject=out_of_order", 1},
		{"reject=oneshot_repeat", 2},
		{"reject=overflow", 65},
		{"sys_rdy", 1},
		{"tag=TEST", 1},
		{"sys_rdy,reject=crc", 2},
	}
	for _, tt := range tests {
		t.Run(tt.prop, func(t *testing.T) {
			r, p := minimize(t, l.Stream, nil, tt.prop)
			t.Logf("%s → %s in %d tries (%d met again), %v", r.Before, r.After, r.Tries, r.CacheHits, r.Elapsed)
			assert.Equal(t, tt.frames, r.After.Frames)
			assert.Equal(t, 1, r.After.Deliveries)
			assert.True(t, r.Minimal)
			assert.Less(t, r.Elapsed, 10*time.Second, "target: under 10 s")
			c := NewChecker(p, nil)
			ok, why := c.Baseline(r.Stream)
			require.True(t, ok, "the result shows the property: %s", why)
			if len(r.Stream.Data) <= 200 {
				for _, s := range oneLess(r.Stream) {
					assert.False(t, c.Check(s), "one unit less still shows %s: not 1-minimal", tt.prop)
				}
			}
		})
	}
}

// TestMinimizeKeepsTimesAndWritesATrace: a minimized stream keeps the
// times its bytes were delivered at, and the trace written from it, with
// the metadata note, reads back and shows the property.
func TestMinimizeKeepsTimesAndWritesATrace(t *testing.T) {
	srdy := frame(wire.SysRdy, nil)
	s := &replay.Stream{}
	s.Append(100, frame(wire.Stimulus, []byte("a")))
	s.Append(200, cat(frame(wire.Stimulus, []byte("b")), srdy[:7]))
	s.Append(300, cat(srdy[7:], frame(wire.Stimulus, []byte("c"))))
	s.Append(400, torn(wire.Stimulus, []byte("d")))
	r, p := minimize(t, s, nil, "sys_rdy")
	assert.Equal(t, Size{Deliveries: 1, Frames: 1, Bytes: 16}, r.After)
	assert.Equal(t, srdy, r.Stream.Data)
	assert.Equal(t, []int64{300}, r.Stream.Times, "the SRDY completed in the delivery at 300, and still does")

	meta := MinimizedMeta(capture.Meta{Backend: "qemu", Scenario: "x", Extra: map[string]string{"k": "v"}}, "in.zst", p, r, false)
	assert.Equal(t, "qemu", meta.Backend)
	assert.Equal(t, "v", meta.Extra["k"])
	assert.Equal(t, "in.zst", meta.Extra["minimized_from"])
	assert.Equal(t, "sys_rdy", meta.Extra["minimized_until"])
	assert.Contains(t, meta.Extra["minimized"], "deliveries 4→1, frames 5→1, bytes 84→16")
	assert.Contains(t, meta.Extra["minimized_dropped"], "END record's outcome")

	var buf bytes.Buffer
	require.NoError(t, WriteTrace(&buf, r.Stream, meta, &capture.End{TimeNS: 500, Reason: "poweroff"}))
	back, err := Load(&buf, "min.zst", DefaultLoadLimit)
	require.NoError(t, err)
	assert.Equal(t, r.Stream.Data, back.Stream.Data)
	assert.Equal(t, r.Stream.Times, back.Stream.Times)
	assert.Equal(t, "poweroff", back.End.Reason)
	assert.Nil(t, back.Recorded)
	ok, why := NewChecker(p, back.Recorded).Baseline(back.Stream)
	assert.True(t, ok, why)
}

// TestMinimizeMismatch: a trace whose recorded outcome says step 9
// where replay gives 7 minimizes to the one STEP frame that makes replay
// say 7 again: the mismatch keeps its replayed value, so an empty stream
// (step 0, also ≠ 9) does not count.
func TestMinimizeMismatch(t *testing.T) {
	step7 := frame(wire.Step, []byte{7, 0})
	s := streamOf(frame(wire.SysRdy, nil), frame(wire.Stimulus, []byte("x")), step7, frame(wire.Exit, []byte{0}))
	rec := outcomeOf(s)
	rec.Step = 9
	r, _ := minimize(t, s, &rec, "mismatch")
	assert.Equal(t, step7, r.Stream.Data)
	assert.Equal(t, int64(1), r.After.Frames)
}

// TestMinimizeStopsAtMaxTries: the tries bound ends the search early
// with a stream that still shows the property, marked not minimal.
func TestMinimizeStopsAtMaxTries(t *testing.T) {
	l := load(t, hostile)
	p, err := ParseProperty("reject=overflow")
	require.NoError(t, err)
	c := NewChecker(p, nil)
	ok, _ := c.Baseline(l.Stream)
	require.True(t, ok)
	r := Minimize(l.Stream, c, MinimizeOptions{MaxTries: 20})
	assert.False(t, r.Minimal)
	assert.LessOrEqual(t, r.Tries, 20)
	assert.True(t, NewChecker(p, nil).Check(r.Stream), "what it stopped at still shows the property")
	assert.Less(t, r.After.Bytes, r.Before.Bytes, "and is smaller than the input")
}

// BenchmarkMinimizeHostile minimizes the checked-in hostile run to one
// reject reason (target: under 10 s, a single frame); it reports the
// tries and the frames left.
func BenchmarkMinimizeHostile(b *testing.B) {
	for _, prop := range []string{"reject=crc", "reject=forged_tag", "reject=overflow"} {
		b.Run(prop, func(b *testing.B) {
			l := load(b, filepath.FromSlash(hostile))
			p, err := ParseProperty(prop)
			require.NoError(b, err)
			var r *MinimizeResult
			for b.Loop() {
				c := NewChecker(p, nil)
				c.Baseline(l.Stream)
				r = Minimize(l.Stream, c, MinimizeOptions{})
			}
			b.ReportMetric(float64(r.Tries), "tries")
			b.ReportMetric(float64(r.After.Frames), "frames-left")
			b.ReportMetric(float64(r.After.Bytes), "bytes-left")
		})
	}
}

// TestMinimizeByteBound: a stream longer than the byte phase's bound is
// minimized in deliveries and frames only, and says so; within the bound
// (the control) the byte phase runs.
func TestMinimizeByteBound(t *testing.T) {
	s := streamOf(frame(wire.Stimulus, []byte("aaaa")), cat(frame(wire.SysRdy, nil), torn(wire.Stimulus, []byte("b"))))
	p, err := ParseProperty("sys_rdy")
	require.NoError(t, err)
	for _, tt := range []struct {
		bound   int
		skipped bool
	}{{8, true}, {0, false}} {
		c := NewChecker(p, nil)
		ok, _ := c.Baseline(s)
		require.True(t, ok)
		r := Minimize(s, c, MinimizeOptions{MaxByteUnits: tt.bound})
		assert.Equal(t, tt.skipped, r.BytesSkipped, "bound %d", tt.bound)
		assert.True(t, r.Minimal)
		assert.Equal(t, frame(wire.SysRdy, nil), r.Stream.Data)
		assert.Equal(t, tt.skipped, strings.Contains(r.Note(p), "bytes not tried"))
	}
}
