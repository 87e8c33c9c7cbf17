package capture

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
)

// A Writer writes a trace. It is safe for concurrent use: a timer closes
// the current zstd frame at most FlushInterval after the first record
// that opened it, and every method serialises on one mutex.
//
// Each zstd frame goes straight to the destination as the encoder
// produces it; the Writer adds no buffering of its own. A write error is
// sticky: once one happens every later call returns it.
type Writer struct {
	mu      sync.Mutex
	dst     io.Writer
	enc     *zstd.Encoder
	timer   *time.Timer
	pending bool  // records written since the last frame was closed
	inFrame int   // decompressed bytes written into the open frame
	ended   bool  // WriteEnd was called
	closed  bool  // Close was called
	err     error // sticky write error
	scratch [recordHead + endFixed]byte
}

// NewWriter writes the trace header and meta to dst as a first zstd
// frame and returns a Writer for the records. It does not close dst.
func NewWriter(dst io.Writer, meta Meta) (*Writer, error) {
	mj, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("capture: encoding trace metadata: %w", err)
	}
	if len(mj) > MaxMetaSize {
		return nil, fmt.Errorf("capture: trace metadata is %d bytes, over the %d-byte bound: %w; shorten Meta.Extra or the command line", len(mj), MaxMetaSize, ErrTooLarge)
	}
	enc, err := zstd.NewWriter(dst,
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(WriterWindow),
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderCRC(true),
		zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, fmt.Errorf("capture: creating zstd encoder: %w", err)
	}
	w := &Writer{dst: dst, enc: enc}
	w.timer = time.AfterFunc(time.Hour, w.onTimer)
	w.timer.Stop()

	var h [headerFixed]byte
	copy(h[:], Magic)
	binary.LittleEndian.PutUint32(h[8:], Version)
	binary.LittleEndian.PutUint32(h[12:], uint32(len(mj)))
	w.mu.Lock()
	defer w.mu.Unlock()
	w.write(h[:])
	w.write(mj)
	w.pending = true
	w.closeFrame()
	if w.err != nil {
		w.closed = true
		return nil, w.err
	}
	return w, nil
}

