package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const oneRound = `goos: linux
BenchmarkFeed/payload=64-2     	100	  40.00 ns/op	 2000.00 MB/s	 25000000 frames/s	 0 B/op	 0 allocs/op
BenchmarkFeed/payload=4096-2   	100	 200.00 ns/op	20000.00 MB/s	  5000000 frames/s	 0 B/op	 0 allocs/op
BenchmarkCRC/payload=64-2      	100	  20.00 ns/op	 4000.00 MB/s
BenchmarkCRC/payload=4096-2    	100	 100.00 ns/op	40000.00 MB/s
PASS
`

func TestOneRound(t *testing.T) {
	var out strings.Builder
	require.NoError(t, run(strings.NewReader(oneRound), &out, []string{"Feed:CRC"}))
	s := out.String()
	assert.Contains(t, s, "Feed vs CRC (same run)")
	assert.Regexp(t, `payload=64 +2000\.0 MB/s vs +4000\.0 MB/s +ratio 0\.50 +25\.0 M frames/s +0 allocs/op`, s)
	assert.Regexp(t, `payload=4096 +20000\.0 MB/s vs +40000\.0 MB/s +ratio 0\.50`, s)
	assert.NotContains(t, s, "rounds", "one round has no range")
	assert.Less(t, strings.Index(s, "payload=64 "), strings.Index(s, "payload=4096 "), "sizes in numeric order")
}

// TestRoundsArePairedAndTheMedianTaken: three rounds whose reference
// drifts; each round's ratio is taken within the round, and the median
// of 0.5, 0.9 and 1.0 is 0.9 (the ratio of the medians would be 0.8).
func TestRoundsArePairedAndTheMedianTaken(t *testing.T) {
	in := `BenchmarkFeed/payload=4096-2 1 100 ns/op 1000 MB/s 3 allocs/op
BenchmarkCRC/payload=4096-2 1 50 ns/op 2000 MB/s
BenchmarkFeed/payload=4096-2 1 200 ns/op 500 MB/s 0 allocs/op
BenchmarkCRC/payload=4096-2 1 180 ns/op 555 MB/s
BenchmarkFeed/payload=4096-2 1 160 ns/op 625 MB/s 0 allocs/op
BenchmarkCRC/payload=4096-2 1 160 ns/op 625 MB/s
`
	var out strings.Builder
	require.NoError(t, run(strings.NewReader(in), &out, []string{"Feed:CRC"}))
	assert.Regexp(t, `ratio 0\.90 \(median of 3 rounds, 0\.50–1\.00\)`, out.String())
	assert.Regexp(t, `3 allocs/op`, out.String(), "the worst round's allocations")
}

func TestErrors(t *testing.T) {
	var out strings.Builder
	assert.ErrorContains(t, run(strings.NewReader(oneRound), &out, []string{"FeedCRC"}), "SUBJECT:REFERENCE")
	assert.ErrorContains(t, run(strings.NewReader(oneRound), &out, []string{"Nope:CRC"}), "no results for Nope")
	unpaired := oneRound + "BenchmarkFeed/payload=64-2 1 40 ns/op 2000 MB/s\n"
	assert.ErrorContains(t, run(strings.NewReader(unpaired), &out, []string{"Feed:CRC"}), "cannot be paired")
	require.NoError(t, run(strings.NewReader(oneRound), &out, []string{"Feed:CRC"}), "positive control")
}
