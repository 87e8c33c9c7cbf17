// Command mutreport prints the mutation-testing figure of the dispatch
// core from gremlins' JSON reports (`gremlins unleash -o FILE`), one
// report per package: mutants killed, lived, timed out, not covered and
// not viable; gremlins' efficacy and mutant coverage; the killed share
// the project's target (≥ 90 %) is set on; and every mutant that
// survived, as file:line:column and mutator, so each can be killed by a
// test or explained in docs/mutation.md. `make mutation` runs it.
//
// It sits beside the data flow (bytes → tap → Assembler → Dispatch →
// Sinks → Outcome) and measures how well the tests of its dispatch stages
// pin their behaviour.
//
// Usage:
//
//	mutreport [-min PERCENT] DIR=REPORT.json...
//
// DIR is the package directory gremlins was run on (its report names
// files relative to it), e.g. dispatch=out/mutation/dispatch.json.
//
// The figures, per package:
//
//	efficacy         killed / (killed + lived), as gremlins computes it
//	mutant coverage  (killed + lived) / (killed + lived + not covered), as gremlins
//	killed share     (killed + timed out) / (killed + timed out + lived + not covered)
//
// The killed share is the strict figure: a mutant that makes the tests
// run past their timeout (an endless loop) is detected, and a mutant no
// test covers counts as a survivor. Not-viable mutants (they do not
// compile) are left out of every figure. gremlins v0.6.0 reports two
// kinds of them KILLED, because `go test` exits 1 on a build failure as
// on a failing test: the address-of operator, which it takes for bitwise
// AND (&x → |x), and + on a string literal, which it takes for arithmetic
// ("0x" + s → "0x" - s). mutreport finds those in the source (so it runs
// from the repository root) and counts them not viable.
//
// Exit status: 0; 1 when a package's killed share is below -min; 2 when
// a report cannot be read or the arguments are wrong.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// Mutant statuses as gremlins writes them.
const (
	killed     = "KILLED"
	lived      = "LIVED"
	timedOut   = "TIMED OUT"
	notCovered = "NOT COVERED"
	notViable  = "NOT VIABLE"
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

// figure is one package's tally.
type figure struct {
	counts    map[string]int
	survivors []survivor // LIVED and NOT COVERED, sorted by place
}

// survivor is one mutant the tests did not kill.
type survivor struct {
	file            string
	line, col       int
	mutator, status string
}

func (f figure) efficacy() float64 {
	return percent(f.counts[killed], f.counts[killed]+f.counts[lived])
}

func (f figure) mutantCoverage() float64 {
	run := f.counts[killed] + f.counts[lived]
	return percent(run, run+f.counts[notCovered])
}

func (f figure) killedShare() float64 {
	detected := f.counts[killed] + f.counts[timedOut]
	return percent(detected, detected+f.counts[lived]+f.counts[notCovered])
}

// percent is 100·n/d, or 100 when there is nothing to measure.
func percent(n, d int) float64 {
	if d == 0 {
		return 100
	}
	return 100 * float64(n) / float64(d)
}

func main() {
	target := flag.Float64("min", 0, "exit 1 when a package's killed share is below this `percent`")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: mutreport [-min PERCENT] DIR=REPORT.json...")
		flag.PrintDefaults()
	}
	flag.Parse()
	ok, err := run(flag.Args(), *target, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutreport:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// run prints the figure of every DIR=REPORT argument to w. It reports
// whether every package's killed share reaches target.
func run(args []string, target float64, w io.Writer) (bool, error) {
	if len(args) == 0 {
		return false, fmt.Errorf("no report given; usage: mutreport [-min PERCENT] DIR=REPORT.json...")
	}
	ok := true
	for _, arg := range args {
		dir, file, found := strings.Cut(arg, "=")
		if !found || dir == "" || file == "" {
			return false, fmt.Errorf("argument %q is not DIR=REPORT.json", arg)
		}
		r, err := load(file)
		if err != nil {
			return false, err
		}
		f, err := tally(dir, r)
		if err != nil {
			return false, err
		}
		show(w, dir, file, f)
		if f.killedShare() < target {
			fmt.Fprintf(w, "  BELOW TARGET: killed share %.1f%% < %.1f%%\n", f.killedShare(), target)
			ok = false
		}
	}
	return ok, nil
}

func load(file string) (report, error) {
	var r report
	b, err := os.ReadFile(file)
	if err != nil {
		return r, fmt.Errorf("%w; run 'make mutation' to produce it", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s is not a gremlins JSON report: %w", file, err)
	}
	if r.Module == "" {
		return r, fmt.Errorf("%s is not a gremlins JSON report: no go_module", file)
	}
	return r, nil
}

// tally counts mutants by status and lists the survivors, their files
// named from the repository root (dir joined with the report's name).
// Mutants that cannot compile count as not viable whatever gremlins said.
func tally(dir string, r report) (figure, error) {
	f := figure{counts: map[string]int{}}
	for _, file := range r.Files {
		name := path.Join(dir, file.Name)
		broken, err := notCompiling(name)
		if err != nil {
			return f, fmt.Errorf("%w (run mutreport from the repository root)", err)
		}
		for _, m := range file.Mutations {
			status := m.Status
			if broken[place{m.Line, m.Column}][m.Type] {
				status = notViable
			}
			f.counts[status]++
			if status == lived || status == notCovered {
				f.survivors = append(f.survivors, survivor{name, m.Line, m.Column, m.Type, status})
			}
		}
	}
	sort.Slice(f.survivors, func(i, j int) bool {
		a, b := f.survivors[i], f.survivors[j]
		if a.file != b.file {
			return a.file < b.file
		}
		if a.line != b.line {
			return a.line < b.line
		}
		return a.col < b.col
	})
	return f, nil
}

// place is a line and column in a source file.
type place struct{ line, col int }

// notCompiling returns the places in a Go source file where gremlins
// v0.6.0 puts a mutant that cannot compile, with that mutant's type:
// INVERT_BITWISE on the address-of operator (&x → |x) and
// ARITHMETIC_BASE on + with a string literal operand ("0" + s → "0" - s).
func notCompiling(file string) (map[place]map[string]bool, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	at := map[place]map[string]bool{}
	mark := func(p token.Pos, mutator string) {
		pos := fset.Position(p)
		at[place{pos.Line, pos.Column}] = map[string]bool{mutator: true}
	}
	isString := func(e ast.Expr) bool {
		lit, ok := e.(*ast.BasicLit)
		return ok && lit.Kind == token.STRING
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.UnaryExpr:
			if n.Op == token.AND {
				mark(n.OpPos, "INVERT_BITWISE")
			}
		case *ast.BinaryExpr:
			if n.Op == token.ADD && (isString(n.X) || isString(n.Y)) {
				mark(n.OpPos, "ARITHMETIC_BASE")
			}
		}
		return true
	})
	return at, nil
}

func show(w io.Writer, dir, file string, f figure) {
	fmt.Fprintf(w, "%s (%s)\n", dir, file)
	for _, s := range []string{killed, lived, timedOut, notCovered, notViable} {
		fmt.Fprintf(w, "  %-16s %d\n", strings.ToLower(s), f.counts[s])
	}
	fmt.Fprintf(w, "  %-16s %.1f%%  killed / (killed + lived), as gremlins\n", "efficacy", f.efficacy())
	fmt.Fprintf(w, "  %-16s %.1f%%  (killed + lived) / (killed + lived + not covered), as gremlins\n", "mutant coverage", f.mutantCoverage())
	fmt.Fprintf(w, "  %-16s %.1f%%  (killed + timed out) / (killed + timed out + lived + not covered)\n", "killed share", f.killedShare())
	if len(f.survivors) == 0 {
		return
	}
	fmt.Fprintf(w, "  surviving mutants (%d):\n", len(f.survivors))
	for _, s := range f.survivors {
		fmt.Fprintf(w, "    %-12s %-24s %s:%d:%d\n", s.status, s.mutator, s.file, s.line, s.col)
	}
}
