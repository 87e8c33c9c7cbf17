package capture

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"testing"
	"testing/iotest"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readResult is everything a Reader says of a trace.
type readResult struct {
	Meta   Meta
	Recs   []Record
	Err    string
	Offset int64
}

// readWith reads a trace from src with n decoders, to its end or first
// error.
func readWith(src io.Reader, n int) readResult {
	r, err := NewReader(src, WithDecoders(n))
	if err != nil {
		return readResult{Err: err.Error()}
	}
	defer r.Close()
	res := readResult{Meta: r.Meta()}
	for {
		rec, err := r.Next()
		if err != nil {
			res.Err, res.Offset = err.Error(), r.Offset()
			return res
		}
		rec.Data = bytes.Clone(rec.Data)
		rec.Detail = bytes.Clone(rec.Detail)
		res.Recs = append(res.Recs, rec)
	}
}

// manyFrames writes a trace of many Writer frames: deliveries of assorted
// sizes (some compressible, one larger than a frame decoded ahead may
// be), events between them, and an END record.
func manyFrames(t testing.TB, total int) []byte {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testMeta())
	require.NoError(t, err)
	sizes := []int{64 << 10, 0, 1, 300 << 10, 5000, 1 << 20}
	for i, done := 0, 0; done < total; i++ {
		n := sizes[i%len(sizes)]
		d := randBytes(uint64(i), n)
		if i%3 == 0 {
			d = bytes.Repeat([]byte("compressible "), n/13+1)[:n]
		}
		require.NoError(t, w.WriteData(TX, BulkPort, int64(i), d))
		if i%17 == 5 {
			require.NoError(t, w.WriteEvent(int64(i), "step", []byte(`{"i":1}`)))
		}
		done += n
	}
	require.NoError(t, w.WriteEnd(End{TimeNS: 9, Reason: "poweroff", Outcome: []byte(`{"frames":1}`)}))
	require.NoError(t, w.Close())
	return buf.Bytes()
}

// framesOf returns the offsets at which the zstd frames of a stream the
// frameDecoder can walk begin, and where the walk stopped.
func framesOf(t testing.TB, b []byte) (starts []int, stop int) {
	d, err := newFrameDecoder(bytes.NewReader(b), 2)
	require.NoError(t, err)
	defer d.Close()
	off := 0
	for {
		f, _, rest := d.readFrame(nil)
		if rest != nil {
			return starts, off
		}
		starts = append(starts, off)
		off += len(f)
	}
}

// TestWriterFrameSize checks that the Writer closes a frame once it holds
// FrameSize bytes, after the record that reaches it, and that the
// frames' decompressed sizes add up to the stream.
func TestWriterFrameSize(t *testing.T) {
	trace := manyFrames(t, 20<<20)
	starts, stop := framesOf(t, trace)
	require.Equal(t, len(trace), stop, "every frame the Writer writes can be walked")
	require.Greater(t, len(starts), 10, "20 MiB of deliveries make more than ten frames")
	dec, err := zstd.NewReader(nil)
	require.NoError(t, err)
	defer dec.Close()
	var total int
	for i, s := range starts {
		end := len(trace)
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		out, err := dec.DecodeAll(trace[s:end], nil)
		require.NoError(t, err, "frame %d", i)
		// The largest delivery is 1 MiB: a frame passes FrameSize by
		// less than one record.
		assert.Less(t, len(out), FrameSize+(1<<20)+recordHead+dataFixed, "frame %d", i)
		total += len(out)
	}
	all, err := dec.DecodeAll(trace, nil)
	require.NoError(t, err)
	assert.Equal(t, len(all), total)
}

// cutSource returns its source's bytes up to n, then err.
type cutSource struct {
	src io.Reader
	n   int
	err error
}

func (f *cutSource) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	k, err := f.src.Read(p[:min(len(p), f.n)])
	f.n -= k
	return k, err
}

