//go:build ktstr_brokengate

package dispatch

// brokenGate: this build deliberately drops the CRC check from the SNRQ
// row, so a torn snapshot request takes effect. Only the oracle tests
// (replay's campaign, fuzz's FuzzDispatch) are built with it.
const brokenGate = true
