package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/replay"
	"github.com/ktstr/ktstr/vmm"
)

// Bounds of a flooded recorder (docs/protocol.md, invariant 7).
const (
	recorderRSSBound = 256 << 20       // peak RSS of `ktstr record`
	floodEndBound    = 2 * time.Second // from the guest's last flood write to the END record
)

// floodRun is one `ktstr record` of a flood scenario, as a user runs it.
type floodRun struct {
	out       string        // what ktstr record printed
	usage     vmm.Usage     // the recorder's own cost, from its "recorder" event
	guest     floodSummary  // what the guest says it wrote
	lag       time.Duration // END record − (SCST read + the guest's flood time)
	reason    string        // END reason
	frames    int64         // frames the recorder framed
	report    *replay.Report
	traceSize int64
}

// floodSummary is the guest's SCEN summary of a flood scenario.
type floodSummary struct {
	Scenario  string `json:"scenario"`
	Frames    int64  `json:"frames"`
	Bytes     int64  `json:"bytes"`
	ElapsedNS int64  `json:"elapsed_ns"`
}

// buildKtstr builds the ktstr binary into dir.
func buildKtstr(t testing.TB, e env, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "ktstr")
	build := exec.Command("go", "build", "-o", bin, "./cmd/ktstr")
	build.Dir = e.root
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

// recordFlood runs `ktstr record --scenario scenario` for d and reads
// back what the recorder, the guest and the replay say.
func recordFlood(t testing.TB, e env, bin, dir, scenario string, d time.Duration) floodRun {
	t.Helper()
	trace := filepath.Join(dir, scenario+".zst")
	rec := recordBinary(t, e, bin, nil, "--agent", e.agent, "--scenario", scenario, "--duration", d.String(), "-q", "--force", "-o", trace)
	require.Zero(t, rec.code, rec.out)
	b, err := os.ReadFile(trace)
	require.NoError(t, err)
	r := floodRun{out: rec.out, traceSize: int64(len(b))}

	var scst int64 = -1
	var end *capture.End
	for _, rec := range readAll(t, b) {
		switch {
		case rec.Kind == capture.KindEvent && rec.Name == "recorder":
			require.NoError(t, json.Unmarshal(rec.Detail, &r.usage))
		case rec.Kind == capture.KindEnd:
			end = rec.End
		}
	}
	require.NotNil(t, end, "the trace has an END record")
	r.reason = end.Reason

	// The guest's summary and the SCST lie among millions of frames, past
	// the verdict budget: a Session hands every frame back.
	s := dispatch.NewSession()
	tr, err := capture.NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	for {
		rec, err := tr.Next()
		if err != nil {
			break
		}
		if rec.Kind != capture.KindData || rec.Dir != capture.TX {
			continue
		}
		s.Feed(rec.TimeNS, rec.Data, func(m *dispatch.Message, res dispatch.Result) {
			switch {
			case !res.Accepted():
			case m.Tag == wire.ScenarioStart && scst < 0:
				scst = m.Time
			case m.Tag == wire.Scenario && bytes.Contains(m.Payload, []byte(`"elapsed_ns"`)):
				require.NoError(t, json.Unmarshal(m.Payload, &r.guest))
			}
		})
	}
	r.frames = s.Stats().Frames
	require.GreaterOrEqual(t, scst, int64(0), "an accepted SCST")
	require.Positive(t, r.guest.ElapsedNS, "the guest's flood summary: %s", r.out)
	r.lag = time.Duration(end.TimeNS - scst - r.guest.ElapsedNS)

	r.report, err = replay.Trace(bytes.NewReader(b), scenario, replay.Options{})
	require.NoError(t, err)
	return r
}

// TestFloodKeepsTheRecorderBounded: a guest flooding the bulk port with
// intact empty verdict frames (flood), or with every tag intact and torn
// in long runs (flood-mixed), leaves `ktstr record` under 256 MiB of RSS,
// the run ends within 2 s of the flood, every frame the guest wrote is
// framed, and the trace replays to the live outcome.
func TestFloodKeepsTheRecorderBounded(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	bin := buildKtstr(t, e, dir)
	for _, scenario := range []string{"flood", "flood-mixed"} {
		t.Run(scenario, func(t *testing.T) {
			r := recordFlood(t, e, bin, dir, scenario, 4*time.Second)
			rate := float64(r.guest.Frames) / (float64(r.guest.ElapsedNS) / 1e9)
			t.Logf("%s: guest wrote %d frames (%.1f M/s, %.0f MB/s); recorder peak RSS %.1f MiB, CPU %.2f+%.2f s; END %v after the flood; trace %d KiB",
				scenario, r.guest.Frames, rate/1e6, float64(r.guest.Bytes)/(float64(r.guest.ElapsedNS)/1e9)/1e6,
				float64(r.usage.PeakRSSKiB)/1024, float64(r.usage.UserMS)/1e3, float64(r.usage.SysMS)/1e3, r.lag, r.traceSize>>10)
			assert.Equal(t, vmm.EndSchedExit, r.reason, r.out)
			require.Positive(t, r.usage.PeakRSSKiB, "the recorder reported its peak RSS")
			assert.Less(t, r.usage.PeakRSSKiB<<10, int64(recorderRSSBound), "recorder peak RSS")
			assert.Less(t, r.lag, floodEndBound, "the run ends within 2 s of the flood")
			assert.True(t, r.report.Match, "replay matches: %v", r.report.Diff)
			assert.Empty(t, r.report.Violations)
			out := r.report.Outcome
			assert.Len(t, out.Verdicts, dispatch.MaxVerdicts, "the bucket is full and no fuller")
			assert.Positive(t, out.VerdictsDropped, "the flood went past the verdict budget")
			if scenario == "flood" {
				// Every frame the guest wrote, plus the frames around the
				// flood, reached the recorder.
				assert.GreaterOrEqual(t, r.frames, r.guest.Frames)
				assert.GreaterOrEqual(t, uint64(len(out.Verdicts))+out.VerdictsDropped, uint64(r.guest.Frames))
			}
		})
	}
}

