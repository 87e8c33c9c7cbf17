package tracetool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ktstr/ktstr/corpus"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/replay"
)

// MaxFuzzFile bounds a Go fuzz corpus file Cover reads whole.
const MaxFuzzFile = 16 << 20

// fuzzTarget is the fuzz target whose corpus Cover reads.
const fuzzTarget = "FuzzDispatch"

// unlistedRow names the pseudo-row of tags outside the gate table.
const unlistedRow = "(unlisted)"

// Coverage is which parts of the gate table (docs/protocol.md §4–§6) a
// corpus exercises: for every row, the results the table gives an
// intact frame of its tag (the cells); every reject reason; the stream
// counters; and the budget edges.
type Coverage struct {
	Inputs     int      `json:"inputs"`      // inputs read: traces and FuzzDispatch inputs
	Traces     int      `json:"traces"`      // traces read
	FuzzInputs int      `json:"fuzz_inputs"` // FuzzDispatch corpus files read
	Skipped    []string `json:"skipped"`     // files and directories passed over, with why
	// Truncated lists the traces read only up to where they end.
	Truncated []TruncatedInput `json:"truncated"`
	Rows      []RowCoverage    `json:"rows"`         // in gate-table order, the unlisted tags last
	Reasons   []Count          `json:"reasons"`      // in judging order
	Stream    []Count          `json:"stream"`       // oversize, resync_bytes, truncated_tail_bytes
	Edges     []Count          `json:"budget_edges"` // runs reaching each budget edge
	// Unexercised names the rows, reasons, cells and edges no input
	// reached.
	Unexercised Unexercised `json:"unexercised"`
}

// TruncatedInput is a trace that ends early: it was covered up to At.
type TruncatedInput struct {
	Trace string `json:"trace"` // the trace as named
	replay.Truncation
}

// RowCoverage is one row of the gate table (or the unlisted tags).
type RowCoverage struct {
	Tag   string `json:"tag"`   // the row's tag, or "(unlisted)"
	Class string `json:"class"` // internal, verdict, host-to-guest or unknown
	// Exercised says an intact frame of the tag reached the row: its
	// row's effect, or one of its row's rejections.
	Exercised bool    `json:"exercised"`
	Cells     []Count `json:"cells"` // "accepted" and the row's reasons, in judging order
	// Torn counts the tag's frames rejected as crc or pad before the
	// row was reached.
	Torn int64 `json:"torn"`
}

// Count is how often something was seen: in how many frames (or bytes,
// for the stream counters) over how many inputs, and the first input
// that showed it.
type Count struct {
	Name   string `json:"name"`   // what was counted
	N      int64  `json:"n"`      // frames, bytes or runs
	Inputs int    `json:"inputs"` // inputs that showed it
	First  string `json:"first"`  // the first of them, "" for none
}

// Unexercised lists what no input reached.
type Unexercised struct {
	Rows    []string `json:"rows"`         // tags
	Reasons []string `json:"reasons"`      // reject reasons
	Cells   []string `json:"cells"`        // "TAG result"
	Edges   []string `json:"budget_edges"` // budget edges
}

// edgeNames lists the budget edges (docs/protocol.md §6), in the order
// Coverage.Edges reports them.
func edgeNames() []string {
	return []string{
		"the 64th accepted SNRQ",
		"an SNRQ past the 64th (overflow)",
		"the 64th accepted KORQ",
		"a KORQ past the 64th (overflow)",
		"the 65536th verdict kept",
		"a verdict past the 65536th (dropped, folded into the digest)",
	}
}

// RowCells returns the results the gate table gives an intact frame of
// tag t, in judging order: dispatch.RejectNone for its effect, then its
// row's reject reasons.
func RowCells(t wire.Tag) []dispatch.Reason {
	ok := dispatch.RejectNone
	switch t {
	case wire.SysRdy, wire.KernelAddrs:
		return []dispatch.Reason{ok, dispatch.RejectShape, dispatch.RejectOneshotRepeat}
	case wire.SnapshotRequest, wire.KernelOpRequest:
		return []dispatch.Reason{ok, dispatch.RejectShape, dispatch.RejectOverflow}
	case wire.WatchdogPause, wire.WatchdogResume:
		return []dispatch.Reason{ok, dispatch.RejectShape, dispatch.RejectOutOfOrder}
	case wire.Step, wire.Lifecycle:
		return []dispatch.Reason{ok, dispatch.RejectShape}
	case wire.SnapshotReply, wire.KernelOpReply:
		return []dispatch.Reason{dispatch.RejectForgedTag}
	}
	if t.Class() == wire.Unknown {
		return []dispatch.Reason{dispatch.RejectUnknownTag}
	}
	return []dispatch.Reason{ok}
}

