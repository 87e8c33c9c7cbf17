package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/tracetool"
)

// runCorpusCover implements `ktstr corpus cover PATH...`: which gate-table
// rows, reject reasons and budget edges the traces and FuzzDispatch
// corpus files at PATH exercise (tracetool.CoverPaths). With --check it
// exits 1 when a row or a reason is left unexercised.
func runCorpusCover(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("corpus cover", "PATH...", stderr)
	asJSON := fs.Bool("json", false, "print the coverage as one JSON object")
	check := fs.Bool("check", false, "exit 1 when a gate-table row or a reject reason is unexercised")
	paths, help, err := parseInterspersed(fs, args)
	if help || err != nil {
		return err
	}
	if len(paths) == 0 {
		return usagef("corpus cover: no input given; name traces or corpus directories, e.g. corpus/real fuzz/testdata/fuzz/FuzzDispatch")
	}
	for _, p := range paths {
		if err := checkCoverPath(p); err != nil {
			return err
		}
	}
	cov, err := tracetool.CoverPaths(paths, func(path string) (io.ReadCloser, error) {
		return openInput(path, "input", true)
	})
	if err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			return fmt.Errorf("corpus cover: %w", err)
		}
		return usageErr(fmt.Errorf("corpus cover: %w", err))
	}
	// Nothing covered is not a coverage of nothing: a mistyped or empty
	// directory is said, not reported as 0 inputs.
	if cov.Inputs == 0 {
		return usagef("corpus cover: %s holds no trace (.zst) or fuzz corpus file; name a directory that does", safe(strings.Join(paths, ", ")))
	}
	for _, tr := range cov.Truncated {
		warnTruncated(stderr, "corpus cover", tr.Trace, &tr.Truncation)
	}
	if *asJSON {
		js, err := json.Marshal(cov)
		if err != nil {
			return fmt.Errorf("corpus cover: encoding the report: %w", err)
		}
		fmt.Fprintf(stdout, "%s\n", printableJSON(js))
	} else {
		writeCoverage(stdout, cov)
	}
	if *check && (len(cov.Unexercised.Rows) > 0 || len(cov.Unexercised.Reasons) > 0) {
		return &exitError{ExitCheck, fmt.Errorf("corpus cover: unexercised: rows %s; reasons %s",
			orNoneList(cov.Unexercised.Rows), orNoneList(cov.Unexercised.Reasons))}
	}
	return nil
}

// checkCoverPath refuses a path that is missing or neither a directory
// nor a file ktstr reads (a device, a socket), in one line.
func checkCoverPath(p string) error {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return usagef("corpus cover: %s: no such file or directory; check the path", p)
	case err != nil:
		return usageErr(fmt.Errorf("corpus cover: %s: %w", p, unwrapPathErr(err)))
	case fi.IsDir():
		return nil
	}
	_, err = statInput(p, "input", true)
	if err != nil {
		return fmt.Errorf("corpus cover: %w", err)
	}
	return nil
}

func orNoneList(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// writeCoverage prints the coverage as tables.
func writeCoverage(stdout io.Writer, c *tracetool.Coverage) {
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	fmt.Fprintf(w, "corpus cover: %d inputs (%d traces, %d FuzzDispatch inputs)\n", c.Inputs, c.Traces, c.FuzzInputs)
	for _, s := range c.Skipped {
		fmt.Fprintf(w, "  skipped %s\n", safe(s))
	}
	cols := []dispatch.Reason{dispatch.RejectNone, dispatch.RejectForgedTag, dispatch.RejectUnknownTag, dispatch.RejectShape,
		dispatch.RejectOneshotRepeat, dispatch.RejectOverflow, dispatch.RejectOutOfOrder}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "gate-table row\tclass\t")
	for _, r := range cols {
		fmt.Fprintf(tw, "%s\t", r)
	}
	fmt.Fprint(tw, "torn\tcells\t\n")
	for _, row := range c.Rows {
		fmt.Fprintf(tw, "%s\t%s\t", row.Tag, row.Class)
		hit := 0
		for _, col := range cols {
			v := "·" // not a result this row can give
			for _, cell := range row.Cells {
				if cell.Name == col.String() {
					v = fmt.Sprint(cell.N)
				}
			}
			fmt.Fprintf(tw, "%s\t", v)
		}
		for _, cell := range row.Cells {
			if cell.N > 0 {
				hit++
			}
		}
		mark := ""
		if !row.Exercised {
			mark = " UNEXERCISED"
		}
		fmt.Fprintf(tw, "%d\t%d/%d%s\t\n", row.Torn, hit, len(row.Cells), mark)
	}
	tw.Flush()
	fmt.Fprintln(w, "(· the row never gives that result; torn: the tag's frames rejected as crc or pad before reaching the row)")
	count := func(title string, cs []tracetool.Count) {
		fmt.Fprintf(w, "%s:\n", title)
		for _, x := range cs {
			if x.N == 0 {
				fmt.Fprintf(w, "  %-62s not reached\n", x.Name)
				continue
			}
			fmt.Fprintf(w, "  %-62s %d in %d inputs (first: %s)\n", x.Name, x.N, x.Inputs, safe(x.First))
		}
	}
	count("reject reasons (frames)", c.Reasons)
	count("stream counters (bytes, oversize headers)", c.Stream)
	count("budget edges (runs)", c.Edges)
	u := c.Unexercised
	fmt.Fprintf(w, "unexercised: rows %s; reasons %s; cells %s; budget edges %s\n",
		orNoneList(u.Rows), orNoneList(u.Reasons), orNoneList(u.Cells), orNoneList(u.Edges))
}
