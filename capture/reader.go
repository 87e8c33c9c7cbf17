package capture

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"
)

// aheadSize is the size of the Reader's read-ahead buffer, which serves
// record heads and small bodies. It is small on purpose: a larger one
// would pull most of the next delivery through it, to be copied a
// second time; bytes past it are decoded straight into the body buffer.
const aheadSize = 4 << 10

// growStep is the least a body buffer grows by while a body arrives.
const growStep = 64 << 10

// A Reader reads a trace as a stream. It holds at most one record body
// (bounded by MaxRecordSize) and the zstd decoder's window (bounded by
// MaxWindow) in memory; its buffers are reused, so reading DATA records
// does not allocate once they have grown to the largest delivery.
type Reader struct {
	dec   decoder // the decompressed stream
	ahead []byte  // read-ahead: the unread bytes are ahead[pos:end]
	pos   int
	end   int
	derr  error // the decoder's error, met after ahead[:end]
	meta  Meta
	buf   []byte // record body, reused
	off   int64  // decompressed offset of the next record
	ended bool   // an END record was read
	err   error  // sticky: the error Next returns from now on
	head  [recordHead]byte
}

// decoderOptions configures the zstd decoder of a Reader: synchronous
// (no goroutines, no read-ahead), streaming even from an in-memory
// source (so a truncated frame still yields its complete blocks), and
// refusing windows over MaxWindow.
func decoderOptions() []zstd.DOption {
	return []zstd.DOption{
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(MaxWindow),
		zstd.WithDecoderMaxMemory(MaxWindow),
		zstd.WithDecodeBuffersBelow(0),
	}
}

// decoder is what a Reader reads the decompressed stream from: a zstd
// streaming decoder, or a frameDecoder.
type decoder interface {
	io.Reader
	Close()
}

// A ReaderOption configures a Reader.
type ReaderOption func(*readerConfig)

type readerConfig struct {
	decoders int
}

// WithDecoders lets the Reader decode up to n (at most three) of the
// trace's zstd frames at once, each on a goroutine of its own, ahead of
// the records asked for, holding at most 8 MiB more per frame decoded
// and one more for the frame being read (24 MiB with two). The records,
// errors and offsets are the same as with one decoder, which is the
// default (a Reader then decodes in the goroutine that calls it), for
// any source whose bytes and errors do not depend on how it is called:
// frames are read ahead, in other sizes. A Reader with n > 1 should be
// closed.
func WithDecoders(n int) ReaderOption {
	return func(c *readerConfig) { c.decoders = n }
}

