package soak

import (
	"context"
	"maps"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseShard(t *testing.T) {
	env := func(k string) string {
		if k == "JOB_COMPLETION_INDEX" {
			return "2"
		}
		return ""
	}
	for _, tc := range []struct {
		in   string
		want Shard
		ok   bool
	}{
		{"0/1", Shard{0, 1}, true},
		{"3/4", Shard{3, 4}, true},
		{"auto/4", Shard{2, 4}, true},
		{"4/4", Shard{}, false},
		{"-1/4", Shard{}, false},
		{"1/0", Shard{}, false},
		{"1", Shard{}, false},
		{"auto/2", Shard{}, false}, // index 2 out of range
		{"x/3", Shard{}, false},
		{"0/100000", Shard{0, MaxShards}, true},
		{"0/100001", Shard{}, false}, // past MaxShards
		{"5/9223372036854775807", Shard{}, false},
	} {
		got, err := ParseShard(tc.in, env)
		if tc.ok {
			require.NoError(t, err, tc.in)
			assert.Equal(t, tc.want, got, tc.in)
			assert.Equal(t, tc.in != "auto/4", got.String() == tc.in)
		} else {
			assert.Error(t, err, tc.in)
		}
	}
	_, err := ParseShard("auto/3", func(string) string { return "" })
	assert.ErrorContains(t, err, "JOB_COMPLETION_INDEX")
}

// TestShardsCoverEveryRunOnce: the shards of N split the runs with no
// run twice and none left out.
func TestShardsCoverEveryRunOnce(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7} {
		seen := map[int]int{}
		for i := range n {
			for _, r := range (Shard{i, n}).Runs(20) {
				seen[r]++
			}
		}
		assert.Len(t, seen, 20, "%d shards", n)
		for r, c := range seen {
			assert.Equal(t, 1, c, "run %d in %d shards", r, n)
		}
	}
}

func TestJudge(t *testing.T) {
	e := Expect{Reasons: []string{"poweroff"}}
	for _, tc := range []struct {
		r    Result
		want bool
		why  string
	}{
		{Result{Reason: "poweroff", Match: true}, true, ""},
		{Result{Reason: "watchdog", Match: true, ExitStatus: 1}, false, "ended watchdog"},
		{Result{Reason: "poweroff", Match: true, ExitStatus: 1}, false, "exited 1"},
		{Result{Reason: "poweroff", Match: false}, false, "does not reproduce"},
		{Result{Reason: "poweroff", Match: true, Violations: []string{"invariant 1: x"}}, false, "invariant 1"},
		{Result{}, false, "no END"},
	} {
		r := tc.r
		e.Judge(&r)
		assert.Equal(t, tc.want, r.Expected, "%+v", tc.r)
		assert.Contains(t, r.Why, tc.why)
	}
}

// TestSoakKeepsOnlyTheUnexpected: runs that end as expected leave no
// trace behind; the others are kept and listed; every run is counted
// under its reason; Jobs runs go at once.
func TestSoakKeepsOnlyTheUnexpected(t *testing.T) {
	dir := t.TempDir()
	var at, peak atomic.Int32
	run := func(ctx context.Context, i int, path string) Result {
		n := at.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(10 * time.Millisecond)
		at.Add(-1)
		require.NoError(t, os.WriteFile(path, []byte("trace"), 0o644))
		if i%5 == 3 {
			return Result{Reason: "watchdog", ExitStatus: 1, Match: true}
		}
		return Result{Reason: "poweroff", Match: true}
	}
	var each int
	sum, err := Soak(context.Background(), Config{Runs: 20, Jobs: 3, Shard: Shard{0, 1}, Dir: dir,
		Expect: Expect{Reasons: []string{"poweroff"}}, Run: run, Each: func(Result) { each++ }})
	require.NoError(t, err)
	assert.Equal(t, 20, sum.Runs)
	assert.Equal(t, 20, each)
	assert.Equal(t, map[string]int{"poweroff": 16, "watchdog": 4}, sum.Reasons)
	assert.Equal(t, 4, sum.Failed)
	assert.Equal(t, []string{dir + "/run-0003.zst", dir + "/run-0008.zst", dir + "/run-0013.zst", dir + "/run-0018.zst"}, sum.Kept)
	left, _ := filepath.Glob(filepath.Join(dir, "*.zst"))
	assert.ElementsMatch(t, sum.Kept, left, "only the kept traces remain")
	assert.EqualValues(t, 3, peak.Load(), "three at once")
}

