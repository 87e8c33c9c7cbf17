package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

const sample = `BenchmarkFeedDispatchPastBudget/payload=0-2   	16457250	        22.13 ns/op	 722.86 MB/s	  45178619 frames/s	       0 B/op	       0 allocs/op
FeedDispatch vs CRC32SHA256 (same run)
  payload=0             182.2 MB/s vs      233.4 MB/s   ratio 0.79 (median of 3 rounds, 0.78–0.80)   11.4 M frames/s   0 allocs/op
  payload=4096         1889.9 MB/s vs     1937.4 MB/s   ratio 0.85 (median of 3 rounds, 0.84–0.86)   0.5 M frames/s   0 allocs/op
BenchmarkSchedExitLatency-2   	       1	38533248486 ns/op	         0.04607 frozen-median-ms	         6.475 gone-max-ms
BenchmarkRecordOverhead-2 1 1 ns/op 0.95 write-ratio 1.01 boot-ratio
`

// TestSummarize: figures that meet their target say yes, a missed one
// says NO and counts (the control of the yes), and an absent one is
// named as not measured.
func TestSummarize(t *testing.T) {
	got := parse(strings.NewReader(sample))
	assert.Equal(t, []float64{0.79}, got["ratio:FeedDispatch vs CRC32SHA256/payload=0"]["ratio"])
	assert.Equal(t, []float64{45178619}, got["BenchmarkFeedDispatchPastBudget/payload=0"]["frames/s"])
	var out strings.Builder
	missed, absent := summarize(&out, got)
	s := out.String()
	assert.Equal(t, 1, missed, s) // 4 KiB at 0.85 < 0.9
	assert.Contains(t, s, "dispatch, payload 4 KiB")
	assert.Regexp(t, `payload 4 KiB\s+0\.85\s+≥ 0\.9\s+NO`, s)
	assert.Regexp(t, `payload 0 \(vs CRC-32 \+ SHA-256\)\s+0\.79\s+≥ 0\.7\s+yes`, s)
	assert.Regexp(t, `SCDX → VM gone, max ms\s+6\.47\s+≤ 10\s+yes`, s)
	assert.Regexp(t, `boot ratio, recorded vs bare QEMU\s+1\.01\s+≤ 1\.03\s+yes`, s)
	assert.Equal(t, len(targets())-7, absent, s)
}
