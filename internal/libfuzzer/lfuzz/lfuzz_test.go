package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// moduleRoot returns the root of the module holding the test.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, parent, dir, "no go.mod above the test")
		dir = parent
	}
}

// buildScript returns the targets of the checked-in build script.
func buildScript(t *testing.T) []Target {
	t.Helper()
	f, err := os.Open(filepath.Join(moduleRoot(t), defaultScript))
	require.NoError(t, err)
	defer f.Close()
	targets, err := ParseBuildScript(f)
	require.NoError(t, err)
	return targets
}

// notBuilt says why a fuzz target of the module is not in build.sh, ""
// when it should be.
func notBuilt(fn string) string {
	switch fn {
	case "FuzzBaseline":
		return "fuzz: the engine's own reference for make fuzz-rate, with nothing to fuzz"
	}
	return ""
}

// TestBuildScriptListsEveryTarget: every fuzz target of the module is a
// compile_native_go_fuzzer line of .clusterfuzzlite/build.sh, or is
// listed in notBuilt with the reason; and every line names a target
// that exists, in the package the line says.
func TestBuildScriptListsEveryTarget(t *testing.T) {
	root := moduleRoot(t)
	mod, err := modulePath(root)
	require.NoError(t, err)
	found, err := scanFuzzFuncs(root)
	require.NoError(t, err)
	require.NotEmpty(t, found)
	targets := buildScript(t)
	listed := map[string]Target{}
	for _, tg := range targets {
		listed[tg.Func] = tg
	}
	seen := map[string]bool{}
	for _, f := range found {
		seen[f.Func] = true
		tg, ok := listed[f.Func]
		if !ok {
			if why := notBuilt(f.Func); why != "" {
				t.Logf("not in build.sh: %s (%s): %s", f.Func, f.Dir, why)
				continue
			}
			t.Errorf("%s (%s) is not built for libFuzzer: add a compile_native_go_fuzzer line to %s", f.Func, f.Dir, defaultScript)
			continue
		}
		assert.Equal(t, mod+"/"+f.Dir, tg.Package, "%s: build.sh line %d names the wrong package", f.Func, tg.Line)
		assert.Empty(t, notBuilt(f.Func), "%s is built now: drop it from notBuilt", f.Func)
	}
	for _, tg := range targets {
		assert.True(t, seen[tg.Func], "build.sh line %d names %s, which no _test.go file declares", tg.Line, tg.Func)
	}
}