// TestMerge: shard summaries of one soak add up; what would make the
// merged summary false is refused, each case against the good pair.
func TestMerge(t *testing.T) {
	rec := []string{"--scenario", "steady"}
	exp := []string{"poweroff"}
	a := Summary{Shard: "0/2", Total: 5, Record: rec, Expect: exp, Runs: 3, Reasons: map[string]int{"poweroff": 2, "watchdog": 1}, Kept: []string{"b.zst"}, Failed: 1}
	b := Summary{Shard: "1/2", Total: 5, Record: rec, Expect: exp, Runs: 2, Reasons: map[string]int{"poweroff": 1, "guest_died": 1}, Kept: []string{"a.zst"}, Failed: 1}
	m, err := Merge([]Summary{a, b})
	require.NoError(t, err, "control: the two shards of one soak")
	assert.Equal(t, 5, m.Runs)
	assert.Equal(t, 5, m.Total)
	assert.Equal(t, 2, m.Failed)
	assert.Equal(t, map[string]int{"poweroff": 3, "watchdog": 1, "guest_died": 1}, m.Reasons)
	assert.Equal(t, []string{"a.zst", "b.zst"}, m.Kept)

	with := func(s Summary, f func(*Summary)) Summary {
		s.Reasons = maps.Clone(s.Reasons)
		f(&s)
		return s
	}
	for _, tc := range []struct {
		name  string
		parts []Summary
		want  string
	}{
		{"a shard missing", []Summary{a}, "1/2 are missing"},
		{"a shard twice", []Summary{a, a}, "twice"},
		{"other shard counts", []Summary{a, with(b, func(s *Summary) { s.Shard = "1/3" })}, "of 3 shards"},
		{"no total (an older summary)", []Summary{with(a, func(s *Summary) { s.Total = 0 }), b}, "run the shard again"},
		{"another soak's runs", []Summary{a, with(b, func(s *Summary) { s.Total = 7 })}, "another soak"},
		{"another soak's flags", []Summary{a, with(b, func(s *Summary) { s.Record = []string{"--scenario", "flood"} })}, "another soak"},
		{"another soak's expectation", []Summary{a, with(b, func(s *Summary) { s.Expect = []string{"watchdog"} })}, "another soak"},
		{"an interrupted shard", []Summary{a, with(b, func(s *Summary) { s.Runs, s.Failed, s.Kept, s.Reasons = 1, 0, nil, map[string]int{"poweroff": 1} })}, "performed 1 of its 2 runs"},
		{"more runs than the shard has", []Summary{a, with(b, func(s *Summary) { s.Runs, s.Reasons = 3, map[string]int{"poweroff": 3} })}, "performed 3 of its 2 runs"},
		{"negative failures", []Summary{a, with(b, func(s *Summary) { s.Failed = -1 })}, "did not end as expected"},
		{"more failures than runs", []Summary{a, with(b, func(s *Summary) { s.Failed = 3 })}, "did not end as expected"},
		{"reasons that do not add up", []Summary{a, with(b, func(s *Summary) { s.Reasons["watchdog"] = 2 })}, "END reasons count 4 runs"},
		{"a negative reason", []Summary{a, with(b, func(s *Summary) { s.Reasons = map[string]int{"poweroff": 2, "guest_died": 2, "watchdog": -2} })}, "counts -2 runs"},
		{"a huge reason", []Summary{a, with(b, func(s *Summary) { s.Reasons["x"] = math.MaxInt })}, "runs ended"},
		{"unexpected ends not counted as failed", []Summary{a, with(b, func(s *Summary) { s.Failed, s.Kept = 0, nil })}, "1 ended otherwise than poweroff"},
		{"a reason of no runs", []Summary{a, with(b, func(s *Summary) { s.Reasons["idle"] = 0 })}, "counts 0 runs"},
		{"more kept than failed", []Summary{a, with(b, func(s *Summary) { s.Kept = []string{"x", "y"} })}, "keeps 2 traces"},
		{"a negative time", []Summary{a, with(b, func(s *Summary) { s.Seconds = -1 })}, "took -1 s"},
		{"an endless time", []Summary{a, with(b, func(s *Summary) { s.Seconds = 1e300 })}, "took 1e+300 s"},
		{"more shards than runs", []Summary{with(a, func(s *Summary) { s.Shard = "0/6" })}, "6 shards of a soak of 5 runs"},
		{"a huge runs total", []Summary{with(a, func(s *Summary) { s.Total = math.MaxInt })}, "a soak has 1 to"},
		{"nothing", nil, "no summaries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Merge(tc.parts)
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

// TestMergeManyMissing: a merge of a soak of many shards with one given
// names ten missing shards and counts the rest, in bounded time and
// memory (the list once grew with the shard count a summary claimed).
func TestMergeManyMissing(t *testing.T) {
	one := Summary{Shard: "0/100000", Total: MaxRuns, Expect: []string{"poweroff"}, Runs: Shard{0, MaxShards}.Len(MaxRuns), Reasons: map[string]int{}}
	one.Reasons["poweroff"] = one.Runs
	_, err := Merge([]Summary{one})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "1/100000, 2/100000")
	assert.Contains(t, err.Error(), "and 99989 more are missing")
	assert.Less(t, len(err.Error()), 300)
}

// TestShardLen: Len counts what Runs lists, at the edges too.
func TestShardLen(t *testing.T) {
	for _, tc := range []struct {
		s     Shard
		total int
	}{{Shard{0, 1}, 1}, {Shard{0, 3}, 10}, {Shard{2, 3}, 10}, {Shard{9, 10}, 9}, {Shard{4, 5}, 5}, {Shard{}, 4}} {
		assert.Len(t, tc.s.Runs(tc.total), tc.s.Len(tc.total), "%+v of %d", tc.s, tc.total)
	}
}

// TestSoakBounds: Soak refuses more than MaxRuns runs before it starts
// any. Control: MaxRuns is accepted (and interrupted at once).
func TestSoakBounds(t *testing.T) {
	ran := false
	cfg := Config{Runs: MaxRuns + 1, Jobs: 1, Dir: t.TempDir(), Run: func(context.Context, int, string) Result { ran = true; return Result{} }}
	_, err := Soak(context.Background(), cfg)
	assert.ErrorContains(t, err, "at most")
	assert.False(t, ran)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg.Runs = MaxRuns
	sum, err := Soak(ctx, cfg)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, MaxRuns, sum.Total)
}
