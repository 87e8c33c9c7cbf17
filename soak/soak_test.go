package soak

import (
	"context"
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

func TestMerge(t *testing.T) {
	a := Summary{Shard: "0/2", Runs: 3, Reasons: map[string]int{"poweroff": 2, "watchdog": 1}, Kept: []string{"b.zst"}, Failed: 1}
	b := Summary{Shard: "1/2", Runs: 2, Reasons: map[string]int{"poweroff": 2}, Kept: []string{"a.zst"}}
	m, err := Merge([]Summary{a, b})
	require.NoError(t, err)
	assert.Equal(t, 5, m.Runs)
	assert.Equal(t, map[string]int{"poweroff": 4, "watchdog": 1}, m.Reasons)
	assert.Equal(t, []string{"a.zst", "b.zst"}, m.Kept)
	_, err = Merge([]Summary{a})
	assert.ErrorContains(t, err, "1/2 are missing")
	_, err = Merge([]Summary{a, a})
	assert.ErrorContains(t, err, "twice")
	_, err = Merge([]Summary{a, {Shard: "0/3"}})
	assert.ErrorContains(t, err, "of 3 shards")
}
