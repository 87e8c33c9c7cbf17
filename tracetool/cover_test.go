package tracetool

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/corpus"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/replay"
)

func openFile(path string) (io.ReadCloser, error) { return os.Open(path) }

func cover(t *testing.T, paths ...string) *Coverage {
	t.Helper()
	c, err := CoverPaths(paths, openFile)
	require.NoError(t, err)
	return c
}

// TestCheckedInCorpusExercisesEveryRowAndReason: the recorded runs
// (corpus/real) and the FuzzDispatch corpus (fuzz/testdata/fuzz) reach
// every row of the gate table and every reject reason. When it fails,
// add a seed stream holding what it names (corpus/seeds.go, then `go
// generate ./corpus` and `make corpus`).
func TestCheckedInCorpusExercisesEveryRowAndReason(t *testing.T) {
	c := cover(t, filepath.Join("..", "corpus", "real"), filepath.Join("..", "fuzz", "testdata", "fuzz"))
	require.Positive(t, c.Traces, "the recorded runs were read")
	require.Positive(t, c.FuzzInputs, "the FuzzDispatch corpus was read")
	t.Logf("%d inputs (%d traces, %d FuzzDispatch inputs); unexercised cells: %v; budget edges not reached: %v",
		c.Inputs, c.Traces, c.FuzzInputs, c.Unexercised.Cells, c.Unexercised.Edges)
	assert.Empty(t, c.Unexercised.Rows, "gate-table rows no checked-in input reaches")
	assert.Empty(t, c.Unexercised.Reasons, "reject reasons no checked-in input gives")
}

// everyRowTrace writes a trace that reaches every row, every cell and
// every reject reason (and, with budgets, every budget edge), less the
// tags in without.
func everyRowTrace(t *testing.T, dir string, budgets bool, without ...wire.Tag) string {
	var d []byte
	add := func(tag wire.Tag, p []byte) {
		if !slices.Contains(without, tag) {
			d = wire.AppendFrame(d, tag, p)
		}
	}
	korq, _ := (&wire.KernelOpRequestPayload{RequestID: 1, Op: 1}).AppendBinary(nil)
	kadr, _ := (func() *wire.KernelAddrsPayload { k := wire.NewKernelAddrs(1, 2, 3); return &k })().AppendBinary(nil)
	snrqP, _ := (func() *wire.SnapshotRequestPayload { r := wire.NewSnapshotRequest(1, 1, "x"); return &r })().AppendBinary(nil)
	for _, tag := range wire.Tags() {
		switch tag {
		case wire.SysRdy, wire.WatchdogPause, wire.WatchdogResume:
			add(tag, []byte{1}) // shape
			add(tag, nil)
			add(tag, nil) // oneshot_repeat, out_of_order
		case wire.KernelAddrs:
			add(tag, []byte{1})
			add(tag, kadr)
			add(tag, kadr)
		case wire.SnapshotRequest, wire.KernelOpRequest:
			p := snrqP
			if tag == wire.KernelOpRequest {
				p = korq
			}
			add(tag, []byte{1})
			n := 1
			if budgets {
				n = 65
			}
			for range n {
				add(tag, p)
			}
		case wire.Step:
			add(tag, []byte{1})
			add(tag, []byte{1, 0})
		case wire.Lifecycle:
			add(tag, []byte{9})
			add(tag, []byte{1})
		default:
			add(tag, []byte("x"))
		}
	}
	add(wire.Tag(0x41414141), nil)
	d = append(d, torn(wire.Stimulus, []byte("x"))...)
	d = append(d, padded(wire.Stimulus, nil)...)
	d = append(d, oversizeHeader()...)
	if budgets {
		for range dispatch.MaxVerdicts + 1 {
			d = wire.AppendFrame(d, wire.Stimulus, nil)
		}
	}
	d = append(d, frame(wire.Stimulus, nil)[:5]...)
	return writeTrace(t, dir, "every.zst", capture.Meta{}, streamOf(d), nil)
}

