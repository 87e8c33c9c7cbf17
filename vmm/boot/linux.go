package boot

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"

	"github.com/ktstr/ktstr/vmm/guestmem"
)

// Offsets in boot_params (the zero page) and in the bzImage setup header
// (Documentation/arch/x86/boot.rst and zero-page.rst).
const (
	bpExtRamdiskImage = 0x0c0
	bpExtRamdiskSize  = 0x0c4
	bpExtCmdLinePtr   = 0x0c8
	bpE820Entries     = 0x1e8
	hdrSetupSects     = 0x1f1
	hdrVidMode        = 0x1fa
	hdrBootFlag       = 0x1fe
	hdrJump           = 0x200
	hdrMagic          = 0x202
	hdrVersion        = 0x206
	hdrTypeOfLoader   = 0x210
	hdrLoadFlags      = 0x211
	hdrCode32Start    = 0x214
	hdrRamdiskImage   = 0x218
	hdrRamdiskSize    = 0x21c
	hdrHeapEndPtr     = 0x224
	hdrCmdLinePtr     = 0x228
	hdrInitrdAddrMax  = 0x22c
	hdrKernelAlign    = 0x230
	hdrRelocatable    = 0x234
	hdrXLoadFlags     = 0x236
	hdrCmdlineSize    = 0x238
	hdrPayloadOffset  = 0x248
	hdrPayloadLength  = 0x24c
	hdrInitSize       = 0x260
	bpE820Table       = 0x2d0
	e820Max           = 128
	zeroPageSize      = 0x1000
)

// Setup header values.
const (
	headerMagic     = 0x53726448 // "HdrS"
	minVersion      = 0x020c     // 2.12: xloadflags and the 64-bit entry
	loaderUndefined = 0xff
	loadedHigh      = 0x01
	canUseHeap      = 0x80
	xlfKernel64     = 0x01
	entry64Offset   = 0x200 // startup_64 from the protected-mode kernel start
)

// ErrNotBzImage reports a file without a usable bzImage setup header.
var ErrNotBzImage = errors.New("not a 64-bit bzImage (boot protocol 2.12 or later)")

// Kernel is a loaded kernel: where to enter it and the zero page the
// loader prepared.
type Kernel struct {
	Entry     uint64 // guest physical address of the 64-bit entry point
	End       uint64 // end of the loaded image (bzImage: load address + init_size)
	ZeroPage  [zeroPageSize]byte
	InitrdMax uint64 // highest address the initrd may end at
}

// LoadBzImage places the protected-mode part of a bzImage at
// HighMemStart and returns the entry point and the zero page holding its
// setup header.
func LoadBzImage(mem *guestmem.Memory, image []byte) (*Kernel, error) {
	if len(image) < 0x400 || binary.LittleEndian.Uint32(image[hdrMagic:]) != headerMagic {
		return nil, ErrNotBzImage
	}
	if v := binary.LittleEndian.Uint16(image[hdrVersion:]); v < minVersion {
		return nil, fmt.Errorf("boot protocol %d.%d: %w", v>>8, v&0xff, ErrNotBzImage)
	}
	if image[hdrXLoadFlags]&xlfKernel64 == 0 {
		return nil, fmt.Errorf("no 64-bit entry point (xloadflags): %w", ErrNotBzImage)
	}
	setupSects := int(image[hdrSetupSects])
	if setupSects == 0 {
		setupSects = 4
	}
	setupEnd := (setupSects + 1) * 512
	if setupEnd >= len(image) {
		return nil, fmt.Errorf("setup of %d sectors is past the end of the %d-byte file: %w", setupSects, len(image), ErrNotBzImage)
	}
	// The jump's offset byte gives the header's length; at most 0x301,
	// inside the setup sectors (at least 1024 bytes), so inside image.
	hdrEnd := hdrJump + 2 + int(image[hdrJump+1])
	payload := image[setupEnd:]
	initSize := uint64(binary.LittleEndian.Uint32(image[hdrInitSize:]))
	end := HighMemStart + max(initSize, uint64(len(payload)))
	if end > LowMemEnd(mem) {
		return nil, fmt.Errorf("the kernel needs memory up to %#x but the guest has %#x: give the guest more memory", end, LowMemEnd(mem))
	}
	if err := mem.Write(HighMemStart, payload); err != nil {
		return nil, fmt.Errorf("loading the kernel: %w", err)
	}
	k := &Kernel{Entry: HighMemStart + entry64Offset, End: end}
	copy(k.ZeroPage[hdrSetupSects:hdrEnd], image[hdrSetupSects:hdrEnd])
	k.InitrdMax = uint64(binary.LittleEndian.Uint32(image[hdrInitrdAddrMax:])) + 1
	binary.LittleEndian.PutUint32(k.ZeroPage[hdrCode32Start:], HighMemStart)
	return k, nil
}

