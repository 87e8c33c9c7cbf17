package vmm

import (
	"encoding/binary"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/internal/libfuzzer"
	"github.com/ktstr/ktstr/vmm/guestmem"
	"github.com/ktstr/ktstr/vmm/virtio"
	"github.com/ktstr/ktstr/vmm/virtio/legacypci"
	"github.com/ktstr/ktstr/vmm/virtio/mmio"
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
	// chain made an execution take seconds. It grows to the longest chain
	// seen, not to MaxChainBytes at once: a libFuzzer build runs this
	// whole function once per input, and 4 MiB zeroed each time held it
	// to 1.4 k executions a second.
	var zeros []byte
	export := libfuzzer.Exporter()
	f.Fuzz(func(t *testing.T, image []byte, sizeLog uint8, pfn uint32) {
		if export != nil {
			export(t, image, sizeLog, pfn)
		}
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
			if n := c.InLen(); n > len(zeros) {
				zeros = make([]byte, n)
			}
			c.WriteIn(zeros[:c.InLen()])
			if err := q.Push(c.Head, uint32(c.InLen())); err != nil {
				t.Fatalf("returning chain %d: %v", c.Head, err)
			}
		}
		require.True(t, guardsIntact(backing), "memory outside the guest's changed")
	})
}

// legacyScript is the FuzzConsoleRegisters seed: a driver bringing up
// the bulk transmit queue over the legacy registers and notifying it.
// Script ops are 6 bytes: kind (even: write, odd: read), offset, width
// selector, 3-byte little-endian value.
func legacyScript() []byte {
	op := func(write bool, off uint8, width uint8, v uint32) []byte {
		k := byte(1)
		if write {
			k = 0
		}
		return []byte{k, off, width, byte(v), byte(v >> 8), byte(v >> 16)}
	}
	var script []byte
	script = append(script, op(true, legacypci.RegStatus, 0, 3)...)
	script = append(script, op(true, legacypci.RegGuestFeatures, 2, virtio.ConsoleFMultiport)...)
	script = append(script, op(true, legacypci.RegQueueSelect, 1, 5)...)
	script = append(script, op(true, legacypci.RegQueuePFN, 2, 0x11)...)
	script = append(script, op(true, legacypci.RegStatus, 0, 7)...)
	script = append(script, op(true, legacypci.RegQueueNotify, 1, 5)...)
	script = append(script, op(false, legacypci.RegISR, 0, 0)...)
	return script
}

// runLegacyScript plays script against the console behind the legacy
// virtio-pci transport over image and returns the deliveries it made.
func runLegacyScript(t *testing.T, image, script []byte) int {
	mem, backing, _ := vqMemory(t, image)
	c, err := virtio.NewConsole(virtio.ConsoleConfig{QueueSize: 8})
	require.NoError(t, err)
	tr, err := legacypci.New(c, mem, func() {})
	require.NoError(t, err)
	for len(script) >= 6 {
		s := script[:6]
		script = script[6:]
		width := []int{1, 2, 4}[s[2]%3]
		off := uint64(s[1] % legacypci.MinBARSize)
		p := []byte{s[3], s[4], s[5], 0}[:width]
		if s[0]%2 == 0 {
			tr.IOWrite(0, off, p)
		} else {
			tr.IORead(0, off, p)
		}
	}
	n := drainConsole(t, c)
	require.True(t, guardsIntact(backing), "memory outside the guest's changed")
	return n
}

// FuzzConsoleRegisters drives the console behind the legacy virtio-pci
// transport with an arbitrary sequence of register reads and writes
// (feature negotiation, queue placement, notifies, resets, device
// config) over an arbitrary memory image, then drains the bulk port. It
// must never panic or block, and nothing outside guest memory may
// change.
func FuzzConsoleRegisters(f *testing.F) {
	f.Add(vqSeed(), legacyScript())
	export := libfuzzer.Exporter()
	f.Fuzz(func(t *testing.T, image, script []byte) {
		if export != nil {
			export(t, image, script)
		}
		runLegacyScript(t, image, script)
	})
}

