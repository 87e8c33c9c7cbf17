package dispatch

// The harness of FuzzSessionPastBudget. The target also builds with
// go-118-fuzz-build (.clusterfuzzlite/build.sh), which compiles this file
// alone as part of package dispatch, its testing import rewritten: so it
// is an internal test, and what it calls beyond the package is here
// (docs/fuzzing.md, "What a target needs to build both ways").

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/internal/libfuzzer"
)

// FuzzSessionPastBudget feeds a stream to a Session whose verdict bucket
// is already full, split two ways, and checks the budget's promises on
// every input: the bucket never grows past MaxVerdicts; every accepted
// verdict frame is counted as dropped and folded, in stream order, into
// verdicts_dropped_sha256, which equals the digest computed directly
// from the frames the Session handed back; internal and rejected frames
// are not; and the split does not matter.
func FuzzSessionPastBudget(f *testing.F) {
	// Under libFuzzer this whole function runs once per input and f.Add
	// does nothing (the seeds reach it as a seed corpus instead), so the
	// seeds are built only where they are used.
	if libfuzzer.Enabled() {
		var seed []byte
		for _, tag := range wire.Tags() {
			seed = wire.AppendFrame(seed, tag, []byte("payload of "+tag.String()))
		}
		seed = wire.AppendFrame(seed, wire.SchedExit, []byte{1, 0, 0, 0})
		seed = wire.AppendFrame(seed, wire.Stdout, bytes.Repeat([]byte{'x'}, 5000))
		torn := wire.AppendFrame(nil, wire.Stimulus, []byte("torn"))
		torn[len(torn)-1] ^= 1
		f.Add(append(seed, torn...), uint16(7))
		f.Add(bytes.Repeat(wire.AppendFrame(nil, wire.Stimulus, nil), 300), uint16(1))
		f.Add([]byte{}, uint16(0))
	}

	a, b := NewSession(), NewSession()
	export := libfuzzer.Exporter()
	f.Fuzz(func(t *testing.T, stream []byte, step uint16) {
		if export != nil {
			export(t, stream, step)
		}
		a.Reset()
		b.Reset()
		fillVerdicts(a)
		fillVerdicts(b)
		want := sha256.New()
		var accepted uint64
		a.Feed(0, stream, func(m *Message, r Result) {
			if r.Accepted() && m.Tag.Class() == wire.Verdict {
				accepted++
				want.Write(binary.LittleEndian.AppendUint32(nil, uint32(m.Tag)))
				want.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(m.Payload))))
				want.Write(m.Payload)
			}
		})
		n := 1 + int(step)
		for i := 0; i < len(stream); i += n {
			b.Feed(int64(i), stream[i:min(i+n, len(stream))], nil)
		}
		oa, ob := a.Finish(), b.Finish()
		var wantSum Digest
		want.Sum(wantSum[:0])
		switch {
		case len(oa.Verdicts) != MaxVerdicts || len(ob.Verdicts) != MaxVerdicts:
			t.Fatalf("bucket holds %d and %d entries, the budget is %d", len(oa.Verdicts), len(ob.Verdicts), MaxVerdicts)
		case oa.VerdictsDropped != accepted:
			t.Fatalf("%d verdicts accepted, %d counted as dropped", accepted, oa.VerdictsDropped)
		case oa.VerdictsDroppedSHA256 != wantSum:
			t.Fatalf("dropped digest %s, the frames handed back give %s", oa.VerdictsDroppedSHA256, wantSum)
		case oa.VerdictsDropped != ob.VerdictsDropped || oa.VerdictsDroppedSHA256 != ob.VerdictsDroppedSHA256:
			t.Fatalf("split into %d-byte pieces: %d dropped (%s), whole: %d (%s)", n, ob.VerdictsDropped, ob.VerdictsDroppedSHA256, oa.VerdictsDropped, oa.VerdictsDroppedSHA256)
		}
	})
}

// fillVerdicts makes s's verdict bucket full, as MaxVerdicts accepted
// verdict frames would, without feeding them: a fuzz target that starts
// every input past the budget cannot afford 65536 frames an execution.
// (Session.Reset keeps the bucket's array, so only the first fill of a
// Session allocates.)
func fillVerdicts(s *Session) {
	if cap(s.s.out.Verdicts) < MaxVerdicts {
		s.s.out.Verdicts = make([]Verdict, MaxVerdicts)
	}
	s.s.out.Verdicts = s.s.out.Verdicts[:MaxVerdicts]
}
