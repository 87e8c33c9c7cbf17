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
//
// The input may hold several rounds: the same benchmarks run again, as
// when the test binary is run several times over (make bench-dispatch).
// The k-th result of a subject is then paired with the k-th of its
// reference, measured minutes apart at most, and the median of the
// per-round ratios is printed with their range; throughputs are
// medians too. On a shared machine whose speed drifts, this keeps one
// slow stretch from deciding the ratio.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
)

type result struct {
	nsPerOp float64
	mbPerS  float64
	extra   map[string]float64
}

// median returns the median of v (the mean of the middle two for an
// even count); v is sorted in place.
func median(v []float64) float64 {
	sort.Float64s(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// pick returns f of each result.
func pick(rs []result, f func(result) float64) []float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return v
}

func main() {
	if err := run(os.Stdin, os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchratio:", err)
		os.Exit(2)
	}
}

func run(in io.Reader, out io.Writer, pairs []string) error {
	results := map[string][]result{}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(out, line)
		name, r, ok := parse(line)
		if ok {
			results[name] = append(results[name], r)
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
			ss, rs := results[key(subj)], results[key(ref)]
			if len(rs) == 0 {
				fmt.Fprintf(out, "  %-16s no reference result\n", sub)
				continue
			}
			if len(rs) != len(ss) {
				return fmt.Errorf("%s has %d results and %s %d: rounds cannot be paired", key(subj), len(ss), key(ref), len(rs))
			}
			ratios := make([]float64, len(ss))
			for i := range ss {
				ratios[i] = rs[i].nsPerOp / ss[i].nsPerOp
			}
			lo, hi := slices.Min(ratios), slices.Max(ratios)
			line := fmt.Sprintf("  %-16s %10.1f MB/s vs %10.1f MB/s   ratio %.2f", sub,
				median(pick(ss, func(r result) float64 { return r.mbPerS })),
				median(pick(rs, func(r result) float64 { return r.mbPerS })), median(ratios))
			if len(ratios) > 1 {
				line += fmt.Sprintf(" (median of %d rounds, %.2f–%.2f)", len(ratios), lo, hi)
			}
			if _, ok := ss[0].extra["frames/s"]; ok {
				line += fmt.Sprintf("   %.1f M frames/s", median(pick(ss, func(r result) float64 { return r.extra["frames/s"] }))/1e6)
			}
			if _, ok := ss[0].extra["allocs/op"]; ok {
				line += fmt.Sprintf("   %.0f allocs/op", slices.Max(pick(ss, func(r result) float64 { return r.extra["allocs/op"] })))
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
