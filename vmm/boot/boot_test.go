package boot

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/vmm/guestmem"
)

func newMem(t *testing.T, mib int) *guestmem.Memory {
	t.Helper()
	m, err := guestmem.New(guestmem.Region{GPA: 0, Data: make([]byte, mib<<20)})
	require.NoError(t, err)
	return m
}

// fakeBzImage builds a bzImage whose setup header says what a 64-bit
// Linux 6.x header says, with setupSects setup sectors and a payload.
func fakeBzImage(setupSects int, payload []byte) []byte {
	img := make([]byte, (setupSects+1)*512)
	img[hdrSetupSects] = byte(setupSects)
	binary.LittleEndian.PutUint16(img[hdrBootFlag:], 0xaa55)
	img[hdrJump] = 0xeb
	img[hdrJump+1] = 0x6a // header runs to 0x26c
	binary.LittleEndian.PutUint32(img[hdrMagic:], headerMagic)
	binary.LittleEndian.PutUint16(img[hdrVersion:], 0x020f)
	img[hdrLoadFlags] = loadedHigh
	binary.LittleEndian.PutUint32(img[hdrInitrdAddrMax:], 0x7fffffff)
	binary.LittleEndian.PutUint32(img[hdrKernelAlign:], 0x200000)
	img[hdrRelocatable] = 1
	binary.LittleEndian.PutUint16(img[hdrXLoadFlags:], xlfKernel64)
	binary.LittleEndian.PutUint32(img[hdrCmdlineSize:], 2047)
	binary.LittleEndian.PutUint32(img[hdrInitSize:], 4<<20)
	return append(img, payload...)
}

func TestLoadBzImage(t *testing.T) {
	mem := newMem(t, 64)
	payload := bytes.Repeat([]byte{0x90}, 3000)
	k, err := LoadBzImage(mem, fakeBzImage(4, payload))
	require.NoError(t, err)
	assert.Equal(t, uint64(HighMemStart+0x200), k.Entry, "startup_64")
	assert.Equal(t, uint64(HighMemStart+4<<20), k.End, "init_size bounds the image")
	got := make([]byte, len(payload))
	require.NoError(t, mem.Read(HighMemStart, got))
	assert.Equal(t, payload, got, "the protected-mode part at 1 MiB")
	assert.Equal(t, uint32(headerMagic), binary.LittleEndian.Uint32(k.ZeroPage[hdrMagic:]), "setup header copied")
	assert.Equal(t, uint32(HighMemStart), binary.LittleEndian.Uint32(k.ZeroPage[hdrCode32Start:]))
	assert.Equal(t, uint64(0x80000000), k.InitrdMax)

	// setup_sects 0 means 4.
	img := fakeBzImage(4, payload)
	img[hdrSetupSects] = 0
	k, err = LoadBzImage(newMem(t, 64), img)
	require.NoError(t, err)
	assert.Equal(t, uint64(HighMemStart+0x200), k.Entry)
}

func TestLoadBzImageRejects(t *testing.T) {
	good := func() []byte { return fakeBzImage(4, make([]byte, 1024)) }
	const (
		ok    = iota
		notBz // ErrNotBzImage
		small // guest memory too small
	)
	tests := []struct {
		name string
		edit func([]byte) []byte
		mib  int
		want int
	}{
		{"control: a good image", func(b []byte) []byte { return b }, 64, ok},
		{"longest header", func(b []byte) []byte { b[hdrJump+1] = 0xff; return b }, 64, ok},
		{"no magic", func(b []byte) []byte { b[hdrMagic] = 'X'; return b }, 64, notBz},
		{"boot protocol 2.11", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[hdrVersion:], 0x020b); return b }, 64, notBz},
		{"no 64-bit entry", func(b []byte) []byte { b[hdrXLoadFlags] = 0; return b }, 64, notBz},
		{"setup past the file", func(b []byte) []byte { b[hdrSetupSects] = 200; return b }, 64, notBz},
		{"truncated", func(b []byte) []byte { return b[:0x300] }, 64, notBz},
		{"memory too small for init_size", func(b []byte) []byte { return b }, 4, small},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBzImage(newMem(t, tt.mib), tt.edit(good()))
			switch tt.want {
			case ok:
				assert.NoError(t, err)
			case notBz:
				assert.ErrorIs(t, err, ErrNotBzImage)
			case small:
				assert.ErrorContains(t, err, "give the guest more memory")
			}
		})
	}
}