func cellName(r dispatch.Reason) string { return r.String() }

// coverer accumulates a Coverage.
type coverer struct {
	cov     *Coverage
	rows    map[wire.Tag]*RowCoverage // by tag; 0 is the unlisted row
	cells   map[wire.Tag]map[dispatch.Reason]*Count
	reasons map[dispatch.Reason]*Count
	stream  []*Count
	edges   []*Count
	// per input
	name       string
	seenCell   map[[2]uint32]bool
	seenReason map[dispatch.Reason]bool
}

func newCoverer() *coverer {
	c := &coverer{cov: &Coverage{Skipped: []string{}, Truncated: []TruncatedInput{}}, rows: map[wire.Tag]*RowCoverage{},
		cells: map[wire.Tag]map[dispatch.Reason]*Count{}, reasons: map[dispatch.Reason]*Count{}}
	add := func(t wire.Tag, name, class string) {
		row := &RowCoverage{Tag: name, Class: class}
		c.rows[t] = row
		c.cells[t] = map[dispatch.Reason]*Count{}
		for _, r := range RowCells(t) {
			c.cells[t][r] = &Count{Name: cellName(r)}
		}
	}
	for _, t := range wire.Tags() {
		add(t, t.String(), t.Class().String())
	}
	add(0, unlistedRow, wire.Unknown.String())
	for _, r := range dispatch.Reasons() {
		c.reasons[r] = &Count{Name: r.String()}
	}
	for _, n := range streamCounterNames() {
		c.stream = append(c.stream, &Count{Name: n})
	}
	for _, n := range edgeNames() {
		c.edges = append(c.edges, &Count{Name: n})
	}
	return c
}

func (c *coverer) bump(n *Count, by int64, first bool) {
	n.N += by
	if first {
		n.Inputs++
		if n.First == "" {
			n.First = c.name
		}
	}
}

func (c *coverer) start(name string) {
	c.name = name
	c.cov.Inputs++
	c.seenCell = map[[2]uint32]bool{}
	c.seenReason = map[dispatch.Reason]bool{}
}

func (c *coverer) frame(tag wire.Tag, res dispatch.Result) {
	key := tag
	if !tag.Listed() {
		key = 0
	}
	r := res.Reject
	if r != dispatch.RejectNone {
		c.bump(c.reasons[r], 1, !c.seenReason[r])
		c.seenReason[r] = true
	}
	if r == dispatch.RejectCRC || r == dispatch.RejectPad {
		c.rows[key].Torn++
		return
	}
	cell := c.cells[key][r]
	if cell == nil {
		return // a result the table does not give this row: the table's own tests catch that
	}
	k := [2]uint32{uint32(key), uint32(r)}
	c.bump(cell, 1, !c.seenCell[k])
	c.seenCell[k] = true
}

func (c *coverer) outcome(o *dispatch.Outcome) {
	for i, v := range []int64{o.Rejected.Oversize, o.Rejected.ResyncBytes, o.Rejected.TruncatedTailBytes} {
		if v > 0 {
			c.bump(c.stream[i], v, true)
		}
	}
	reached := []bool{
		len(o.SnapshotRequests) >= dispatch.MaxSnapshotRequests,
		c.seenCell[[2]uint32{uint32(wire.SnapshotRequest), uint32(dispatch.RejectOverflow)}],
		len(o.KernelOps) >= dispatch.MaxKernelOps,
		c.seenCell[[2]uint32{uint32(wire.KernelOpRequest), uint32(dispatch.RejectOverflow)}],
		len(o.Verdicts) >= dispatch.MaxVerdicts,
		o.VerdictsDropped > 0,
	}
	for i, ok := range reached {
		if ok {
			c.bump(c.edges[i], 1, true)
		}
	}
}

// stream covers one in-memory FuzzDispatch input.
func (c *coverer) streamInput(name string, s *replay.Stream) {
	c.start(name)
	c.cov.FuzzInputs++
	sess := dispatch.NewSession()
	fn := func(m *dispatch.Message, r dispatch.Result) { c.frame(m.Tag, r) }
	for i := range s.Deliveries() {
		sess.Feed(s.Times[i], s.Delivery(i), fn)
	}
	o := sess.Finish()
	c.outcome(&o)
}

// trace covers one trace, streaming it.
func (c *coverer) trace(name string, src io.Reader) error {
	r, err := NewReader(src, name, ReaderOptions{})
	if err != nil {
		return err
	}
	c.start(name)
	c.cov.Traces++
	for {
		f, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		c.frame(f.Tag, f.Result)
	}
	if tr := r.Truncation(); tr != nil {
		c.cov.Truncated = append(c.cov.Truncated, TruncatedInput{Trace: name, Truncation: *tr})
	}
	o := r.Outcome()
	c.outcome(&o)
	return nil
}

