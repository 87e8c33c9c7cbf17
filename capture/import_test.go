package capture

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestImportRaw(t *testing.T) {
	raw := randBytes(3, 100_000)
	tests := []struct {
		name   string
		input  []byte
		chunk  int
		sizes  []int // expected delivery sizes
		reader func(io.Reader) io.Reader
	}{
		{"whole", raw, 0, []int{len(raw)}, nil},
		{"whole, read one byte at a time", raw[:3000], 0, []int{3000}, iotest.OneByteReader},
		{"chunks with a short tail", raw, 30_000, []int{30_000, 30_000, 30_000, 10_000}, nil},
		{"chunks dividing evenly", raw[:90_000], 30_000, []int{30_000, 30_000, 30_000}, nil},
		{"chunks from a trickling reader", raw[:1000], 300, []int{300, 300, 300, 100}, iotest.HalfReader},
		{"single-byte chunks", raw[:5], 1, []int{1, 1, 1, 1, 1}, nil},
		{"empty input, whole", nil, 0, nil, nil},
		{"empty input, chunks", nil, 64, nil, nil},
		{"whole at the bound", randBytes(4, MaxDataSize), 0, []int{MaxDataSize}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var src io.Reader = bytes.NewReader(tc.input)
			if tc.reader != nil {
				src = tc.reader(src)
			}
			var out bytes.Buffer
			meta := Meta{ToolVersion: "import-test", Backend: "import"}
			require.NoError(t, ImportRaw(&out, src, tc.chunk, meta))
			got, recs, err := readAll(out.Bytes())
			require.ErrorIs(t, err, io.EOF)
			assert.Equal(t, meta, got)
			var joined []byte
			var sizes []int
			for _, r := range recs {
				require.Equal(t, KindData, r.Kind, "no END or EVENT records")
				assert.Equal(t, TX, r.Dir)
				assert.Equal(t, BulkPort, r.Port)
				assert.Zero(t, r.TimeNS)
				sizes = append(sizes, len(r.Data))
				joined = append(joined, r.Data...)
			}
			assert.Equal(t, tc.sizes, sizes)
			assert.True(t, bytes.Equal(tc.input, joined), "deliveries concatenate to the input")
		})
	}
}

func TestImportRawErrors(t *testing.T) {
	var out bytes.Buffer
	err := ImportRaw(&out, io.LimitReader(zeros{}, MaxDataSize+1), 0, Meta{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--chunk")
	// Control: the same input imports with a chunk size.
	require.NoError(t, ImportRaw(&out, io.LimitReader(zeros{}, MaxDataSize+1), 1<<20, Meta{}))

	assert.ErrorContains(t, ImportRaw(&out, bytes.NewReader(nil), -1, Meta{}), "chunk size -1")
	assert.ErrorContains(t, ImportRaw(&out, bytes.NewReader(nil), MaxDataSize+1, Meta{}), "out of range")

	errRead := errors.New("device unplugged")
	err = ImportRaw(&out, iotest.ErrReader(errRead), 0, Meta{})
	assert.ErrorIs(t, err, errRead)
	assert.ErrorContains(t, err, "reading raw input")
	err = ImportRaw(&out, io.MultiReader(bytes.NewReader([]byte("abc")), iotest.ErrReader(errRead)), 2, Meta{})
	assert.ErrorIs(t, err, errRead)
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
