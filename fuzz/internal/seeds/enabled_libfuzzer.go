//go:build libfuzzer

package seeds

// Enabled reports whether targets should add their f.Add seeds: never in
// a libFuzzer build (go-118-fuzz-build sets the build tag libfuzzer).
// There f.Add does nothing, and the fuzz function runs once per input,
// harness and all, so loading the seed traces would cost every execution
// a directory walk and a zstd decode; the seeds reach libFuzzer as
// NAME_seed_corpus.zip instead (Export, `lfuzz seeds`).
func Enabled() bool { return false }
