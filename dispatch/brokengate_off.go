//go:build !ktstr_brokengate

package dispatch

// brokenGate is false in every real build. Under the ktstr_brokengate
// build tag it turns off the CRC check for SNRQ frames, the deliberately
// broken gate that the mutation campaign and the fuzz targets must catch
// (their positive control). The constant folds away otherwise.
const brokenGate = false
