package virtio

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/vmm/guestmem"
)

func TestNewQueueSize(t *testing.T) {
	mem := newTestMem(t)
	for _, size := range []uint16{1, 2, 128, 32768} {
		_, err := NewQueue(mem, size)
		assert.NoError(t, err, "size %d", size)
	}
	for _, size := range []uint16{0, 3, 100, 65535} {
		_, err := NewQueue(mem, size)
		assert.Error(t, err, "size %d", size)
	}
}

func TestSetPFNBounds(t *testing.T) {
	mem := newTestMem(t)
	q, err := NewQueue(mem, 256)
	require.NoError(t, err)
	require.NoError(t, q.SetPFN(1), "a queue inside memory")
	assert.True(t, q.Ready())
	lastFit := uint32((testMemSize - LegacyLayoutSize(256)) / LegacyAlign)
	require.NoError(t, q.SetPFN(lastFit), "the last page the queue fits at")
	err = q.SetPFN(lastFit + 1)
	assert.ErrorIs(t, err, ErrBadRing, "a queue running past the end of memory")
	assert.False(t, q.Ready(), "a rejected placement leaves the queue unset")
	assert.ErrorIs(t, q.SetPFN(0xffffffff), ErrBadRing)
	require.NoError(t, q.SetPFN(0))
	assert.False(t, q.Ready())
}

func TestPlaceBounds(t *testing.T) {
	mem := newTestMem(t) // 1 MiB at 0
	const desc, avail, used = 0x1000, 0x2000, 0x3000
	tests := []struct {
		name              string
		size              uint16
		desc, avail, used uint64
		ok                bool
	}{
		{"well placed", 16, desc, avail, used, true},
		{"smaller than the maximum", 4, desc, avail, used, true},
		{"parts packed, available ring 2 mod 4", 8, desc, desc + 16*8 + 2, desc + 0x100, true},
		{"the used ring 2 bytes before the end of memory", 16, desc, avail, testMemSize - 136, true},
		{"size 0", 0, desc, avail, used, false},
		{"size not a power of two", 12, desc, avail, used, false},
		{"size over the maximum", 32, desc, avail, used, false},
		{"descriptor table misaligned", 16, desc + 8, avail, used, false},
		{"available ring misaligned", 16, desc, avail + 1, used, false},
		{"used ring misaligned", 16, desc, avail, used + 2, false},
		{"used ring 2 bytes past the end of memory", 16, desc, avail, testMemSize - 132, false},
		{"descriptor table outside memory", 16, 1 << 40, avail, used, false},
		{"available ring wraps the address space", 16, desc, ^uint64(0) - 1, used, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := NewQueue(mem, 16)
			require.NoError(t, err)
			err = q.Place(tt.size, tt.desc, tt.avail, tt.used)
			if tt.ok {
				require.NoError(t, err)
				assert.True(t, q.Ready())
				assert.Equal(t, tt.size, q.Size())
				assert.Zero(t, q.PFN(), "not a legacy placement")
				return
			}
			assert.ErrorIs(t, err, ErrBadRing)
			assert.False(t, q.Ready(), "a refused placement leaves the queue unplaced")
			assert.Equal(t, uint16(16), q.Size(), "and at its maximum size")
		})
	}
}

// TestPlacedQueue runs chains through a queue placed part by part, its
// available ring at 2 mod 4 (the device reads its index as the upper
// half of an aligned word).
func TestPlacedQueue(t *testing.T) {
	mem := newTestMem(t)
	q, err := NewQueue(mem, 8)
	require.NoError(t, err)
	const desc, avail, used = 0x1000, 0x1082, 0x2000
	require.NoError(t, q.Place(4, desc, avail, used))
	r := newSplitRing(mem, 4, desc, avail, used)
	require.NoError(t, mem.Write(0x8000, []byte("modern")))
	for i := range uint16(6) { // past the end of the 4-entry ring
		r.setDesc(t, i%4, 0x8000, 6, 0, 0)
		r.offer(t, i%4)
		c, ok, err := q.Pop()
		require.NoError(t, err)
		require.True(t, ok, "chain %d", i)
		assert.Equal(t, "modern", string(c.AppendOut(nil)))
		require.NoError(t, q.Push(c.Head, 0))
		assert.Equal(t, []usedEntry{{uint32(i % 4), 0}}, r.takeUsed(t))
	}
	assert.True(t, q.NeedsInterrupt())
	require.NoError(t, mem.PutUint16(avail, AvailFNoInterrupt))
	assert.False(t, q.NeedsInterrupt(), "the flags are the lower half of the word at 0x1080")
	q.Reset()
	assert.False(t, q.Ready())
	assert.Equal(t, uint16(8), q.Size(), "reset restores the maximum size")
}

// queueFixture is a 16-entry queue at page 1 with its driver view.
func queueFixture(t *testing.T) (*Queue, *ring) {
	mem := newTestMem(t)
	q, err := NewQueue(mem, 16)
	require.NoError(t, err)
	require.NoError(t, q.SetPFN(1))
	return q, newRing(mem, 16, 1)
}

