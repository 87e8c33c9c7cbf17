//go:build ktstr_brokengate

package fuzz

import (
	"testing"

	"github.com/ktstr/ktstr/corpus"
)

// TestCheckDispatchCatchesBrokenGate is the positive control of the
// dispatch target's oracle (dispatch_test.go): built with -tags
// ktstr_brokengate, Dispatch accepts a torn SNRQ, and checkDispatch must
// say so on the torn-SNRQ seed. (The target itself fails in this build,
// from its seed corpus; make fuzz-brokengate shows it also finds the bug
// from the checked-in corpus less those seeds, and make
// libfuzzer-brokengate the same of its libFuzzer build.)
func TestCheckDispatchCatchesBrokenGate(t *testing.T) {
	for _, seed := range corpus.Seeds() {
		if seed.Name != "snapshot-request-torn" {
			continue
		}
		v := checkDispatch(corpus.EncodeDispatchInput(seed.Stream()))
		if len(v) == 0 {
			t.Fatal("checkDispatch passes a torn SNRQ in the broken build")
		}
		t.Logf("caught: %s", v[0])
		return
	}
	t.Fatal("seed snapshot-request-torn is missing")
}