func (c *coverer) finish() *Coverage {
	cov := c.cov
	u := Unexercised{Rows: []string{}, Reasons: []string{}, Cells: []string{}, Edges: []string{}}
	tags := append(wire.Tags(), 0)
	for _, t := range tags {
		row := c.rows[t]
		for _, r := range RowCells(t) {
			cell := c.cells[t][r]
			row.Cells = append(row.Cells, *cell)
			if cell.N > 0 {
				row.Exercised = true
			} else {
				u.Cells = append(u.Cells, row.Tag+" "+cell.Name)
			}
		}
		if !row.Exercised {
			u.Rows = append(u.Rows, row.Tag)
		}
		cov.Rows = append(cov.Rows, *row)
	}
	for _, r := range dispatch.Reasons() {
		cov.Reasons = append(cov.Reasons, *c.reasons[r])
		if c.reasons[r].N == 0 {
			u.Reasons = append(u.Reasons, r.String())
		}
	}
	for _, s := range c.stream {
		cov.Stream = append(cov.Stream, *s)
	}
	for _, e := range c.edges {
		cov.Edges = append(cov.Edges, *e)
		if e.N == 0 {
			u.Edges = append(u.Edges, e.Name)
		}
	}
	cov.Unexercised = u
	return cov
}

// CoverPaths measures the coverage of the traces and FuzzDispatch
// corpus files at paths. A path is a trace, a Go fuzz corpus file
// holding one []byte (a FuzzDispatch input, corpus.DecodeDispatchInput),
// or a directory, walked in name order: in it, traces and FuzzDispatch
// inputs are read and anything else is skipped and listed (files of
// other fuzz targets, directories named after other targets). open
// opens a file named on the command line or found in a walk. Errors
// about an input's content wrap replay.ErrBadTrace or
// corpus.ErrGoFuzzFile.
func CoverPaths(paths []string, open func(path string) (io.ReadCloser, error)) (*Coverage, error) {
	c := newCoverer()
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			if err := c.file(p, open, true); err != nil {
				return nil, err
			}
			continue
		}
		if b := filepath.Base(filepath.Clean(p)); strings.HasPrefix(b, "Fuzz") && b != fuzzTarget {
			return nil, fmt.Errorf("%s is the corpus of %s; corpus cover reads %s inputs (and traces)", p, b, fuzzTarget)
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if b := d.Name(); path != p && strings.HasPrefix(b, "Fuzz") && b != fuzzTarget {
					c.cov.Skipped = append(c.cov.Skipped, path+": the corpus of another fuzz target")
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				c.cov.Skipped = append(c.cov.Skipped, path+": not a regular file")
				return nil
			}
			return c.file(path, open, false)
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(c.cov.Skipped)
	return c.finish(), nil
}

// zstdMagic starts every zstd frame, and so every trace file.
const zstdMagic = "\x28\xb5\x2f\xfd"

// file covers one file: a trace or a FuzzDispatch input. named says the
// user named it (anything else is then an error, not a skip).
func (c *coverer) file(path string, open func(string) (io.ReadCloser, error), named bool) error {
	f, err := open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, len("go test fuzz v1"))
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	rest := io.MultiReader(bytes.NewReader(head), f)
	switch {
	case bytes.HasPrefix(head, []byte(zstdMagic)):
		return c.trace(path, rest)
	case bytes.HasPrefix(head, []byte("go test fuzz v1")):
		content, err := io.ReadAll(io.LimitReader(rest, MaxFuzzFile+1))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if len(content) > MaxFuzzFile {
			return fmt.Errorf("%s: %w: over %d bytes, too large for a fuzz corpus file", path, corpus.ErrGoFuzzFile, MaxFuzzFile)
		}
		data, err := corpus.UnmarshalGoFuzzFile(content)
		if err != nil {
			if named {
				return fmt.Errorf("%s: %w (corpus cover reads %s inputs)", path, err, fuzzTarget)
			}
			c.cov.Skipped = append(c.cov.Skipped, path+": not a "+fuzzTarget+" input (a Go fuzz file, but not one []byte)")
			return nil
		}
		c.streamInput(path, corpus.DecodeDispatchInput(data))
		return nil
	case named:
		// Neither: let the trace reader say what it is, in replay's words.
		return c.trace(path, rest)
	}
	c.cov.Skipped = append(c.cov.Skipped, path+": neither a trace nor a Go fuzz corpus file")
	return nil
}
