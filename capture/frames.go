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
// The source is read only by the goroutine calling Read, with
// io.ReadFull as the serial decoder reads it: the decoding goroutines
// see nothing but a frame's bytes already read.
//
// Memory: a frame is decoded ahead only in one of a fixed number of
// slots, each with a zstd decoder of its own, a buffer for the frame's
// compressed bytes (at most maxAheadIn) and one for its output, sized to
// what the frame's block headers say it can hold (at most
// maxAheadFrame); DecodeAll may not write past it. A slot's buffers grow
// and never shrink, and a zstd decoder keeps pointing at the buffers it
// last used, which are then its slot's: the bytes held beyond a serial
// Reader's are at most slots × aheadCost, whatever the trace.

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
	// aheadCost is the most one slot holds: room for a frame's
	// compressed bytes and for its output.
	aheadCost = maxAheadIn + maxAheadFrame
	// maxDecoders bounds the frames decoded at once. Dispatch runs on
	// one core at about 1.3 × one decoder's pace here, so two decoders
	// keep it fed; a third is for slower decoding elsewhere.
	maxDecoders = 3
	// zstdBlockMax is zstd's largest block (RFC 8878 §3.1.1.2.4).
	zstdBlockMax = 128 << 10
	// zstdMagic is a zstd frame's magic number.
	zstdMagic = 0xFD2FB528
)

// frameJob is one slot: a frame decoded ahead, or room for one.
type frameJob struct {
	dec  *zstd.Decoder // DecodeAll, this slot's alone
	in   []byte        // the frame's compressed bytes
	out  []byte        // its decompressed bytes, once done is closed
	err  error         // DecodeAll's error, once done is closed
	done chan struct{}
}

// frameDecoder is an io.Reader of the decompressed stream of src that
// decodes frames ahead on up to maxDecoders goroutines at once.
type frameDecoder struct {
	src     io.Reader     // compressed; after the last frame split off
	stream  *zstd.Decoder // the serial decoder: the tail, refused frames
	slots   int           // most slots: frames decoded ahead and the one read
	made    []*frameJob   // slots made so far
	free    []*frameJob   // slots not in use
	split   bool          // src is still being split into frames
	tail    io.Reader     // where the serial decoder takes over, once split ends
	queue   []*frameJob   // frames decoded ahead, in order
	cur     *frameJob     // the frame being read
	pos     int           // read offset in cur.out
	serial  io.Reader     // the serial decoder while it serves, else nil
	refused *frameJob     // the frame DecodeAll refused, while serial reads it
	err     error         // sticky
	wg      sync.WaitGroup
}

// newFrameDecoder returns a frameDecoder of src decoding up to n frames
// at once (at most maxDecoders).
func newFrameDecoder(src io.Reader, n int) (*frameDecoder, error) {
	stream, err := zstd.NewReader(nil, decoderOptions()...)
	if err != nil {
		return nil, err
	}
	return &frameDecoder{src: src, stream: stream, split: true, slots: min(n, maxDecoders) + 1}, nil
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
		d.queue[0] = nil
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

// fill splits frames off src and starts decoding them while a slot is
// free.
func (d *frameDecoder) fill() {
	for d.split {
		j := d.slot()
		if j == nil {
			return
		}
		d.splitOne(j)
	}
}

// slot returns a free slot, or a new one while there are fewer than
// d.slots, else nil.
func (d *frameDecoder) slot() *frameJob {
	if k := len(d.free); k > 0 {
		j := d.free[k-1]
		d.free = d.free[:k-1]
		return j
	}
	if len(d.made) == d.slots {
		return nil
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxWindow(MaxWindow),
		zstd.WithDecoderMaxMemory(maxAheadFrame),
		zstd.WithDecodeAllCapLimit(true))
	if err != nil {
		// The options are constant, so this does not happen; if it
		// did, the serial decoder would read on from here.
		d.split, d.tail = false, d.src
		return nil
	}
	// The buffers grow to the frames' sizes as they come, and stay.
	j := &frameJob{dec: dec}
	d.made = append(d.made, j)
	return j
}

// splitOne reads the next frame from src into slot j and starts decoding
// it, or ends the splitting where src does not go on with a frame it can
// walk.
func (d *frameDecoder) splitOne(j *frameJob) {
	in, bound, rest := d.readFrame(j.in[:0])
	j.in = in
	if rest != nil {
		d.split = false
		if _, end := rest.(eofReader); len(in) > 0 || !end {
			d.tail = io.MultiReader(bytes.NewReader(in), rest)
		}
		return
	}
	if cap(j.out) < bound {
		j.out = make([]byte, 0, bound)
	}
	j.out, j.err, j.done = j.out[:0], nil, make(chan struct{})
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer close(j.done)
		// WithDecodeAllCapLimit: the output stays in the room the
		// block headers call for, or DecodeAll refuses the frame.
		j.out, j.err = j.dec.DecodeAll(j.in, j.out)
	}()
	d.queue = append(d.queue, j)
}

// readFrame appends the next frame's compressed bytes from src to dst,
// and returns them with the most decompressed bytes they can hold. When
// src does not go on with a frame it can walk within the bounds, it
// returns every byte it read from src in dst and, in rest, what follows
// them (src itself, or src's error).
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

// readN appends n bytes read from src with io.ReadFull to dst, growing
// it at most to maxAheadIn (and what a frame's last headers take past
// it), and returns what it read with the error that cut it short.
func readN(src io.Reader, dst []byte, n int) ([]byte, error) {
	if len(dst)+n > cap(dst) {
		c := min(max(2*cap(dst), len(dst)+n, 64<<10), max(maxAheadIn, len(dst)+n))
		dst = append(make([]byte, 0, c), dst...)
	}
	k, err := io.ReadFull(src, dst[len(dst):len(dst)+n])
	return dst[:len(dst)+k], err
}

// after is what follows the bytes read from a source up to its error
// err: nothing more at its end, else err again.
func after(err error) io.Reader {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return eofReader{}
	}
	return errReader{err}
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// release takes a slot back, once its frame has been read.
func (d *frameDecoder) release(j *frameJob) {
	d.free = append(d.free, j)
}

// Close waits for the frames being decoded and frees the decoders.
func (d *frameDecoder) Close() {
	d.wg.Wait()
	for _, j := range d.made {
		j.dec.Close()
	}
	d.stream.Close()
	d.queue, d.cur, d.free, d.made = nil, nil, nil, nil
}