// zeroPageOf reads back the zero page Finish wrote.
func zeroPageOf(t *testing.T, mem *guestmem.Memory) []byte {
	zp := make([]byte, zeroPageSize)
	require.NoError(t, mem.Read(ZeroPageAddr, zp))
	return zp
}

func TestFinishZeroPage(t *testing.T) {
	mem := newMem(t, 64)
	k, err := LoadBzImage(mem, fakeBzImage(4, make([]byte, 1024)))
	require.NoError(t, err)
	initrd := bytes.Repeat([]byte("initrd"), 1000)
	require.NoError(t, Finish(mem, k, Params{Cmdline: "console=ttyS0 quiet", Initrd: initrd}))
	zp := zeroPageOf(t, mem)

	assert.Equal(t, byte(loaderUndefined), zp[hdrTypeOfLoader])
	assert.Equal(t, byte(loadedHigh|canUseHeap), zp[hdrLoadFlags]&(loadedHigh|canUseHeap))
	assert.Equal(t, uint16(0xffff), binary.LittleEndian.Uint16(zp[hdrVidMode:]))
	assert.Equal(t, uint32(CmdlineAddr), binary.LittleEndian.Uint32(zp[hdrCmdLinePtr:]))
	cmd := make([]byte, 20)
	require.NoError(t, mem.Read(CmdlineAddr, cmd))
	assert.Equal(t, "console=ttyS0 quiet\x00", string(cmd), "NUL-terminated")

	addr := binary.LittleEndian.Uint32(zp[hdrRamdiskImage:])
	size := binary.LittleEndian.Uint32(zp[hdrRamdiskSize:])
	assert.Equal(t, uint32(len(initrd)), size)
	assert.Zero(t, addr%4096, "page aligned")
	assert.GreaterOrEqual(t, uint64(addr), k.End, "above the kernel")
	assert.LessOrEqual(t, uint64(addr)+uint64(size), uint64(64<<20), "inside memory")
	got := make([]byte, size)
	require.NoError(t, mem.Read(uint64(addr), got))
	assert.Equal(t, initrd, got)
	assert.Zero(t, binary.LittleEndian.Uint32(zp[bpExtRamdiskImage:]))

	// e820: base memory, the reserved EBDA/BIOS hole, RAM from 1 MiB.
	require.Equal(t, byte(3), zp[bpE820Entries])
	want := []E820Entry{{0, EBDAStart, E820RAM}, {EBDAStart, HighMemStart - EBDAStart, E820Reserved}, {HighMemStart, 64<<20 - HighMemStart, E820RAM}}
	for i, w := range want {
		o := bpE820Table + 20*i
		got := E820Entry{binary.LittleEndian.Uint64(zp[o:]), binary.LittleEndian.Uint64(zp[o+8:]), binary.LittleEndian.Uint32(zp[o+16:])}
		assert.Equal(t, w, got, "e820 entry %d", i)
	}
}

func TestE820TwoRegions(t *testing.T) {
	mem, err := guestmem.New(guestmem.Region{GPA: 0, Data: make([]byte, 2<<20)}, guestmem.Region{GPA: HighMemBase, Data: make([]byte, 1<<20)})
	require.NoError(t, err)
	m := E820Map(mem)
	require.Len(t, m, 4)
	assert.Equal(t, E820Entry{HighMemStart, 1 << 20, E820RAM}, m[2])
	assert.Equal(t, E820Entry{HighMemBase, 1 << 20, E820RAM}, m[3], "memory above the PCI hole")
	assert.Equal(t, uint64(2<<20), LowMemEnd(mem))
}

