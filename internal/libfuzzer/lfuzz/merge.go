package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/ktstr/ktstr/corpus"
	"github.com/ktstr/ktstr/internal/libfuzzer"
)

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// cmdMerge minimizes every checked-in corpus (testdata/fuzz/FUNCTION of a
// target's package) with the target's libFuzzer binary and -merge=1, and
// writes the result back in Go's corpus format: files it keeps stay byte
// for byte, files it drops are removed, inputs it takes from -from
// directories (DIR/FUZZER or DIR/FUNCTION: libFuzzer corpora, such as a
// ClusterFuzzLite corpus, or Go corpus files, such as go test's fuzz
// cache) are added where they add coverage. The exports of the checked-in traces
// (`make corpus`) are kept whatever libFuzzer says: the corpus must hold
// every one (TestCheckedInCorpusCoversTraces).
func cmdMerge(args []string) error {
	fs := flag.NewFlagSet("merge", flag.ContinueOnError)
	var c common
	c.register(fs)
	var from multiFlag
	fs.Var(&from, "from", "a directory with more candidate inputs in a subdirectory per target, named by its FUZZER or FUNCTION (a ClusterFuzzLite corpus, GOCACHE/fuzz/PACKAGE): raw libFuzzer or Go corpus files (repeatable)")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	targets, err := c.targets()
	if err != nil {
		return err
	}
	protected, err := traceExports()
	if err != nil {
		return err
	}
	merged := 0
	for _, t := range targets {
		dir, err := packageDir(".", t.Package)
		if err != nil {
			return err
		}
		ok, err := mergeTarget(&c, t, filepath.Join(dir, "testdata", "fuzz", t.Func), from, protected)
		if err != nil {
			return fmt.Errorf("%s: %w", t.Func, err)
		}
		if ok {
			merged++
		}
	}
	if merged == 0 {
		fmt.Println("lfuzz merge: no target has a checked-in corpus")
	}
	return nil
}

// traceExports returns the names of the Go corpus files `make corpus`
// exports the checked-in traces to.
func traceExports() (map[string]bool, error) {
	paths, err := corpus.TracePaths(".")
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		in, _, err := corpus.ExportTrace(f, corpus.DefaultExportLimit)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		names[corpus.GoFuzzFileName(corpus.MarshalGoFuzzFile(in))] = true
	}
	return names, nil
}

// candidate is one input of a merge.
type candidate struct {
	raw    []byte // the libFuzzer input
	goFile []byte // its Go corpus file, as checked in when it is
	name   string // its checked-in name, "" when it comes from -from
}

