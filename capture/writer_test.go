package capture

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// syncBuffer is a bytes.Buffer safe for the Writer's timer goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// TestTimerClosesFrame checks that a record left pending is written out
// as a closed frame within FlushInterval without any further call.
func TestTimerClosesFrame(t *testing.T) {
	var dst syncBuffer
	w, err := NewWriter(&dst, Meta{})
	require.NoError(t, err)
	defer w.Close()
	written := time.Now()
	require.NoError(t, w.WriteData(TX, BulkPort, 1, []byte("pending")))
	_, recs, err := readAll(dst.Bytes())
	if time.Since(written) < FlushInterval {
		// Control: before the deadline the record is still in the
		// encoder, so the destination holds only the header frame.
		require.ErrorIs(t, err, io.EOF)
		require.Empty(t, recs)
	}
	deadline := written.Add(FlushInterval + 2*time.Second) // slack for a loaded machine
	for {
		_, recs, err = readAll(dst.Bytes())
		if len(recs) == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.ErrorIs(t, err, io.EOF, "the timer must close the frame, not leave it open")
	require.Len(t, recs, 1)
	assert.Equal(t, "pending", string(recs[0].Data))
	t.Logf("frame closed %v after the write", time.Since(written).Round(time.Millisecond))
}

// TestEventClosesFrame checks that events and END close the frame at
// once.
func TestEventClosesFrame(t *testing.T) {
	var dst syncBuffer
	w, err := NewWriter(&dst, Meta{})
	require.NoError(t, err)
	require.NoError(t, w.WriteData(TX, BulkPort, 1, []byte("a")))
	require.NoError(t, w.WriteEvent(2, "snapshot", json.RawMessage(`{"rip":1}`)))
	_, recs, err := readAll(dst.Bytes())
	require.ErrorIs(t, err, io.EOF)
	require.Len(t, recs, 2)
	require.NoError(t, w.WriteData(TX, BulkPort, 3, []byte("b")))
	require.NoError(t, w.WriteEnd(End{TimeNS: 4, Reason: "poweroff"}))
	_, recs, err = readAll(dst.Bytes())
	require.ErrorIs(t, err, io.EOF)
	require.Len(t, recs, 4)
	assert.Equal(t, "poweroff", recs[3].End.Reason)
	require.NoError(t, w.Close())
}

// TestConcurrentWriters writes from several goroutines while the timer
// closes frames; run with -race to check the locking.
func TestConcurrentWriters(t *testing.T) {
	var dst syncBuffer
	w, err := NewWriter(&dst, Meta{})
	require.NoError(t, err)
	const goroutines, each = 4, 300
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				assert.NoError(t, w.WriteData(TX, uint16(g), int64(i), []byte{byte(g), byte(i)}))
				if i%100 == 99 {
					assert.NoError(t, w.Flush())
					time.Sleep(FlushInterval / 10)
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, w.Close())
	_, recs, err := readAll(dst.Bytes())
	require.ErrorIs(t, err, io.EOF)
	require.Len(t, recs, goroutines*each)
	next := make([]int64, goroutines)
	for _, r := range recs {
		require.Equal(t, next[r.Port], r.TimeNS, "records of one goroutine stay in order")
		require.Equal(t, []byte{byte(r.Port), byte(r.TimeNS)}, r.Data)
		next[r.Port]++
	}
}

func TestDevFull(t *testing.T) {
	f, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer f.Close()
	_, err = NewWriter(f, testMeta())
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.ENOSPC)
	assert.Contains(t, err.Error(), "no space left on device")
	assert.Contains(t, err.Error(), "capture: writing trace")

	// Control: the same trace to a regular file succeeds.
	g, err := os.Create(filepath.Join(t.TempDir(), "ok.zst"))
	require.NoError(t, err)
	defer g.Close()
	w, err := NewWriter(g, testMeta())
	require.NoError(t, err)
	require.NoError(t, w.Close())
}