func TestFinishRejects(t *testing.T) {
	mem := newMem(t, 8)
	k, err := LoadBzImage(mem, fakeBzImage(4, make([]byte, 1024)))
	require.NoError(t, err)
	assert.ErrorContains(t, Finish(mem, k, Params{Cmdline: string(bytes.Repeat([]byte{'a'}, 2048))}), "shorten it")
	assert.NoError(t, Finish(mem, k, Params{Cmdline: string(bytes.Repeat([]byte{'a'}, 2047))}), "exactly cmdline_size")
	assert.ErrorContains(t, Finish(mem, k, Params{Initrd: make([]byte, 4<<20)}), "give the guest more memory", "does not fit above the kernel's init_size")
	assert.NoError(t, Finish(mem, k, Params{Initrd: make([]byte, 2<<20)}))
}

// fakeELF builds a 64-bit x86 ELF with one PT_LOAD segment linked at
// vaddr, loaded at paddr, holding code, with bss zero bytes after it.
func fakeELF(vaddr, paddr, entry uint64, code []byte, bss uint64) []byte {
	const ehdr, phdr = 64, 56
	b := make([]byte, ehdr+phdr)
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = 2, 1, 1                // 64-bit, little-endian, version 1
	binary.LittleEndian.PutUint16(b[16:], 2)  // ET_EXEC
	binary.LittleEndian.PutUint16(b[18:], 62) // EM_X86_64
	binary.LittleEndian.PutUint32(b[20:], 1)
	binary.LittleEndian.PutUint64(b[24:], entry)
	binary.LittleEndian.PutUint64(b[32:], ehdr) // phoff
	binary.LittleEndian.PutUint16(b[52:], ehdr)
	binary.LittleEndian.PutUint16(b[54:], phdr)
	binary.LittleEndian.PutUint16(b[56:], 1)
	p := b[ehdr:]
	binary.LittleEndian.PutUint32(p[0:], 1) // PT_LOAD
	binary.LittleEndian.PutUint32(p[4:], 5) // R X
	binary.LittleEndian.PutUint64(p[8:], ehdr+phdr)
	binary.LittleEndian.PutUint64(p[16:], vaddr)
	binary.LittleEndian.PutUint64(p[24:], paddr)
	binary.LittleEndian.PutUint64(p[32:], uint64(len(code)))
	binary.LittleEndian.PutUint64(p[40:], uint64(len(code))+bss)
	binary.LittleEndian.PutUint64(p[48:], 0x1000)
	return append(b, code...)
}

func TestLoadELF(t *testing.T) {
	mem := newMem(t, 32)
	require.NoError(t, mem.Write(0x1000010, []byte{0xff, 0xff})) // dirt where the bss goes
	// A vmlinux: linked at __START_KERNEL_map + 16 MiB, loaded at 16 MiB,
	// entry given as the virtual address.
	const virt, phys = 0xffffffff81000000, 0x1000000
	img := fakeELF(virt, phys, virt+4, []byte("0123456789abcdef"), 32)
	k, err := LoadKernel(mem, img)
	require.NoError(t, err)
	assert.Equal(t, uint64(phys+4), k.Entry, "the entry translated to its physical address")
	assert.Equal(t, uint64(phys+16+32), k.End)
	got := make([]byte, 18)
	require.NoError(t, mem.Read(phys, got))
	assert.Equal(t, "0123456789abcdef\x00\x00", string(got), "code loaded, bss zeroed")
	assert.Equal(t, uint16(0xaa55), binary.LittleEndian.Uint16(k.ZeroPage[hdrBootFlag:]))
	assert.Equal(t, uint32(headerMagic), binary.LittleEndian.Uint32(k.ZeroPage[hdrMagic:]))

	// Entry already physical (as vmlinux links it).
	k, err = LoadELF(newMem(t, 32), fakeELF(virt, phys, phys, []byte("x"), 0))
	require.NoError(t, err)
	assert.Equal(t, uint64(phys), k.Entry)
}

