package tracetool

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDDMinFindsTheNeededUnits: with a property that holds exactly when
// the subset contains every unit of need, ddmin returns need, and the
// result is 1-minimal.
func TestDDMinFindsTheNeededUnits(t *testing.T) {
	tests := []struct {
		n    int
		need []int
	}{
		{1, []int{0}},
		{2, []int{1}},
		{10, []int{3}},
		{10, []int{0, 9}},
		{100, []int{17, 18, 19}},
		{508, []int{250}},
		{64, []int{1, 2, 4, 8, 16, 32, 63}},
		{7, []int{0, 1, 2, 3, 4, 5, 6}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.n, tt.need), func(t *testing.T) {
			calls := 0
			test := func(keep []int) bool {
				calls++
				require.True(t, slices.IsSorted(keep), "subsets come in increasing order")
				for _, u := range tt.need {
					if !slices.Contains(keep, u) {
						return false
					}
				}
				return true
			}
			got := ddmin(tt.n, test, func() bool { return false })
			t.Logf("%d units, %d needed: %d tests", tt.n, len(tt.need), calls)
			assert.Equal(t, tt.need, got)
			for i := range got {
				assert.False(t, test(slices.Delete(slices.Clone(got), i, i+1)), "removing unit %d keeps the property: not 1-minimal", got[i])
			}
		})
	}
}

// TestDDMinEmptyAndNothing: a property that needs nothing ends at the
// empty set in one test (the positive control of the search's first
// step); zero units is the empty set with no test at all.
func TestDDMinEmptyAndNothing(t *testing.T) {
	calls := 0
	got := ddmin(50, func([]int) bool { calls++; return true }, func() bool { return false })
	assert.Empty(t, got)
	assert.Equal(t, 1, calls)

	calls = 0
	got = ddmin(0, func([]int) bool { calls++; return true }, func() bool { return false })
	assert.Empty(t, got)
	assert.Zero(t, calls)
}

// TestDDMinStops: stop ends the search early with a passing subset, and
// without it the same search runs on to the minimum.
func TestDDMinStops(t *testing.T) {
	need := []int{5, 50, 95}
	holds := func(keep []int) bool {
		for _, u := range need {
			if !slices.Contains(keep, u) {
				return false
			}
		}
		return true
	}
	calls := 0
	got := ddmin(100, func(k []int) bool { calls++; return holds(k) }, func() bool { return calls >= 5 })
	assert.True(t, holds(got), "the subset returned still passes")
	assert.Greater(t, len(got), len(need), "stopped early, so not yet minimal")
	assert.LessOrEqual(t, calls, 5)

	full := ddmin(100, holds, func() bool { return false })
	assert.Equal(t, need, full, "the same search without stop reaches the minimum")
}
