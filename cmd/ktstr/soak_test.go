package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/soak"
)

// TestReadSummaryIsBounded: a summary past maxSummary, a directory or a
// missing file is refused; a summary-sized file is read (the control).
func TestReadSummaryIsBounded(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "s.json")
	require.NoError(t, os.WriteFile(ok, []byte(`{"shard":"0/1","runs":1}`), 0o644))
	b, err := readSummary(ok)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"runs":1`)

	big := filepath.Join(dir, "big.json")
	require.NoError(t, os.WriteFile(big, make([]byte, maxSummary+1), 0o644))
	_, err = readSummary(big)
	assert.ErrorContains(t, err, "not a soak summary")
	_, err = readSummary(dir)
	assert.Error(t, err)
	_, err = readSummary(filepath.Join(dir, "absent"))
	assert.Error(t, err)
}

// TestSoakRefusesBeforeAnyRun: what would make a soak run the wrong
// runs, overwrite what an earlier soak kept, or hold unbounded memory is
// one line and exit 2 before any VM boots. (The control, a soak that
// runs, is e2e TestSoak.)
func TestSoakRefusesBeforeAnyRun(t *testing.T) {
	keep := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(keep, "run-0003.zst"), []byte("an earlier soak's kept run"), 0o644))
	trace := filepath.Join(t.TempDir(), "precious.zst")
	require.NoError(t, os.WriteFile(trace, []byte("a recorded trace"), 0o644))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"too many runs", []string{"soak", "--runs", "200000000", "--", "--cpus", "1"}, "--runs must be from 1 to"},
		{"a shard count past the bound", []string{"soak", "--runs", "10", "--shard", "5/9223372036854775807"}, "N must be an integer from 1 to"},
		{"more shards than runs", []string{"soak", "--runs", "2", "--shard", "0/3"}, "3 shards of 2 runs"},
		{"-o among the record flags", []string{"soak", "--", "--o=x.zst"}, "-o: soak names each run's outputs"},
		{"-console among the record flags", []string{"soak", "--", "-console", "c.log"}, "-console: soak names"},
		{"--cpuprofile among the record flags", []string{"soak", "--", "--cpuprofile", "p.txt"}, "-cpuprofile"},
		{"an earlier soak's run in --keep", []string{"soak", "--runs", "5", "--keep", keep, "--", "--cpus", "1"}, "already holds run-0003.zst"},
		{"--summary over a file not a summary", []string{"soak", "--runs", "1", "--keep", t.TempDir(), "--summary", trace, "--", "--cpus", "1"}, "is not a soak summary"},
		{"a missing kernel, said once", []string{"soak", "--runs", "1000", "--keep", t.TempDir(), "--", "--kernel=/nonexistent"}, "--kernel /nonexistent: no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runChild(t, childOpts{}, tc.args...)
			assert.Equal(t, ExitUsage, r.code, r.stderr)
			assertOneLineError(t, r.stderr)
			assert.Contains(t, r.stderr, tc.want)
		})
	}
	b, err := os.ReadFile(filepath.Join(keep, "run-0003.zst"))
	require.NoError(t, err)
	assert.Equal(t, "an earlier soak's kept run", string(b), "the earlier run is untouched")
	b, err = os.ReadFile(trace)
	require.NoError(t, err)
	assert.Equal(t, "a recorded trace", string(b), "the trace is untouched")
	// Control: an earlier summary is soak's to replace.
	sum := filepath.Join(t.TempDir(), "s.json")
	require.NoError(t, os.WriteFile(sum, []byte(`{"shard":"0/1","total":1,"runs":1}`), 0o644))
	require.NoError(t, checkSummaryTarget(sum))

	// The keep check is this shard's runs only: shard 0/2 never writes
	// run 3, so a directory shared by the shards is fine.
	require.NoError(t, checkKeepDir(keep, soakShard(t, "0/2"), 5))
	require.Error(t, checkKeepDir(keep, soakShard(t, "1/2"), 5))
	require.NoError(t, checkKeepDir(keep, soakShard(t, "0/1"), 3), "run 3 is past a soak of 3 runs")
	// A console log left by a run counts as that run's, the same way;
	// a name of another form (five digits) is not a run's.
	logs := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(logs, "run-00004.zst"), nil, 0o644))
	require.NoError(t, checkKeepDir(logs, soakShard(t, "0/2"), 5))
	require.NoError(t, os.WriteFile(filepath.Join(logs, "run-0004.console"), nil, 0o644))
	assert.ErrorContains(t, checkKeepDir(logs, soakShard(t, "0/2"), 5), "already holds run-0004.console")
}

// TestSoakMergeCLI: summaries that would merge to a false result are
// exit 2 with one line, in bounded memory (a 45-byte summary claiming
// two billion shards once took 4.3 GB); strings from the files are
// printed escaped. Control: the shards of one soak merge, exit 1 for
// the run that failed.
func TestSoakMergeCLI(t *testing.T) {
	dir := t.TempDir()
	write := func(name, js string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(js), 0o644))
		return p
	}
	a := write("a.json", `{"shard":"0/2","total":3,"record":["--cpus","1"],"expect":["poweroff"],"runs":2,"reasons":{"poweroff":1,"watch\u001b[2Kdog":1},"kept":["k\nept /etc/passwd"],"failed":1,"seconds":20}`)
	b := write("b.json", `{"shard":"1/2","total":3,"record":["--cpus","1"],"expect":["poweroff"],"runs":1,"reasons":{"poweroff":1},"kept":[],"failed":0,"seconds":10}`)
	r := runChild(t, childOpts{}, "soak", "merge", a, b)
	assert.Equal(t, ExitCheck, r.code, r.stderr)
	assert.Contains(t, r.stdout, "soak merged: 3 runs in 20 s (9.0 runs/min), 1 not as expected")
	assert.NotContains(t, r.stdout, "\x1b", "no escape reaches the terminal")
	assert.NotContains(t, r.stdout, "\nept /etc/passwd", "no forged line")

	for _, tc := range []struct {
		name, js, want string
	}{
		{"two billion shards", `{"shard":"0/2000000000","total":5,"runs":1,"failed":0}`, "N must be an integer from 1 to"},
		{"no runs", `{"shard":"0/1"}`, "run the shard again"},
		{"negative failures", `{"shard":"0/1","total":1,"runs":1,"reasons":{"poweroff":1},"failed":-3}`, "did not end as expected"},
		{"overflowing runs", `{"shard":"0/1","total":9223372036854775807,"runs":9223372036854775807,"failed":0}`, "a soak has 1 to"},
		{"reasons past the runs", `{"shard":"0/1","total":1,"runs":1,"reasons":{"watchdog":100},"failed":0}`, "counts 100 runs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runChild(t, childOpts{}, "soak", "merge", write(tc.name+".json", tc.js))
			assert.Equal(t, ExitUsage, r.code, r.stderr)
			assertOneLineError(t, r.stderr)
			assert.Contains(t, r.stderr, tc.want)
			assert.Less(t, r.rss, int64(200<<20), "bounded memory")
		})
	}
}

// TestSoakMergeInputBound: the summaries soak merge holds are bounded
// together (maxSummaries), not only one by one: five valid shard
// summaries of maxSummary bytes each (padded) are refused at the fifth,
// in bounded memory. Control: four of them, exactly the bound, are all
// read and merged as far as the missing fifth shard.
func TestSoakMergeInputBound(t *testing.T) {
	dir := t.TempDir()
	require.Equal(t, maxSummaries, 4*maxSummary, "four summaries reach the bound, a fifth passes it")
	var paths []string
	for i := range 5 {
		js := fmt.Sprintf(`{"shard":"%d/5","total":5,"record":[],"expect":["poweroff"],"runs":1,"reasons":{"poweroff":1},"kept":[],"failed":0,"seconds":1}`, i)
		p := filepath.Join(dir, fmt.Sprintf("s%d.json", i))
		require.NoError(t, os.WriteFile(p, append([]byte(js), bytes.Repeat([]byte(" "), maxSummary-len(js))...), 0o644))
		paths = append(paths, p)
	}
	r := runChild(t, childOpts{}, append([]string{"soak", "merge"}, paths[:4]...)...)
	assert.Equal(t, ExitUsage, r.code)
	assert.Contains(t, r.stderr, "shards 4/5 are missing", "control: four are read and merged")
	r = runChild(t, childOpts{}, append([]string{"soak", "merge"}, paths...)...)
	assert.Equal(t, ExitUsage, r.code, r.stderr)
	assertOneLineError(t, r.stderr)
	assert.Contains(t, r.stderr, "over 64 MiB together")
	assert.Less(t, r.rss, int64(200<<20), "bounded memory")
}

func soakShard(t *testing.T, s string) soak.Shard {
	t.Helper()
	sh, err := soak.ParseShard(s, os.Getenv)
	require.NoError(t, err)
	return sh
}