func TestLoadELFRejects(t *testing.T) {
	_, err := LoadELF(newMem(t, 8), fakeELF(0x1000000, 0x1000000, 0x1000000, []byte("x"), 0))
	assert.ErrorContains(t, err, "give the guest more memory", "a segment past memory")
	_, err = LoadELF(newMem(t, 8), fakeELF(0x100000, 0x100000, 0x9000000, []byte("x"), 0))
	assert.ErrorContains(t, err, "entry point")
	bad := fakeELF(0x100000, 0x100000, 0x100000, []byte("x"), 0)
	binary.LittleEndian.PutUint64(bad[64+32:], 1<<40) // filesz past the file
	_, err = LoadELF(newMem(t, 8), bad)
	assert.Error(t, err)
	_, err = LoadELF(newMem(t, 8), []byte("\x7fELF"))
	assert.Error(t, err)
	_, err = LoadELF(newMem(t, 8), fakeELF(0x100000, 0x100000, 0x100000, []byte("x"), 0))
	assert.NoError(t, err, "control")
}

func TestWriteMPTable(t *testing.T) {
	mem := newMem(t, 2)
	require.NoError(t, WriteMPTable(mem, 4, []PCIInterrupt{{Slot: 1, Pin: 1, IOAPICPin: 5}}))
	fp := make([]byte, 16)
	require.NoError(t, mem.Read(MPTableAddr, fp))
	assert.Equal(t, "_MP_", string(fp[:4]))
	assert.Zero(t, sum(fp), "floating pointer checksum")
	tableAddr := uint64(binary.LittleEndian.Uint32(fp[4:]))
	hdr := make([]byte, 44)
	require.NoError(t, mem.Read(tableAddr, hdr))
	assert.Equal(t, "PCMP", string(hdr[:4]))
	table := make([]byte, binary.LittleEndian.Uint16(hdr[4:]))
	require.NoError(t, mem.Read(tableAddr, table))
	assert.Zero(t, sum(table), "table checksum")
	assert.Equal(t, uint32(LAPICAddr), binary.LittleEndian.Uint32(table[36:]))

	// Walk the entries.
	var cpus, bsp int
	var pciRoute []byte
	off := 44
	for range binary.LittleEndian.Uint16(table[34:]) {
		switch table[off] {
		case mpEntryCPU:
			cpus++
			if table[off+3]&2 != 0 {
				bsp++
				assert.Equal(t, byte(0), table[off+1], "the BSP is APIC 0")
			}
			off += 20
		case mpEntryIOInt:
			if table[off+4] == mpBusPCI {
				pciRoute = table[off : off+8]
			}
			off += 8
		default:
			off += 8
		}
	}
	assert.Equal(t, len(table), off, "entry count matches the length")
	assert.Equal(t, 4, cpus)
	assert.Equal(t, 1, bsp)
	require.NotNil(t, pciRoute)
	assert.Equal(t, byte(1<<2|0), pciRoute[5], "slot 1 INTA")
	assert.Equal(t, byte(5), pciRoute[7], "to IOAPIC pin 5")
	assert.Equal(t, byte(mpFlagsEdgeHigh), pciRoute[2])

	assert.Error(t, WriteMPTable(mem, 0, nil))
	assert.Error(t, WriteMPTable(mem, MaxCPUs+1, nil))
	assert.NoError(t, WriteMPTable(mem, MaxCPUs, nil), "the largest table fits its KiB")
	assert.Error(t, WriteMPTable(mem, 1, []PCIInterrupt{{Slot: 1, Pin: 5}}))
}

func sum(b []byte) byte {
	var s byte
	for _, v := range b {
		s += v
	}
	return s
}

