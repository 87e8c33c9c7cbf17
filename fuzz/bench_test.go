package fuzz

import (
	"testing"

	"github.com/ktstr/ktstr/corpus"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/replay"
	"github.com/ktstr/ktstr/replay/model"
)

// benchInputs returns the dispatch target's inputs (dispatch_test.go) of
// the seed streams under 4 KiB, the size its throughput target is stated
// for.
func benchInputs() [][]byte {
	var in [][]byte
	for _, s := range corpus.Seeds() {
		if x := corpus.EncodeDispatchInput(s.Stream()); len(x) < 4<<10 {
			in = append(in, x)
		}
	}
	return in
}

// BenchmarkCheckDispatch is one dispatch target execution per seed input,
// round robin: the cost the fuzzer pays per input, less its own
// overhead. The other sub-benchmarks time the parts of that cost on the
// same inputs, so their ratios say where the time goes: the production
// path alone (FeedDispatch) and the reference model (Model); the rest of
// CheckStream is the invariant bookkeeping and the field-by-field
// comparison of the two outcomes.
func BenchmarkCheckDispatch(b *testing.B) {
	in := benchInputs()
	size := 0
	for _, x := range in {
		size += len(x)
	}
	avg := int64(size / len(in))
	b.Run("CheckStream", func(b *testing.B) {
		b.SetBytes(avg)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			checkDispatch(in[i%len(in)])
		}
	})
	b.Run("FeedDispatch", func(b *testing.B) {
		b.SetBytes(avg)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			feedDispatch(corpus.DecodeDispatchInput(in[i%len(in)]))
		}
	})
	b.Run("Model", func(b *testing.B) {
		b.SetBytes(avg)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			s := corpus.DecodeDispatchInput(in[i%len(in)])
			model.Evaluate(s.Data, s.Starts, s.Times)
		}
	})
}

// feedDispatch runs s through a Session the way a live run does, with
// no checks.
func feedDispatch(s *replay.Stream) dispatch.Outcome {
	sess := dispatch.NewSession()
	for d := range s.Deliveries() {
		sess.Feed(s.Times[d], s.Delivery(d), nil)
	}
	return sess.Finish()
}
