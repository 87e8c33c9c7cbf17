// Package boot prepares guest memory and the boot vCPU state for the
// native KVM backend: the 64-bit Linux boot protocol (boot_params, e820
// map, command line, initrd) for a bzImage or an uncompressed ELF
// vmlinux, identity-mapped page tables and a GDT for entry in long mode,
// and an Intel MP table describing the vCPUs and interrupt routing.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it comes before everything: it starts the guest whose bulk
// port the tap reads. Kernel and initrd files are input: their headers
// are checked and every placement is bounds-checked against guest
// memory.
package boot

import (
	"encoding/binary"
	"fmt"

	"github.com/ktstr/ktstr/vmm/guestmem"
)

// Guest physical layout of the boot structures.
const (
	GDTAddr       = 0x500
	IDTAddr       = 0x520
	ZeroPageAddr  = 0x7000 // boot_params
	BootStackTop  = 0x8ff0
	PML4Addr      = 0x9000
	PDPTAddr      = 0xa000
	PDAddr        = 0xb000 // four page directories: 0xb000..0xefff
	CmdlineAddr   = 0x20000
	CmdlineMax    = 0x10000 // bytes reserved for the command line, NUL included
	MPTableAddr   = 0x9fc00 // last KiB of base memory, where Linux looks
	EBDAStart     = 0x9fc00
	HighMemStart  = 0x100000 // 1 MiB: kernels load here
	LowMemMax     = 0xc0000000
	HighMemBase   = 0x100000000
	IdentityLimit = 4 << 30 // bytes identity-mapped for entry
)

// GDT selectors set up by SetupLongMode (the Linux boot protocol's
// __BOOT_CS and __BOOT_DS, and a TSS that VMX entry needs).
const (
	SelectorCode = 0x10
	SelectorData = 0x18
	SelectorTSS  = 0x20
)

// GDT descriptors: flat 64-bit code, flat data, and a minimal busy TSS.
var gdtEntries = [6]uint64{
	0,
	0,
	0x00af9b000000ffff, // code: present, DPL 0, execute/read, L=1, G=1
	0x00cf93000000ffff, // data: present, DPL 0, read/write, D/B=1, G=1
	0x00008b0000000067, // TSS: present, busy 64-bit TSS, limit 0x67
	0,                  // TSS, upper half of the 16-byte system descriptor
}

// CPUState is the boot vCPU's state for entry in 64-bit long mode.
type CPUState struct {
	RIP, RSP, RSI uint64
	CR3           uint64
	GDTBase       uint64
	GDTLimit      uint16
	IDTBase       uint64
	IDTLimit      uint16
}

// SetupLongMode writes a GDT, an empty IDT and page tables identity-
// mapping the first IdentityLimit bytes with 2 MiB pages, and returns
// the vCPU state that enters entry with rsi pointing at the zero page.
func SetupLongMode(mem *guestmem.Memory, entry uint64) (CPUState, error) {
	var gdt [8 * len(gdtEntries)]byte
	for i, e := range gdtEntries {
		binary.LittleEndian.PutUint64(gdt[8*i:], e)
	}
	if err := mem.Write(GDTAddr, gdt[:]); err != nil {
		return CPUState{}, fmt.Errorf("writing the GDT: %w", err)
	}
	if err := mem.Write(IDTAddr, make([]byte, 8)); err != nil {
		return CPUState{}, fmt.Errorf("writing the IDT: %w", err)
	}
	const present, writable, huge = 1, 2, 0x80
	if err := mem.PutUint64(PML4Addr, PDPTAddr|present|writable); err != nil {
		return CPUState{}, fmt.Errorf("writing page tables: %w", err)
	}
	for i := uint64(0); i < IdentityLimit>>30; i++ {
		pd := PDAddr + i*0x1000
		if err := mem.PutUint64(PDPTAddr+8*i, pd|present|writable); err != nil {
			return CPUState{}, fmt.Errorf("writing page tables: %w", err)
		}
		for j := uint64(0); j < 512; j++ {
			addr := i<<30 | j<<21
			if err := mem.PutUint64(pd+8*j, addr|present|writable|huge); err != nil {
				return CPUState{}, fmt.Errorf("writing page tables: %w", err)
			}
		}
	}
	return CPUState{
		RIP:      entry,
		RSP:      BootStackTop,
		RSI:      ZeroPageAddr,
		CR3:      PML4Addr,
		GDTBase:  GDTAddr,
		GDTLimit: uint16(len(gdt) - 1),
		IDTBase:  IDTAddr,
		IDTLimit: 7,
	}, nil
}

// E820 memory types.
const (
	E820RAM      = 1
	E820Reserved = 2
)

// E820Entry is one range of the BIOS memory map.
type E820Entry struct {
	Addr, Size uint64
	Type       uint32
}

// E820Map returns the memory map of guest memory mem: base memory below
// the MP table, the reserved EBDA/BIOS area up to 1 MiB, then each
// region (or its part) above 1 MiB as RAM.
func E820Map(mem *guestmem.Memory) []E820Entry {
	m := []E820Entry{
		{Addr: 0, Size: EBDAStart, Type: E820RAM},
		{Addr: EBDAStart, Size: HighMemStart - EBDAStart, Type: E820Reserved},
	}
	for _, r := range mem.Regions() {
		start, end := r.GPA, r.End()
		if end <= HighMemStart {
			continue
		}
		start = max(start, HighMemStart)
		m = append(m, E820Entry{Addr: start, Size: end - start, Type: E820RAM})
	}
	return m
}

// LowMemEnd returns the end of the guest memory region starting at 0.
func LowMemEnd(mem *guestmem.Memory) uint64 {
	for _, r := range mem.Regions() {
		if r.GPA == 0 {
			return r.End()
		}
	}
	return 0
}
