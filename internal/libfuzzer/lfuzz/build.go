package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// go118Module is the module of go-118-fuzz-build; build.sh pins its
// version in its `go get …/testing@VERSION` line, and lfuzz build
// installs the tool at the same version.
const go118Module = "github.com/AdamKorcz/go-118-fuzz-build"

var go118Pin = regexp.MustCompile(regexp.QuoteMeta(go118Module) + `/testing@(v[0-9A-Za-z.+-]+)`)

// toolchain is what a libFuzzer build needs besides Go.
type toolchain struct {
	cc, cxx   string // clang and clang++
	fuzzBuild string // the directory holding go-118-fuzz-build
}

// cmdBuild runs the build script as the base-builder-go image would:
// in a copy of the tree (go-118-fuzz-build rewrites harness files while
// it builds, and build.sh changes go.mod), with the base image's
// environment, and .clusterfuzzlite/bin first on PATH for its
// compile_native_go_fuzzer.
func cmdBuild(args []string) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	var c common
	c.register(fs)
	sanitizer := fs.String("sanitizer", "address", "SANITIZER: address (libFuzzer binaries) or coverage (go test -cover binaries, as the coverage workflow builds)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	targets, err := c.targets()
	if err != nil {
		return err
	}
	script, tc, err := c.toolchain()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := os.RemoveAll(c.dir); err != nil {
		return err
	}
	src := filepath.Join(c.dir, "src")
	n, err := copyTree(c.src())
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(src, "build.sh"), script, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(c.dir, "work"), 0o755); err != nil {
		return err
	}
	fmt.Printf("lfuzz build: %d files copied to %s; running %s there as the base image does (SANITIZER=%s, %s, %s)\n",
		n, c.src(), filepath.Join(src, "build.sh"), *sanitizer, tc.cc, filepath.Join(tc.fuzzBuild, "go-118-fuzz-build"))
	env, err := tc.env(c.dir, *sanitizer)
	if err != nil {
		return err
	}
	cmd := exec.Command("bash", "-eu", filepath.Join(src, "build.sh"))
	cmd.Dir = c.src()
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build.sh failed (%v)", err)
	}
	for _, t := range targets {
		if _, err := c.binary(t); err != nil {
			return fmt.Errorf("build.sh succeeded but %w", err)
		}
		if _, err := os.Stat(filepath.Join(c.dir, t.SeedZip())); err != nil {
			return fmt.Errorf("build.sh succeeded but wrote no %s", t.SeedZip())
		}
	}
	fmt.Printf("lfuzz build: %d targets built into %s in %.0fs\n", len(targets), c.dir, time.Since(start).Seconds())
	return nil
}

// env returns the environment build.sh runs with: the base image's
// variables for a libFuzzer build (infra/base-images/base-builder:
// Dockerfile, compile, compile_libfuzzer) with this machine's clang.
// One thing is left out: the base image also links its gosigfuzz.o into
// Go targets, which adds SA_ONSTACK to the signal handlers libFuzzer
// installs; the binaries here run, and report a crash
// (make libfuzzer-brokengate), without it.
func (tc toolchain) env(dir, sanitizer string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	flags := "-O1 -fno-omit-frame-pointer -gline-tables-only -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION"
	switch sanitizer {
	case "address":
		flags += " -fsanitize=address -fsanitize-address-use-after-scope -fsanitize=fuzzer-no-link"
	case "coverage":
		flags += " -fprofile-instr-generate -fcoverage-mapping -pthread -Wl,--no-as-needed -Wl,-ldl -Wl,-lm -Wno-unused-command-line-argument"
	default:
		return nil, usageError{fmt.Sprintf("-sanitizer %q: want address or coverage", sanitizer)}
	}
	path := strings.Join([]string{filepath.Join(abs, "src", "ktstr", ".clusterfuzzlite", "bin"), tc.fuzzBuild, os.Getenv("PATH")}, string(os.PathListSeparator))
	return append(withoutEnv(os.Environ(), "PATH", "CC", "CXX", "CFLAGS", "CXXFLAGS", "OUT", "SRC", "WORK"),
		"PATH="+path,
		"SRC="+filepath.Join(abs, "src"),
		"OUT="+abs,
		"WORK="+filepath.Join(abs, "work"),
		"CC="+tc.cc,
		"CXX="+tc.cxx+" -lresolv", // compile adds -lresolv for Go since Go 1.20
		"CFLAGS="+flags,
		"CXXFLAGS="+flags,
		"LIB_FUZZING_ENGINE=-fsanitize=fuzzer",
		"SANITIZER="+sanitizer,
		"FUZZING_ENGINE=libfuzzer",
		"FUZZING_LANGUAGE=go",
		"ARCHITECTURE=x86_64",
	), nil
}

