//go:build ktstr_brokengate

package replay_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ktstr/ktstr/corpus"
	"github.com/ktstr/ktstr/replay"
)

// TestMutationCampaignCatchesBrokenGate is the oracle's positive
// control: built with -tags ktstr_brokengate, dispatch accepts torn SNRQ
// frames, and the campaign over the seed streams must say so.
func TestMutationCampaignCatchesBrokenGate(t *testing.T) {
	failing := 0
	for _, seed := range corpus.Seeds() {
		c := replay.Mutate(streamOf(seed), 160, 7)
		_, f := c.Total()
		failing += f
		for _, fl := range c.Failures {
			t.Logf("%s mutant %d (%s): %s", seed.Name, fl.Index, fl.Operator, fl.Violations[0])
			break
		}
	}
	assert.Positive(t, failing, "the campaign must catch the broken SNRQ gate")
}

func streamOf(seed corpus.Seed) *replay.Stream {
	s := &replay.Stream{}
	for i, d := range seed.Deliveries {
		s.Append(int64(i+1)*1000, d)
	}
	return s
}