// BenchmarkFlood reports, for each flood scenario recorded through
// `ktstr record`, the frames per second the guest sustained into the
// recorder (target ≥ 5 M/s for flood), the recorder's peak RSS (bound
// 256 MiB) and how long after the flood the run ended (bound 2 s).
func BenchmarkFlood(b *testing.B) {
	e := setup(b)
	dir := b.TempDir()
	bin := buildKtstr(b, e, dir)
	for _, scenario := range []string{"flood", "flood-mixed"} {
		b.Run(scenario, func(b *testing.B) {
			var rate, rss, lag float64
			for range b.N {
				r := recordFlood(b, e, bin, dir, scenario, 5*time.Second)
				rate = max(rate, float64(r.guest.Frames)/(float64(r.guest.ElapsedNS)/1e9))
				rss = max(rss, float64(r.usage.PeakRSSKiB)/1024)
				lag = max(lag, r.lag.Seconds())
				if !r.report.Match || len(r.report.Violations) > 0 {
					b.Fatalf("%s: replay: match %v, violations %v", scenario, r.report.Match, r.report.Violations)
				}
			}
			b.ReportMetric(rate, "frames/s")
			b.ReportMetric(rss, "peak-RSS-MiB")
			b.ReportMetric(lag, "end-after-flood-s")
			fmt.Fprintf(os.Stderr, "flood %s: %.1f M frames/s sustained (target ≥ 5 M/s for flood), recorder peak RSS %.1f MiB (bound 256), run ended %.3f s after the flood (bound 2 s)\n",
				scenario, rate/1e6, rss, lag)
		})
	}
}

// TestConsoleFloodKeepsTheLogBounded: a guest printing to its serial
// console without pause (console-flood) leaves a console log within
// `--max-console`, whose end still says how the run ended, and the run
// itself is a normal one (exit 0, a passing TEST). The control is the
// same run under the default budget, which keeps every byte.
func TestConsoleFloodKeepsTheLogBounded(t *testing.T) {
	e := setup(t)
	bin := buildKtstr(t, e, t.TempDir())
	const budget = 256 << 10
	type testResult struct {
		Pass         bool  `json:"pass"`
		ConsoleBytes int64 `json:"console_bytes"`
	}
	run := func(t *testing.T, args ...string) (recorded, testResult) {
		trace := filepath.Join(t.TempDir(), "run.zst")
		r := recordBinary(t, e, bin, nil, append([]string{"--kernel", e.kernel.Path, "--agent", e.agent, "-q", "-o", trace,
			"--scenario", "console-flood", "--duration", "3s"}, args...)...)
		require.Zero(t, r.code, "ktstr record:\n%s\nconsole:\n%s", r.out, lastLines(r.console, 10))
		b, err := os.ReadFile(trace)
		require.NoError(t, err)
		var res testResult
		s := dispatch.NewSession()
		for _, rec := range readAll(t, b) {
			if rec.Kind == capture.KindData && rec.Dir == capture.TX && rec.Port == capture.BulkPort {
				s.Feed(rec.TimeNS, rec.Data, func(m *dispatch.Message, r dispatch.Result) {
					if r.Accepted() && m.Tag == wire.TestResult {
						require.NoError(t, json.Unmarshal(m.Payload, &res))
					}
				})
			}
		}
		require.True(t, res.Pass, "the guest's TEST: %s", r.out)
		return r, res
	}

	r, res := run(t, "--max-console", "256KiB")
	t.Logf("budget %d: the guest printed %d bytes; the log holds %d", budget, res.ConsoleBytes, len(r.console))
	require.Greater(t, res.ConsoleBytes, int64(2*budget), "the guest printed well past the budget")
	assert.LessOrEqual(t, len(r.console), budget+256, "the log holds the budget and one line")
	assert.Contains(t, r.console, "[ktstr: the guest wrote ", "the log says where it dropped output")
	assert.Contains(t, lastLines(r.console, 5), "console-flood wrote", "the log's end is the guest's last words")
	assert.Contains(t, r.out, "(--max-console) were dropped", "record's summary says the log is cut")

	// Control: the default budget (64 MiB) holds all of it.
	r, res = run(t)
	assert.NotContains(t, r.console, "[ktstr: the guest wrote ")
	assert.NotContains(t, r.out, "--max-console")
	assert.GreaterOrEqual(t, int64(len(r.console)), res.ConsoleBytes, "every byte the guest printed is in the log")
}
