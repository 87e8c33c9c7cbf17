package capture

import (
	"bytes"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNextInto checks that a DATA body that fits the caller's buffer is
// decoded into it and stays valid after later calls, that one that does
// not fit is read as Next reads it, and that other records never use the
// buffer; every record reads back as Next reads it.
func TestNextInto(t *testing.T) {
	sizes := []int{0, 1, 100, aheadSize - 1, aheadSize, aheadSize + 1, 3 * aheadSize, 200 << 10, 5}
	var trace bytes.Buffer
	w, err := NewWriter(&trace, Meta{ToolVersion: "nextinto"})
	require.NoError(t, err)
	var want [][]byte
	for i, n := range sizes {
		d := randBytes(uint64(i), n)
		want = append(want, d)
		require.NoError(t, w.WriteData(TX, BulkPort, int64(i), d))
		require.NoError(t, w.WriteEvent(int64(i), "between", []byte(`{"i":1}`)))
		if i%3 == 2 {
			require.NoError(t, w.Flush()) // a new zstd frame mid-stream
		}
	}
	require.NoError(t, w.Close())

	const bufCap = 64 << 10
	r, err := NewReader(bytes.NewReader(trace.Bytes()))
	require.NoError(t, err)
	type kept struct {
		data []byte // aliases a buffer of ours
		want []byte
	}
	var held []kept
	for i := 0; ; i++ {
		buf := make([]byte, 0, bufCap)
		rec, inBuf, err := r.NextInto(buf)
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		if rec.Kind != KindData {
			assert.False(t, inBuf, "a %s record is never decoded into the caller's buffer", rec.Kind)
			continue
		}
		d := want[len(held)]
		require.Equal(t, d, rec.Data, "delivery %d", len(held))
		fits := len(d)+dataFixed <= bufCap
		assert.Equal(t, fits, inBuf, "delivery %d of %d bytes in a %d-byte buffer", len(held), len(d), bufCap)
		if inBuf {
			require.NotEmpty(t, buf[:cap(buf)])
			assert.Same(t, &buf[:cap(buf)][dataFixed], &rec.Data[:1][0], "the delivery lies in the caller's buffer, after the fixed fields")
		}
		held = append(held, kept{rec.Data, d})
	}
	require.Len(t, held, len(sizes))
	// Deliveries decoded into our buffers survived every later call;
	// the one read into the Reader's own buffer (200 KiB) is not ours.
	for i, k := range held {
		if len(k.want)+dataFixed <= bufCap {
			assert.Equal(t, k.want, k.data, "delivery %d after later reads", i)
		}
	}
}

// TestReadPathsAgree reads a trace holding records smaller and larger
// than the read-ahead, whole and cut short at several offsets, with Next
// and with NextInto (whose buffer some deliveries fit and some do not),
// and checks both see the same records and the same error.
func TestReadPathsAgree(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testMeta())
	require.NoError(t, err)
	require.NoError(t, writeRecords(w, sampleRecords(true)))
	require.NoError(t, w.Close())
	full := buf.Bytes()
	for _, cut := range []int{len(full), len(full) - 1, len(full) / 2, len(full) / 3, 40} {
		_, a, errA := readAll(full[:cut])
		_, b, errB := readAllInto(full[:cut], 5000)
		assert.Equal(t, a, b, "cut at %d", cut)
		if errA == nil || errB == nil {
			assert.Equal(t, errA, errB)
		} else {
			assert.Equal(t, errA.Error(), errB.Error(), "cut at %d", cut)
		}
	}
}