// TestScanFuzzFuncs is the positive control of the check above: a target
// in a package's test file is found, one in testdata is not.
func TestScanFuzzFuncs(t *testing.T) {
	root := t.TempDir()
	write := func(rel, text string) {
		p := filepath.Join(root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	}
	write("a/x_test.go", "package a\n\nfunc FuzzNew(f *testing.F) {}\nfunc TestNot(t *testing.T) {}\n")
	write("a/testdata/y_test.go", "package a\n\nfunc FuzzHidden(f *testing.F) {}\n")
	write("b/z.go", "package b\n\nfunc FuzzNotATest(f *testing.F) {}\n")
	found, err := scanFuzzFuncs(root)
	require.NoError(t, err)
	assert.Equal(t, []fuzzFunc{{Dir: "a", Func: "FuzzNew"}}, found)
}

// TestTargetNamedOnlyInItsHarness: each target's function name appears in
// one .go file under its package's directory, the harness. The base
// image's compile_native_go_fuzzer finds the harness with grep -r, and
// its coverage build copies what grep found with one cp, which fails on
// several files; our compile_native_go_fuzzer refuses the same.
func TestTargetNamedOnlyInItsHarness(t *testing.T) {
	root := moduleRoot(t)
	mod, err := modulePath(root)
	require.NoError(t, err)
	for _, tg := range buildScript(t) {
		dir := filepath.Join(root, strings.TrimPrefix(strings.TrimPrefix(tg.Package, mod), "/"))
		files, err := namedIn(dir, tg.Func)
		require.NoError(t, err)
		if assert.Len(t, files, 1, "%s is named in these .go files under %s: name it only in its harness", tg.Func, dir) {
			b, err := os.ReadFile(files[0])
			require.NoError(t, err)
			assert.Regexp(t, `(?m)^func `+tg.Func+`\(\w+ \*testing\.F\)`, string(b))
		}
	}

	// Positive control: a second file naming the target is reported.
	tmp := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(tmp, "h_test.go"), []byte("func FuzzX(f *testing.F) {}"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(tmp, "sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tmp, "sub", "doc.go"), []byte("// like FuzzX"), 0o644))
	files, err := namedIn(tmp, "FuzzX")
	require.NoError(t, err)
	assert.Len(t, files, 2)
}

// exportsItsInputs reports whether the declaration of fn in src hands
// every input to libfuzzer.Exporter's function, which is how its seeds reach
// libFuzzer (lfuzz seeds fails the build when none arrive).
func exportsItsInputs(src, fn string) bool {
	start := strings.Index(src, "func "+fn+"(")
	if start < 0 {
		return false
	}
	body := src[start:]
	if end := strings.Index(body[1:], "\nfunc "); end >= 0 {
		body = body[:end+1]
	}
	return strings.Contains(body, "libfuzzer.Exporter()") && strings.Contains(body, "export(t, ")
}

// TestHarnessesExportTheirInputs: every target of build.sh calls
// libfuzzer.Exporter's function in its fuzz function, so that make test
// says so before a libFuzzer build does.
func TestHarnessesExportTheirInputs(t *testing.T) {
	root := moduleRoot(t)
	mod, err := modulePath(root)
	require.NoError(t, err)
	for _, tg := range buildScript(t) {
		dir := filepath.Join(root, strings.TrimPrefix(strings.TrimPrefix(tg.Package, mod), "/"))
		files, err := namedIn(dir, tg.Func)
		require.NoError(t, err)
		require.NotEmpty(t, files, tg.Func)
		b, err := os.ReadFile(files[0])
		require.NoError(t, err)
		assert.True(t, exportsItsInputs(string(b), tg.Func),
			"%s (%s) does not call libfuzzer.Exporter's function first in its fuzz function: its seeds would not reach libFuzzer", tg.Func, files[0])
	}

	// Positive control: a target without it is reported, one with it is not.
	without := "func FuzzA(f *testing.F) {\n\tf.Fuzz(func(t *testing.T, b []byte) {})\n}\n\nfunc FuzzB(f *testing.F) {\n\texport := libfuzzer.Exporter()\n\t_ = export\n}\n"
	assert.False(t, exportsItsInputs(without, "FuzzA"))
	with := "func FuzzA(f *testing.F) {\n\texport := libfuzzer.Exporter()\n\tf.Fuzz(func(t *testing.T, b []byte) {\n\t\tif export != nil {\n\t\t\texport(t, b)\n\t\t}\n\t})\n}\n"
	assert.True(t, exportsItsInputs(with, "FuzzA"))
}

// TestParseBuildScript reads the command lines and refuses what the base
// image's command would not build as written.
func TestParseBuildScript(t *testing.T) {
	good := "#!/bin/bash -eu\n# compile_native_go_fuzzer in a comment\ngo get x\n" +
		"compile_native_go_fuzzer example.com/m/p FuzzA fuzz_a\n\ncompile_native_go_fuzzer example.com/m/q FuzzB fuzz-b\n"
	got, err := ParseBuildScript(strings.NewReader(good))
	require.NoError(t, err)
	assert.Equal(t, []Target{
		{Package: "example.com/m/p", Func: "FuzzA", Name: "fuzz_a", Line: 4},
		{Package: "example.com/m/q", Func: "FuzzB", Name: "fuzz-b", Line: 6},
	}, got)
	assert.Equal(t, "fuzz_a_seed_corpus.zip", got[0].SeedZip())
	tg, ok := Lookup(got, "fuzz-b")
	assert.True(t, ok)
	assert.Equal(t, "FuzzB", tg.Func)

	for name, script := range map[string]string{
		"no target":     "#!/bin/bash\n",
		"tags":          "compile_native_go_fuzzer example.com/m/p FuzzA fuzz_a gofuzz\n",
		"too few":       "compile_native_go_fuzzer example.com/m/p FuzzA\n",
		"not a fuzzer":  "compile_native_go_fuzzer example.com/m/p TestA test_a\n",
		"dot in name":   "compile_native_go_fuzzer example.com/m/p FuzzA fuzz.a\n",
		"name twice":    "compile_native_go_fuzzer example.com/m/p FuzzA a\ncompile_native_go_fuzzer example.com/m/p FuzzB a\n",
		"inside a word": "echo compile_native_go_fuzzer\n",
	} {
		_, err := ParseBuildScript(strings.NewReader(script))
		assert.ErrorIs(t, err, ErrBuildScript, name)
	}
}

// TestGoCorpusMatchesTheCheckedInFiles: every corpus file checked in under
// a testdata/fuzz/ of the module (written by go test or by ktstr corpus
// export) parses, writes back byte for byte, and is named as go test
// names it, so that fuzz-merge keeps what it keeps unchanged and names
// what it adds as go test would.
func TestGoCorpusMatchesTheCheckedInFiles(t *testing.T) {
	root := moduleRoot(t)
	files, err := filepath.Glob(filepath.Join(root, "*", "testdata", "fuzz", "*", "*"))
	require.NoError(t, err)
	more, err := filepath.Glob(filepath.Join(root, "*", "*", "testdata", "fuzz", "*", "*"))
	require.NoError(t, err)
	files = append(files, more...)
	require.NotEmpty(t, files)
	for _, p := range files {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		vals, err := UnmarshalGo(b)
		require.NoError(t, err, p)
		back, err := MarshalGo(vals...)
		require.NoError(t, err, p)
		assert.Equal(t, string(b), string(back), p)
		assert.Equal(t, filepath.Base(p), GoName(b), p)
	}
}

// TestUnmarshalGo reads the forms go test writes and people write, and
// refuses the rest.
func TestUnmarshalGo(t *testing.T) {
	in := "go test fuzz v1\n[]byte(\"a\\x00b\")\nstring(`raw`)\nbool(true)\nbyte('\\x80')\nuint8(0x10)\nbyte('a')\n" +
		"rune('é')\nint32(-1)\nint(-7)\nint8(-128)\nint16(300)\nint64(-9)\nuint(7)\nuint16(65535)\nuint32(4000000000)\nuint64(18446744073709551615)\n"
	got, err := UnmarshalGo([]byte(in))
	require.NoError(t, err)
	assert.Equal(t, []any{[]byte("a\x00b"), "raw", true, uint8(0x80), uint8(0x10), uint8('a'),
		int32('é'), int32(-1), int(-7), int8(-128), int16(300), int64(-9), uint(7), uint16(65535), uint32(4000000000), uint64(18446744073709551615)}, got)

	marshalled, err := MarshalGo(uint8(0x80), int32(-1), int32('é'), "s", []byte{1})
	require.NoError(t, err)
	assert.Equal(t, "go test fuzz v1\nbyte('\\u0080')\nint32(-1)\nrune('é')\nstring(\"s\")\n[]byte(\"\\x01\")\n", string(marshalled))

	for name, bad := range map[string]string{
		"no header":      "[]byte(\"a\")\n",
		"no values":      "go test fuzz v1\n",
		"float":          "go test fuzz v1\nfloat64(1.5)\n",
		"not quoted":     "go test fuzz v1\n[]byte(abc)\n",
		"overflow":       "go test fuzz v1\nuint8(256)\n",
		"char too big":   "go test fuzz v1\nbyte('€')\n",
		"two characters": "go test fuzz v1\nrune('ab')\n",
		"no parentheses": "go test fuzz v1\nbool true\n",
	} {
		_, err := UnmarshalGo([]byte(bad))
		assert.ErrorIs(t, err, ErrGoCorpus, name)
	}
}

// TestParseLibFuzzer reads the final stats and the last status line of a
// libFuzzer run (output of this build's fuzz_virtqueue).
func TestParseLibFuzzer(t *testing.T) {
	out := `INFO: seed corpus: files: 5 min: 9b max: 16413b total: 65669b rss: 36Mb
#6	INITED cov: 428 ft: 534 corp: 5/64Kb exec/s: 0 rss: 51Mb
#12381	NEW    cov: 411 ft: 476 corp: 25/259b lim: 104 exec/s: 1547 rss: 63Mb L: 9/94 MS: 3 CopyPart-ChangeBinInt-CopyPart-
#15281	DONE   cov: 412 ft: 476 corp: 26/259b lim: 128 exec/s: 1389 rss: 63Mb
Done 15281 runs in 11 second(s)
stat::number_of_executed_units: 15281
stat::average_exec_per_sec:     1389
stat::new_units_added:          35
`
	r, err := ParseLibFuzzer([]byte(out))
	require.NoError(t, err)
	assert.Equal(t, LibFuzzerRun{Execs: 15281, ExecsPerSec: 1389, Cov: 412, Corpus: 26}, r)
	_, err = ParseLibFuzzer([]byte("#6	INITED cov: 428 ft: 534 corp: 5/64Kb exec/s: 0 rss: 51Mb\n"))
	assert.ErrorIs(t, err, ErrNoStats)
}

// TestParseGoFuzz reads the last progress line of a go test -fuzz run.
func TestParseGoFuzz(t *testing.T) {
	out := `fuzz: elapsed: 0s, gathering baseline coverage: 0/31 completed
fuzz: elapsed: 0s, gathering baseline coverage: 31/31 completed, now fuzzing with 1 workers
fuzz: elapsed: 3s, execs: 60114 (20037/sec), new interesting: 40 (total: 71)
fuzz: elapsed: 5s, execs: 101797 (20838/sec), new interesting: 64 (total: 95)
PASS
`
	r, err := ParseGoFuzz([]byte(out))
	require.NoError(t, err)
	assert.Equal(t, GoFuzzRun{Elapsed: 5 * time.Second, Execs: 101797, Interesting: 95}, r)
	assert.InDelta(t, 20359.4, r.Rate(), 0.1)
	_, err = ParseGoFuzz([]byte("fuzz: elapsed: 0s, gathering baseline coverage: 0/31 completed\n"))
	assert.ErrorIs(t, err, ErrNoStats)
}

// TestCompareSets is the check's own positive control: a seed that comes
// back under another name (decoded to other values) is reported.
func TestCompareSets(t *testing.T) {
	want := map[string][]byte{"a": nil, "b": nil}
	assert.Empty(t, compareSets(want, map[string][]byte{"b": nil, "a": nil}))
	d := compareSets(want, map[string][]byte{"a": nil, "c": nil})
	assert.Contains(t, d, "1 did not reach the target as encoded (b)")
	assert.Contains(t, d, "1 other inputs did (c)")
}

// TestZip: the seed archive holds the files, and the same files give
// the same archive.
func TestZip(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]byte{"b": []byte("two"), "a": []byte("one"), "c": {}}
	p1, p2 := filepath.Join(dir, "1.zip"), filepath.Join(dir, "2.zip")
	require.NoError(t, writeZip(p1, files))
	require.NoError(t, writeZip(p2, files))
	got, err := readZip(p1)
	require.NoError(t, err)
	assert.Equal(t, files, got)
	b1, err := os.ReadFile(p1)
	require.NoError(t, err)
	b2, err := os.ReadFile(p2)
	require.NoError(t, err)
	assert.Equal(t, b1, b2)
}

// TestWithoutEnv drops exactly the variables named.
func TestWithoutEnv(t *testing.T) {
	got := withoutEnv([]string{"A=1", "AB=2", "B=3", "C="}, "A", "C")
	assert.Equal(t, []string{"AB=2", "B=3"}, got)
	assert.True(t, slices.Equal([]string{"x=1"}, withoutEnv([]string{"x=1"})))
}

// TestGroup formats counts as the rate table prints them.
func TestGroup(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -4500: "-4,500"} {
		assert.Equal(t, want, group(n))
	}
	assert.Equal(t, "20", seconds(20*time.Second))
	assert.Equal(t, "1", seconds(100*time.Millisecond))
}

// TestDeadlineRace: the log of go test -fuzz failing at its deadline
// with no input (as CI saw on FuzzPayloads) is the coordinator's race;
// a log with a failing input written is a finding, and a clean one is
// neither. Its executions still parse.
func TestDeadlineRace(t *testing.T) {
	race := []byte("fuzz: elapsed: 0s, gathering baseline coverage: 11/11 completed, now fuzzing with 1 workers\n" +
		"fuzz: elapsed: 3s, execs: 102424 (34133/sec), new interesting: 35 (total: 46)\n" +
		"fuzz: elapsed: 5s, execs: 176475 (36740/sec), new interesting: 38 (total: 49)\n" +
		"--- FAIL: FuzzPayloads (5.02s)\n    context deadline exceeded\nFAIL\n")
	finding := append(append([]byte(nil), race...), []byte("    Failing input written to testdata/fuzz/FuzzPayloads/0123abcd\n")...)
	clean := []byte("fuzz: elapsed: 5s, execs: 176475 (36740/sec), new interesting: 38 (total: 49)\nPASS\n")
	assert.True(t, DeadlineRace(race))
	assert.False(t, DeadlineRace(finding), "a failing input written is a finding")
	assert.False(t, DeadlineRace(clean))
	r, err := ParseGoFuzz(race)
	require.NoError(t, err)
	assert.Equal(t, int64(176475), r.Execs)
}
