// Command lfuzz builds the native Go fuzz targets as libFuzzer binaries
// the way OSS-Fuzz and ClusterFuzzLite do, runs them, and carries corpora
// between libFuzzer and `go test` (docs/fuzzing.md, mk/libfuzzer.mk).
//
// Usage, from the module root:
//
//	lfuzz seeds -o OUT BUILD_SH     each target's seed corpus as OUT/NAME_seed_corpus.zip
//	lfuzz build [-o DIR]            run .clusterfuzzlite/build.sh here, as the base image would
//	lfuzz check [-o DIR]            the seeds reach every binary as the values go test runs
//	lfuzz rate [-o DIR] [-time D]   executions per second, libFuzzer against go test -fuzz
//	lfuzz merge [-o DIR] [-from DIR]...
//	                                minimize the checked-in corpora with libFuzzer's -merge=1
//	lfuzz brokengate [-o DIR] [-target NAME] [-time D]
//	                                the libFuzzer build of a target finds the ktstr_brokengate bug
//
// `seeds` runs inside build.sh (in the base image as here); the others
// work on the build `lfuzz build` leaves in DIR (out/libfuzzer). The
// targets are the compile_native_go_fuzzer lines of the build script.
//
// Exit status: 0; 1 when a build, a check or a target fails; 2 on bad
// usage; 3 when a tool is missing (the message names the package to
// install).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Defaults shared by the subcommands.
const (
	defaultDir    = "out/libfuzzer"
	defaultScript = ".clusterfuzzlite/build.sh"
)

// errMissingTool marks a failure that installing a tool fixes (exit 3).
var errMissingTool = errors.New("missing tool")

// usageError marks bad arguments (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lfuzz seeds|build|check|rate|merge|brokengate [flags] (see go doc ./internal/libfuzzer/lfuzz)")
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"seeds":      cmdSeeds,
		"build":      cmdBuild,
		"check":      cmdCheck,
		"rate":       cmdRate,
		"merge":      cmdMerge,
		"brokengate": cmdBrokengate,
	}
	run, ok := cmds[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "lfuzz: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
	err := run(os.Args[2:])
	var ue usageError
	switch {
	case err == nil:
		return
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "lfuzz %s: %v\n", os.Args[1], err)
		os.Exit(2)
	case errors.Is(err, errMissingTool):
		fmt.Fprintf(os.Stderr, "lfuzz %s: %v\n", os.Args[1], err)
		os.Exit(3)
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	}
	fmt.Fprintf(os.Stderr, "lfuzz %s: %v\n", os.Args[1], err)
	os.Exit(1)
}

// common are the flags of the subcommands that work on a build.
type common struct {
	dir    string
	script string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.dir, "o", defaultDir, "the build's directory: binaries and seed corpora, src/ (the tree build.sh ran in), work/")
	fs.StringVar(&c.script, "script", defaultScript, "the ClusterFuzzLite build script naming the targets")
}

// targets reads the build script's targets, and makes the build's
// directory absolute (the commands run there and elsewhere).
func (c *common) targets() ([]Target, error) {
	if c.dir != "" {
		abs, err := filepath.Abs(c.dir)
		if err != nil {
			return nil, err
		}
		c.dir = abs
	}
	f, err := os.Open(c.script)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := ParseBuildScript(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.script, err)
	}
	return t, nil
}

// binary returns the path of a target's libFuzzer binary, checking that
// the build made it.
func (c *common) binary(t Target) (string, error) {
	p := filepath.Join(c.dir, t.Name)
	if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s: no libFuzzer binary %s: run `make libfuzzer-build` (lfuzz build) first", t.Func, p)
	}
	return p, nil
}

// src returns the tree the build ran in (the copy build.sh changed).
func (c *common) src() string { return filepath.Join(c.dir, "src", "ktstr") }

// parse parses a subcommand's flags, requiring want positional
// arguments (-1: any).
func parse(fs *flag.FlagSet, args []string, want int) error {
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if want >= 0 && fs.NArg() != want {
		return usageError{fmt.Sprintf("want %d argument(s), got %q", want, fs.Args())}
	}
	return nil
}

// seconds formats a duration as libFuzzer's -max_total_time wants it.
func seconds(d time.Duration) string {
	return fmt.Sprint(max(1, int((d+time.Second/2)/time.Second)))
}

// group formats n with thousands separators.
func group(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + group(-n)
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
