package capture

import (
	"bytes"
	"encoding/binary"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Decoding a trace's zstd frames several at once.
//
// The Writer closes a frame every FrameSize decompressed bytes, between
// records, so a trace it wrote is a run of small independent frames. A
// frameDecoder finds where each frame ends by walking its block headers
// (RFC 8878 §3.1.1), without decoding it, decodes frames with zstd's
// DecodeAll on goroutines of their own, and returns their output in
// order. Whatever it cannot walk (another magic, a skippable frame, a
// dictionary, a frame over maxAheadFrame, a cut or failing source), and
// every byte after it, goes through one streaming decoder configured as
// a serial Reader's; a walked frame DecodeAll refuses is decoded by that
// streaming decoder from the same bytes. A frameDecoder therefore
// yields the serial decoder's bytes and errors exactly, only sooner.
//
// The source is read only by the goroutine calling Read: the decoding
// goroutines see nothing but a frame's bytes already read.

const (
	// maxAheadFrame bounds the decompressed size of a frame decoded
	// ahead, as its header and block headers bound it (a compressed
	// block counts as a full block). Twice FrameSize leaves room for
	// the record that ends a frame.
	maxAheadFrame = 2 * FrameSize
	// maxAheadIn bounds a frame's compressed size when decoded ahead:
	// a frame's blocks' headers take 3 bytes each, and empty blocks
	// take room without adding to the decompressed bound.
	maxAheadIn = maxAheadFrame + maxAheadFrame/64
	// aheadBudget bounds the bytes held for frames decoded ahead (their
	// compressed bytes and room for their output, the frame being read
	// included): what a Reader with several decoders holds beyond a
	// serial one's, whatever the trace.
	aheadBudget = 24 << 20
	// zstdBlockMax is zstd's largest block (RFC 8878 §3.1.1.2.4).
	zstdBlockMax = 128 << 10
	// zstdMagic is a zstd frame's magic number.
	zstdMagic = 0xFD2FB528
)

// aheadCost is the most one frame decoded ahead can hold: its
// compressed bytes (grown at most to maxAheadIn) and its output room.
const aheadCost = maxAheadIn + maxAheadFrame

// frameJob is one frame decoded ahead.
type frameJob struct {
	cost int    // bytes it holds against aheadBudget
	in   []byte // the frame's compressed bytes
	out  []byte // its decompressed bytes, once done is closed
	err  error  // DecodeAll's error, once done is closed
	done chan struct{}
}

// frameDecoder is an io.Reader of the decompressed stream of src that
// decodes frames ahead on up to n goroutines at once.
type frameDecoder struct {
	src     io.Reader     // compressed; after the last frame split off
	all     *zstd.Decoder // DecodeAll, up to n at once
	stream  *zstd.Decoder // the serial decoder: the tail, refused frames
	split   bool          // src is still being split into frames
	ahead   int           // most frames decoded ahead
	tail    io.Reader     // where the serial decoder takes over, once split ends
	queue   []*frameJob   // frames decoded ahead, in order
	held    int           // bytes held by queue and cur
	cur     *frameJob     // the frame being read
	pos     int           // read offset in cur.out
	serial  io.Reader     // the serial decoder while it serves, else nil
	refused *frameJob     // the frame DecodeAll refused, while serial reads it
	err     error         // sticky
	wg      sync.WaitGroup
	ins     [][]byte // free compressed buffers
	outs    [][]byte // free output buffers
}

func newFrameDecoder(src io.Reader, n int) (*frameDecoder, error) {
	all, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(n),
		zstd.WithDecoderMaxWindow(MaxWindow),
		zstd.WithDecoderMaxMemory(maxAheadFrame))
	if err != nil {
		return nil, err
	}
	stream, err := zstd.NewReader(nil, decoderOptions()...)
	if err != nil {
		all.Close()
		return nil, err
	}
	return &frameDecoder{src: src, all: all, stream: stream, split: true, ahead: n + 1}, nil
}

// Read reads decompressed bytes, in order, as the serial decoder would.
func (d *frameDecoder) Read(p []byte) (int, error) {
	for {
		if d.cur != nil {
			if d.pos < len(d.cur.out) {
				n := copy(p, d.cur.out[d.pos:])
				d.pos += n
				return n, nil
			}
			d.release(d.cur)
			d.cur = nil
		}
		if d.serial != nil {
			n, err := d.serial.Read(p)
			if err == io.EOF && d.refused != nil {
				d.release(d.refused)
				d.serial, d.refused = nil, nil
				if n == 0 {
					continue
				}
				err = nil
			} else if err != nil {
				d.serial, d.err = nil, err
			}
			return n, err
		}
		if d.err != nil {
			return 0, d.err
		}
		d.fill()
		if len(d.queue) == 0 {
			if d.tail == nil {
				d.err = io.EOF
				continue
			}
			d.serve(d.tail)
			d.tail = nil
			continue
		}
		j := d.queue[0]
		d.queue = d.queue[1:]
		<-j.done
		if j.err != nil {
			// The serial decoder says what it would of the same bytes:
			// their output up to the damage and its error, or all of it
			// if it takes what DecodeAll did not.
			d.refused = j
			d.serve(bytes.NewReader(j.in))
			continue
		}
		d.cur, d.pos = j, 0
	}
}

// serve hands reading to the serial decoder, reading src.
func (d *frameDecoder) serve(src io.Reader) {
	if err := d.stream.Reset(src); err != nil {
		d.err = err
		return
	}
	d.serial = d.stream
}

// fill splits frames off src and starts decoding them while the budget
// allows another.
func (d *frameDecoder) fill() {
	for d.split && len(d.queue) < d.ahead && (d.held == 0 || d.held+aheadCost <= aheadBudget) {
		d.splitOne()
	}
}