// failAfter is a writer that accepts n bytes and then fails.
type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		k := f.n
		f.n = 0
		return k, f.err
	}
	f.n -= len(p)
	return len(p), nil
}

// TestWriteErrorSticky fails the destination after the header: the
// error surfaces by Flush at the latest, then from every call.
func TestWriteErrorSticky(t *testing.T) {
	errDisk := errors.New("disk on fire")
	var hdr bytes.Buffer
	w, err := NewWriter(&hdr, Meta{})
	require.NoError(t, err)
	require.NoError(t, w.Close())

	dst := &failAfter{n: hdr.Len(), err: errDisk}
	w, err = NewWriter(dst, Meta{})
	require.NoError(t, err, "control: the header fits")
	require.NoError(t, w.WriteData(TX, 1, 0, []byte("x")), "still buffered in the frame")
	err = w.Flush()
	require.ErrorIs(t, err, errDisk)
	assert.Contains(t, err.Error(), "capture: writing trace")
	assert.ErrorIs(t, w.WriteData(TX, 1, 0, []byte("y")), errDisk)
	assert.ErrorIs(t, w.WriteEvent(1, "x", nil), errDisk)
	assert.ErrorIs(t, w.Close(), errDisk)
	assert.ErrorIs(t, w.Close(), errDisk)
}

func TestWriterRejects(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Meta{})
	require.NoError(t, err)
	assert.ErrorIs(t, w.WriteData(TX, 1, 0, make([]byte, MaxDataSize+1)), ErrTooLarge)
	assert.NoError(t, w.WriteData(TX, 1, 0, make([]byte, 10)), "control")
	assert.ErrorContains(t, w.WriteData(0, 1, 0, nil), "invalid direction")
	assert.ErrorContains(t, w.WriteEvent(0, "", nil), "name")
	assert.ErrorContains(t, w.WriteEvent(0, "bad\xff", nil), "UTF-8")
	assert.ErrorContains(t, w.WriteEvent(0, "x", json.RawMessage("{")), "not valid JSON")
	assert.ErrorIs(t, w.WriteEvent(0, "x", json.RawMessage(`"`+string(bytes.Repeat([]byte{'a'}, MaxRecordSize))+`"`)), ErrTooLarge)
	assert.ErrorContains(t, w.WriteEvent(0, "x", json.RawMessage("\"bad\xff\"")), "not valid JSON in UTF-8")
	assert.NoError(t, w.WriteEvent(0, "x", json.RawMessage(`"good \u00ff"`)), "control: UTF-8 JSON detail")
	assert.ErrorContains(t, w.WriteEnd(End{Outcome: json.RawMessage("nope")}), "not valid JSON")
	assert.ErrorContains(t, w.WriteEnd(End{Outcome: json.RawMessage("[1,2,3]")}), "want a JSON object")
	assert.ErrorContains(t, w.WriteEnd(End{Outcome: json.RawMessage("{\"a\":\"\xff\"}")}), "in UTF-8")
	require.NoError(t, w.WriteEnd(End{Reason: "done"}))
	assert.ErrorIs(t, w.WriteData(TX, 1, 0, nil), ErrClosed)
	assert.ErrorIs(t, w.WriteEnd(End{}), ErrClosed)
	require.NoError(t, w.Close())
	assert.ErrorIs(t, w.WriteData(TX, 1, 0, nil), ErrClosed)
	assert.NoError(t, w.Flush(), "nothing pending")

	_, err = NewWriter(&buf, Meta{Extra: map[string]string{"big": string(make([]byte, MaxMetaSize))}})
	assert.ErrorIs(t, err, ErrTooLarge)

	// Everything rejected left no trace in the output.
	_, recs, err := readAll(buf.Bytes())
	require.ErrorIs(t, err, io.EOF)
	require.Len(t, recs, 3)
	assert.Equal(t, KindEvent, recs[1].Kind)
	assert.Equal(t, KindEnd, recs[2].Kind)
}
