package dispatch_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// FuzzSessionPastBudget feeds a stream to a Session whose verdict bucket
// is already full, split two ways, and checks the budget's promises on
// every input: the bucket never grows past MaxVerdicts; every accepted
// verdict frame is counted as dropped and folded, in stream order, into
// verdicts_dropped_sha256, which equals the digest computed directly
// from the frames the Session handed back; internal and rejected frames
// are not; and the split does not matter.
func FuzzSessionPastBudget(f *testing.F) {
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

	a, b := dispatch.NewSession(), dispatch.NewSession()
	f.Fuzz(func(t *testing.T, stream []byte, step uint16) {
		a.Reset()
		b.Reset()
		dispatch.FillVerdicts(a)
		dispatch.FillVerdicts(b)
		want := sha256.New()
		var accepted uint64
		a.Feed(0, stream, func(m *dispatch.Message, r dispatch.Result) {
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
		var wantSum dispatch.Digest
		want.Sum(wantSum[:0])
		switch {
		case len(oa.Verdicts) != dispatch.MaxVerdicts || len(ob.Verdicts) != dispatch.MaxVerdicts:
			t.Fatalf("bucket holds %d and %d entries, the budget is %d", len(oa.Verdicts), len(ob.Verdicts), dispatch.MaxVerdicts)
		case oa.VerdictsDropped != accepted:
			t.Fatalf("%d verdicts accepted, %d counted as dropped", accepted, oa.VerdictsDropped)
		case oa.VerdictsDroppedSHA256 != wantSum:
			t.Fatalf("dropped digest %s, the frames handed back give %s", oa.VerdictsDroppedSHA256, wantSum)
		case oa.VerdictsDropped != ob.VerdictsDropped || oa.VerdictsDroppedSHA256 != ob.VerdictsDroppedSHA256:
			t.Fatalf("split into %d-byte pieces: %d dropped (%s), whole: %d (%s)", n, ob.VerdictsDropped, ob.VerdictsDroppedSHA256, oa.VerdictsDropped, oa.VerdictsDroppedSHA256)
		}
	})
}