// NewReader reads and checks the trace header and metadata from src. The
// returned Reader reads the records that follow. Errors wrap ErrCorrupt,
// ErrTruncated or ErrVersion.
func NewReader(src io.Reader, opts ...ReaderOption) (*Reader, error) {
	var c readerConfig
	for _, o := range opts {
		o(&c)
	}
	r := &Reader{ahead: make([]byte, aheadSize)}
	if c.decoders > 1 {
		fd, err := newFrameDecoder(src, c.decoders)
		if err != nil {
			return nil, fmt.Errorf("capture: creating zstd decoders: %w", err)
		}
		r.dec = fd
	} else {
		dec, err := zstd.NewReader(src, decoderOptions()...)
		if err != nil {
			return nil, fmt.Errorf("capture: creating zstd decoder: %w", err)
		}
		r.dec = dec
	}
	if err := r.readHeader(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Close waits for the frames a Reader decodes ahead and frees its
// decoders. It does not close the source. A Reader is not used after
// Close.
func (r *Reader) Close() {
	if r.dec != nil {
		r.dec.Close()
		r.dec = nil
	}
	r.err = errors.New("capture: the Reader is closed")
}

// readHeader reads the trace header and metadata.
func (r *Reader) readHeader() error {
	var h [headerFixed]byte
	if n, err := r.readFull(h[:]); err != nil {
		if n == 0 && err == io.EOF {
			return fmt.Errorf("capture: %w: the trace is empty (the recorder died before writing the header); record it again", ErrTruncated)
		}
		if m := min(n, len(Magic)); string(h[:m]) != Magic[:m] {
			return badMagic(h[:m])
		}
		if n == 0 && errors.Is(err, zstd.ErrMagicMismatch) {
			return fmt.Errorf("capture: %w: the file is not zstd-compressed (%v); a trace is the .zst file written by 'ktstr record' or 'ktstr trace import'", ErrCorrupt, err)
		}
		return r.readErr(err, "the trace header")
	}
	if string(h[:len(Magic)]) != Magic {
		return badMagic(h[:len(Magic)])
	}
	if v := binary.LittleEndian.Uint32(h[8:]); v != Version {
		return fmt.Errorf("capture: %w: the trace is format version %d, this ktstr reads version %d; use the ktstr release that wrote it", ErrVersion, v, Version)
	}
	n := binary.LittleEndian.Uint32(h[12:])
	if n > MaxMetaSize {
		return fmt.Errorf("capture: %w: metadata declares %d bytes, over the %d-byte bound; the file is damaged", ErrCorrupt, n, MaxMetaSize)
	}
	r.off = int64(headerFixed)
	mj, err := r.readBody(int(n), nil)
	if err != nil {
		return r.readErr(err, "the trace metadata")
	}
	if !utf8.Valid(mj) {
		// json.Unmarshal would quietly turn the bad bytes into U+FFFD.
		return fmt.Errorf("capture: %w: metadata is not valid UTF-8; the file is damaged", ErrCorrupt)
	}
	mj = bytes.TrimLeft(mj, " \t\r\n")
	if len(mj) == 0 || mj[0] != '{' {
		return fmt.Errorf("capture: %w: metadata is not a JSON object; the file is damaged", ErrCorrupt)
	}
	if err := json.Unmarshal(mj, &r.meta); err != nil {
		return fmt.Errorf("capture: %w: metadata is not valid: %v; the file is damaged", ErrCorrupt, err)
	}
	r.off += int64(n)
	return nil
}

func badMagic(m []byte) error {
	return fmt.Errorf("capture: %w: bad magic %q, want %q: not a ktstr trace (for a raw byte stream use 'ktstr trace import --raw')", ErrCorrupt, m, Magic)
}

// Meta returns the trace's metadata.
func (r *Reader) Meta() Meta { return r.meta }

// Offset returns the decompressed byte offset of the next record: after
// an error wrapping ErrTruncated, where the readable prefix ends.
func (r *Reader) Offset() int64 { return r.off }

// Next returns the next record. Record kinds it does not know are
// skipped. It returns io.EOF at the clean end of the trace (with or
// without an END record). A trace that ends inside a record or a zstd
// frame yields every complete record before the cut and then an error
// wrapping ErrTruncated; damage gives an error wrapping ErrCorrupt. After
// an error, Next returns the same error.
func (r *Reader) Next() (Record, error) {
	rec, _, err := r.next(nil)
	return rec, err
}

// NextInto is Next, but the body of a DATA record that fits cap(buf) is
// decoded into buf, and inBuf is true: the record's Data is then buf's
// and stays valid after later calls. A larger body is read into the
// Reader's own buffer, as Next does. It lets a consumer on another
// goroutine take deliveries from a ring of its own buffers without
// copying each one again.
func (r *Reader) NextInto(buf []byte) (rec Record, inBuf bool, err error) {
	return r.next(buf)
}

func (r *Reader) next(into []byte) (Record, bool, error) {
	if r.err != nil {
		return Record{}, false, r.err
	}
	for {
		start := r.off
		if n, err := r.readHead(); err != nil {
			if n == 0 && err == io.EOF {
				r.err = io.EOF
				return Record{}, false, io.EOF
			}
			return r.fail(r.readErr(err, "a record header"))
		}
		kind := Kind(r.head[0])
		n := binary.LittleEndian.Uint32(r.head[1:])
		switch {
		case string(r.head[:]) == Magic[:recordHead]:
			// A second header's first bytes read as a record head (a
			// record it cannot be: its length is over the bound).
			return r.fail(r.corruptf("a second trace header at decompressed offset %d: the file is traces joined one after another (cat a.zst b.zst); give each trace as a file of its own", start))
		case kind == 0:
			return r.fail(r.corruptf("record of reserved kind 0 at decompressed offset %d", start))
		case n > MaxRecordSize:
			return r.fail(r.corruptf("%s record at decompressed offset %d declares %d bytes, over the %d-byte bound", kind, start, n, MaxRecordSize))
		case r.ended:
			return r.fail(r.corruptf("%s record at decompressed offset %d follows the END record", kind, start))
		}
		r.off += recordHead
		if kind > KindEnd {
			// Unknown kind from a later writer: skip its body.
			if err := r.discard(int(n)); err != nil {
				return r.fail(r.readErr(err, "the body of a "+kind.String()+" record"))
			}
			r.off += int64(n)
			continue
		}
		if kind != KindData {
			into = nil
		}
		inBuf := kind == KindData && cap(into) >= int(n)
		b, err := r.readBody(int(n), into)
		if err != nil {
			return r.fail(r.readErr(err, "the body of a "+kind.String()+" record"))
		}
		r.off += int64(n)
		rec, err := r.parse(kind, b, start)
		if err != nil {
			return r.fail(err)
		}
		return rec, inBuf, nil
	}
}

// parse decodes the body b of a record of a known kind found at start.
func (r *Reader) parse(kind Kind, b []byte, start int64) (Record, error) {
	le := binary.LittleEndian
	switch kind {
	case KindData:
		if len(b) < dataFixed {
			return Record{}, r.corruptf("DATA record at decompressed offset %d is %d bytes, shorter than its %d fixed bytes", start, len(b), dataFixed)
		}
		dir := Direction(b[0])
		if dir != TX && dir != RX {
			return Record{}, r.corruptf("DATA record at decompressed offset %d has invalid direction %d", start, b[0])
		}
		return Record{Kind: KindData, Dir: dir, Port: le.Uint16(b[1:]), TimeNS: int64(le.Uint64(b[3:])), Data: b[dataFixed:]}, nil
	case KindEvent:
		if len(b) < eventFixed {
			return Record{}, r.corruptf("EVENT record at decompressed offset %d is %d bytes, shorter than its %d fixed bytes", start, len(b), eventFixed)
		}
		nl := int(le.Uint16(b[8:]))
		if nl > len(b)-eventFixed {
			return Record{}, r.corruptf("EVENT record at decompressed offset %d declares a %d-byte name in %d bytes", start, nl, len(b)-eventFixed)
		}
		if nl == 0 {
			// The Writer never writes one; accepting it would let a
			// read trace fail to write back.
			return Record{}, r.corruptf("EVENT record at decompressed offset %d has an empty name", start)
		}
		name := b[eventFixed : eventFixed+nl]
		detail := b[eventFixed+nl:]
		if !utf8.Valid(name) || !utf8.Valid(detail) || len(detail) > 0 && !json.Valid(detail) {
			return Record{}, r.corruptf("EVENT record at decompressed offset %d has a name or detail that is not UTF-8 or a detail that is not JSON", start)
		}
		rec := Record{Kind: KindEvent, TimeNS: int64(le.Uint64(b)), Name: string(name)}
		if len(detail) > 0 {
			rec.Detail = detail
		}
		return rec, nil
	default: // KindEnd
		if len(b) < endFixed {
			return Record{}, r.corruptf("END record at decompressed offset %d is %d bytes, shorter than its %d fixed bytes", start, len(b), endFixed)
		}
		rl := int(le.Uint16(b[12:]))
		if rl > len(b)-endFixed {
			return Record{}, r.corruptf("END record at decompressed offset %d declares a %d-byte reason in %d bytes", start, rl, len(b)-endFixed)
		}
		reason := b[endFixed : endFixed+rl]
		outcome := b[endFixed+rl:]
		if !utf8.Valid(reason) || !utf8.Valid(outcome) || len(outcome) > 0 && !jsonObject(outcome) {
			return Record{}, r.corruptf("END record at decompressed offset %d has a reason or outcome that is not UTF-8 or an outcome that is not a JSON object", start)
		}
		if n := longestList(outcome); n > MaxOutcomeEntries {
			return Record{}, r.corruptf("END record at decompressed offset %d has an outcome list of %d entries, over the %d a run keeps", start, n, MaxOutcomeEntries)
		}
		e := &End{TimeNS: int64(le.Uint64(b)), ExitStatus: int32(le.Uint32(b[8:])), Reason: string(reason)}
		if len(outcome) > 0 {
			e.Outcome = slices.Clone(outcome)
		}
		r.ended = true
		return Record{Kind: KindEnd, TimeNS: e.TimeNS, End: e}, nil
	}
}

// jsonObject reports whether b is one valid JSON value that is an
// object.
func jsonObject(b []byte) bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && json.Valid(b)
}

// longestList returns the number of elements of the longest array that
// is a member of the JSON object b (which must be valid JSON), scanning
// it once without decoding it.
func longestList(b []byte) int {
	longest, n := 0, 0
	depth := 0
	inString, escaped := false, false
	counting, empty := false, true // inside a member array: its element count so far
	for _, c := range b {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			if counting && depth == 2 {
				empty = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			if counting && depth == 2 {
				empty = false
			}
			depth++
			if depth == 2 && c == '[' {
				counting, empty, n = true, true, 0
			}
			continue
		case '}', ']':
			if counting && depth == 2 {
				if !empty {
					n++
				}
				longest = max(longest, n)
				counting = false
			}
			depth--
			continue
		case ',':
			if counting && depth == 2 {
				n++
			}
			continue
		case ' ', '\t', '\r', '\n':
			continue
		}
		if counting && depth == 2 {
			empty = false
		}
	}
	return longest
}

// readBody reads n bytes into into when they fit its capacity, else into
// the reusable buffer. That buffer grows only as bytes arrive, so a false
// length in a short trace costs memory only for the bytes actually
// present.
func (r *Reader) readBody(n int, into []byte) ([]byte, error) {
	if cap(into) >= n {
		b := into[:n]
		_, err := r.readFull(b)
		return b, err
	}
	if cap(r.buf) >= n {
		b := r.buf[:n]
		_, err := r.readFull(b)
		return b, err
	}
	b := r.buf[:0]
	for len(b) < n {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(n-len(b), max(len(b), growStep)))
		}
		m := min(n, cap(b))
		k, err := r.readFull(b[len(b):m])
		b = b[:len(b)+k]
		if err != nil {
			r.buf = b
			return b, err
		}
	}
	r.buf = b
	return b, nil
}

