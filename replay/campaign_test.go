//go:build !ktstr_brokengate

package replay_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/corpus"
	"github.com/ktstr/ktstr/replay"
)

// TestMutationCampaignFindsNoViolation runs the mutation campaign over
// every seed stream: no mutant may break an invariant. Its positive
// control is campaign_brokengate_test.go, built with -tags
// ktstr_brokengate, where the same campaign must find violations.
func TestMutationCampaignFindsNoViolation(t *testing.T) {
	n := 160
	if testing.Short() {
		n = 32
	}
	perOp := map[string]int{}
	for _, seed := range corpus.Seeds() {
		s := streamOf(seed)
		c := replay.Mutate(s, n, 7)
		mutants, failing := c.Total()
		require.Positive(t, mutants)
		if !assert.Zero(t, failing, "seed %s", seed.Name) {
			var buf bytes.Buffer
			c.WriteTable(&buf)
			t.Log(buf.String())
		}
		for _, o := range c.Operators {
			perOp[o.Name] += o.Mutants
		}
	}
	for _, op := range replay.Operators() {
		assert.Positive(t, perOp[op.Name], "operator %s produced no mutant", op.Name)
	}
}

func streamOf(seed corpus.Seed) *replay.Stream {
	s := &replay.Stream{}
	for i, d := range seed.Deliveries {
		s.Append(int64(i+1)*1000, d)
	}
	return s
}
