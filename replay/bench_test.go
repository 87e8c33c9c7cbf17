package replay_test

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/ktstr/ktstr/internal/tracegen"
	"github.com/ktstr/ktstr/replay"
)

// BenchmarkReplay measures `ktstr replay`'s streaming path (model check
// off) on a 64 MiB trace against the reference, a plain zstd decode of
// the same file to io.Discard by one decoder. Each iteration times both
// back to back, so load on the machine hits them alike; the ratio metric
// is reference time / replay time (target ≥ 0.9). Replay decodes the
// trace's frames on every core (capture.WithDecoders), so the benchmark
// also reports what that costs and what it is up against:
// default-ratio is against zstd's own default decoder (which runs its
// stages on up to four goroutines), cpu-ratio is the CPU time replay
// took over the single decoder's. The default decoder goes first in
// each iteration: run just before the single decoder, its goroutines,
// still winding down, slowed that reference by a third.
func BenchmarkReplay(b *testing.B) {
	var buf bytes.Buffer
	if err := tracegen.Write(&buf, 64<<20); err != nil {
		b.Fatal(err)
	}
	data := buf.Bytes()
	one, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		b.Fatal(err)
	}
	defer one.Close()
	dflt, err := zstd.NewReader(nil)
	if err != nil {
		b.Fatal(err)
	}
	defer dflt.Close()
	decode := func(dec *zstd.Decoder) {
		if err := dec.Reset(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, dec); err != nil {
			b.Fatal(err)
		}
	}
	var tDecode, tDefault, tReplay, cDecode, cReplay time.Duration
	b.SetBytes(64 << 20)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		decode(dflt)
		start, c0 := time.Now(), cpuTime(b)
		decode(one)
		mid, c1 := time.Now(), cpuTime(b)
		rep, err := replay.Trace(bytes.NewReader(data), "bench", replay.Options{ModelLimit: -1})
		if err != nil || len(rep.Violations) > 0 {
			b.Fatal(err, rep.Violations)
		}
		end, c2 := time.Now(), cpuTime(b)
		tDefault += start.Sub(t0)
		tDecode += mid.Sub(start)
		tReplay += end.Sub(mid)
		cDecode += c1 - c0
		cReplay += c2 - c1
	}
	total := float64(b.N) * (64 << 20)
	b.ReportMetric(total/tDecode.Seconds()/1e6, "zstd-MB/s")
	b.ReportMetric(total/tReplay.Seconds()/1e6, "replay-MB/s")
	b.ReportMetric(tDecode.Seconds()/tReplay.Seconds(), "ratio")
	b.ReportMetric(tDefault.Seconds()/tReplay.Seconds(), "default-ratio")
	b.ReportMetric(cReplay.Seconds()/cDecode.Seconds(), "cpu-ratio")
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
