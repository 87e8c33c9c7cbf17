package bus

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder remembers its accesses and reads back its name's first byte
// plus the offset.
type recorder struct {
	tag    byte
	reads  []uint64
	writes []uint64
}

func (r *recorder) Read(off uint64, p []byte) {
	r.reads = append(r.reads, off)
	for i := range p {
		p[i] = r.tag + byte(off) + byte(i)
	}
}

func (r *recorder) Write(off uint64, p []byte) { r.writes = append(r.writes, off) }

func TestRegisterOverlap(t *testing.T) {
	b := New("pio")
	require.NoError(t, b.Register(0x3f8, 8, "uart", &recorder{}))
	require.NoError(t, b.Register(0x70, 2, "cmos", &recorder{}))
	require.NoError(t, b.Register(0x400, 1, "after", &recorder{}), "a range right after another")
	require.NoError(t, b.Register(0x3f7, 1, "before", &recorder{}), "a range right before another")
	tests := []struct {
		name       string
		base, size uint64
	}{
		{"inside", 0x3fa, 2},
		{"over the start", 0x3f0, 9},
		{"over the end", 0x3ff, 2},
		{"around", 0x60, 0x20},
		{"same", 0x70, 2},
		{"empty", 0x500, 0},
		{"wraps", ^uint64(0) - 1, 4},
	}
	for _, tt := range tests {
		assert.Error(t, b.Register(tt.base, tt.size, tt.name, &recorder{}), tt.name)
	}
	var names []string
	for _, r := range b.Ranges() {
		names = append(names, r.Name)
	}
	assert.Equal(t, []string{"cmos", "before", "uart", "after"}, names, "address order, the refused ranges absent")
}

func TestRouting(t *testing.T) {
	b := New("pio")
	uart, cmos, def := &recorder{tag: 0x10}, &recorder{tag: 0x20}, &recorder{tag: 0x40}
	require.NoError(t, b.Register(0x3f8, 8, "uart", uart))
	require.NoError(t, b.Register(0x70, 2, "cmos", cmos))

	p := make([]byte, 2)
	b.Read(0x3fd, p)
	assert.Equal(t, []byte{0x15, 0x16}, p, "offset from the range's start")
	assert.Equal(t, []uint64{5}, uart.reads)
	b.Write(0x71, []byte{1})
	assert.Equal(t, []uint64{1}, cmos.writes)

	// Unclaimed, no default: all ones, writes dropped.
	b.Read(0x80, p)
	assert.Equal(t, []byte{0xff, 0xff}, p)
	b.Read(0x3ff, p)
	assert.Equal(t, []byte{0xff, 0xff}, p, "an access straddling a range's end is not the range's")
	assert.Len(t, uart.reads, 1)

	// With a default, it gets the absolute address.
	b.SetDefault(def)
	b.Read(0xc010, p)
	assert.Equal(t, []byte{0x50, 0x51}, p)
	b.Write(0xc012, []byte{0})
	assert.Equal(t, []uint64{0xc010}, def.reads)
	assert.Equal(t, []uint64{0xc012}, def.writes)
	b.Read(^uint64(0), p)
	assert.Equal(t, []uint64{0xc010, ^uint64(0)}, def.reads, "an access wrapping the address space goes to the default, not a range")
}
