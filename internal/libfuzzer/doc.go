// Package libfuzzer is what the native Go fuzz targets share so that
// they run under both engines: `go test -fuzz`, whose corpus files are
// "go test fuzz v1" text (one typed value a line), and libFuzzer, which
// runs the same targets compiled by github.com/AdamKorcz/go-118-fuzz-build
// and hands them raw bytes that go-118-fuzz-build's testing.F.Fuzz cuts
// into the target's arguments. It holds
//
//   - the raw encoding of a target's arguments (Encode, Decode), so that
//     a corpus minimized by libFuzzer can be written back to
//     testdata/fuzz/ and go test's seeds can be handed to libFuzzer;
//   - Exporter, which every harness calls first in its fuzz function:
//     with ExportEnv set it writes each input as the libFuzzer input that
//     decodes to the same arguments, which is how the f.Add seeds reach
//     OSS-Fuzz and ClusterFuzzLite (they ignore f.Add);
//   - Enabled, which says whether a harness should build its f.Add seeds
//     at all: never in a libFuzzer build, where the whole FuzzX(f) runs
//     once per input, nor with NoSeedsEnv set.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it stands before the tap: it only carries the inputs a fuzz
// target starts from, and fuzzes nothing itself. It sits at the module
// root's internal/, not under fuzz/, so that the harnesses of capture
// and dispatch can import it too; it imports nothing of the module, so
// that neither import makes a cycle, and no assertion library, since
// anything a harness links in is coverage-instrumented in its fuzz
// binary (docs/fuzzing.md). Its functions take no testing.TB: a harness
// built with go-118-fuzz-build has a *testing.F and *testing.T of that
// module's own, which do not implement it (T is what both have).
//
// The raw encoding restates how go-118-fuzz-build
// v0.0.0-20250520111509-a70c2aa677fa (testing/f.go) reads each argument
// type with github.com/AdaLogics/go-fuzz-headers
// v0.0.0-20230811130428-ced1acdcaa24 (consumer.go), the versions
// .clusterfuzzlite/build.sh pins; `lfuzz check` verifies it against the
// real decoder in every build (docs/fuzzing.md).
package libfuzzer
