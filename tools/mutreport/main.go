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
//	mutreport [-min PERCENT] [-rerun STATUSES] [-timeout D] DIR=REPORT.json...
//
// DIR is the package directory gremlins was run on (its report names
// files relative to it), e.g. dispatch=out/mutation/dispatch.json.
// mutreport reads the mutated files, so it runs from the repository root.
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
// ("0x" + s → "0x" - s). mutreport finds those in the source and counts
// them not viable.
//
// -rerun "NOT COVERED" runs again, one by one, the mutants gremlins left
// with those statuses (a comma-separated list): gremlins does not run a
// mutant its coverage profile says no test reaches, and Go's coverage has
// no block for a constant declaration or for the case expressions of a
// switch, so mutants there are "not covered" however well they are
// tested. mutreport applies the mutant through a `go build -overlay`
// (the tree is not touched) and runs its package's tests with the test
// binary's own -timeout (build time excluded, so a loaded machine does
// not pass for an endless loop); the result replaces gremlins' status.
//
// Exit status: 0; 1 when a package's killed share is below -min; 2 when
// a report cannot be read or the arguments are wrong.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/scanner"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
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

// options are the command-line settings.
type options struct {
	target  float64         // least killed share, percent
	rerun   map[string]bool // statuses whose mutants are run again
	timeout time.Duration   // test binary timeout of a rerun
}

// mutant is one mutant of a report, its file named from the repository
// root.
type mutant struct {
	file            string
	line, col       int
	mutator, status string
}