// ErrPayloadOutside reports a setup header whose compressed kernel lies
// outside the file, or is too short for any compression: a cut or
// damaged image.
var ErrPayloadOutside = errors.New("the compressed kernel lies outside the image")

// Payload returns the compressed kernel of a bzImage, as its setup
// header locates it (payload_offset and payload_length, boot protocol
// 2.08 and later). Its errors wrap ErrNotBzImage, and ErrPayloadOutside
// where the header points outside the image.
func Payload(image []byte) ([]byte, error) {
	if len(image) < 0x400 || binary.LittleEndian.Uint32(image[hdrMagic:]) != headerMagic {
		return nil, ErrNotBzImage
	}
	if v := binary.LittleEndian.Uint16(image[hdrVersion:]); v < 0x0208 {
		return nil, fmt.Errorf("bzImage boot protocol %d.%02d is older than 2.08: it does not say where its compressed kernel is: %w", v>>8, v&0xff, ErrNotBzImage)
	}
	setupSects := int(image[hdrSetupSects])
	if setupSects == 0 {
		setupSects = 4
	}
	off := uint64(setupSects+1)*512 + uint64(binary.LittleEndian.Uint32(image[hdrPayloadOffset:]))
	n := uint64(binary.LittleEndian.Uint32(image[hdrPayloadLength:]))
	switch {
	case n < 8:
		return nil, fmt.Errorf("bzImage compressed kernel is %d bytes long, too short for any compression: %w: %w", n, ErrPayloadOutside, ErrNotBzImage)
	case off > uint64(len(image)) || n > uint64(len(image))-off:
		return nil, fmt.Errorf("bzImage compressed kernel (%d bytes at %#x) is outside the %d-byte image: %w: %w", n, off, len(image), ErrPayloadOutside, ErrNotBzImage)
	}
	return image[off : off+n], nil
}

// MaxVmlinuxSize bounds the kernel ExtractVmlinux unpacks.
const MaxVmlinuxSize = 1 << 30

