package boot

import (
	"encoding/binary"
	"fmt"

	"github.com/ktstr/ktstr/vmm/guestmem"
)

// Interrupt controller addresses of the in-kernel irqchip.
const (
	LAPICAddr  = 0xfee00000
	IOAPICAddr = 0xfec00000
	IOAPICPins = 24
)

// MP table constants (Intel MultiProcessor Specification 1.4).
const (
	mpSpecRev     = 4
	mpEntryCPU    = 0
	mpEntryBus    = 1
	mpEntryIOAPIC = 2
	mpEntryIOInt  = 3
	mpEntryLInt   = 4
	mpIntINT      = 0
	mpIntNMI      = 1
	mpIntExtINT   = 3
	mpBusPCI      = 0
	mpBusISA      = 1
	// MaxCPUs is the most vCPUs one MP table lists (it must fit the KiB
	// at MPTableAddr).
	MaxCPUs = 32
	// mpFlagsEdgeHigh marks an interrupt edge-triggered, active high.
	mpFlagsEdgeHigh = 0x5
)

// PCIInterrupt routes the INTx pin of a PCI device to an IOAPIC pin.
type PCIInterrupt struct {
	Slot      uint8 // device number on bus 0
	Pin       uint8 // 1 = INTA
	IOAPICPin uint8 // also the GSI
}

// WriteMPTable writes an MP floating pointer and configuration table at
// MPTableAddr for cpus vCPUs (local APIC IDs 0..cpus-1, the first one the
// boot processor), the IOAPIC, ISA IRQs 0–15 on IOAPIC pins 0–15 (the
// in-kernel irqchip's default routing) and the given PCI interrupts,
// edge-triggered.
func WriteMPTable(mem *guestmem.Memory, cpus int, pci []PCIInterrupt) error {
	if cpus < 1 || cpus > MaxCPUs {
		return fmt.Errorf("%d vCPUs: the MP table takes 1 to %d", cpus, MaxCPUs)
	}
	ioapicID := uint8(cpus)
	var entries []byte
	count := 0
	add := func(e []byte) { entries = append(entries, e...); count++ }
	for i := range cpus {
		e := make([]byte, 20)
		e[0] = mpEntryCPU
		e[1] = uint8(i)
		e[2] = 0x14 // local APIC version
		e[3] = 1    // enabled
		if i == 0 {
			e[3] |= 2 // boot processor
		}
		binary.LittleEndian.PutUint32(e[4:], 0x600) // family 6
		binary.LittleEndian.PutUint32(e[8:], 0x201) // FPU, APIC
		add(e)
	}
	add([]byte{mpEntryBus, mpBusPCI, 'P', 'C', 'I', ' ', ' ', ' '})
	add([]byte{mpEntryBus, mpBusISA, 'I', 'S', 'A', ' ', ' ', ' '})
	ioapic := []byte{mpEntryIOAPIC, ioapicID, 0x11, 1, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(ioapic[4:], IOAPICAddr)
	add(ioapic)
	for irq := range uint8(16) {
		add([]byte{mpEntryIOInt, mpIntINT, 0, 0, mpBusISA, irq, ioapicID, irq})
	}
	for _, p := range pci {
		if p.Slot >= 32 || p.Pin < 1 || p.Pin > 4 || p.IOAPICPin >= IOAPICPins {
			return fmt.Errorf("PCI interrupt slot %d pin %d → IOAPIC pin %d is out of range", p.Slot, p.Pin, p.IOAPICPin)
		}
		add([]byte{mpEntryIOInt, mpIntINT, mpFlagsEdgeHigh, 0, mpBusPCI, p.Slot<<2 | (p.Pin - 1), ioapicID, p.IOAPICPin})
	}
	add([]byte{mpEntryLInt, mpIntExtINT, 0, 0, mpBusISA, 0, 0xff, 0})
	add([]byte{mpEntryLInt, mpIntNMI, 0, 0, mpBusISA, 0, 0xff, 1})

	const fpSize, hdrSize = 16, 44
	table := make([]byte, hdrSize, hdrSize+len(entries))
	copy(table, "PCMP")
	table = append(table, entries...)
	binary.LittleEndian.PutUint16(table[4:], uint16(len(table)))
	table[6] = mpSpecRev
	copy(table[8:], "KTSTR   ")
	copy(table[16:], "NATIVE-KVM  ")
	binary.LittleEndian.PutUint16(table[34:], uint16(count))
	binary.LittleEndian.PutUint32(table[36:], LAPICAddr)
	table[7] = checksum(table)

	fp := make([]byte, fpSize)
	copy(fp, "_MP_")
	binary.LittleEndian.PutUint32(fp[4:], MPTableAddr+fpSize)
	fp[8] = 1 // length in 16-byte units
	fp[9] = mpSpecRev
	fp[10] = checksum(fp)

	all := append(fp, table...)
	if len(all) > HighMemStart-MPTableAddr || MPTableAddr+uint64(len(all)) > 0xa0000 {
		return fmt.Errorf("MP table of %d bytes does not fit the last KiB of base memory", len(all))
	}
	if err := mem.Write(MPTableAddr, all); err != nil {
		return fmt.Errorf("writing the MP table: %w", err)
	}
	return nil
}

// checksum returns the byte that makes the bytes of b sum to zero, given
// that b's checksum field is zero.
func checksum(b []byte) byte {
	var s byte
	for _, v := range b {
		s += v
	}
	return -s
}
