package dispatch_test

import (
	"bytes"
	"crypto/sha256"
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

// BenchmarkFeedDispatch measures the shipped path: one op = one STIM
// frame fed (as part of a 1 MiB delivery) through a Session, which
// frames it, checks its CRC, judges it and keeps its verdict entry
// (tag, len, SHA-256). The Session is Reset whenever the verdict budget
// would fill, so every frame pays for its digest and its entry. Compare with
// BenchmarkCRC32SHA256: `make bench-dispatch` prints the ratio.
func BenchmarkFeedDispatch(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			benchFeed(b, wire.AppendFrame(nil, wire.Stimulus, benchPayload(size)), false)
		})
	}
}

// BenchmarkFeedDispatchRejected is the same path for frames the gates
// reject after the CRC check (pad ≠ 0): framing, CRC and gate, no digest.
func BenchmarkFeedDispatchRejected(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			p := benchPayload(size)
			frame := append(wire.AppendHeader(nil, wire.Header{Tag: wire.Stimulus, Len: uint32(size), CRC: wire.Checksum(p), Pad: 1}), p...)
			benchFeed(b, frame, false)
		})
	}
}

// BenchmarkFeedDispatchPastBudget is the flood case: verdicts past
// MaxVerdicts, each folded into the one dropped-verdict digest. Its
// target is in frames/s (20 M at payload 0 on one core).
func BenchmarkFeedDispatchPastBudget(b *testing.B) {
	for _, size := range benchSizes[:2] {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			benchFeed(b, wire.AppendFrame(nil, wire.Stimulus, benchPayload(size)), true)
		})
	}
}

func benchFeed(b *testing.B, frame []byte, pastBudget bool) {
	perBatch := max(1, (1<<20)/len(frame))
	batch := bytes.Repeat(frame, perBatch)
	fill := bytes.Repeat(wire.AppendFrame(nil, wire.Stimulus, nil), dispatch.MaxVerdicts)
	s := dispatch.NewSession()
	if pastBudget {
		s.Feed(0, fill, nil)
	}
	kept := 0
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(perBatch, b.N-done)
		if !pastBudget && kept+n > dispatch.MaxVerdicts {
			s.Reset() // a new run, as a fuzz target or campaign starts one
			kept = 0
		}
		s.Feed(int64(done), batch[:n*len(frame)], nil)
		kept += n
		done += n
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

// BenchmarkCRC32 is the floor of any framing: the plain CRC-32 of each
// frame (header and payload) of the same 1 MiB delivery, so both read
// the same bytes from the same place in the cache hierarchy.
func BenchmarkCRC32(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			benchReference(b, wire.AppendFrame(nil, wire.Stimulus, benchPayload(size)), false)
		})
	}
}

// BenchmarkCRC32SHA256 is the reference for the shipped path: the work
// any digesting dispatch must do for a verdict frame, the CRC-32 of its
// payload and the SHA-256 of the same payload, frame by frame through
// the same 1 MiB delivery.
func BenchmarkCRC32SHA256(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			benchReference(b, wire.AppendFrame(nil, wire.Stimulus, benchPayload(size)), true)
		})
	}
}

// benchReference checksums each frame of a 1 MiB batch like benchFeed's;
// with digest, it takes the CRC-32 and the SHA-256 of each payload.
func benchReference(b *testing.B, frame []byte, digest bool) {
	perBatch := max(1, (1<<20)/len(frame))
	batch := bytes.Repeat(frame, perBatch)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	var sum uint32
	var d [sha256.Size]byte
	for done := 0; done < b.N; {
		n := min(perBatch, b.N-done)
		for off := 0; off < n*len(frame); off += len(frame) {
			f := batch[off : off+len(frame)]
			if digest {
				p := f[wire.HeaderSize:]
				sum ^= crc32.ChecksumIEEE(p)
				d = sha256.Sum256(p)
				sum ^= uint32(d[0])
			} else {
				sum ^= crc32.ChecksumIEEE(f)
			}
		}
		done += n
	}
	sink = sum
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

var sink uint32
