package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// fuzzFunc is a fuzz target found in the module's sources.
type fuzzFunc struct {
	Dir  string // the package's directory, relative to the module root
	Func string
}

// fuzzDecl matches the declaration of a fuzz target, as go test finds it.
var fuzzDecl = regexp.MustCompile(`^func (Fuzz[A-Za-z0-9_]*)\(\w+ \*testing\.F\)`)

// scanFuzzFuncs returns every fuzz target declared in the _test.go files
// under root, skipping testdata and hidden directories and out/.
func scanFuzzFuncs(root string) ([]fuzzFunc, error) {
	var out []fuzzFunc
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "testdata" || name == "out" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if m := fuzzDecl.FindStringSubmatch(sc.Text()); m != nil {
				out = append(out, fuzzFunc{Dir: filepath.ToSlash(rel), Func: m[1]})
			}
		}
		return sc.Err()
	})
	return out, err
}

// namedIn returns the .go files under dir, subdirectories included, whose
// text contains name: what the base image's compile_native_go_fuzzer
// finds with `grep -r -l --include='*.go' NAME DIR`.
func namedIn(dir, name string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(d.Name(), ".go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(name)) {
			files = append(files, path)
		}
		return nil
	})
	return files, err
}

// modulePath reads the module path from root/go.mod.
func modulePath(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.TrimSpace(p), nil
		}
	}
	return "", fmt.Errorf("%s/go.mod has no module line", root)
}
