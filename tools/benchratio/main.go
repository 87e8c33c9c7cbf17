// Command benchratio reads `go test -bench` output and prints, for each
// pair of benchmarks measured in the same run, their throughputs and the
// ratio subject/reference. `make bench` uses it so every speed target is
// reported against a reference measured alongside it.
//
// Usage:
//
//	go test -bench . ./dispatch | benchratio FeedDispatch:CRC32 ...
//
// Each argument names a subject and a reference benchmark; sub-benchmarks
// (the part after the first '/') are matched by name. Throughput is MB/s
// where the benchmark set bytes, else ops/s.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

type result struct {
	nsPerOp float64
	mbPerS  float64
	extra   map[string]float64
}

func main() {
	if err := run(os.Stdin, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchratio:", err)
		os.Exit(2)
	}
}

func run(in io.Reader, out io.Writer, pairs []string) error {
	results := map[string]result{}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(out, line)
		name, r, ok := parse(line)
		if ok {
			results[name] = r
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading benchmark output: %w", err)
	}
	for _, p := range pairs {
		subj, ref, ok := strings.Cut(p, ":")
		if !ok {
			return fmt.Errorf("pair %q must be SUBJECT:REFERENCE", p)
		}
		fmt.Fprintf(out, "\n%s vs %s (same run)\n", subj, ref)
		var subs []string
		for name := range results {
			if b, sub, ok := strings.Cut(name, "/"); ok && b == subj {
				subs = append(subs, sub)
			} else if name == subj {
				subs = append(subs, "")
			}
		}
		sort.Slice(subs, func(i, j int) bool { return natLess(subs[i], subs[j]) })
		if len(subs) == 0 {
			return fmt.Errorf("no results for %s: did the benchmark run?", subj)
		}
		for _, sub := range subs {
			key := func(b string) string {
				if sub == "" {
					return b
				}
				return b + "/" + sub
			}
			s, r := results[key(subj)], results[key(ref)]
			if r.nsPerOp == 0 {
				fmt.Fprintf(out, "  %-16s no reference result\n", sub)
				continue
			}
			line := fmt.Sprintf("  %-16s %10.1f MB/s vs %10.1f MB/s   ratio %.2f", sub, s.mbPerS, r.mbPerS, r.nsPerOp/s.nsPerOp)
			if f, ok := s.extra["frames/s"]; ok {
				line += fmt.Sprintf("   %.1f M frames/s", f/1e6)
			}
			if a, ok := s.extra["allocs/op"]; ok {
				line += fmt.Sprintf("   %.0f allocs/op", a)
			}
			fmt.Fprintln(out, line)
		}
	}
	return nil
}

// parse reads one benchmark result line; the name loses its -GOMAXPROCS
// suffix.
func parse(line string) (string, result, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
		return "", result{}, false
	}
	name := strings.TrimPrefix(f[0], "Benchmark")
	if i := strings.LastIndex(name, "-"); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name = name[:i]
		}
	}
	r := result{extra: map[string]float64{}}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			continue
		}
		switch f[i+1] {
		case "ns/op":
			r.nsPerOp = v
		case "MB/s":
			r.mbPerS = v
		default:
			r.extra[f[i+1]] = v
		}
	}
	return name, r, r.nsPerOp > 0
}

// natLess orders "payload=64" before "payload=4096".
func natLess(a, b string) bool {
	ai, aerr := strconv.Atoi(a[strings.LastIndex(a, "=")+1:])
	bi, berr := strconv.Atoi(b[strings.LastIndex(b, "=")+1:])
	if aerr == nil && berr == nil && a[:strings.LastIndex(a, "=")+1] == b[:strings.LastIndex(b, "=")+1] {
		return ai < bi
	}
	return a < b
}