// TestDecodersAgree reads traces, whole and damaged, with one decoder and
// with several, and checks the records, the error and the offset are the
// same: the Writer's many frames, a trace recompressed as one frame, a
// skippable frame between frames, trailing bytes, cuts at many offsets,
// flipped bytes, a source that fails and one that gives a byte at a
// time.
func TestDecodersAgree(t *testing.T) {
	trace := manyFrames(t, 12<<20)
	starts, _ := framesOf(t, trace)
	require.Greater(t, len(starts), 4)

	oneFrame := asOneFrame(t, trace, MaxWindow)

	skippable := []byte{0x50, 0x2A, 0x4D, 0x18, 5, 0, 0, 0, 1, 2, 3, 4, 5}
	mid := starts[len(starts)/2]
	withSkip := append(append(append([]byte{}, trace[:mid]...), skippable...), trace[mid:]...)

	cases := map[string][]byte{
		"many frames":     trace,
		"one frame":       oneFrame,
		"skippable frame": withSkip,
		"trailing zeros":  append(append([]byte{}, trace...), 0, 0, 0, 0, 0),
		"trailing magic":  append(append([]byte{}, trace...), 0x28, 0xB5, 0x2F),
	}
	for _, f := range []int{starts[1] + 2, starts[2] + 7, mid + 100, len(trace) - 2, starts[3] + 4} {
		b := bytes.Clone(trace)
		b[f] ^= 0x40
		cases[fmt.Sprintf("flip at %d", f)] = b
	}
	for i := 0; i < 40; i++ {
		c := len(trace) * i / 40
		cases[fmt.Sprintf("cut at %d", c)] = trace[:c]
	}
	for _, s := range starts[1:4] {
		for _, c := range []int{s, s + 1, s + 4, s + 5, s + 6, s + 8, s + 9} {
			cases[fmt.Sprintf("cut at %d (frame start %+d)", c, c-s)] = trace[:c]
		}
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			want := readWith(bytes.NewReader(b), 1)
			for _, n := range []int{2, 3} {
				got := readWith(bytes.NewReader(b), n)
				require.Equal(t, want.Err, got.Err, "%d decoders", n)
				require.Equal(t, want.Offset, got.Offset, "%d decoders", n)
				require.Equal(t, want.Meta, got.Meta, "%d decoders", n)
				require.Equal(t, len(want.Recs), len(got.Recs), "%d decoders", n)
				require.Equal(t, want.Recs, got.Recs, "%d decoders", n)
			}
		})
	}
	// Positive control: the cases differ from each other, so agreeing
	// is not a matter of every reading failing alike.
	assert.Equal(t, "EOF", readWith(bytes.NewReader(trace), 2).Err)
	assert.NotEqual(t, "EOF", readWith(bytes.NewReader(trace[:len(trace)/2]), 2).Err)

	sources := map[string]func() io.Reader{
		"one byte at a time": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(trace)) },
		"fails mid-frame":    func() io.Reader { return &cutSource{bytes.NewReader(trace), mid + 50, errors.New("disk on fire")} },
		"fails at a frame":   func() io.Reader { return &cutSource{bytes.NewReader(trace), mid, errors.New("disk on fire")} },
		"data with error":    func() io.Reader { return iotest.DataErrReader(bytes.NewReader(trace)) },
		"timeout":            func() io.Reader { return iotest.TimeoutReader(bytes.NewReader(trace)) },
	}
	for name, src := range sources {
		t.Run(name, func(t *testing.T) {
			want := readWith(src(), 1)
			got := readWith(src(), 2)
			require.Equal(t, want.Err, got.Err)
			require.Equal(t, want.Offset, got.Offset)
			require.Equal(t, want.Recs, got.Recs)
		})
	}
}

// TestDecodersAhead checks that a Reader with several decoders decodes
// frames ahead of what was read, several at once, in no more slots than
// it may make: sixteen decoders asked for, maxDecoders granted.
func TestDecodersAhead(t *testing.T) {
	trace := manyFrames(t, 64<<20)
	for _, n := range []int{2, 16} {
		r, err := NewReader(bytes.NewReader(trace), WithDecoders(n))
		require.NoError(t, err)
		fd := r.dec.(*frameDecoder)
		most := 0
		readEach(t, r, func() {
			most = max(most, len(fd.queue))
			require.LessOrEqual(t, len(fd.made), min(n, maxDecoders)+1)
		})
		assert.Equal(t, min(n, maxDecoders)+1, len(fd.made), "%d decoders: slots made", n)
		assert.GreaterOrEqual(t, most, 2, "%d decoders: frames decoded ahead at once", n)
		r.Close()
	}

	// A trace whose frames the Writer did not size (one frame of 64
	// MiB): read in order by the serial decoder, no slot used but the
	// one its first bytes were read into before the walk gave up.
	r2, err := NewReader(bytes.NewReader(asOneFrame(t, trace, 1<<20)), WithDecoders(4))
	require.NoError(t, err)
	defer r2.Close()
	fd := r2.dec.(*frameDecoder)
	n := readEach(t, r2, func() {
		require.LessOrEqual(t, len(fd.made), 1)
		require.Empty(t, fd.queue)
	})
	assert.Greater(t, n, 50)
}

