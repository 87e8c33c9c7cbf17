package dispatch_test

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"testing"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// benchSizes are the payload sizes of the throughput targets.
var benchSizes = []int{0, 64, 4096, 65536}

func benchPayload(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + 3)
	}
	return p
}

// BenchmarkFeedDispatch measures one op = one STIM frame fed (as part of
// a 1 MiB delivery) through the Assembler and Dispatch, the verdict
// entry's payload copy included. Compare with BenchmarkCRC32 of the
// same frame: `make bench` prints the ratio.
func BenchmarkFeedDispatch(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			benchFeed(b, wire.AppendFrame(nil, wire.Stimulus, benchPayload(size)))
		})
	}
}

// BenchmarkFeedDispatchRejected is the same path for frames the gates
// reject after the CRC check (pad ≠ 0): framing, CRC and gate, with no
// verdict copy. It isolates the cost of the core from the copy.
func BenchmarkFeedDispatchRejected(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			p := benchPayload(size)
			frame := append(wire.AppendHeader(nil, wire.Header{Tag: wire.Stimulus, Len: uint32(size), CRC: wire.Checksum(p), Pad: 1}), p...)
			benchFeed(b, frame)
		})
	}
}

func benchFeed(b *testing.B, frame []byte) {
	perBatch := max(1, (1<<20)/len(frame))
	batch := bytes.Repeat(frame, perBatch)
	a := dispatch.NewAssembler()
	s := dispatch.NewSinks(nil)
	a.SetKeeper(s)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(perBatch, b.N-done)
		a.Feed(batch[:n*len(frame)])
		for {
			m, ok := a.Next()
			if !ok {
				break
			}
			dispatch.Dispatch(&m, s)
		}
		done += n
		// A consumer takes the verdicts out and releases their storage,
		// as a live run streaming results would.
		s.ReleaseVerdicts()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

// BenchmarkCRC32 is the reference: the plain CRC-32 of the same buffers
// FeedDispatch reads, frame by frame (header and payload) through the
// same 1 MiB delivery, so both read the same bytes from the same place
// in the cache hierarchy. Any framing must at least read every byte once.
func BenchmarkCRC32(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			benchReference(b, wire.AppendFrame(nil, wire.Stimulus, benchPayload(size)), nil)
		})
	}
}

// BenchmarkCRC32Copy is the floor for a verdict frame: the same CRC-32
// pass, plus one copy of each payload into a reused buffer, as the copy
// a verdict entry keeps. FeedDispatch of a verdict frame cannot be
// faster than this; `make bench` prints FeedDispatch against it too.
func BenchmarkCRC32Copy(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			benchReference(b, wire.AppendFrame(nil, wire.Stimulus, benchPayload(size)), make([]byte, 0, 1<<20))
		})
	}
}

// benchReference checksums each frame of a 1 MiB batch like benchFeed's;
// with a non-nil kept, it also appends every payload to it, emptied per
// batch.
func benchReference(b *testing.B, frame []byte, kept []byte) {
	perBatch := max(1, (1<<20)/len(frame))
	batch := bytes.Repeat(frame, perBatch)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	var sum uint32
	for done := 0; done < b.N; {
		n := min(perBatch, b.N-done)
		for off := 0; off < n*len(frame); off += len(frame) {
			f := batch[off : off+len(frame)]
			sum ^= crc32.ChecksumIEEE(f)
			if kept != nil {
				kept = append(kept, f[wire.HeaderSize:]...)
			}
		}
		if kept != nil {
			kept = kept[:0]
		}
		done += n
	}
	sink = sum
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

var sink uint32
