package replay_test

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/ktstr/ktstr/internal/tracegen"
	"github.com/ktstr/ktstr/replay"
)

// BenchmarkReplay measures `ktstr replay`'s streaming path (model check
// off) on a 64 MiB trace against the reference, a plain zstd decode of
// the same file to io.Discard. Each iteration times both back to back,
// so load on the machine hits them alike; the ratio metric is
// reference time / replay time (target ≥ 0.7).
func BenchmarkReplay(b *testing.B) {
	var buf bytes.Buffer
	if err := tracegen.Write(&buf, 64<<20); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		b.Fatal(err)
	}
	defer dec.Close()
	var tDecode, tReplay time.Duration
	b.SetBytes(64 << 20)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := dec.Reset(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, dec); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		rep, err := replay.Trace(bytes.NewReader(data), "bench", replay.Options{ModelLimit: -1})
		if err != nil || len(rep.Violations) > 0 {
			b.Fatal(err, rep.Violations)
		}
		tDecode += mid.Sub(start)
		tReplay += time.Since(mid)
	}
	total := float64(b.N) * (64 << 20)
	b.ReportMetric(total/tDecode.Seconds()/1e6, "zstd-MB/s")
	b.ReportMetric(total/tReplay.Seconds()/1e6, "replay-MB/s")
	b.ReportMetric(tDecode.Seconds()/tReplay.Seconds(), "ratio")
}
