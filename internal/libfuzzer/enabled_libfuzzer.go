//go:build libfuzzer

package libfuzzer

// Enabled reports whether targets should add their f.Add seeds: never in
// a libFuzzer build (go-118-fuzz-build sets the build tag libfuzzer).
// There f.Add does nothing, and the fuzz function runs once per input,
// harness and all, so building the seeds (loading the seed traces: a
// directory walk and a zstd decode) would cost every execution; the
// seeds reach libFuzzer as NAME_seed_corpus.zip instead (Exporter,
// `lfuzz seeds`).
func Enabled() bool { return false }