// WriteData writes a DATA record: one delivery of b on port in direction
// dir at run-clock time tNS. b may be empty and is not retained.
func (w *Writer) WriteData(dir Direction, port uint16, tNS int64, b []byte) error {
	if dir != TX && dir != RX {
		return fmt.Errorf("capture: WriteData: invalid direction %d (want capture.TX or capture.RX)", dir)
	}
	if len(b) > MaxDataSize {
		return fmt.Errorf("capture: delivery of %d bytes exceeds the %d-byte bound: %w; split it into several deliveries", len(b), MaxDataSize, ErrTooLarge)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	h := w.scratch[:recordHead+dataFixed]
	h[0] = byte(KindData)
	binary.LittleEndian.PutUint32(h[1:], uint32(dataFixed+len(b)))
	h[5] = byte(dir)
	binary.LittleEndian.PutUint16(h[6:], port)
	binary.LittleEndian.PutUint64(h[8:], uint64(tNS))
	w.write(h)
	w.write(b)
	w.markPending()
	if w.inFrame >= FrameSize {
		w.closeFrame()
	}
	return w.err
}

// WriteEvent writes an EVENT record named name at run-clock time tNS
// with an optional JSON detail, then closes the current zstd frame so
// the event and everything before it survive a crash.
func (w *Writer) WriteEvent(tNS int64, name string, detail json.RawMessage) error {
	if name == "" || len(name) > 0xFFFF || !utf8.ValidString(name) {
		return fmt.Errorf("capture: WriteEvent: event name %q must be 1 to 65535 bytes of UTF-8", name)
	}
	if len(detail) > 0 && (!utf8.Valid(detail) || !json.Valid(detail)) {
		return fmt.Errorf("capture: WriteEvent %q: detail is not valid JSON in UTF-8", name)
	}
	if eventFixed+len(name)+len(detail) > MaxRecordSize {
		return fmt.Errorf("capture: event %q with %d bytes of detail exceeds the %d-byte record bound: %w", name, len(detail), MaxRecordSize, ErrTooLarge)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	h := w.scratch[:recordHead+eventFixed]
	h[0] = byte(KindEvent)
	binary.LittleEndian.PutUint32(h[1:], uint32(eventFixed+len(name)+len(detail)))
	binary.LittleEndian.PutUint64(h[5:], uint64(tNS))
	binary.LittleEndian.PutUint16(h[13:], uint16(len(name)))
	w.write(h)
	w.writeString(name)
	w.write(detail)
	w.pending = true
	w.closeFrame()
	return w.err
}

// WriteEnd writes the END record and closes the current zstd frame. It
// is the last record: later writes return ErrClosed. Close must still be
// called.
func (w *Writer) WriteEnd(e End) error {
	if len(e.Reason) > 0xFFFF || !utf8.ValidString(e.Reason) {
		return fmt.Errorf("capture: WriteEnd: reason must be at most 65535 bytes of UTF-8")
	}
	if len(e.Outcome) > 0 && (!utf8.Valid(e.Outcome) || !jsonObject(e.Outcome)) {
		return fmt.Errorf("capture: WriteEnd: outcome is not valid JSON: want a JSON object in UTF-8")
	}
	if n := longestList(e.Outcome); n > MaxOutcomeEntries {
		return fmt.Errorf("capture: WriteEnd: an outcome list of %d entries exceeds the %d-entry bound: %w", n, MaxOutcomeEntries, ErrTooLarge)
	}
	if endFixed+len(e.Reason)+len(e.Outcome) > MaxRecordSize {
		return fmt.Errorf("capture: END record with a %d-byte outcome exceeds the %d-byte record bound: %w", len(e.Outcome), MaxRecordSize, ErrTooLarge)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	h := w.scratch[:recordHead+endFixed]
	h[0] = byte(KindEnd)
	binary.LittleEndian.PutUint32(h[1:], uint32(endFixed+len(e.Reason)+len(e.Outcome)))
	binary.LittleEndian.PutUint64(h[5:], uint64(e.TimeNS))
	binary.LittleEndian.PutUint32(h[13:], uint32(e.ExitStatus))
	binary.LittleEndian.PutUint16(h[17:], uint16(len(e.Reason)))
	w.write(h)
	w.writeString(e.Reason)
	w.write(e.Outcome)
	w.pending = true
	w.closeFrame()
	w.ended = true
	return w.err
}

// Flush closes the current zstd frame, if any record is pending, and
// writes it to the destination.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	w.closeFrame()
	return w.err
}

// Close closes the current zstd frame and stops the flush timer. It does
// not close the destination. It returns the first write error of the
// Writer's life, if any; calling it again returns the same.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		w.timer.Stop()
		if w.err == nil {
			w.closeFrame()
		}
	}
	return w.err
}

// usable reports why records may not be written now, if they may not.
func (w *Writer) usable() error {
	switch {
	case w.err != nil:
		return w.err
	case w.closed:
		return fmt.Errorf("capture: write after Close: %w", ErrClosed)
	case w.ended:
		return fmt.Errorf("capture: write after the END record: %w", ErrClosed)
	}
	return nil
}

// onTimer closes the frame left open since the last record.
func (w *Writer) onTimer() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.err != nil {
		return
	}
	w.closeFrame()
}

// markPending notes that a record is in the open frame and, if it is the
// first, arms the timer that closes it.
func (w *Writer) markPending() {
	if !w.pending && w.err == nil {
		w.pending = true
		w.timer.Reset(FlushInterval)
	}
}

// write feeds p to the encoder unless an error already happened.
func (w *Writer) write(p []byte) {
	if w.err != nil || len(p) == 0 {
		return
	}
	w.inFrame += len(p)
	if _, err := w.enc.Write(p); err != nil {
		w.fail(err)
	}
}

// writeString is write for a string, copying it through the scratch
// buffer in pieces so it does not allocate.
func (w *Writer) writeString(s string) {
	for len(s) > 0 && w.err == nil {
		n := copy(w.scratch[:], s)
		w.write(w.scratch[:n])
		s = s[n:]
	}
}

// closeFrame ends the open zstd frame (writing it out) and starts the
// next one, when records are pending.
func (w *Writer) closeFrame() {
	if !w.pending || w.err != nil {
		return
	}
	w.pending = false
	w.inFrame = 0
	w.timer.Stop()
	if err := w.enc.Close(); err != nil {
		w.fail(err)
		return
	}
	w.enc.Reset(w.dst)
}

// fail records the first write error.
func (w *Writer) fail(err error) {
	if w.err == nil {
		w.err = fmt.Errorf("capture: writing trace: %w; the trace is incomplete, check the disk or destination", err)
	}
	w.pending = false
	w.timer.Stop()
}