func TestPopPush(t *testing.T) {
	q, r := queueFixture(t)
	require.NoError(t, r.mem.Write(0x8000, []byte("hello ")))
	require.NoError(t, r.mem.Write(0x9000, []byte("world")))
	r.setDesc(t, 3, 0x8000, 6, DescFNext, 7)
	r.setDesc(t, 7, 0x9000, 5, DescFNext, 2)
	r.setDesc(t, 2, 0xa000, 100, DescFWrite, 0)
	_, ok, err := q.Pop()
	require.NoError(t, err)
	assert.False(t, ok, "nothing available yet")
	r.offer(t, 3)

	c, ok, err := q.Pop()
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, uint16(3), c.Head)
	assert.Equal(t, "hello world", string(c.AppendOut(nil)))
	assert.Equal(t, 11, c.OutLen())
	assert.Equal(t, 100, c.InLen())
	assert.Equal(t, 4, c.WriteIn([]byte("ping")))
	got := make([]byte, 4)
	require.NoError(t, r.mem.Read(0xa000, got))
	assert.Equal(t, "ping", string(got))

	require.NoError(t, q.Push(c.Head, 4))
	assert.Equal(t, []usedEntry{{3, 4}}, r.takeUsed(t))
	assert.ErrorIs(t, q.Push(16, 0), ErrBadChain, "a head outside the queue")
	_, ok, err = q.Pop()
	require.NoError(t, err)
	assert.False(t, ok, "each chain is taken once")
}

func TestNeedsInterrupt(t *testing.T) {
	q, r := queueFixture(t)
	assert.True(t, q.NeedsInterrupt())
	require.NoError(t, r.mem.PutUint16(r.avail(), AvailFNoInterrupt))
	assert.False(t, q.NeedsInterrupt())
}

// TestBadChains feeds malformed chains; each must fail with the right
// sentinel and never yield a buffer. The positive control is the same
// queue with a well-formed chain.
func TestBadChains(t *testing.T) {
	tests := []struct {
		name  string
		build func(t *testing.T, r *ring)
		want  error
	}{
		{"well-formed control", func(t *testing.T, r *ring) {
			r.setDesc(t, 0, 0x8000, 16, DescFNext, 1)
			r.setDesc(t, 1, 0x9000, 16, DescFWrite, 0)
			r.offer(t, 0)
		}, nil},
		{"head outside the queue", func(t *testing.T, r *ring) { r.offer(t, 16) }, ErrBadChain},
		{"next outside the queue", func(t *testing.T, r *ring) {
			r.setDesc(t, 0, 0x8000, 16, DescFNext, 999)
			r.offer(t, 0)
		}, ErrBadChain},
		{"self loop", func(t *testing.T, r *ring) {
			r.setDesc(t, 0, 0x8000, 16, DescFNext, 0)
			r.offer(t, 0)
		}, ErrBadChain},
		{"two-descriptor loop", func(t *testing.T, r *ring) {
			r.setDesc(t, 0, 0x8000, 16, DescFNext, 1)
			r.setDesc(t, 1, 0x8000, 16, DescFNext, 0)
			r.offer(t, 0)
		}, ErrBadChain},
		{"indirect", func(t *testing.T, r *ring) {
			r.setDesc(t, 0, 0x8000, 16, DescFIndirect, 0)
			r.offer(t, 0)
		}, ErrBadChain},
		{"address past memory", func(t *testing.T, r *ring) {
			r.setDesc(t, 0, testMemSize, 1, 0, 0)
			r.offer(t, 0)
		}, ErrBadChain},
		{"length running past memory", func(t *testing.T, r *ring) {
			r.setDesc(t, 0, testMemSize-8, 9, 0, 0)
			r.offer(t, 0)
		}, ErrBadChain},
		{"address wrapping the address space", func(t *testing.T, r *ring) {
			r.setDesc(t, 0, ^uint64(0)-3, 16, 0, 0)
			r.offer(t, 0)
		}, ErrBadChain},
		{"readable after writable", func(t *testing.T, r *ring) {
			r.setDesc(t, 0, 0x8000, 16, DescFWrite|DescFNext, 1)
			r.setDesc(t, 1, 0x9000, 16, 0, 0)
			r.offer(t, 0)
		}, ErrBadChain},
		{"available index far ahead", func(t *testing.T, r *ring) {
			r.setDesc(t, 0, 0x8000, 16, 0, 0)
			r.setAvailIdx(t, 17)
		}, ErrBadRing},
		{"available index behind", func(t *testing.T, r *ring) { r.setAvailIdx(t, 0xffff) }, ErrBadRing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, r := queueFixture(t)
			tt.build(t, r)
			c, _, err := q.Pop()
			if tt.want == nil {
				require.NoError(t, err)
				assert.Equal(t, 16, c.OutLen())
				assert.Equal(t, 16, c.InLen())
				return
			}
			assert.ErrorIs(t, err, tt.want)
			assert.Empty(t, c.Out)
			assert.Empty(t, c.In)
		})
	}
}

// TestChainByteLimit checks MaxChainBytes with descriptors in a memory
// large enough to hold them, and accepts a chain just under it.
func TestChainByteLimit(t *testing.T) {
	big := make([]byte, MaxChainBytes+LegacyAlign*4)
	mem, err := guestmem.New(guestmem.Region{GPA: 0, Data: big})
	require.NoError(t, err)
	for _, tc := range []struct {
		extra uint32
		ok    bool
	}{{0, true}, {1, false}} {
		q, err := NewQueue(mem, 4)
		require.NoError(t, err)
		require.NoError(t, q.SetPFN(1))
		r := newRing(mem, 4, 1)
		half := uint32(MaxChainBytes / 2)
		r.setDesc(t, 0, 0x4000, half, DescFNext, 1)
		r.setDesc(t, 1, 0x4000, half+tc.extra, 0, 0)
		r.offer(t, 0)
		_, _, err = q.Pop()
		if tc.ok {
			assert.NoError(t, err)
		} else {
			assert.ErrorIs(t, err, ErrBadChain)
		}
	}
}

func TestZeroLengthDescriptorNeedsNoMemory(t *testing.T) {
	q, r := queueFixture(t)
	r.setDesc(t, 0, ^uint64(0), 0, DescFNext, 1)
	r.setDesc(t, 1, 0x8000, 4, 0, 0)
	r.offer(t, 0)
	c, ok, err := q.Pop()
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, 4, c.OutLen())
}
