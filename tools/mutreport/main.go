// Command mutreport prints the figure of a gremlins mutation-testing run
// from its JSON report (`gremlins unleash -o FILE`): mutants killed,
// lived, timed out and not covered, the killed share, and every mutant
// that survived, as file:line:column and mutator, so each can be killed
// by a test or explained in docs/mutation.md. `make mutation` runs it.
//
// It sits beside the data flow (bytes → tap → Assembler → Dispatch →
// Sinks → Outcome) and measures how well the tests of its dispatch stages
// pin their behaviour.
//
// Usage:
//
//	mutreport REPORT.json
//
// Exit status: 0, or 2 when the report cannot be read.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
)

// report is the part of gremlins' JSON report mutreport reads.
type report struct {
	Module string `json:"go_module"`
	Files  []struct {
		Name      string `json:"file_name"`
		Mutations []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
			Line   int    `json:"line"`
			Column int    `json:"column"`
		} `json:"mutations"`
	} `json:"files"`
}

// survivor is one mutant the tests did not kill.
type survivor struct {
	where, mutator, status string
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mutreport REPORT.json")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mutreport:", err)
		os.Exit(2)
	}
}

func run(path string, w io.Writer) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%w; run 'make mutation' to produce it", err)
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s is not a gremlins JSON report: %w", path, err)
	}
	counts, survivors := tally(r)
	fmt.Fprintf(w, "mutation testing of %s\n", r.Module)
	for _, s := range []string{"KILLED", "LIVED", "TIMED OUT", "NOT COVERED", "NOT VIABLE"} {
		fmt.Fprintf(w, "  %-12s %d\n", s, counts[s])
	}
	// A mutant that makes the tests run past their timeout (an endless
	// loop, usually) was detected: the suite does not pass with it.
	detected := counts["KILLED"] + counts["TIMED OUT"]
	if tested := detected + counts["LIVED"]; tested > 0 {
		fmt.Fprintf(w, "  efficacy     %.1f%% ((killed + timed out) / (killed + timed out + lived))\n", 100*float64(detected)/float64(tested))
	}
	if all := detected + counts["LIVED"] + counts["NOT COVERED"]; all > 0 {
		fmt.Fprintf(w, "  killed share %.1f%% (the same, not-covered mutants counted as survivors)\n", 100*float64(detected)/float64(all))
	}
	if len(survivors) > 0 {
		fmt.Fprintln(w, "surviving mutants:")
		for _, s := range survivors {
			fmt.Fprintf(w, "  %-12s %-28s %s\n", s.status, s.mutator, s.where)
		}
	}
	return nil
}

// tally counts mutants by status and lists the survivors (LIVED and NOT
// COVERED) sorted by place.
func tally(r report) (map[string]int, []survivor) {
	counts := map[string]int{}
	var out []survivor
	for _, f := range r.Files {
		for _, m := range f.Mutations {
			counts[m.Status]++
			if m.Status == "LIVED" || m.Status == "NOT COVERED" {
				out = append(out, survivor{fmt.Sprintf("%s:%d:%d", f.Name, m.Line, m.Column), m.Type, m.Status})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].where < out[j].where })
	return counts, out
}