// splitOne reads the next frame from src and starts decoding it, or ends
// the splitting where src does not go on with a frame it can walk.
func (d *frameDecoder) splitOne() {
	// A frame of the Writer's compresses to about half FrameSize or
	// less; starting there spares the copies of growing from nothing.
	in := d.take(&d.ins, FrameSize/2)
	in, bound, rest := d.readFrame(in[:0])
	if rest != nil {
		d.split = false
		if _, end := rest.(eofReader); len(in) > 0 || !end {
			d.tail = io.MultiReader(bytes.NewReader(in), rest)
		}
		return
	}
	j := &frameJob{in: in, out: d.take(&d.outs, bound)[:0], done: make(chan struct{})}
	j.cost = cap(j.in) + cap(j.out)
	d.held += j.cost
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer close(j.done)
		j.out, j.err = d.all.DecodeAll(j.in, j.out)
	}()
	d.queue = append(d.queue, j)
}

// readFrame appends the next frame's compressed bytes from src to dst,
// and returns them with the most decompressed bytes they can hold. When
// src does not go on with a frame within the bounds, it returns every
// byte it read from src in dst and, in rest, what follows them (src
// itself, or src's error).
func (d *frameDecoder) readFrame(dst []byte) (frame []byte, bound int, rest io.Reader) {
	var err error
	if dst, err = readN(d.src, dst, 5); err != nil {
		return dst, 0, after(err)
	}
	fhd := dst[4]
	if binary.LittleEndian.Uint32(dst) != zstdMagic {
		return dst, 0, d.src
	}
	hsize := 5 + [4]int{0, 1, 2, 4}[fhd&3] // Dictionary_ID
	if fhd&(1<<5) == 0 {
		hsize++ // Window_Descriptor
	}
	switch fcs := fhd >> 6; {
	case fcs > 0:
		hsize += 1 << fcs
	case fhd&(1<<5) != 0:
		hsize++
	}
	if dst, err = readN(d.src, dst, hsize-5); err != nil {
		return dst, 0, after(err)
	}
	var h zstd.Header
	if h.Decode(dst) != nil || h.HeaderSize != hsize || h.DictionaryID != 0 || h.HasFCS && h.FrameContentSize > maxAheadFrame {
		return dst, 0, d.src
	}
	window := h.WindowSize
	if h.SingleSegment {
		window = h.FrameContentSize
	}
	if window > MaxWindow {
		return dst, 0, d.src
	}
	blockMax := int(min(window, zstdBlockMax))
	for last := false; !last; {
		if dst, err = readN(d.src, dst, 3); err != nil {
			return dst, 0, after(err)
		}
		b := dst[len(dst)-3:]
		bh := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
		last = bh&1 != 0
		size := int(bh >> 3)
		content := size
		switch (bh >> 1) & 3 {
		case 0: // raw
			bound += size
		case 1: // RLE: one byte, repeated size times
			bound += size
			content = 1
		case 2: // compressed
			bound += blockMax
		default: // reserved
			return dst, 0, d.src
		}
		if size > blockMax || bound > maxAheadFrame || len(dst)+content > maxAheadIn {
			return dst, 0, d.src
		}
		if dst, err = readN(d.src, dst, content); err != nil {
			return dst, 0, after(err)
		}
	}
	if h.HasCheckSum {
		if dst, err = readN(d.src, dst, 4); err != nil {
			return dst, 0, after(err)
		}
	}
	return dst, bound, nil
}

// readN appends n bytes read from src to dst, growing it at most to
// maxAheadIn, and returns what it read with the error that cut it short.
func readN(src io.Reader, dst []byte, n int) ([]byte, error) {
	if len(dst)+n > cap(dst) {
		c := min(max(2*cap(dst), len(dst)+n, 64<<10), max(maxAheadIn, len(dst)+n))
		dst = append(make([]byte, 0, c), dst...)
	}
	want := len(dst) + n
	for empty := 0; len(dst) < want; {
		k, err := src.Read(dst[len(dst):want])
		dst = dst[:len(dst)+k]
		switch {
		case err != nil:
			return dst, err
		case k > 0:
			empty = 0
		default:
			if empty++; empty == 100 {
				return dst, io.ErrNoProgress
			}
		}
	}
	return dst, nil
}

// after is what follows the bytes read from a source up to its error
// err: nothing more at its end, else err again.
func after(err error) io.Reader {
	if err == io.EOF {
		return eofReader{}
	}
	return errReader{err}
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// take returns a free buffer of *free with capacity at least n, or a new
// one.
func (d *frameDecoder) take(free *[][]byte, n int) []byte {
	for i, b := range *free {
		if cap(b) >= n {
			(*free)[i] = (*free)[len(*free)-1]
			*free = (*free)[:len(*free)-1]
			return b
		}
	}
	return make([]byte, 0, n)
}

// release takes a frame's buffers back, once it has been read.
func (d *frameDecoder) release(j *frameJob) {
	d.held -= j.cost
	for _, fb := range []struct {
		free *[][]byte
		b    []byte
	}{{&d.ins, j.in}, {&d.outs, j.out}} {
		if len(*fb.free) < aheadBudget/aheadCost+1 {
			*fb.free = append(*fb.free, fb.b[:0])
		}
	}
}

// Close waits for the frames being decoded and frees the decoders.
func (d *frameDecoder) Close() {
	d.wg.Wait()
	d.all.Close()
	d.stream.Close()
	d.queue, d.cur, d.ins, d.outs = nil, nil, nil, nil
}