// zstdMagic starts a zstd frame.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// ExtractVmlinux returns the uncompressed ELF kernel inside a bzImage
// whose payload is zstd-compressed (Linux appends the uncompressed size
// as a little-endian u32 after the zstd frame), so the VMM can enter the
// kernel directly and skip its decompressor.
func ExtractVmlinux(image []byte) ([]byte, error) {
	payload, err := Payload(image)
	if err != nil {
		return nil, err
	}
	n := len(payload)
	if !bytes.HasPrefix(payload, zstdMagic) {
		return nil, fmt.Errorf("bzImage payload is not zstd-compressed (starts % x): boot the bzImage itself", payload[:4])
	}
	size := uint64(binary.LittleEndian.Uint32(payload[n-4:]))
	if size > MaxVmlinuxSize {
		return nil, fmt.Errorf("bzImage payload declares %d uncompressed bytes, more than %d", size, MaxVmlinuxSize)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(MaxVmlinuxSize), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	defer dec.Close()
	out, err := dec.DecodeAll(payload[:n-4], make([]byte, 0, size))
	if err != nil {
		return nil, fmt.Errorf("unpacking the bzImage payload: %w", err)
	}
	if uint64(len(out)) != size {
		return nil, fmt.Errorf("bzImage payload unpacked to %d bytes, its trailer says %d", len(out), size)
	}
	return out, nil
}

// LoadBzImageUnpacked loads the kernel inside a bzImage without its
// decompressor: it unpacks the payload on the host (ExtractVmlinux),
// loads the ELF at its physical addresses and enters it at startup_64,
// with the bzImage's own setup header in the zero page.
func LoadBzImageUnpacked(mem *guestmem.Memory, image []byte) (*Kernel, error) {
	vmlinux, err := ExtractVmlinux(image)
	if err != nil {
		return nil, err
	}
	k, err := LoadELF(mem, vmlinux)
	if err != nil {
		return nil, fmt.Errorf("the kernel inside the bzImage: %w", err)
	}
	hdrEnd := hdrJump + 2 + int(image[hdrJump+1])
	copy(k.ZeroPage[hdrSetupSects:hdrEnd], image[hdrSetupSects:hdrEnd])
	k.InitrdMax = uint64(binary.LittleEndian.Uint32(image[hdrInitrdAddrMax:])) + 1
	return k, nil
}

// LoadELF places the PT_LOAD segments of a 64-bit x86 ELF file (an
// uncompressed vmlinux, or the freestanding test guest) at their
// physical addresses and returns the physical entry point and a zero
// page with a minimal setup header.
func LoadELF(mem *guestmem.Memory, image []byte) (*Kernel, error) {
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return nil, fmt.Errorf("reading ELF kernel: %w", err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("ELF kernel is %v %v, want ELFCLASS64 EM_X86_64", f.Class, f.Machine)
	}
	k := &Kernel{Entry: f.Entry, InitrdMax: LowMemMax}
	entryFound := false
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Memsz == 0 {
			continue
		}
		if p.Filesz > p.Memsz {
			return nil, fmt.Errorf("ELF segment at %#x has more file bytes (%d) than memory bytes (%d)", p.Paddr, p.Filesz, p.Memsz)
		}
		dst, err := mem.Slice(p.Paddr, p.Memsz)
		if err != nil {
			return nil, fmt.Errorf("ELF segment at %#x (%d bytes) does not fit guest memory: give the guest more memory: %w", p.Paddr, p.Memsz, err)
		}
		if _, err := io.ReadFull(p.Open(), dst[:p.Filesz]); err != nil {
			return nil, fmt.Errorf("reading ELF segment at %#x: %w", p.Paddr, err)
		}
		clear(dst[p.Filesz:])
		k.End = max(k.End, p.Paddr+p.Memsz)
		if !entryFound && f.Entry >= p.Vaddr && f.Entry-p.Vaddr < p.Memsz {
			k.Entry = p.Paddr + (f.Entry - p.Vaddr)
			entryFound = true
		}
	}
	if k.End == 0 {
		return nil, errors.New("ELF kernel has no loadable segment")
	}
	if !entryFound {
		// vmlinux links its entry at the physical address already.
		if _, err := mem.Slice(f.Entry, 1); err != nil {
			return nil, fmt.Errorf("ELF entry point %#x is outside guest memory", f.Entry)
		}
	}
	binary.LittleEndian.PutUint16(k.ZeroPage[hdrBootFlag:], 0xaa55)
	binary.LittleEndian.PutUint32(k.ZeroPage[hdrMagic:], headerMagic)
	binary.LittleEndian.PutUint16(k.ZeroPage[hdrVersion:], minVersion)
	binary.LittleEndian.PutUint32(k.ZeroPage[hdrKernelAlign:], 0x1000000)
	binary.LittleEndian.PutUint32(k.ZeroPage[hdrCmdlineSize:], CmdlineMax-1)
	return k, nil
}