// readFull reads len(b) decompressed bytes, with io.ReadFull's results:
// the read-ahead bytes first, then a remainder too large for the
// read-ahead straight from the decoder (one copy, not two), a smaller
// one through the read-ahead.
func (r *Reader) readFull(b []byte) (int, error) {
	n := copy(b, r.ahead[r.pos:r.end])
	r.pos += n
	for n < len(b) {
		if r.derr != nil {
			return n, fullErr(n, r.derr)
		}
		if len(b)-n >= len(r.ahead) {
			k, err := io.ReadFull(r.dec, b[n:])
			n += k
			if err != nil {
				r.derr = err
				return n, fullErr(n, err)
			}
			return n, nil
		}
		r.refill()
		c := copy(b[n:], r.ahead[:r.end])
		r.pos += c
		n += c
	}
	return n, nil
}

// refill reads what the decoder gives into the emptied read-ahead.
func (r *Reader) refill() {
	k, err := r.dec.Read(r.ahead)
	r.pos, r.end, r.derr = 0, k, err
}

// readHead reads a record head. Where the read-ahead holds none of it
// the head is read on its own, not by refilling the read-ahead: a
// refill would pull the first aheadSize bytes of a large body through
// it, to be copied twice. (After a small body the read-ahead usually
// holds the next heads, and serves them.)
func (r *Reader) readHead() (int, error) {
	if r.pos < r.end || r.derr != nil {
		return r.readFull(r.head[:])
	}
	n, err := io.ReadFull(r.dec, r.head[:])
	if err != nil {
		r.derr = err
	}
	return n, err
}

