package main

import (
	"bufio"
	"errors"
	"fmt"
	"go/token"
	"io"
	"regexp"
	"strings"
)

// CompileCommand is the base image's command that builds one native Go
// fuzz target as a libFuzzer binary: compile_native_go_fuzzer PACKAGE
// FUNCTION FUZZER [TAGS].
const CompileCommand = "compile_native_go_fuzzer"

// ErrBuildScript reports a build.sh line this package cannot read.
var ErrBuildScript = errors.New("libfuzzer: bad build script")

// Target is one fuzz target of .clusterfuzzlite/build.sh.
type Target struct {
	// Package is the import path of the package holding the target.
	Package string
	// Func is the fuzz function, Fuzz….
	Func string
	// Name is the libFuzzer binary's name in $OUT, and the prefix of its
	// seed corpus, Name_seed_corpus.zip.
	Name string
	// Line is the line of build.sh that names the target.
	Line int
}

// SeedZip returns the name of the target's seed corpus in $OUT.
func (t Target) SeedZip() string { return t.Name + "_seed_corpus.zip" }

// binaryName is what OSS-Fuzz accepts as a fuzz target's file name:
// letters, digits, '_' and '-', no dot, no extension.
var binaryName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// ParseBuildScript returns the targets of a ClusterFuzzLite build.sh, one
// per compile_native_go_fuzzer line, in order. A line naming a target
// must be the plain command and its three words (a fourth, the tags, is
// refused: the base image's command ignores it); comments and other
// lines are skipped. Errors wrap ErrBuildScript and name the line.
func ParseBuildScript(r io.Reader) ([]Target, error) {
	var out []Target
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if code, _, _ := strings.Cut(line, "#"); !strings.Contains(code, CompileCommand) {
			continue
		}
		f := strings.Fields(line)
		if f[0] != CompileCommand || len(f) != 4 {
			return nil, fmt.Errorf("%w: line %d: want %q followed by PACKAGE FUNCTION FUZZER and nothing else, got %q", ErrBuildScript, n, CompileCommand, line)
		}
		t := Target{Package: f[1], Func: f[2], Name: f[3], Line: n}
		switch {
		case !token.IsIdentifier(t.Func) || !strings.HasPrefix(t.Func, "Fuzz"):
			return nil, fmt.Errorf("%w: line %d: %q is not a fuzz function name", ErrBuildScript, n, t.Func)
		case !binaryName.MatchString(t.Name):
			return nil, fmt.Errorf("%w: line %d: fuzzer name %q: OSS-Fuzz wants letters, digits, '_' and '-' only", ErrBuildScript, n, t.Name)
		case seen[t.Name] != 0:
			return nil, fmt.Errorf("%w: line %d: fuzzer name %q is used on line %d too", ErrBuildScript, n, t.Name, seen[t.Name])
		}
		seen[t.Name] = n
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBuildScript, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no %s line", ErrBuildScript, CompileCommand)
	}
	return out, nil
}

// Lookup returns the target named name (its binary's name).
func Lookup(targets []Target, name string) (Target, bool) {
	for _, t := range targets {
		if t.Name == name {
			return t, true
		}
	}
	return Target{}, false
}