// figure is one package's tally.
type figure struct {
	counts    map[string]int
	survivors []mutant // LIVED and NOT COVERED, sorted by place
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

const usage = "usage: mutreport [-min PERCENT] [-rerun STATUSES] [-timeout D] DIR=REPORT.json..."

func main() {
	var o options
	flag.Float64Var(&o.target, "min", 0, "exit 1 when a package's killed share is below this `percent`")
	rerun := flag.String("rerun", "", "run the mutants with these `statuses` (comma-separated, e.g. \"NOT COVERED\") again")
	flag.DurationVar(&o.timeout, "timeout", time.Minute, "test binary timeout of a rerun")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, usage)
		flag.PrintDefaults()
	}
	flag.Parse()
	o.rerun = map[string]bool{}
	for _, s := range strings.Split(*rerun, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.rerun[s] = true
		}
	}
	ok, err := run(flag.Args(), o, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutreport:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// run prints the figure of every DIR=REPORT argument to w. It reports
// whether every package's killed share reaches o.target.
func run(args []string, o options, w io.Writer) (bool, error) {
	if len(args) == 0 {
		return false, fmt.Errorf("no report given; %s", usage)
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
		ms, err := mutants(dir, r)
		if err != nil {
			return false, err
		}
		for i, m := range ms {
			if !o.rerun[m.status] {
				continue
			}
			status, detail, err := rerun(m, o.timeout)
			if err != nil {
				return false, err
			}
			ms[i].status = status
			fmt.Fprintf(w, "rerun %-24s %s:%d:%d  %s → %s  %s\n", m.mutator, m.file, m.line, m.col, m.status, status, detail)
		}
		f := tally(ms)
		show(w, dir, file, f)
		if f.killedShare() < o.target {
			fmt.Fprintf(w, "  BELOW TARGET: killed share %.1f%% < %.1f%%\n", f.killedShare(), o.target)
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

// mutants lists the mutants of r, their files named from the repository
// root (dir joined with the report's name). Mutants that cannot compile
// are not viable whatever gremlins said.
func mutants(dir string, r report) ([]mutant, error) {
	var ms []mutant
	for _, file := range r.Files {
		name := path.Join(dir, file.Name)
		broken, err := notCompiling(name)
		if err != nil {
			return nil, fmt.Errorf("%w (run mutreport from the repository root)", err)
		}
		for _, m := range file.Mutations {
			status := m.Status
			if broken[place{m.Line, m.Column}][m.Type] {
				status = notViable
			}
			ms = append(ms, mutant{file: name, line: m.Line, col: m.Column, mutator: m.Type, status: status})
		}
	}
	return ms, nil
}

// tally counts mutants by status and lists the survivors by place.
func tally(ms []mutant) figure {
	f := figure{counts: map[string]int{}}
	for _, m := range ms {
		f.counts[m.status]++
		if m.status == lived || m.status == notCovered {
			f.survivors = append(f.survivors, m)
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
	return f
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

// mutations is gremlins v0.6.0's table: each mutator's replacement for
// each token it applies to.
var mutations = map[string]map[token.Token]token.Token{
	"ARITHMETIC_BASE":       {token.ADD: token.SUB, token.MUL: token.QUO, token.QUO: token.MUL, token.REM: token.MUL, token.SUB: token.ADD},
	"CONDITIONALS_BOUNDARY": {token.GEQ: token.GTR, token.GTR: token.GEQ, token.LEQ: token.LSS, token.LSS: token.LEQ},
	"CONDITIONALS_NEGATION": {token.EQL: token.NEQ, token.GEQ: token.LSS, token.GTR: token.LEQ, token.LEQ: token.GTR, token.LSS: token.GEQ, token.NEQ: token.EQL},
	"INCREMENT_DECREMENT":   {token.DEC: token.INC, token.INC: token.DEC},
	"INVERT_ASSIGNMENTS":    {token.ADD_ASSIGN: token.SUB_ASSIGN, token.MUL_ASSIGN: token.QUO_ASSIGN, token.QUO_ASSIGN: token.MUL_ASSIGN, token.REM_ASSIGN: token.REM_ASSIGN, token.SUB_ASSIGN: token.ADD_ASSIGN},
	"INVERT_BITWISE":        {token.AND: token.OR, token.OR: token.AND, token.XOR: token.AND, token.AND_NOT: token.AND, token.SHL: token.SHR, token.SHR: token.SHL},
	"INVERT_BWASSIGN":       {token.AND_ASSIGN: token.OR_ASSIGN, token.OR_ASSIGN: token.AND_ASSIGN, token.XOR_ASSIGN: token.AND_ASSIGN, token.AND_NOT_ASSIGN: token.AND_ASSIGN, token.SHL_ASSIGN: token.SHR_ASSIGN, token.SHR_ASSIGN: token.SHL_ASSIGN},
	"INVERT_LOGICAL":        {token.LAND: token.LOR, token.LOR: token.LAND},
	"INVERT_LOOPCTRL":       {token.BREAK: token.CONTINUE, token.CONTINUE: token.BREAK},
	"INVERT_NEGATIVES":      {token.SUB: token.ADD},
	"REMOVE_SELF_ASSIGNMENTS": {token.ADD_ASSIGN: token.ASSIGN, token.AND_ASSIGN: token.ASSIGN, token.AND_NOT_ASSIGN: token.ASSIGN,
		token.MUL_ASSIGN: token.ASSIGN, token.OR_ASSIGN: token.ASSIGN, token.QUO_ASSIGN: token.ASSIGN, token.REM_ASSIGN: token.ASSIGN,
		token.SHL_ASSIGN: token.ASSIGN, token.SHR_ASSIGN: token.ASSIGN, token.SUB_ASSIGN: token.ASSIGN, token.XOR_ASSIGN: token.ASSIGN},
}

// mutate returns src with the token at line:col replaced as mutator
// replaces it.
func mutate(src []byte, line, col int, mutator string) ([]byte, error) {
	fset := token.NewFileSet()
	file := fset.AddFile("", fset.Base(), len(src))
	var s scanner.Scanner
	s.Init(file, src, nil, 0)
	for {
		pos, tok, _ := s.Scan()
		if tok == token.EOF {
			return nil, fmt.Errorf("no token at %d:%d", line, col)
		}
		if p := file.Position(pos); p.Line != line || p.Column != col {
			continue
		}
		to, ok := mutations[mutator][tok]
		if !ok {
			return nil, fmt.Errorf("%s does not apply to %q at %d:%d", mutator, tok, line, col)
		}
		off := file.Offset(pos)
		return slices.Concat(src[:off], []byte(to.String()), src[off+len(tok.String()):]), nil
	}
}

var failedTest = regexp.MustCompile(`--- FAIL: (\S+)`)

// rerun applies m through a build overlay and runs the tests of its
// file's package: KILLED (a test or go vet failed), LIVED, TIMED OUT
// (the test binary ran past timeout) or NOT VIABLE (it does not build),
// with the first failing test or the reason.
func rerun(m mutant, timeout time.Duration) (status, detail string, err error) {
	src, err := os.ReadFile(m.file)
	if err != nil {
		return "", "", err
	}
	mutated, err := mutate(src, m.line, m.col, m.mutator)
	if err != nil {
		return "", "", fmt.Errorf("%s:%d:%d: %w", m.file, m.line, m.col, err)
	}
	tmp, err := os.MkdirTemp("", "mutreport-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(tmp)
	abs, err := filepath.Abs(m.file)
	if err != nil {
		return "", "", err
	}
	alt := filepath.Join(tmp, filepath.Base(m.file))
	overlay := filepath.Join(tmp, "overlay.json")
	ovl, _ := json.Marshal(map[string]map[string]string{"Replace": {abs: alt}})
	if err := os.WriteFile(alt, mutated, 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(overlay, ovl, 0o644); err != nil {
		return "", "", err
	}
	pkg := "./" + filepath.Dir(m.file)
	if out, err := exec.Command("go", "build", "-overlay", overlay, pkg).CombinedOutput(); err != nil {
		return notViable, firstLine(out), nil
	}
	out, err := exec.Command("go", "test", "-count=1", "-failfast", "-overlay", overlay, "-timeout", timeout.String(), pkg).CombinedOutput()
	switch {
	case err == nil:
		return lived, "every test passed", nil
	case bytes.Contains(out, []byte("panic: test timed out")):
		return timedOut, "the tests ran past " + timeout.String(), nil
	case failedTest.Match(out):
		return killed, string(failedTest.FindSubmatch(out)[1]), nil
	}
	return killed, firstLine(out), nil
}

func firstLine(b []byte) string {
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			return l
		}
	}
	return ""
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
