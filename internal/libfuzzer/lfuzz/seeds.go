package main

import (
	"archive/zip"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ktstr/ktstr/internal/libfuzzer"
)

// cmdSeeds writes every target's seed corpus: it runs each package's
// targets over their seed corpora with `go test -run` and libfuzzer.ExportEnv
// set, which makes every input go test feeds a target (f.Add and
// testdata/fuzz/TARGET) land in a directory as the libFuzzer input that
// decodes to the same values, and zips those into OUT/NAME_seed_corpus.zip.
func cmdSeeds(args []string) error {
	fs := flag.NewFlagSet("seeds", flag.ContinueOnError)
	out := fs.String("o", "", "where to write NAME_seed_corpus.zip ($OUT)")
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if *out == "" {
		return usageError{"-o is required"}
	}
	c := common{script: fs.Arg(0)}
	targets, err := c.targets()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "lfuzz-seeds-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	got, err := exportSeeds(targets, tmp)
	if err != nil {
		return err
	}
	for _, t := range targets {
		files := got[t.Func]
		if len(files) == 0 {
			return fmt.Errorf("%s: go test ran no input through libfuzzer.Exporter: does its fuzz function call export(t, …) first?", t.Func)
		}
		path := filepath.Join(*out, t.SeedZip())
		if err := writeZip(path, files); err != nil {
			return err
		}
		fmt.Printf("lfuzz seeds: %-24s %3d inputs (its f.Add seeds and testdata/fuzz/%s) → %s\n", t.Name, len(files), t.Func, path)
	}
	return nil
}

// exportSeeds runs the targets' seed corpora through `go test` with
// libfuzzer.ExportEnv set to dir and returns, per fuzz function, the files
// written (name → raw input).
func exportSeeds(targets []Target, dir string) (map[string]map[string][]byte, error) {
	byPkg := map[string][]string{}
	var pkgs []string
	for _, t := range targets {
		if _, ok := byPkg[t.Package]; !ok {
			pkgs = append(pkgs, t.Package)
		}
		byPkg[t.Package] = append(byPkg[t.Package], regexp.QuoteMeta(t.Func))
	}
	for _, pkg := range pkgs {
		start := time.Now()
		cmd := exec.Command("go", "test", "-count=1", "-run", "^("+strings.Join(byPkg[pkg], "|")+")$", pkg)
		cmd.Env = append(withoutEnv(os.Environ(), libfuzzer.NoSeedsEnv, libfuzzer.ExportEnv), libfuzzer.ExportEnv+"="+dir)
		var log bytes.Buffer
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("go test %s over the seed corpora failed (%v):\n%s", pkg, err, log.Bytes())
		}
		fmt.Printf("lfuzz seeds: ran the seed corpora of %s in %.1fs\n", pkg, time.Since(start).Seconds())
	}
	out := map[string]map[string][]byte{}
	for _, t := range targets {
		files, err := readDir(filepath.Join(dir, t.Func))
		if err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		out[t.Func] = files
	}
	return out, nil
}

// withoutEnv returns env less the variables named.
func withoutEnv(env []string, names ...string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(names, k)
	})
}

// readDir returns the regular files of dir, name → content.
func readDir(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out[e.Name()] = b
	}
	return out, nil
}

// writeDir writes files into dir (created), name → content.
func writeDir(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeZip writes files to a zip at path, in name order and with a fixed
// time, so the same seeds give the same archive.
func writeZip(path string, files map[string][]byte) error {
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		f, err := w.CreateHeader(&zip.FileHeader{Name: n, Method: zip.Deflate, Modified: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			return err
		}
		if _, err := f.Write(files[n]); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// readZip returns the files of a zip, name → content.
func readZip(path string) (map[string][]byte, error) {
	r, err := zip.OpenReader(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	out := map[string][]byte{}
	for _, f := range r.File {
		if f.FileInfo().IsDir() {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, f.Name, err)
		}
		out[filepath.Base(f.Name)] = b
	}
	return out, nil
}
