package corpus

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/ktstr/ktstr/replay"
)

// DefaultExportLimit is the largest TX stream ExportTrace turns into a
// fuzz input by default. The fuzzer mutates inputs in memory and runs
// each through the whole dispatch check; inputs past a megabyte make it
// crawl.
const DefaultExportLimit = 1 << 20

// ErrTooLarge reports a trace whose TX stream exceeds the export limit.
var ErrTooLarge = errors.New("TX stream over the export limit")

// ExportTrace reads a trace and returns its TX bulk-port stream as a
// FuzzDispatch input: its deliveries become the split points and its
// timestamps the clock (see EncodeDispatchInput). A trace the recorder
// left truncated exports the deliveries it holds. Streams over limit
// bytes are refused with an error wrapping ErrTooLarge. Errors about the
// trace itself wrap replay.ErrBadTrace.
func ExportTrace(src io.Reader, limit int64) ([]byte, *replay.Stream, error) {
	s, _, _, err := replay.ReadStream(src, limit)
	if errors.Is(err, replay.ErrTooLong) {
		return nil, nil, fmt.Errorf("%w: the stream exceeds %d bytes", ErrTooLarge, limit)
	}
	if err != nil {
		return nil, nil, err
	}
	return EncodeDispatchInput(s), s, nil
}

// ExportTraceFile exports the trace at path into dir as a Go fuzz corpus
// file and returns the file's path and the stream it holds.
func ExportTraceFile(path, dir string, limit int64) (string, *replay.Stream, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	in, s, err := ExportTrace(f, limit)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	out, err := WriteGoFuzzFile(dir, in)
	if err != nil {
		return "", nil, err
	}
	return out, s, nil
}