// LoadKernel loads a bzImage, or an ELF file if image is one.
func LoadKernel(mem *guestmem.Memory, image []byte) (*Kernel, error) {
	if bytes.HasPrefix(image, []byte(elf.ELFMAG)) {
		return LoadELF(mem, image)
	}
	return LoadBzImage(mem, image)
}

// Params are the inputs of the zero page besides the kernel.
type Params struct {
	Cmdline string
	Initrd  []byte // nil: none
}

// Finish writes the command line and the initrd into guest memory,
// completes k's zero page (loader type, command line, initrd, e820 map)
// and writes it at ZeroPageAddr.
func Finish(mem *guestmem.Memory, k *Kernel, p Params) error {
	zp := &k.ZeroPage
	limit := uint64(binary.LittleEndian.Uint32(zp[hdrCmdlineSize:]))
	if limit == 0 || limit > CmdlineMax-1 {
		limit = CmdlineMax - 1
	}
	if uint64(len(p.Cmdline)) > limit {
		return fmt.Errorf("kernel command line is %d bytes, the kernel takes at most %d: shorten it", len(p.Cmdline), limit)
	}
	if err := mem.Write(CmdlineAddr, append([]byte(p.Cmdline), 0)); err != nil {
		return fmt.Errorf("writing the command line: %w", err)
	}
	binary.LittleEndian.PutUint16(zp[hdrVidMode:], 0xffff)
	zp[hdrTypeOfLoader] = loaderUndefined
	zp[hdrLoadFlags] |= loadedHigh | canUseHeap
	binary.LittleEndian.PutUint16(zp[hdrHeapEndPtr:], 0xfe00)
	binary.LittleEndian.PutUint32(zp[hdrCmdLinePtr:], CmdlineAddr)
	binary.LittleEndian.PutUint32(zp[bpExtCmdLinePtr:], 0)
	if len(p.Initrd) > 0 {
		addr, err := placeInitrd(mem, k, uint64(len(p.Initrd)))
		if err != nil {
			return err
		}
		if err := mem.Write(addr, p.Initrd); err != nil {
			return fmt.Errorf("writing the initrd: %w", err)
		}
		size := uint64(len(p.Initrd))
		binary.LittleEndian.PutUint32(zp[hdrRamdiskImage:], uint32(addr))
		binary.LittleEndian.PutUint32(zp[hdrRamdiskSize:], uint32(size))
		binary.LittleEndian.PutUint32(zp[bpExtRamdiskImage:], uint32(addr>>32))
		binary.LittleEndian.PutUint32(zp[bpExtRamdiskSize:], uint32(size>>32))
	}
	e820 := E820Map(mem)
	if len(e820) > e820Max {
		return fmt.Errorf("%d e820 entries, the zero page holds %d", len(e820), e820Max)
	}
	zp[bpE820Entries] = uint8(len(e820))
	for i, e := range e820 {
		o := bpE820Table + 20*i
		binary.LittleEndian.PutUint64(zp[o:], e.Addr)
		binary.LittleEndian.PutUint64(zp[o+8:], e.Size)
		binary.LittleEndian.PutUint32(zp[o+16:], e.Type)
	}
	if err := mem.Write(ZeroPageAddr, zp[:]); err != nil {
		return fmt.Errorf("writing the zero page: %w", err)
	}
	return nil
}

// placeInitrd picks the highest page-aligned address in low memory where
// size bytes fit above the kernel and below the kernel's initrd limit.
func placeInitrd(mem *guestmem.Memory, k *Kernel, size uint64) (uint64, error) {
	top := min(LowMemEnd(mem), k.InitrdMax, LowMemMax)
	if k.InitrdMax == 0 {
		top = min(LowMemEnd(mem), LowMemMax)
	}
	if size > top {
		return 0, fmt.Errorf("initrd of %d bytes does not fit below %#x: give the guest more memory", size, top)
	}
	addr := (top - size) &^ 0xfff
	if addr < k.End {
		return 0, fmt.Errorf("initrd of %d bytes does not fit between the kernel (ends %#x) and %#x: give the guest more memory", size, k.End, top)
	}
	return addr, nil
}
