package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ktstr/ktstr/internal/libfuzzer"
)

// cmdBrokengate is make fuzz-brokengate's proof, for libFuzzer: the
// target is built again with -tags ktstr_brokengate (dispatch then judges
// a torn SNRQ as intact), and
//
//  1. run over its seed corpus, which holds torn SNRQs on purpose, it
//     must fail at once, which shows the seeds reach it and its oracle
//     catches the bug;
//  2. fuzzed from the checked-in corpus less every entry that already
//     fails, it must find the bug within -time, so that libFuzzer has to
//     tear a well-formed SNRQ itself;
//  3. the input it found must pass the normal build: the failure is the
//     broken gate's.
func cmdBrokengate(args []string) error {
	fs := flag.NewFlagSet("brokengate", flag.ContinueOnError)
	var c common
	c.register(fs)
	name := fs.String("target", "", "the binary name (build.sh's FUZZER) of the target to prove")
	d := fs.Duration("time", 60*time.Second, "how long the fuzzer may take to find the bug")
	from := fs.String("corpus", "checked-in", "what the fuzzer starts from: checked-in (the checked-in corpus less what already fails) or empty")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	targets, err := c.targets()
	if err != nil {
		return err
	}
	t, ok := Lookup(targets, *name)
	if !ok {
		return usageError{fmt.Sprintf("-target %q is not a target of %s", *name, c.script)}
	}
	normal, err := c.binary(t)
	if err != nil {
		return err
	}
	seedFiles, err := readZip(filepath.Join(c.dir, t.SeedZip()))
	if err != nil {
		return err
	}
	_, tc, err := c.toolchain()
	if err != nil {
		return err
	}
	work, err := filepath.Abs(filepath.Join(c.dir, "brokengate"))
	if err != nil {
		return err
	}
	if err := os.RemoveAll(work); err != nil {
		return err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	env, err := tc.env(c.dir, "address")
	if err != nil {
		return err
	}
	broken := t.Name + "_brokengate"
	cmd := exec.Command(filepath.Join(c.src(), ".clusterfuzzlite", "bin", "compile_native_go_fuzzer"), t.Package, t.Func, broken, "ktstr_brokengate")
	cmd.Dir = c.src()
	cmd.Env = append(withoutEnv(env, "OUT"), "OUT="+work)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building %s with -tags ktstr_brokengate: %v", t.Func, err)
	}
	bin := filepath.Join(work, broken)

	// 1. The seed corpus.
	if err := writeDir(filepath.Join(work, "seeds"), seedFiles); err != nil {
		return err
	}
	log, err := runIn(work, bin, "-runs=0", "seeds")
	if err == nil {
		return fmt.Errorf("the broken build ran its %d seeds without failing, torn SNRQs among them:\n%s", len(seedFiles), tail(log, 12))
	}
	fmt.Printf("lfuzz brokengate: %s with the broken SNRQ gate fails on its seed corpus, as it must: %s\n", t.Func, firstMatch(log, invariantLine))

	// 2. Fuzzing from the checked-in corpus less what already fails, or
	// from nothing.
	start := filepath.Join(work, "corpus")
	if err := os.MkdirAll(start, 0o755); err != nil {
		return err
	}
	checkedIn := map[string][]byte{}
	switch *from {
	case "empty":
	case "checked-in":
		dir, err := packageDir(".", t.Package)
		if err != nil {
			return err
		}
		if checkedIn, err = readDir(filepath.Join(dir, "testdata", "fuzz", t.Func)); err != nil {
			return fmt.Errorf("the proof starts from the checked-in corpus: %w", err)
		}
	default:
		return usageError{fmt.Sprintf("-corpus %q: want checked-in or empty", *from)}
	}
	kept, dropped := 0, 0
	for _, n := range sortedKeys(checkedIn) {
		vals, err := UnmarshalGo(checkedIn[n])
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
		raw, err := libfuzzer.Encode(vals...)
		if err != nil {
			return err
		}
		one := filepath.Join(work, "one")
		if err := os.WriteFile(one, raw, 0o644); err != nil {
			return err
		}
		if _, err := runIn(work, bin, one); err != nil {
			dropped++
			continue
		}
		if err := writeDir(start, map[string][]byte{rawID(raw): raw}); err != nil {
			return err
		}
		kept++
	}
	if *from == "empty" {
		fmt.Printf("lfuzz brokengate: fuzzing from an empty corpus, up to %s\n", d)
	} else {
		fmt.Printf("lfuzz brokengate: fuzzing from %d checked-in corpus entries (%d that already expose the bug left out), up to %s\n", kept, dropped, d)
	}
	began := time.Now()
	log, err = runIn(work, bin, "-max_total_time="+seconds(*d), "-print_final_stats=1", "-artifact_prefix="+work+"/", "corpus")
	took := time.Since(began)
	crash := firstMatch(log, artifactLine)
	if err == nil || crash == "" {
		return fmt.Errorf("the fuzzer did not find the broken gate in %s (%v):\n%s", d, err, tail(log, 12))
	}
	r, _ := ParseLibFuzzer(log)
	fmt.Printf("lfuzz brokengate: found after %.2fs wall, %s executions: %s\n", took.Seconds(), group(r.Execs), firstMatch(log, invariantLine))

	// 3. The same input in the normal build.
	if log, err := runIn(work, mustAbsPath(normal), crash); err != nil {
		return fmt.Errorf("the input %s fails the normal build too, so it is a real bug, not the broken gate:\n%s", crash, tail(log, 20))
	}
	fmt.Printf("lfuzz brokengate: the same input (%s) passes the normal build: the failure is the broken gate's\n", crash)
	return nil
}

var (
	invariantLine = regexp.MustCompile(`invariant \d+[^\n]*`)
	artifactLine  = regexp.MustCompile(`Test unit written to (\S+)`)
)

// firstMatch returns re's first match in log (its group, if it has one),
// cut to one line of at most 200 bytes.
func firstMatch(log []byte, re *regexp.Regexp) string {
	m := re.FindSubmatch(log)
	if m == nil {
		return ""
	}
	s := string(m[len(m)-1])
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.TrimSpace(s)
}

// runIn runs bin with args in dir, returning its output.
func runIn(dir, bin string, args ...string) ([]byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = withoutEnv(os.Environ(), libfuzzer.ExportEnv)
	return cmd.CombinedOutput()
}

func mustAbsPath(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}