func TestSetupLongMode(t *testing.T) {
	mem := newMem(t, 2)
	st, err := SetupLongMode(mem, 0x100000)
	require.NoError(t, err)
	assert.Equal(t, uint64(0x100000), st.RIP)
	assert.Equal(t, uint64(ZeroPageAddr), st.RSI, "rsi points at boot_params")
	assert.Equal(t, uint64(PML4Addr), st.CR3)
	// Walk the tables for a few addresses: identity with 2 MiB pages.
	for _, va := range []uint64{0, 0x100000, 0x3fffffff, 0x40000000, 0xfee00000, IdentityLimit - 1} {
		pml4e, err := mem.Uint64(st.CR3 + 8*(va>>39&511))
		require.NoError(t, err)
		pdpte, err := mem.Uint64(pml4e&^0xfff + 8*(va>>30&511))
		require.NoError(t, err)
		pde, err := mem.Uint64(pdpte&^0xfff + 8*(va>>21&511))
		require.NoError(t, err)
		require.NotZero(t, pde&0x80, "a 2 MiB page")
		assert.Equal(t, va, pde&^0x1fffff&^0xfff|va&0x1fffff, "%#x maps to itself", va)
	}
	code, err := mem.Uint64(GDTAddr + SelectorCode)
	require.NoError(t, err)
	assert.NotZero(t, code&(1<<53), "the code segment is 64-bit (L)")
}

// packBzImage wraps vmlinux the way Linux's zstd22_with_size does: a zstd
// frame, then the uncompressed size as a little-endian u32.
func packBzImage(t *testing.T, vmlinux []byte) []byte {
	enc, err := zstd.NewWriter(nil)
	require.NoError(t, err)
	payload := enc.EncodeAll(vmlinux, nil)
	payload = binary.LittleEndian.AppendUint32(payload, uint32(len(vmlinux)))
	img := fakeBzImage(4, nil)
	binary.LittleEndian.PutUint32(img[hdrPayloadOffset:], 0x10)
	binary.LittleEndian.PutUint32(img[hdrPayloadLength:], uint32(len(payload)))
	return append(append(img, make([]byte, 0x10)...), payload...)
}

func TestLoadBzImageUnpacked(t *testing.T) {
	vmlinux := fakeELF(0xffffffff81000000, 0x1000000, 0x1000000, []byte("startup_64"), 0)
	img := packBzImage(t, vmlinux)
	got, err := ExtractVmlinux(img)
	require.NoError(t, err)
	assert.Equal(t, vmlinux, got)

	mem := newMem(t, 32)
	k, err := LoadBzImageUnpacked(mem, img)
	require.NoError(t, err)
	assert.Equal(t, uint64(0x1000000), k.Entry, "the ELF entry, not the decompressor's")
	assert.Equal(t, uint16(0x020f), binary.LittleEndian.Uint16(k.ZeroPage[hdrVersion:]), "the bzImage's own setup header")
	code := make([]byte, 10)
	require.NoError(t, mem.Read(0x1000000, code))
	assert.Equal(t, "startup_64", string(code))

	bad := slices.Clone(img)
	bad[len(bad)-1]++ // the size trailer no longer matches
	_, err = ExtractVmlinux(bad)
	assert.Error(t, err)
	bad = slices.Clone(img)
	binary.LittleEndian.PutUint32(bad[hdrPayloadLength:], uint32(len(img)))
	_, err = ExtractVmlinux(bad)
	assert.ErrorIs(t, err, ErrNotBzImage, "payload past the file")
	assert.ErrorIs(t, err, ErrPayloadOutside, "payload past the file")
	old := slices.Clone(img)
	binary.LittleEndian.PutUint16(old[hdrVersion:], 0x0207)
	_, err = Payload(old)
	assert.ErrorIs(t, err, ErrNotBzImage, "boot protocol 2.07 does not locate the payload")
	assert.NotErrorIs(t, err, ErrPayloadOutside)
	p, err := Payload(img)
	require.NoError(t, err, "the control")
	assert.Equal(t, img[len(img)-len(p):], p)
	_, err = ExtractVmlinux(fakeBzImage(4, []byte("\x1f\x8b gzip payload")))
	assert.Error(t, err, "only zstd payloads")
}
