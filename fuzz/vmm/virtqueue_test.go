package vmm

import (
	"encoding/binary"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/vmm/guestmem"
	"github.com/ktstr/ktstr/vmm/virtio"
)

// Fake guest memory of the virtqueue targets: 16 KiB at guest address
// 0x10000, with guard bytes on both sides in the same host allocation so
// a read or write past the region would land somewhere checkable.
const (
	vqMemBase = 0x10000
	vqMemSize = 0x4000
	vqGuard   = 4096
	vqGuardV  = 0xa5
)

// vqMemory returns guest memory holding image and the whole backing
// array (guards included).
func vqMemory(t *testing.T, image []byte) (*guestmem.Memory, []byte, []byte) {
	backing := make([]byte, vqGuard+vqMemSize+vqGuard)
	for i := range backing {
		backing[i] = vqGuardV
	}
	region := backing[vqGuard : vqGuard+vqMemSize : vqGuard+vqMemSize]
	clear(region)
	copy(region, image)
	mem, err := guestmem.New(guestmem.Region{GPA: vqMemBase, Data: region})
	require.NoError(t, err)
	return mem, backing, region
}

// inside reports whether b lies within region.
func inside(b, region []byte) bool {
	if len(b) == 0 {
		return true
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(region)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return p >= lo && p-lo+uintptr(len(b)) <= uintptr(len(region))
}

// guardsIntact reports whether the bytes around the region are untouched.
func guardsIntact(backing []byte) bool {
	for _, i := range [][2]int{{0, vqGuard}, {vqGuard + vqMemSize, len(backing)}} {
		for _, v := range backing[i[0]:i[1]] {
			if v != vqGuardV {
				return false
			}
		}
	}
	return true
}

// vqSeed builds a memory image with a well-formed 8-entry queue at the
// region's second page holding a chain of a readable and a writable
// descriptor, offered once.
func vqSeed() []byte {
	img := make([]byte, vqMemSize)
	const q = 0x1000 // queue at region offset 0x1000 → pfn 0x11
	put := func(off int, addr uint64, n uint32, flags, next uint16) {
		binary.LittleEndian.PutUint64(img[q+16*off:], addr)
		binary.LittleEndian.PutUint32(img[q+16*off+8:], n)
		binary.LittleEndian.PutUint16(img[q+16*off+12:], flags)
		binary.LittleEndian.PutUint16(img[q+16*off+14:], next)
	}
	put(0, vqMemBase+0x2000, 16, virtio.DescFNext, 1)
	put(1, vqMemBase+0x3000, 32, virtio.DescFWrite, 0)
	avail := q + 16*8
	binary.LittleEndian.PutUint16(img[avail+2:], 1) // idx
	binary.LittleEndian.PutUint16(img[avail+4:], 0) // ring[0] = head 0
	copy(img[0x2000:], "SRDY\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")
	return img
}

// FuzzVirtqueue places the split-virtqueue parser over an arbitrary
// memory image (descriptor tables, rings, indices), an arbitrary queue
// size and placement, and takes and returns every chain it offers. It
// must never panic, every buffer it yields must lie inside guest memory,
// no chain may exceed the byte bound, and nothing outside guest memory
// may change.
func FuzzVirtqueue(f *testing.F) {
	f.Add(vqSeed(), uint8(3), uint32(0x11))
	f.Add(vqSeed(), uint8(3), uint32(0x14))  // the queue runs off the end
	f.Add(vqSeed(), uint8(7), uint32(0x11))  // 128 entries over the same bytes
	f.Add([]byte{}, uint8(0), uint32(0x10))  // one-entry queue in empty memory
	f.Add(vqSeed(), uint8(3), uint32(0xfff)) // far outside memory
	// The device's writes come from one zero buffer: a chain may name up
	// to MaxChainBytes of (aliased) guest memory, and a fresh slice per
	// chain made an execution take seconds.
	zeros := make([]byte, virtio.MaxChainBytes)
	f.Fuzz(func(t *testing.T, image []byte, sizeLog uint8, pfn uint32) {
		mem, backing, region := vqMemory(t, image)
		size := uint16(1) << (sizeLog % 16)
		q, err := virtio.NewQueue(mem, size)
		require.NoError(t, err)
		if err := q.SetPFN(pfn); err != nil {
			require.False(t, q.Ready())
			_, ok, err := q.Pop()
			require.NoError(t, err)
			require.False(t, ok, "an unplaced queue yields nothing")
			return
		}
		// Twice round a small queue (wrap-around), at most 512 chains
		// for a large one: more pops re-read the same 16 KiB image.
		for range min(2*int(size), 512) {
			c, ok, err := q.Pop()
			if err != nil {
				require.Empty(t, c.Out, "a bad chain yields no buffer")
				require.Empty(t, c.In)
				break
			}
			if !ok {
				break
			}
			// Plain checks in the hot loop: testify per buffer is slow.
			if c.Head >= size || c.OutLen() > virtio.MaxChainBytes || c.InLen() > virtio.MaxChainBytes {
				t.Fatalf("chain head %d, %d readable and %d writable bytes break the bounds", c.Head, c.OutLen(), c.InLen())
			}
			for _, bufs := range [][][]byte{c.Out, c.In} {
				for _, b := range bufs {
					if !inside(b, region) {
						t.Fatalf("a %d-byte buffer outside guest memory", len(b))
					}
				}
			}
			c.WriteIn(zeros[:c.InLen()])
			if err := q.Push(c.Head, uint32(c.InLen())); err != nil {
				t.Fatalf("returning chain %d: %v", c.Head, err)
			}
		}
		require.True(t, guardsIntact(backing), "memory outside the guest's changed")
	})
}

// FuzzConsoleRegisters drives the legacy virtio-pci console with an
// arbitrary sequence of register reads and writes (feature negotiation,
// queue placement, notifies, resets, device config) over an arbitrary
// memory image, then drains the bulk port. It must never panic or block,
// and nothing outside guest memory may change.
func FuzzConsoleRegisters(f *testing.F) {
	// Script ops are 6 bytes: kind (even: write, odd: read), offset,
	// width selector, 3-byte little-endian value.
	op := func(write bool, off uint8, width uint8, v uint32) []byte {
		k := byte(1)
		if write {
			k = 0
		}
		return []byte{k, off, width, byte(v), byte(v >> 8), byte(v >> 16)}
	}
	var script []byte
	script = append(script, op(true, virtio.RegStatus, 0, 3)...)
	script = append(script, op(true, virtio.RegGuestFeatures, 2, virtio.ConsoleFMultiport)...)
	script = append(script, op(true, virtio.RegQueueSelect, 1, 5)...)
	script = append(script, op(true, virtio.RegQueuePFN, 2, 0x11)...)
	script = append(script, op(true, virtio.RegStatus, 0, 7)...)
	script = append(script, op(true, virtio.RegQueueNotify, 1, 5)...)
	script = append(script, op(false, virtio.RegISR, 0, 0)...)
	f.Add(vqSeed(), script)
	f.Fuzz(func(t *testing.T, image, script []byte) {
		mem, backing, _ := vqMemory(t, image)
		c, err := virtio.NewConsole(virtio.ConsoleConfig{Mem: mem, QueueSize: 8, Interrupt: func() {}})
		require.NoError(t, err)
		for len(script) >= 6 {
			s := script[:6]
			script = script[6:]
			width := []int{1, 2, 4}[s[2]%3]
			off := uint64(s[1] % virtio.LegacyBARSize)
			p := []byte{s[3], s[4], s[5], 0}[:width]
			if s[0]%2 == 0 {
				c.IOWrite(off, p)
			} else {
				c.IORead(off, p)
			}
		}
		c.Close()
		for {
			d, err := c.ReadDelivery()
			if err != nil {
				break
			}
			require.LessOrEqual(t, len(d.Data), virtio.MaxChainBytes)
		}
		require.True(t, guardsIntact(backing), "memory outside the guest's changed")
	})
}
