package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/internal/tracegen"
)

// timelineFileBound is the size every timeline file stays under,
// whatever the trace holds.
const timelineFileBound = 10 << 20

// writeTraceFile writes a trace with write into dir/name.
func writeTraceFile(t testing.TB, dir, name string, write func(*os.File) error) string {
	t.Helper()
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, write(f))
	require.NoError(t, f.Close())
	return path
}

// TestTraceToolsStayBounded runs the trace tools on the bombs of
// TestReadSideCommandsStayBounded (64 MiB of frames shaped to grow what
// a reader keeps per verdict, per delivery or per tag) and on a 256 MiB
// run-like trace (internal/tracegen): each stays under 64 MiB of peak
// RSS, answers, and writes timeline files under 10 MB.
func TestTraceToolsStayBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and reads 64 MiB bombs and a 256 MiB trace (-short)")
	}
	dir := t.TempDir()
	type input struct {
		name, path string
		until      string // what minimize is asked for
		minimized  int    // minimize's exit status: 2 refused (over --max), 0 done
	}
	var inputs []input
	sizes := map[string]int{tracegen.BombFlood: 64 << 20, tracegen.BombTiny: 8 << 20, tracegen.BombTags: 32 << 20, tracegen.BombBytes: 4 << 20}
	for _, shape := range tracegen.Bombs() {
		p := writeTraceFile(t, dir, shape+".zst", func(f *os.File) error { return tracegen.WriteBomb(f, shape, sizes[shape]) })
		inputs = append(inputs, input{"bomb-" + shape, p, "tag=STIM", 2})
	}
	inputs = append(inputs, input{"run-256MiB", writeTraceFile(t, dir, "run.zst", func(f *os.File) error { return tracegen.Write(f, 256<<20) }), "tag=STIM", 2})
	// At the minimizer's default bound (4 MiB of TX), so that it runs to
	// the end: one frame per delivery (262144 deliveries, at replay.MaxHeldDeliveries), and a tag each.
	inputs = append(inputs,
		input{"bomb-tiny-4MiB", writeTraceFile(t, dir, "tiny4.zst", func(f *os.File) error { return tracegen.WriteBomb(f, tracegen.BombTiny, 4<<20) }), "tag=STIM", 0},
		input{"bomb-tags-4MiB", writeTraceFile(t, dir, "tags4.zst", func(f *os.File) error { return tracegen.WriteBomb(f, tracegen.BombTags, 4<<20) }), "reject=unknown_tag", 0})
	for _, in := range inputs {
		out := filepath.Join(dir, in.name+"-tl")
		for _, args := range [][]string{
			{"trace", "timeline", in.path, "-o", out},
			{"trace", "diff", in.path, in.path},
			{"corpus", "cover", in.path},
			{"trace", "minimize", in.path, "--until", in.until, "-o", out + ".min.zst"},
		} {
			t.Run(in.name+"/"+strings.Join(args[:2], " "), func(t *testing.T) {
				start := time.Now()
				code, stderr, rss := childRSS(t, args...)
				t.Logf("peak RSS %.1f MiB, %.2fs, exit %d", float64(rss)/(1<<20), time.Since(start).Seconds(), code)
				assert.Less(t, rss, int64(readSideBound), "peak RSS")
				assert.NotContains(t, stderr, "panic")
				switch args[1] {
				case "minimize":
					assert.Equal(t, in.minimized, code, stderr)
				case "timeline":
					require.Equal(t, 0, code, stderr)
					for _, ext := range []string{".json", ".html"} {
						fi, err := os.Stat(out + ext)
						require.NoError(t, err)
						t.Logf("%s: %d bytes", ext, fi.Size())
						assert.Less(t, fi.Size(), int64(timelineFileBound), "timeline file size")
					}
				default:
					assert.Equal(t, 0, code, stderr)
				}
			})
		}
	}
}

// BenchmarkTraceTimeline256MiB runs `ktstr trace timeline` (in a child
// process, through the same run() as the binary) on a trace of 256 MiB
// of TX bytes (internal/tracegen) and reports its wall time, its peak
// RSS and the sizes of the two files. Targets: under 10 s, under
// 64 MiB, files under 10 MB.
func BenchmarkTraceTimeline256MiB(b *testing.B) {
	dir := b.TempDir()
	path := writeTraceFile(b, dir, "big.zst", func(f *os.File) error { return tracegen.Write(f, 256<<20) })
	out := filepath.Join(dir, "tl")
	b.ResetTimer()
	var peak int64
	var wall time.Duration
	for i := range b.N {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKtstrChild$")
		cmd.Env = append(os.Environ(), "KTSTR_CHILD_ARGS="+strings.Join([]string{"trace", "timeline", path, "-o", out, "--force"}, "\x1f"))
		hwm := measureHWM(b, cmd)
		start := time.Now()
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("ktstr trace timeline: %v\n%s", err, o)
		}
		wall = max(wall, time.Since(start))
		peak = max(peak, hwm())
		_ = i
	}
	b.StopTimer()
	b.ReportMetric(256, "TX-MiB")
	b.ReportMetric(wall.Seconds(), "max-wall-s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
	for _, ext := range []string{".json", ".html"} {
		fi, err := os.Stat(out + ext)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(fi.Size())/1e6, fmt.Sprintf("%s-MB", ext[1:]))
	}
}