// mergeTarget merges one target's corpus in dir; false when there is none.
func mergeTarget(c *common, t Target, dir string, from []string, protected map[string]bool) (bool, error) {
	checkedIn, err := readDir(dir)
	if os.IsNotExist(err) || (err == nil && len(checkedIn) == 0) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	bin, err := c.binary(t)
	if err != nil {
		return false, err
	}
	var types []reflect.Type
	byRaw := map[string]candidate{} // by the raw input's SHA-256
	var keep, others []string
	add := func(cd candidate, protect bool) {
		id := rawID(cd.raw)
		if _, dup := byRaw[id]; dup {
			return
		}
		byRaw[id] = cd
		if protect {
			keep = append(keep, id)
		} else {
			others = append(others, id)
		}
	}
	for _, name := range sortedKeys(checkedIn) {
		vals, err := UnmarshalGo(checkedIn[name])
		if err != nil {
			return false, fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
		}
		if types == nil {
			types = libfuzzer.Types(vals)
		} else if !reflect.DeepEqual(types, libfuzzer.Types(vals)) {
			return false, fmt.Errorf("%s holds %v, the other files %v", filepath.Join(dir, name), libfuzzer.Types(vals), types)
		}
		raw, err := libfuzzer.Encode(vals...)
		if err != nil {
			return false, fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
		}
		add(candidate{raw: raw, goFile: checkedIn[name], name: name}, protected[name])
	}
	extra := 0
	for _, d := range from {
		files, err := readDir(filepath.Join(d, t.Name))
		if os.IsNotExist(err) {
			files, err = readDir(filepath.Join(d, t.Func))
		}
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return false, err
		}
		for _, name := range sortedKeys(files) {
			b := files[name]
			raw := b
			if bytes.HasPrefix(b, []byte("go test fuzz v1")) {
				vals, err := UnmarshalGo(b)
				if err != nil || !reflect.DeepEqual(libfuzzer.Types(vals), types) {
					continue // another target's, or not a corpus file
				}
				if raw, err = libfuzzer.Encode(vals...); err != nil {
					continue
				}
			} else if _, err := libfuzzer.Decode(raw, types); err != nil {
				continue // libFuzzer would not run it as an input of this target either
			}
			extra++
			add(candidate{raw: raw}, false)
		}
	}
	work := filepath.Join(c.dir, "merge", t.Name)
	if err := os.RemoveAll(work); err != nil {
		return false, err
	}
	// What libFuzzer alone keeps of everything, for the record.
	alone, err := libFuzzerMerge(bin, work, "alone", nil, append(slices.Clone(keep), others...), byRaw)
	if err != nil {
		return false, err
	}
	// The merge itself: the protected inputs first, so that they stay.
	kept, err := libFuzzerMerge(bin, work, "kept", keep, others, byRaw)
	if err != nil {
		return false, err
	}
	want := map[string][]byte{}
	for _, id := range kept {
		cd, ok := byRaw[id]
		if !ok {
			return false, fmt.Errorf("libFuzzer's merge wrote an input that is none of the candidates (%s)", id)
		}
		if cd.name != "" {
			want[cd.name] = cd.goFile
			continue
		}
		vals, err := libfuzzer.Decode(cd.raw, types)
		if err != nil {
			return false, err
		}
		g, err := MarshalGo(vals...)
		if err != nil {
			return false, err
		}
		want[GoName(g)] = g
	}
	removed, added := 0, 0
	for name := range checkedIn {
		if _, ok := want[name]; !ok {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return false, err
			}
			removed++
		}
	}
	for name, g := range want {
		if _, ok := checkedIn[name]; !ok {
			if err := os.WriteFile(filepath.Join(dir, name), g, 0o644); err != nil {
				return false, err
			}
			added++
		}
	}
	fmt.Printf("lfuzz merge: %-22s %d checked in (%d exports of checked-in traces, kept regardless) + %d from -from: kept %d, removed %d, added %d; libFuzzer's -merge=1 alone would keep %d of the %d\n",
		t.Func, len(checkedIn), len(keep), extra, len(want), removed, added, len(alone), len(byRaw))
	return true, nil
}

// libFuzzerMerge runs bin -merge=1 into work/name, which starts with the
// inputs first, over a directory of the inputs rest, and returns the ids
// of what the merged directory holds.
func libFuzzerMerge(bin, work, name string, first, rest []string, byRaw map[string]candidate) ([]string, error) {
	out, in := filepath.Join(work, name), filepath.Join(work, name+".candidates")
	files := func(ids []string) map[string][]byte {
		m := map[string][]byte{}
		for _, id := range ids {
			m[id] = byRaw[id].raw
		}
		return m
	}
	if err := writeDir(out, files(first)); err != nil {
		return nil, err
	}
	if err := writeDir(in, files(rest)); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(abs, "-merge=1", name, name+".candidates")
	cmd.Dir = work
	cmd.Env = withoutEnv(os.Environ(), libfuzzer.ExportEnv)
	log, err := runLogged(cmd, filepath.Join(work, name+".log"))
	if err != nil {
		return nil, fmt.Errorf("%s -merge=1: %v\n%s", bin, err, tail(log, 12))
	}
	got, err := readDir(out)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, b := range got {
		ids = append(ids, rawID(b))
	}
	slices.Sort(ids)
	return ids, nil
}

// rawID names a raw input by its SHA-256.
func rawID(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for n := range m {
		k = append(k, n)
	}
	slices.Sort(k)
	return k
}
