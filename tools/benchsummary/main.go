// Command benchsummary reads the whole output of `make bench` (go test
// -bench lines and benchratio's tables) and prints one table: every
// ratio and bound the project sets, the figure measured in this run,
// its target, and whether it is met. It judges; it measures nothing.
//
// Usage:
//
//	make bench 2>&1 | tee out/bench.txt; go run ./tools/benchsummary < out/bench.txt
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// target is one figure the project promises.
type target struct {
	name    string // what a person calls it
	bench   string // go test benchmark name (without -N), or "ratio:SECTION/CASE" for benchratio
	metric  string // the reported unit (go test) or "ratio" (benchratio)
	atLeast bool   // met when value >= bound (else value <= bound)
	bound   float64
}

func targets() []target {
	return []target{
		{"dispatch, payload 0 (vs CRC-32 + SHA-256)", "ratio:FeedDispatch vs CRC32SHA256/payload=0", "ratio", true, 0.7},
		{"dispatch, payload 64", "ratio:FeedDispatch vs CRC32SHA256/payload=64", "ratio", true, 0.7},
		{"dispatch, payload 4 KiB", "ratio:FeedDispatch vs CRC32SHA256/payload=4096", "ratio", true, 0.9},
		{"dispatch, payload 64 KiB", "ratio:FeedDispatch vs CRC32SHA256/payload=65536", "ratio", true, 0.9},
		{"dispatch past the verdict budget, frames/s", "BenchmarkFeedDispatchPastBudget/payload=0", "frames/s", true, 20e6},
		{"replay vs zstd decode of the same trace", "BenchmarkReplay", "ratio", true, 0.9},
		{"replay peak RSS on 256 MiB of TX, MiB", "BenchmarkReplayMemory", "peak-RSS-MiB", false, 64},
		{"write ratio, recorded vs bare QEMU", "BenchmarkRecordOverhead", "write-ratio", true, 0.9},
		{"boot ratio, recorded vs bare QEMU", "BenchmarkRecordOverhead", "boot-ratio", false, 1.03},
		{"SCDX → vCPUs stopped, median ms", "BenchmarkSchedExitLatency", "frozen-median-ms", false, 2},
		{"SCDX → VM gone, max ms", "BenchmarkSchedExitLatency", "gone-max-ms", false, 10},
		{"flood through the recorder, frames/s", "BenchmarkFlood/flood", "frames/s", true, 5e6},
		{"flood: recorder peak RSS, MiB", "BenchmarkFlood/flood", "peak-RSS-MiB", false, 256},
		{"flood-mixed: recorder peak RSS, MiB", "BenchmarkFlood/flood-mixed", "peak-RSS-MiB", false, 256},
		{"flood: run ends after the flood, s", "BenchmarkFlood/flood", "end-after-flood-s", false, 2},
	}
}

// parse collects, from go test -bench output, name → metric → values
// (a benchmark run in several rounds gives several), and from
// benchratio's tables "ratio:SECTION/CASE" → ratio.
func parse(r io.Reader) map[string]map[string][]float64 {
	got := map[string]map[string][]float64{}
	add := func(name, metric string, v float64) {
		if got[name] == nil {
			got[name] = map[string][]float64{}
		}
		got[name][metric] = append(got[name][metric], v)
	}
	section := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		switch {
		case strings.HasSuffix(line, "(same run)"):
			section = strings.TrimSpace(strings.TrimSuffix(line, "(same run)"))
		case section != "" && len(f) > 0 && strings.HasPrefix(line, "  ") && strings.Contains(line, " ratio "):
			for i := range f {
				if f[i] == "ratio" && i+1 < len(f) {
					if v, err := strconv.ParseFloat(f[i+1], 64); err == nil {
						add("ratio:"+section+"/"+f[0], "ratio", v)
					}
				}
			}
		case len(f) >= 4 && strings.HasPrefix(f[0], "Benchmark"):
			name := f[0]
			if i := strings.LastIndex(name, "-"); i > 0 {
				if _, err := strconv.Atoi(name[i+1:]); err == nil {
					name = name[:i]
				}
			}
			for i := 2; i+1 < len(f); i += 2 {
				if v, err := strconv.ParseFloat(f[i], 64); err == nil {
					add(name, f[i+1], v)
				}
			}
		}
	}
	return got
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func format(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1f M", v/1e6)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

// summarize writes the table and returns how many targets were missed
// and how many were not measured.
func summarize(w io.Writer, got map[string]map[string][]float64) (missed, absent int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tMEASURED\tTARGET\tMET")
	for _, t := range targets() {
		op := "≤"
		if t.atLeast {
			op = "≥"
		}
		vals := got[t.bench][t.metric]
		if len(vals) == 0 {
			absent++
			fmt.Fprintf(tw, "%s\t-\t%s %s\tnot measured (skipped?)\n", t.name, op, format(t.bound))
			continue
		}
		v := median(vals)
		met := v >= t.bound
		if !t.atLeast {
			met = v <= t.bound
		}
		verdict := "yes"
		if !met {
			verdict = "NO"
			missed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\n", t.name, format(v), op, format(t.bound), verdict)
	}
	tw.Flush()
	return missed, absent
}

func main() {
	missed, absent := summarize(os.Stdout, parse(os.Stdin))
	fmt.Printf("%d targets missed, %d not measured\n", missed, absent)
	if missed > 0 {
		os.Exit(1)
	}
}
