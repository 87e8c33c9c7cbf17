package guestmem

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewRejectsBadRegions(t *testing.T) {
	_, err := New(Region{GPA: 0, Data: make([]byte, 4096)}, Region{GPA: 8192, Data: make([]byte, 4096)})
	require.NoError(t, err, "two separate regions")
	_, err = New(Region{GPA: 0, Data: make([]byte, 4096)}, Region{GPA: 4095, Data: make([]byte, 4096)})
	assert.Error(t, err, "overlap")
	_, err = New(Region{GPA: 0x1000, Data: nil})
	assert.Error(t, err, "empty")
	_, err = New(Region{GPA: ^uint64(0) - 10, Data: make([]byte, 100)})
	assert.Error(t, err, "wraps around")
}

func TestSliceBounds(t *testing.T) {
	m, err := New(Region{GPA: 0x1000, Data: make([]byte, 0x1000)}, Region{GPA: 0x3000, Data: make([]byte, 0x1000)})
	require.NoError(t, err)
	assert.Equal(t, uint64(0x2000), m.Size())
	tests := []struct {
		gpa, n uint64
		ok     bool
	}{
		{0x1000, 0x1000, true},
		{0x1fff, 1, true},
		{0x2000, 0, true}, // empty slice at the end of a region
		{0x3000, 0x1000, true},
		{0xfff, 1, false},
		{0x1fff, 2, false}, // runs off the region
		{0x1800, 0x2000, false},
		{0x2000, 1, false}, // the gap
		{0x3fff, ^uint64(0), false},
		{^uint64(0), 2, false},
	}
	for _, tt := range tests {
		s, err := m.Slice(tt.gpa, tt.n)
		if tt.ok {
			require.NoError(t, err, "%#x+%#x", tt.gpa, tt.n)
			assert.Len(t, s, int(tt.n))
			assert.Equal(t, int(tt.n), cap(s), "the slice cannot be extended past its bytes")
		} else {
			assert.ErrorIs(t, err, ErrOutOfRange, "%#x+%#x", tt.gpa, tt.n)
		}
	}
}

func TestTypedAccess(t *testing.T) {
	m, err := New(Region{GPA: 0, Data: make([]byte, 64)})
	require.NoError(t, err)
	require.NoError(t, m.PutUint16(0, 0xbeef))
	require.NoError(t, m.PutUint32(4, 0xdeadbeef))
	require.NoError(t, m.PutUint64(8, 0x0123456789abcdef))
	v16, err := m.Uint16(0)
	require.NoError(t, err)
	assert.Equal(t, uint16(0xbeef), v16)
	v32, err := m.Uint32(4)
	require.NoError(t, err)
	assert.Equal(t, uint32(0xdeadbeef), v32)
	v64, err := m.Uint64(8)
	require.NoError(t, err)
	assert.Equal(t, uint64(0x0123456789abcdef), v64)
	b := make([]byte, 2)
	require.NoError(t, m.Read(0, b))
	assert.Equal(t, []byte{0xef, 0xbe}, b, "little-endian")
	assert.ErrorIs(t, m.PutUint64(60, 1), ErrOutOfRange)
	assert.ErrorIs(t, m.Write(63, []byte{1, 2}), ErrOutOfRange)
}

func TestAtomicWord(t *testing.T) {
	m, err := New(Region{GPA: 0, Data: make([]byte, 64)})
	require.NoError(t, err)
	require.NoError(t, m.StoreUint32(8, 0x00050001))
	v, err := m.LoadUint32(8)
	require.NoError(t, err)
	assert.Equal(t, uint32(0x00050001), v)
	idx, err := m.Uint16(10)
	require.NoError(t, err)
	assert.Equal(t, uint16(5), idx, "the high half is the u16 at +2")
	_, err = m.LoadUint32(6)
	assert.ErrorIs(t, err, ErrOutOfRange, "misaligned")
	_, err = m.LoadUint32(64)
	assert.ErrorIs(t, err, ErrOutOfRange)
}
