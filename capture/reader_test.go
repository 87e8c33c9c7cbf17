package capture

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// TestNextDoesNotAllocate checks that reading DATA records allocates
// nothing once the record buffer has grown.
func TestNextDoesNotAllocate(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Meta{})
	require.NoError(t, err)
	for i := range 3000 {
		require.NoError(t, w.WriteData(TX, BulkPort, int64(i), randBytes(uint64(i), 1+i%2000)))
		if i%500 == 499 {
			require.NoError(t, w.Flush()) // cross frame boundaries too
		}
	}
	require.NoError(t, w.Close())
	r, err := NewReader(bytes.NewReader(buf.Bytes()))
	require.NoError(t, err)
	for range 10 {
		_, err := r.Next()
		require.NoError(t, err)
	}
	var n int
	allocs := testing.AllocsPerRun(2500, func() {
		rec, err := r.Next()
		if err == nil {
			n += len(rec.Data)
		}
	})
	require.Positive(t, n)
	assert.Zero(t, allocs, "allocations per Next")

	// Control: the measurement does see allocations where there are
	// some (an END record is a fresh *End).
	var eb bytes.Buffer
	w, err = NewWriter(&eb, Meta{})
	require.NoError(t, err)
	require.NoError(t, w.WriteEnd(End{Reason: "x", Outcome: json.RawMessage(`{}`)}))
	require.NoError(t, w.Close())
	allocs = testing.AllocsPerRun(1, func() {
		r, err := NewReader(bytes.NewReader(eb.Bytes()))
		if err == nil {
			_, _ = r.Next()
		}
	})
	assert.Positive(t, allocs)
}

// allocated returns the bytes allocated while reading trace to its end,
// and the error that ended reading.
func allocated(trace []byte) (uint64, error) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r, err := NewReader(bytes.NewReader(trace))
	for err == nil {
		_, err = r.Next()
	}
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, err
}

// TestFalseLengthCostsNothing checks that a short trace declaring a
// record at the size bound does not make the reader allocate the bound:
// the buffer grows only as bytes arrive.
func TestFalseLengthCostsNothing(t *testing.T) {
	compress := newCompressor(t)
	hdr := header(Version, `{}`)
	n, err := allocated(compress(cat(hdr, recLen(KindData, MaxRecordSize), []byte("only a few bytes"))))
	require.ErrorIs(t, err, ErrTruncated)
	t.Logf("false length: %d bytes allocated", n)
	assert.Less(t, n, uint64(MaxRecordSize/4), "bytes allocated for a false length")

	// Control: a record that really is that large is allocated.
	body := dataBody(TX, 1, 0, string(make([]byte, MaxDataSize)))
	n, err = allocated(compress(cat(hdr, rec(KindData, body))))
	require.ErrorIs(t, err, io.EOF)
	t.Logf("real record: %d bytes allocated", n)
	assert.GreaterOrEqual(t, n, uint64(MaxRecordSize))
}

// benchDelivery and benchTotal shape the benchmark traffic: 64 MiB in
// deliveries of 64 KiB.
const benchDelivery, benchTotal = 64 << 10, 64 << 20

// benchStream returns benchTotal bytes shaped like bulk-port traffic:
// 16-byte frame headers, log text and binary counters.
func benchStream() []byte {
	rng := rand.New(rand.NewPCG(42, 42))
	words := []string{"sched_ext: ", "cpu", "dispatch ", "enqueue ", "vtime=", "slice=", "pid ", "runnable ", "dsq ", "\n", "worker-", "cgroup ", "migrate "}
	stream := make([]byte, 0, benchTotal+4096)
	for len(stream) < benchTotal {
		var payload []byte
		if rng.IntN(2) == 0 {
			for n := 200 + rng.IntN(600); len(payload) < n; {
				payload = append(payload, words[rng.IntN(len(words))]...)
				payload = strconv.AppendUint(payload, rng.Uint64N(100_000), 10)
			}
		} else {
			for range 8 + rng.IntN(32) {
				payload = binary.LittleEndian.AppendUint64(payload, rng.Uint64N(1<<20))
			}
		}
		stream = append(stream, 'S', 'T', 'I', 'M')
		stream = binary.LittleEndian.AppendUint32(stream, uint32(len(payload)))
		stream = binary.LittleEndian.AppendUint32(stream, rng.Uint32())
		stream = binary.LittleEndian.AppendUint32(stream, 0)
		stream = append(stream, payload...)
	}
	return stream[:benchTotal]
}

// writeBench writes stream to dst as a trace of benchDelivery-byte TX
// deliveries.
func writeBench(dst io.Writer, stream []byte) error {
	w, err := NewWriter(dst, Meta{ToolVersion: "bench"})
	if err != nil {
		return err
	}
	for i := 0; i < len(stream); i += benchDelivery {
		if err := w.WriteData(TX, BulkPort, int64(i)*10, stream[i:min(i+benchDelivery, len(stream))]); err != nil {
			return err
		}
	}
	return w.Close()
}

// benchTrace returns the benchmark trace and the number of delivery
// bytes in it.
func benchTrace(b *testing.B) ([]byte, int64) {
	b.Helper()
	var out bytes.Buffer
	require.NoError(b, writeBench(&out, benchStream()))
	return out.Bytes(), benchTotal
}

// BenchmarkWriter writes the benchmark traffic as a trace, the
// recorder's side (the live bulk port delivers about 125 MB/s).
func BenchmarkWriter(b *testing.B) {
	stream := benchStream()
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := writeBench(io.Discard, stream); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriterThroughputTraffic writes what the throughput scenario
// sends (64 KiB SOUT frames of a repeated line, in 192 KiB deliveries) as
// a trace: the recorder's trace-write cost per byte where it is highest,
// a guest writing the port as fast as it can.
func BenchmarkWriterThroughputTraffic(b *testing.B) {
	payload := make([]byte, 64<<10-wire.HeaderSize)
	for i := range payload {
		payload[i] = "ktstr throughput\n"[i%17]
	}
	frame := wire.AppendFrame(nil, wire.Stdout, payload)
	var stream []byte
	for len(stream) < 64<<20 {
		stream = append(stream, frame...)
	}
	const delivery = 192 << 10
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		w, err := NewWriter(io.Discard, Meta{ToolVersion: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < len(stream); i += delivery {
			if err := w.WriteData(TX, BulkPort, int64(i), stream[i:min(i+delivery, len(stream))]); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReader reads every record of the benchmark trace. Compare its
// MB/s with BenchmarkZstdDecodeOnly: the ratio is the Reader's share of
// replay throughput (target ≥ 0.7).
func BenchmarkReader(b *testing.B) {
	trace, total := benchTrace(b)
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	b.ReportMetric(float64(total)/float64(len(trace)), "ratio")
	for range b.N {
		r, err := NewReader(bytes.NewReader(trace))
		if err != nil {
			b.Fatal(err)
		}
		var n int64
		for {
			rec, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n += int64(len(rec.Data))
		}
		if n != total {
			b.Fatalf("read %d bytes, want %d", n, total)
		}
	}
}

// BenchmarkZstdDecodeOnly decodes the same trace with a zstd decoder
// configured as the Reader's, discarding the output: the baseline for
// BenchmarkReader.
func BenchmarkZstdDecodeOnly(b *testing.B) {
	trace, total := benchTrace(b)
	b.SetBytes(total)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		dec, err := zstd.NewReader(bytes.NewReader(trace), decoderOptions()...)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, dec)
		if err != nil {
			b.Fatal(err)
		}
		if n < total {
			b.Fatalf("decoded %d bytes, want at least %d", n, total)
		}
	}
}