// TestCoverFindsWhatIsMissing: a corpus built to reach everything is
// reported complete, cells and budget edges included (the positive
// control), and one that lacks a row or a reason has it named.
func TestCoverFindsWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	full := cover(t, everyRowTrace(t, dir, true))
	assert.Equal(t, Unexercised{Rows: []string{}, Reasons: []string{}, Cells: []string{}, Edges: []string{}}, full.Unexercised)
	for _, s := range full.Stream {
		assert.Positive(t, s.N, s.Name)
	}

	tests := []struct {
		name    string
		without []wire.Tag
		budgets bool
		rows    []string
		reasons []string
		edges   int
	}{
		{"no KORQ", []wire.Tag{wire.KernelOpRequest}, true, []string{"KORQ"}, []string{}, 2},
		{"no forged tags", []wire.Tag{wire.SnapshotReply, wire.KernelOpReply}, true, []string{"SNRP", "KORP"}, []string{"forged_tag"}, 0},
		{"no budgets", nil, false, []string{}, []string{"overflow"}, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cover(t, everyRowTrace(t, t.TempDir(), tt.budgets, tt.without...))
			assert.Equal(t, tt.rows, c.Unexercised.Rows)
			assert.Equal(t, tt.reasons, c.Unexercised.Reasons)
			assert.Len(t, c.Unexercised.Edges, tt.edges)
		})
	}
}

// TestCoverInputs: directories are walked, FuzzDispatch files decoded,
// other fuzz targets' corpora and stray files passed over and listed; a
// named file that is neither a trace nor a FuzzDispatch input, or a
// named corpus of another target, is an error.
func TestCoverInputs(t *testing.T) {
	dir := t.TempDir()
	fd := filepath.Join(dir, "fuzz", "FuzzDispatch")
	fa := filepath.Join(dir, "fuzz", "FuzzAssembler")
	require.NoError(t, os.MkdirAll(fd, 0o755))
	require.NoError(t, os.MkdirAll(fa, 0o755))
	in := corpus.EncodeDispatchInput(streamOf(frame(wire.SysRdy, nil), frame(wire.SnapshotReply, nil)))
	_, err := corpus.WriteGoFuzzFile(fd, in)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(fd, "two-values"), []byte("go test fuzz v1\n[]byte(\"a\")\n[]byte(\"b\")\n"), 0o644))
	_, err = corpus.WriteGoFuzzFile(fa, []byte("ignored"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README"), []byte("notes"), 0o644))
	trace := writeTrace(t, dir, "t.zst", capture.Meta{}, streamOf(frame(wire.SchedExit, nil)), nil)

	c := cover(t, dir)
	assert.Equal(t, 2, c.Inputs)
	assert.Equal(t, 1, c.Traces)
	assert.Equal(t, 1, c.FuzzInputs)
	assert.Len(t, c.Skipped, 3, "README, the two-value file and FuzzAssembler: %v", c.Skipped)
	row := func(tag string) RowCoverage {
		for _, r := range c.Rows {
			if r.Tag == tag {
				return r
			}
		}
		t.Fatalf("no row %s", tag)
		return RowCoverage{}
	}
	assert.True(t, row("SRDY").Exercised, "from the FuzzDispatch input")
	assert.True(t, row("SNRP").Exercised)
	assert.True(t, row("SCDX").Exercised, "from the trace")
	assert.False(t, row("KORQ").Exercised, "the control: what no input holds")
	assert.Equal(t, trace, row("SCDX").Cells[0].First)

	_, err = CoverPaths([]string{fa}, openFile)
	assert.ErrorContains(t, err, "FuzzAssembler")
	_, err = CoverPaths([]string{filepath.Join(dir, "README")}, openFile)
	assert.ErrorIs(t, err, replay.ErrBadTrace)
	_, err = CoverPaths([]string{filepath.Join(fd, "two-values")}, openFile)
	assert.ErrorIs(t, err, corpus.ErrGoFuzzFile)
}
