package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// soakCLI runs `ktstr soak ARGS -- RECORD...` and returns its summary.
func soakCLI(t testing.TB, e env, bin string, args []string, record ...string) (map[string]any, string, int) {
	t.Helper()
	sum := filepath.Join(t.TempDir(), "summary.json")
	cmd := exec.Command(bin, append(append(append([]string{"soak"}, args...), "--summary", sum, "--"), append([]string{"--agent", e.agent}, record...)...)...)
	cmd.Dir = e.root
	out, code := runExit(t, cmd)
	b, err := os.ReadFile(sum)
	require.NoError(t, err, out)
	var s map[string]any
	require.NoError(t, json.Unmarshal(b, &s))
	return s, out, code
}

// TestSoak: a soak of good runs keeps nothing and exits 0; a soak whose
// runs cannot end as expected (a watchdog far shorter than the run)
// keeps every trace, counts the reason and exits 1; two shards merge to
// the whole.
func TestSoak(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	bin := buildKtstr(t, e, dir)

	keep := filepath.Join(dir, "good")
	s, out, code := soakCLI(t, e, bin, []string{"--runs", "2", "-j", "2", "--keep", keep}, "--cpus", "1", "--duration", "1s")
	require.Equal(t, 0, code, out)
	assert.EqualValues(t, 2, s["runs"])
	assert.Equal(t, map[string]any{"poweroff": 2.0}, s["reasons"])
	assert.Empty(t, s["kept"])
	left, _ := filepath.Glob(filepath.Join(keep, "*"))
	assert.Empty(t, left, "expected runs leave nothing behind")

	bad := filepath.Join(dir, "bad")
	s, out, code = soakCLI(t, e, bin, []string{"--runs", "2", "--shard", "1/2", "--keep", bad}, "--cpus", "1", "--duration", "20s", "--watchdog", "1s")
	assert.Equal(t, 1, code, out)
	assert.EqualValues(t, 1, s["runs"], "shard 1 of 2 takes one of two runs")
	assert.Equal(t, map[string]any{"watchdog": 1.0}, s["reasons"])
	require.Len(t, s["kept"], 1)
	kept := s["kept"].([]any)[0].(string)
	assert.FileExists(t, kept)
	assert.FileExists(t, strings.TrimSuffix(kept, ".zst")+".console", "the console log is kept beside it")

	// Bad input is caught before any run.
	out, code = runExit(t, exec.Command(bin, "soak", "--runs", "1", "--", "--no-such-flag"))
	assert.Equal(t, 2, code, out)
	out, code = runExit(t, exec.Command(bin, "soak", "--shard", "2/2"))
	assert.Equal(t, 2, code, out)
}

// BenchmarkSoak reports `ktstr soak --runs N --cpus 1` (N from
// KTSTR_BENCH_SOAK_RUNS, default 20, the comparison) runs per
// minute with -j 2 against -j 1 on this host, and how the runs ended.
func BenchmarkSoak(b *testing.B) {
	e := setup(b)
	bin := buildKtstr(b, e, b.TempDir())
	runs := "20"
	if n := os.Getenv("KTSTR_BENCH_SOAK_RUNS"); n != "" {
		runs = n
	}
	rate := map[string]float64{}
	ends := map[string]any{}
	for range b.N {
		for _, j := range []string{"1", "2"} {
			s, out, code := soakCLI(b, e, bin, []string{"--runs", runs, "-j", j, "--keep", b.TempDir()}, "--cpus", "1", "--duration", "1s")
			require.Equal(b, 0, code, out)
			rate[j] = s["runs"].(float64) / (s["seconds"].(float64) / 60)
			ends[j] = s["reasons"]
		}
	}
	fmt.Fprintf(os.Stderr, "soak: %s runs of steady, --cpus 1: %.1f runs/min with -j 2, %.1f with -j 1 (ratio %.2f); ends -j 2 %v, -j 1 %v\n",
		runs, rate["2"], rate["1"], rate["2"]/rate["1"], ends["2"], ends["1"])
	b.ReportMetric(rate["2"], "j2-runs/min")
	b.ReportMetric(rate["1"], "j1-runs/min")
	b.ReportMetric(rate["2"]/rate["1"], "j2/j1")
}

// TestRerun: a recorded run is recorded again from its trace's command
// line and the two are compared: the rerun's trace exists, replays, and
// the report says where the runs part (exit 1) or that they agree (0).
// The agent the trace names is used only when the user gives it. A
// trace whose command line is not a record (an import) is refused.
func TestRerun(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	bin := buildKtstr(t, e, dir)
	orig := filepath.Join(dir, "orig.zst")
	rec := recordBinary(t, e, bin, nil, "--agent", e.agent, "--scenario", "sched-exit", "--duration", "2s", "-q", "--force", "-o", orig)
	require.Zero(t, rec.code, rec.out)

	// The trace names its agent, a program run on this host: rerun
	// takes it only from the user.
	rerun := filepath.Join(dir, "again.zst")
	out, code := runExit(t, exec.Command(bin, "rerun", orig, "-o", rerun))
	assert.Equal(t, 2, code, out)
	assert.Contains(t, out, "--agent "+e.agent, "the refusal names the agent the trace asked for")
	assert.NoFileExists(t, rerun, "nothing ran")

	cmd := exec.Command(bin, "rerun", "--agent", e.agent, orig, "-o", rerun)
	cmd.Dir = e.root
	out, code = runExit(t, cmd)
	require.Contains(t, []int{0, 1}, code, out)
	assert.Contains(t, out, "rerun: ktstr record", "the command it ran is shown")
	assert.Contains(t, out, "--scenario=sched-exit")
	require.FileExists(t, rerun)
	rep, err := exec.Command(bin, "replay", rerun).CombinedOutput()
	assert.NoError(t, err, "the rerun's trace replays: %s", rep)
	t.Logf("rerun exit %d:\n%s", code, lastLines(out, 12))

	imported := filepath.Join(dir, "raw.zst")
	raw := filepath.Join(dir, "raw.bin")
	require.NoError(t, os.WriteFile(raw, []byte("x"), 0o644))
	require.NoError(t, exec.Command(bin, "trace", "import", "--raw", raw, "-o", imported).Run())
	out, code = runExit(t, exec.Command(bin, "rerun", imported))
	assert.Equal(t, 2, code, out)
}