// mmioScript is the FuzzMMIORegisters seed: a virtio 1.x driver bringing
// up the bulk transmit queue over the virtio-mmio registers (the seed
// image's queue, its used ring after the available ring) and notifying
// it. Script ops are 8 bytes: kind (even: write, odd: read), offset
// (u16; below 0x8000 folded onto the registers and the start of the
// configuration, above it anywhere in the window), width selector (1,
// 2, 4, 8 bytes), u32 value.
func mmioScript() []byte {
	op := func(write bool, off uint16, v uint32) []byte {
		k := byte(1)
		if write {
			k = 0
		}
		b := []byte{k, byte(off), byte(off >> 8), 2}
		return binary.LittleEndian.AppendUint32(b, v)
	}
	const q = vqMemBase + 0x1000 // the seed's queue: descriptors, then the available ring
	var script []byte
	for _, w := range [][2]uint32{
		{mmio.RegStatus, 0},
		{mmio.RegStatus, virtio.StatusAcknowledge},
		{mmio.RegStatus, virtio.StatusAcknowledge | virtio.StatusDriver},
		{mmio.RegDriverFeaturesSel, 0}, {mmio.RegDriverFeatures, virtio.ConsoleFMultiport},
		{mmio.RegDriverFeaturesSel, 1}, {mmio.RegDriverFeatures, 1},
		{mmio.RegStatus, virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK},
		{mmio.RegQueueSel, 5}, {mmio.RegQueueNum, 8},
		{mmio.RegQueueDescLow, q}, {mmio.RegQueueDescHigh, 0},
		{mmio.RegQueueDriverLow, q + 16*8}, {mmio.RegQueueDriverHigh, 0},
		{mmio.RegQueueDeviceLow, q + 0x100}, {mmio.RegQueueDeviceHigh, 0},
		{mmio.RegQueueReady, 1},
		{mmio.RegStatus, virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusFeaturesOK | virtio.StatusDriverOK},
		{mmio.RegQueueNotify, 5},
		{mmio.RegInterruptACK, 1},
	} {
		script = append(script, op(true, uint16(w[0]), w[1])...)
	}
	script = append(script, op(false, mmio.RegInterruptStatus, 0)...)
	return append(script, op(false, mmio.RegConfig+4, 0)...)
}

// runMMIOScript plays script against the console behind the virtio-mmio
// transport over image and returns the deliveries it made.
func runMMIOScript(t *testing.T, image, script []byte) int {
	mem, backing, _ := vqMemory(t, image)
	c, err := virtio.NewConsole(virtio.ConsoleConfig{QueueSize: 8})
	require.NoError(t, err)
	tr, err := mmio.New(c, mem, func() {})
	require.NoError(t, err)
	for len(script) >= 8 {
		s := script[:8]
		script = script[8:]
		off := uint64(binary.LittleEndian.Uint16(s[1:]))
		if off < 0x8000 {
			off %= mmio.RegConfig + 0x40
		} else {
			off %= mmio.WindowSize
		}
		width := []int{1, 2, 4, 8}[s[3]%4]
		if off+uint64(width) > mmio.WindowSize {
			continue // the bus hands a device only accesses inside its window
		}
		p := binary.LittleEndian.AppendUint32(append([]byte(nil), s[4:8]...), 0)[:width]
		if s[0]%2 == 0 {
			tr.Write(off, p)
		} else {
			tr.Read(off, p)
		}
	}
	n := drainConsole(t, c)
	require.True(t, guardsIntact(backing), "memory outside the guest's changed")
	return n
}

// FuzzMMIORegisters drives the console behind the virtio-mmio transport
// with an arbitrary sequence of accesses to its 4 KiB window (any
// offset and width: status transitions, feature words, queue sizes and
// 64-bit ring addresses, QueueReady, notifies, interrupt acks, config)
// over an arbitrary memory image, then writes to and drains the bulk
// port. It must never panic or block, and nothing outside guest memory
// may change.
func FuzzMMIORegisters(f *testing.F) {
	f.Add(vqSeed(), mmioScript())
	f.Add(vqSeed(), mmioScript()[:8*8]) // negotiated, no queue
	export := libfuzzer.Exporter()
	f.Fuzz(func(t *testing.T, image, script []byte) {
		if export != nil {
			export(t, image, script)
		}
		runMMIOScript(t, image, script)
	})
}

// TestSeedsDeliver is the positive control of the register targets: the
// seeds reach the tap (one delivery each), so the fuzzers start from
// inputs that exercise the whole path; a seed cut before DRIVER_OK
// delivers nothing, and one cut after it but before its notify delivers
// the chain the image already offers (activation takes what is pending).
func TestSeedsDeliver(t *testing.T) {
	for _, tt := range []struct {
		name string
		run  func(*testing.T, []byte, []byte) int
		seed []byte
		op   int // bytes per script op
		upTo int // ops up to and including DRIVER_OK
	}{
		{"legacy virtio-pci", runLegacyScript, legacyScript(), 6, 5},
		{"virtio-mmio", runMMIOScript, mmioScript(), 8, 18},
	} {
		assert.Equal(t, 1, tt.run(t, vqSeed(), tt.seed), "%s: the whole seed", tt.name)
		assert.Equal(t, 1, tt.run(t, vqSeed(), tt.seed[:tt.upTo*tt.op]), "%s: up to DRIVER_OK", tt.name)
		assert.Zero(t, tt.run(t, vqSeed(), tt.seed[:(tt.upTo-1)*tt.op]), "%s: before DRIVER_OK", tt.name)
	}
}

// drainConsole writes host bytes to the bulk port (they go to the
// guest's receive buffers, if it set any up), closes the console and
// reads every delivery the script produced; it returns how many.
func drainConsole(t *testing.T, c *virtio.Console) int {
	_, err := c.Bulk().Write([]byte("host bytes for the guest"))
	require.NoError(t, err)
	c.Close()
	n := 0
	for {
		d, err := c.ReadDelivery()
		if err != nil {
			return n
		}
		require.LessOrEqual(t, len(d.Data), virtio.MaxChainBytes)
		n++
	}
}