// fullErr is io.ReadFull's error for a read that met err after n bytes.
func fullErr(n int, err error) error {
	if n > 0 && err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// discard skips n decompressed bytes.
func (r *Reader) discard(n int) error {
	for n > 0 {
		if r.pos == r.end {
			if r.derr != nil {
				return fullErr(1, r.derr)
			}
			r.refill()
			continue
		}
		k := min(n, r.end-r.pos)
		r.pos += k
		n -= k
	}
	return nil
}

// readErr classifies an error met while reading what.
func (r *Reader) readErr(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("capture: %w: the trace ends inside %s near decompressed offset %d (the recorder stopped before finishing it); every record before it was read", ErrTruncated, what, r.off)
	}
	if errors.Is(err, zstd.ErrWindowSizeExceeded) {
		return fmt.Errorf("capture: %w: a zstd frame in %s near decompressed offset %d declares a window over the %d-byte bound; recompress the trace without --long (e.g. zstdcat t.zst | zstd -19 > u.zst)", ErrCorrupt, what, r.off, MaxWindow)
	}
	return fmt.Errorf("capture: %w: zstd decoding failed in %s near decompressed offset %d: %v; the file is damaged", ErrCorrupt, what, r.off, err)
}

// corruptf formats an error wrapping ErrCorrupt.
func (r *Reader) corruptf(format string, args ...any) error {
	return fmt.Errorf("capture: %w: "+format+"; the file is damaged", append([]any{ErrCorrupt}, args...)...)
}

// fail makes err the Reader's sticky error and returns it.
func (r *Reader) fail(err error) (Record, bool, error) {
	r.err = err
	return Record{}, false, err
}
