package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ktstr/ktstr/internal/libfuzzer"
)

// rateRow is one target's two runs.
type rateRow struct {
	t     Target
	lf    LibFuzzerRun
	gf    GoFuzzRun
	lfErr error
	gfErr error
}

// cmdRate runs every target for -time with each engine in turn, one
// worker each, both from the same seed corpus (the zip libFuzzer gets is
// the export of what go test starts from; go test gets a fresh fuzz
// cache), and prints their executions per second side by side.
func cmdRate(args []string) error {
	fs := flag.NewFlagSet("rate", flag.ContinueOnError)
	var c common
	c.register(fs)
	d := fs.Duration("time", 20*time.Second, "how long each engine fuzzes each target")
	minimize := fs.String("minimize", "1000x", "go test's -fuzzminimizetime (make fuzz's FUZZMINIMIZETIME)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	targets, err := c.targets()
	if err != nil {
		return err
	}
	fmt.Printf("lfuzz rate: each target %s per engine from its seed corpus, one worker each, in turn: the libFuzzer binary (-max_total_time), then go test -fuzz (-parallel 1, -fuzzminimizetime %s, fresh fuzz cache)\n", d, *minimize)
	testBins := map[string]string{}
	var rows []rateRow
	for _, t := range targets {
		row := rateRow{t: t}
		work := filepath.Join(c.dir, "rate", t.Name)
		if err := os.RemoveAll(work); err != nil {
			return err
		}
		row.lf, row.lfErr = runLibFuzzer(&c, t, work, *d)
		tb, ok := testBins[t.Package]
		if !ok {
			tb, err = buildFuzzTest(&c, t)
			if err != nil {
				return err
			}
			testBins[t.Package] = tb
		}
		row.gf, row.gfErr = runGoFuzz(&c, t, tb, work, *d, *minimize)
		rows = append(rows, row)
		fmt.Println(row.line())
	}
	fmt.Println("lfuzz rate: summary (executions per second over the whole run, the engine's own clock; libFuzzer/go is the ratio)")
	failed := 0
	for _, r := range rows {
		fmt.Println(r.line())
		if r.lfErr != nil || r.gfErr != nil {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d target(s) failed or crashed (see above)", failed)
	}
	return nil
}

// line formats a row.
func (r rateRow) line() string {
	lf, gf := "failed: "+fmt.Sprint(r.lfErr), "failed: "+fmt.Sprint(r.gfErr)
	if r.lfErr == nil {
		lf = fmt.Sprintf("%7s/s (%s execs, %d edges, %d inputs)", group(r.lf.ExecsPerSec), group(r.lf.Execs), r.lf.Cov, r.lf.Corpus)
	}
	if r.gfErr == nil {
		gf = fmt.Sprintf("%7s/s (%s execs in %s, %d inputs)", group(int64(r.gf.Rate()+0.5)), group(r.gf.Execs), r.gf.Elapsed, r.gf.Interesting)
	}
	ratio := ""
	if r.lfErr == nil && r.gfErr == nil && r.gf.Rate() > 0 {
		ratio = fmt.Sprintf("  libFuzzer/go %.2f", float64(r.lf.ExecsPerSec)/r.gf.Rate())
	}
	return fmt.Sprintf("  %-22s libFuzzer %s   go test -fuzz %s%s", r.t.Func, lf, gf, ratio)
}

// runLibFuzzer fuzzes t's binary for d from a fresh copy of its seed
// corpus in work/corpus, with crash artifacts in work.
func runLibFuzzer(c *common, t Target, work string, d time.Duration) (LibFuzzerRun, error) {
	bin, err := c.binary(t)
	if err != nil {
		return LibFuzzerRun{}, err
	}
	files, err := readZip(filepath.Join(c.dir, t.SeedZip()))
	if err != nil {
		return LibFuzzerRun{}, err
	}
	if err := writeDir(filepath.Join(work, "corpus"), files); err != nil {
		return LibFuzzerRun{}, err
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return LibFuzzerRun{}, err
	}
	cmd := exec.Command(abs, "-max_total_time="+seconds(d), "-print_final_stats=1", "corpus")
	cmd.Dir = work
	cmd.Env = withoutEnv(os.Environ(), libfuzzer.ExportEnv)
	log, runErr := runLogged(cmd, filepath.Join(work, "libfuzzer.log"))
	r, err := ParseLibFuzzer(log)
	if runErr != nil {
		return r, fmt.Errorf("%v; input and log in %s:\n%s", runErr, work, tail(log, 12))
	}
	return r, err
}

// buildFuzzTest builds t's package's test binary with go test's fuzzing
// instrumentation (go test -c -fuzz), from the tree the libFuzzer build
// ran in.
func buildFuzzTest(c *common, t Target) (string, error) {
	abs, err := filepath.Abs(filepath.Join(c.dir, "rate", strings.ReplaceAll(t.Package, "/", "_")+".test"))
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "test", "-c", "-fuzz", "^"+t.Func+"$", "-o", abs, t.Package)
	cmd.Dir = c.src()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go test -c -fuzz %s: %v\n%s", t.Package, err, out)
	}
	return abs, nil
}

// runGoFuzz fuzzes t with go test's engine for d on one worker, in its
// package's directory of the build's tree (so a failing input lands
// there, not in the working tree), with a fresh cache in work.
func runGoFuzz(c *common, t Target, testBin, work string, d time.Duration, minimize string) (GoFuzzRun, error) {
	dir, err := packageDir(c.src(), t.Package)
	if err != nil {
		return GoFuzzRun{}, err
	}
	cache, err := filepath.Abs(filepath.Join(work, "gocache"))
	if err != nil {
		return GoFuzzRun{}, err
	}
	cmd := exec.Command(testBin, "-test.run", "^$", "-test.fuzz", "^"+t.Func+"$", "-test.fuzztime", d.String(),
		"-test.parallel", "1", "-test.fuzzminimizetime", minimize, "-test.fuzzcachedir", cache, "-test.timeout", "0")
	cmd.Dir = dir
	cmd.Env = withoutEnv(os.Environ(), libfuzzer.ExportEnv, libfuzzer.NoSeedsEnv)
	log, runErr := runLogged(cmd, filepath.Join(work, "gotest.log"))
	r, err := ParseGoFuzz(log)
	if runErr != nil && DeadlineRace(log) {
		fmt.Printf("lfuzz rate: %s: go test -fuzz failed at its -fuzztime deadline with no failing input (Go 1.26's coordinator race, go.dev/issue/75804); its executions until then are counted\n", t.Func)
		return r, err
	}
	if runErr != nil {
		return r, fmt.Errorf("%v; log in %s:\n%s", runErr, work, tail(log, 12))
	}
	return r, err
}

// runLogged runs cmd, keeping its output in memory and in logPath.
func runLogged(cmd *exec.Cmd, logPath string) ([]byte, error) {
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	err := cmd.Run()
	if werr := os.WriteFile(logPath, log.Bytes(), 0o644); werr != nil && err == nil {
		err = werr
	}
	return log.Bytes(), err
}

// packageDir returns the directory of package pkg in the module at root.
func packageDir(root, pkg string) (string, error) {
	cmd := exec.Command("go", "list", "-f", "{{.Dir}}", pkg)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list %s in %s: %w", pkg, root, err)
	}
	return strings.TrimSpace(string(out)), nil
}