// findToolchain finds clang and clang++ (CC and CXX, else clang or the
// newest clang-N on PATH), checks that clang links -fsanitize=fuzzer,
// and installs go-118-fuzz-build at version into toolDir unless it is
// there.
// toolchain reads the build script and returns it with the toolchain it
// builds with: clang, and go-118-fuzz-build at the version the script
// pins (installed into out/tools/ when missing).
func (c common) toolchain() ([]byte, toolchain, error) {
	script, err := os.ReadFile(c.script)
	if err != nil {
		return nil, toolchain{}, err
	}
	m := go118Pin.FindSubmatch(script)
	if m == nil {
		return nil, toolchain{}, fmt.Errorf("%s pins no version of %s/testing (go get …/testing@VERSION)", c.script, go118Module)
	}
	tc, err := findToolchain(filepath.Join("out", "tools", "go-118-fuzz-build@"+string(m[1])), string(m[1]))
	return script, tc, err
}

func findToolchain(toolDir, version string) (toolchain, error) {
	var tc toolchain
	const fix = "apt-get install -y clang-16 libclang-rt-16-dev (Debian 12; any clang with its compiler-rt will do, named by CC and CXX)"
	tc.cc, tc.cxx = os.Getenv("CC"), os.Getenv("CXX")
	if tc.cc == "" || tc.cxx == "" {
		for _, suffix := range []string{"", "-20", "-19", "-18", "-17", "-16", "-15", "-14"} {
			cc, err1 := exec.LookPath("clang" + suffix)
			cxx, err2 := exec.LookPath("clang++" + suffix)
			if err1 == nil && err2 == nil {
				tc.cc, tc.cxx = cc, cxx
				break
			}
		}
	}
	if tc.cc == "" {
		return tc, fmt.Errorf("%w: no clang on PATH: %s", errMissingTool, fix)
	}
	probe, err := os.MkdirTemp("", "lfuzz-probe-")
	if err != nil {
		return tc, err
	}
	defer os.RemoveAll(probe)
	c := filepath.Join(probe, "probe.c")
	if err := os.WriteFile(c, []byte("int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }\n"), 0o644); err != nil {
		return tc, err
	}
	if out, err := exec.Command(tc.cc, "-fsanitize=fuzzer,address", c, "-o", filepath.Join(probe, "probe")).CombinedOutput(); err != nil {
		return tc, fmt.Errorf("%w: %s cannot link -fsanitize=fuzzer,address (is its compiler-rt installed?): %s\n%s", errMissingTool, tc.cc, fix, bytes.TrimSpace(out))
	}
	abs, err := filepath.Abs(toolDir)
	if err != nil {
		return tc, err
	}
	tc.fuzzBuild = abs
	if _, err := os.Stat(filepath.Join(abs, "go-118-fuzz-build")); err == nil {
		return tc, nil
	}
	fmt.Printf("lfuzz build: installing %s@%s into %s\n", go118Module, version, abs)
	cmd := exec.Command("go", "install", go118Module+"@"+version)
	cmd.Env = append(withoutEnv(os.Environ(), "GOBIN"), "GOBIN="+abs)
	if out, err := cmd.CombinedOutput(); err != nil {
		return tc, fmt.Errorf("%w: go install %s@%s failed (is the Go module proxy reachable?): %v\n%s", errMissingTool, go118Module, version, err, out)
	}
	return tc, nil
}

// copyTree copies the files git knows or would add (tracked, and
// untracked but not ignored) to dst, keeping their modes, and returns how
// many it copied.
func copyTree(dst string) (int, error) {
	out, err := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return 0, fmt.Errorf("listing the tree with git ls-files (lfuzz build copies a git checkout): %w", err)
	}
	n := 0
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		st, err := os.Lstat(name)
		if os.IsNotExist(err) {
			continue // deleted in the working tree, not yet in the index
		}
		if err != nil {
			return n, err
		}
		if !st.Mode().IsRegular() {
			continue
		}
		to := filepath.Join(dst, name)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return n, err
		}
		if err := copyFile(name, to, st.Mode().Perm()); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func copyFile(from, to string, perm os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