// readEach reads r to its clean end, calling check after every record,
// and returns how many it read.
func readEach(t *testing.T, r *Reader, check func()) int {
	n := 0
	for {
		_, err := r.Next()
		if err == io.EOF {
			return n
		}
		require.NoError(t, err)
		check()
		n++
	}
}

// asOneFrame decompresses trace and compresses it again as one zstd
// frame with the given window, as `zstd` on the command line would.
func asOneFrame(t *testing.T, trace []byte, window int) []byte {
	dec, err := zstd.NewReader(nil)
	require.NoError(t, err)
	defer dec.Close()
	plain, err := dec.DecodeAll(trace, nil)
	require.NoError(t, err)
	enc, err := zstd.NewWriter(nil, zstd.WithWindowSize(window))
	require.NoError(t, err)
	return enc.EncodeAll(plain, nil)
}

// zstdFrame returns a zstd frame: magic, the frame header descriptor
// fhd and the header fields after it, then the blocks.
func zstdFrame(fhd byte, fields []byte, blocks ...[]byte) []byte {
	f := append([]byte{0x28, 0xB5, 0x2F, 0xFD, fhd}, fields...)
	for _, b := range blocks {
		f = append(f, b...)
	}
	return f
}

// rawBlock returns a raw zstd block holding d.
func rawBlock(d []byte, last bool) []byte {
	bh := uint32(len(d)) << 3
	if last {
		bh |= 1
	}
	return append([]byte{byte(bh), byte(bh >> 8), byte(bh >> 16)}, d...)
}

// liveExtra reads a trace with n decoders and returns the most live heap
// it held beyond what it held before reading, sampled after every
// record once the decoders had time to run ahead.
func liveExtra(t *testing.T, trace []byte, n int) uint64 {
	var ms runtime.MemStats
	live := func() uint64 {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base := live()
	r, err := NewReader(bytes.NewReader(trace), WithDecoders(n))
	require.NoError(t, err)
	defer r.Close()
	var most uint64
	for {
		_, err := r.Next()
		time.Sleep(time.Millisecond)
		most = max(most, live())
		if err != nil {
			break
		}
	}
	return most - min(most, base)
}

// TestDecodersMemory drives the decoding ahead with traces built to make
// it hold the most (the Writer's own, frames that lie about their size,
// frames of nothing but empty blocks, frames at the largest size walked)
// and checks the live heap it adds to a serial Reader's stays within
// its slots, with one decoder and with sixteen asked for.
func TestDecodersMemory(t *testing.T) {
	var hb bytes.Buffer
	w, err := NewWriter(&hb, testMeta())
	require.NoError(t, err)
	require.NoError(t, w.Close())
	header := hb.Bytes()
	// A frame declaring 4 MiB (FCS, 4 bytes) that holds one byte.
	liar := zstdFrame(0x80, []byte{0x50, 0, 0, 0x40, 0}, rawBlock([]byte{1}, true))
	// A frame of 170,000 empty raw blocks, which decodes to nothing.
	empty := zstdFrame(0x00, []byte{0x50}, bytes.Repeat(rawBlock(nil, false), 170000), rawBlock(nil, true))
	// A frame of 32 full raw blocks: 4 MiB, the most walked.
	var full [][]byte
	for i := range 32 {
		full = append(full, rawBlock(randBytes(uint64(i), zstdBlockMax), i == 31))
	}
	big := zstdFrame(0x00, []byte{0x50}, full...)
	cases := map[string][]byte{
		"writer":          manyFrames(t, 24<<20),
		"size lies":       append(bytes.Clone(header), bytes.Repeat(liar, 40)...),
		"empty blocks":    append(bytes.Clone(header), bytes.Repeat(empty, 40)...),
		"frames of 4 MiB": append(bytes.Clone(header), bytes.Repeat(big, 12)...),
	}
	for name, trace := range cases {
		t.Run(name, func(t *testing.T) {
			serial := liveExtra(t, trace, 1)
			for _, n := range []int{2, 16} {
				extra := liveExtra(t, trace, n)
				bound := uint64(min(n, maxDecoders)+1) * aheadCost
				t.Logf("%d decoders: %.1f MiB live beyond the serial Reader's %.1f MiB (bound %.1f MiB)",
					n, float64(extra-min(extra, serial))/(1<<20), float64(serial)/(1<<20), float64(bound)/(1<<20))
				assert.LessOrEqual(t, extra, serial+bound+1<<20, "%d decoders", n)
				if name == "writer" {
					// Control: the slots are used, and seen.
					assert.Greater(t, extra, serial+2*FrameSize, "%d decoders", n)
				}
			}
		})
	}
}
