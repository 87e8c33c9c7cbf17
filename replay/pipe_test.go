package replay

import (
	"bytes"
	"io"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
)

// TestRecordPipe sends deliveries of every size the pipe treats apart
// (empty, small, growing past a ring buffer, at and past pipeLend, which
// is lent), with events and RX between them, through the pipe while the
// consumer holds some back, and checks every record arrives intact, in
// order, and that the ring never holds more than pipeBuffers buffers of
// at most pipeLend+bodySlack bytes.
func TestRecordPipe(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	sizes := []int{0, 1, 100, 4096, 70 << 10, 10, 300 << 10, pipeLend - 11, pipeLend, pipeLend + 1, 3 << 20, 5, 64 << 10}
	var trace bytes.Buffer
	w, err := capture.NewWriter(&trace, capture.Meta{ToolVersion: "pipe"})
	require.NoError(t, err)
	var want [][]byte
	for i, n := range sizes {
		d := make([]byte, n)
		for j := range d {
			d[j] = byte(rng.Uint32())
		}
		want = append(want, d)
		require.NoError(t, w.WriteData(capture.TX, capture.BulkPort, int64(i), d))
		if i%4 == 1 {
			require.NoError(t, w.WriteEvent(int64(i), "e", []byte(`{"i":1}`)))
			require.NoError(t, w.WriteData(capture.RX, capture.BulkPort, int64(i), []byte("rx")))
		}
	}
	require.NoError(t, w.Close())

	r, err := capture.NewReader(bytes.NewReader(trace.Bytes()))
	require.NoError(t, err)
	p := newRecordPipe(r)
	defer p.close()
	rings := map[*byte]bool{}
	var got [][]byte
	var events int
	var holding []pipeItem // released two records late, so the ring fills
	for {
		it, err := p.next()
		if err != nil {
			require.ErrorContains(t, err, "EOF")
			break
		}
		switch {
		case it.rec.Kind == capture.KindEvent:
			events++
			assert.JSONEq(t, `{"i":1}`, string(it.rec.Detail))
		case it.rec.Kind == capture.KindData && it.rec.Dir == capture.TX:
			got = append(got, bytes.Clone(it.rec.Data))
			if len(it.rec.Data) > pipeLend {
				assert.True(t, it.lent, "a %d-byte delivery is lent", len(it.rec.Data))
			} else {
				require.NotNil(t, it.ring, "a %d-byte delivery lies in a ring buffer", len(it.rec.Data))
				assert.LessOrEqual(t, cap(it.ring), pipeLend+bodySlack)
				rings[&it.ring[:1][0]] = true
			}
		}
		if it.lent {
			p.release(it) // decoding waits for it
			continue
		}
		holding = append(holding, it)
		if len(holding) > 2 {
			p.release(holding[0])
			holding = holding[1:]
		}
	}
	require.Len(t, got, len(want))
	for i := range want {
		assert.True(t, bytes.Equal(want[i], got[i]), "delivery %d (%d bytes) arrives intact", i, len(want[i]))
	}
	assert.Equal(t, 3, events)
	assert.NotEmpty(t, rings)
}

// TestRecordPipeBound checks that the decoder runs at most pipeBuffers
// deliveries ahead: with that many held by the consumer it waits, and
// one handed back lets it go on. Control: the first pipeBuffers arrive
// without any being handed back.
func TestRecordPipeBound(t *testing.T) {
	var trace bytes.Buffer
	w, err := capture.NewWriter(&trace, capture.Meta{})
	require.NoError(t, err)
	for i := range 3 * pipeBuffers {
		require.NoError(t, w.WriteData(capture.TX, capture.BulkPort, int64(i), bytes.Repeat([]byte{byte(i)}, 1000)))
	}
	require.NoError(t, w.Close())
	r, err := capture.NewReader(bytes.NewReader(trace.Bytes()))
	require.NoError(t, err)
	p := newRecordPipe(r)
	defer p.close()
	var held []pipeItem
	for range pipeBuffers {
		it, err := p.next()
		require.NoError(t, err)
		held = append(held, it)
	}
	more := make(chan pipeItem)
	go func() {
		it, _ := p.next()
		more <- it
	}()
	select {
	case it := <-more:
		t.Fatalf("a delivery (%d bytes) arrived with %d ring buffers held", len(it.rec.Data), pipeBuffers)
	case <-time.After(100 * time.Millisecond):
	}
	p.release(held[0])
	select {
	case it := <-more:
		assert.Equal(t, byte(pipeBuffers), it.rec.Data[0], "the next delivery, once a buffer came back")
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery after a buffer came back")
	}
}

// slowSource is a trace source that takes a millisecond a Read (a pipe,
// a network disk) and counts the Reads made once closed is set.
type slowSource struct {
	r      io.Reader
	closed atomic.Bool
	late   atomic.Int64
}

func (s *slowSource) Read(p []byte) (int, error) {
	if s.closed.Load() {
		s.late.Add(1)
	}
	time.Sleep(time.Millisecond)
	return s.r.Read(p)
}

// TestTraceDoesNotReadAfterReturn: Trace returning early (chunking
// whole, a stream over ModelLimit) while its decoder is still at work
// reads its source no more once it has returned, and leaves no goroutine
// behind. (Found by a hostile review: the decoding goroutine went on
// reading 10-43 times.) Control: the same replay with room for the whole
// stream succeeds, so the early return is the limit's.
func TestTraceDoesNotReadAfterReturn(t *testing.T) {
	var trace bytes.Buffer
	w, err := capture.NewWriter(&trace, capture.Meta{})
	require.NoError(t, err)
	for i := range 40 {
		require.NoError(t, w.WriteData(capture.TX, capture.BulkPort, int64(i), bytes.Repeat([]byte{byte(i)}, 300<<10)))
		require.NoError(t, w.Flush())
	}
	require.NoError(t, w.Close())
	whole := Options{Chunking: Chunking{Kind: ChunkWhole}, ModelLimit: 1 << 20}

	_, err = Trace(bytes.NewReader(trace.Bytes()), "control", Options{Chunking: whole.Chunking, ModelLimit: 64 << 20})
	require.NoError(t, err, "control: with room for the stream, chunking whole replays")

	before := runtime.NumGoroutine()
	src := &slowSource{r: bytes.NewReader(trace.Bytes())}
	_, err = Trace(src, "slow", whole)
	src.closed.Store(true)
	require.ErrorContains(t, err, "chunking whole")
	time.Sleep(200 * time.Millisecond)
	assert.Zero(t, src.late.Load(), "Reads of the source after Trace returned")
	assert.LessOrEqual(t, runtime.NumGoroutine(), before, "goroutines left behind")
}
