//go:build linux && amd64

package kvmapi

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl request numbers of the KVM API (include/uapi/linux/kvm.h),
// computed as _IO/_IOR/_IOW/_IOWR(0xAE, nr, size).
const (
	kvmGetAPIVersion       = 0xae00
	kvmCreateVM            = 0xae01
	kvmCheckExtension      = 0xae03
	kvmGetVCPUMmapSize     = 0xae04
	kvmGetSupportedCPUID   = 0xc008ae05
	kvmCreateVCPU          = 0xae41
	kvmSetUserMemoryRegion = 0x4020ae46
	kvmSetTSSAddr          = 0xae47
	kvmSetIdentityMapAddr  = 0x4008ae48
	kvmCreateIRQChip       = 0xae60
	kvmIRQLine             = 0x4008ae61
	kvmIRQFD               = 0x4020ae76
	kvmCreatePIT2          = 0x4040ae77
	kvmRun                 = 0xae80
	kvmGetRegs             = 0x8090ae81
	kvmSetRegs             = 0x4090ae82
	kvmGetSregs            = 0x8138ae83
	kvmSetSregs            = 0x4138ae84
	kvmSetFPU              = 0x41a0ae8d
	kvmGetLAPIC            = 0x8400ae8e
	kvmSetLAPIC            = 0x4400ae8f
	kvmSetCPUID2           = 0x4008ae90
)

// Capabilities (KVM_CAP_*).
const (
	capIRQChip       = 0
	capUserMemory    = 3
	capSetTSSAddr    = 4
	capIRQFD         = 32
	capPIT2          = 33
	capImmediateExit = 136
)

// Exit reasons (KVM_EXIT_*), as ExitReason returns them.
const (
	ExitUnknown       = 0
	ExitException     = 1
	ExitIO            = 2
	ExitHLT           = 5
	ExitMMIO          = 6
	ExitShutdown      = 8
	ExitFailEntry     = 9
	ExitIntr          = 10
	ExitInternalError = 17
	ExitSystemEvent   = 24
)

// KVM_INTERNAL_ERROR_EMULATION, the internal-error suberror of an
// emulation failure, and its flag saying the exit holds the
// instruction's bytes.
const (
	internalErrorEmulation        = 1
	emulationFlagInstructionBytes = 1
)

// System event types of an ExitSystemEvent (SystemEvent).
const (
	SystemEventShutdown = 1
	SystemEventReset    = 2
	SystemEventCrash    = 3
)

// Offsets in struct kvm_run.
const (
	runImmediateExit = 1
	runExitReason    = 8
	runExit          = 32 // the exit union
	ioDirectionOut   = 1
)

// The API version every KVM since Linux 2.6.22 reports.
const apiVersion = 12

type userspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32
	GuestPhysAddr uint64
	MemorySize    uint64
	UserspaceAddr uint64
}

type irqfd struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]byte
}

type pitConfig struct {
	Flags uint32
	_     [15]uint32
}

type irqLevel struct {
	IRQ   uint32
	Level uint32
}

// Regs is struct kvm_regs.
type Regs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
}

// Segment is struct kvm_segment.
type Segment struct {
	Base                           uint64
	Limit                          uint32
	Selector                       uint16
	Type                           uint8
	Present, DPL, DB, S, L, G, AVL uint8
	Unusable                       uint8
	_                              uint8
}

// DTable is struct kvm_dtable.
type DTable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

// Sregs is struct kvm_sregs.
type Sregs struct {
	CS, DS, ES, FS, GS, SS  Segment
	TR, LDT                 Segment
	GDT, IDT                DTable
	CR0, CR2, CR3, CR4, CR8 uint64
	EFER                    uint64
	APICBase                uint64
	InterruptBitmap         [4]uint64
}

type fpu struct {
	FPR        [8][16]byte
	FCW        uint16
	FSW        uint16
	FTWX       uint8
	_          uint8
	LastOpcode uint16
	LastIP     uint64
	LastDP     uint64
	XMM        [16][16]byte
	MXCSR      uint32
	_          uint32
}

type lapicState struct {
	Regs [1024]byte
}

type cpuidEntry struct {
	Function uint32
	Index    uint32
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

const maxCPUIDEntries = 256

// CPUID is struct kvm_cpuid2 with room for the leaves a host supports.
type CPUID struct {
	nent    uint32
	_       uint32
	entries [maxCPUIDEntries]cpuidEntry
}

// Compile-time checks that the structs match the kernel's sizes.
var (
	_ [32]byte   = [unsafe.Sizeof(userspaceMemoryRegion{})]byte{}
	_ [32]byte   = [unsafe.Sizeof(irqfd{})]byte{}
	_ [64]byte   = [unsafe.Sizeof(pitConfig{})]byte{}
	_ [144]byte  = [unsafe.Sizeof(Regs{})]byte{}
	_ [24]byte   = [unsafe.Sizeof(Segment{})]byte{}
	_ [312]byte  = [unsafe.Sizeof(Sregs{})]byte{}
	_ [416]byte  = [unsafe.Sizeof(fpu{})]byte{}
	_ [40]byte   = [unsafe.Sizeof(cpuidEntry{})]byte{}
	_ [1024]byte = [unsafe.Sizeof(lapicState{})]byte{}
)

// ioctl issues an ioctl whose argument is an integer. It retries on
// EINTR except for KVM_RUN, whose interruption is how a vCPU is kicked.
func ioctl(fd int, req uintptr, arg uintptr) (uintptr, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
		if errno == unix.EINTR && req != kvmRun {
			continue
		}
		if errno != 0 {
			return r, errno
		}
		return r, nil
	}
}

// ioctlPtr issues an ioctl whose argument points at p.
func ioctlPtr(fd int, req uintptr, p unsafe.Pointer) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(p))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}

// checkExtension returns the value of capability cap, 0 if absent.
func checkExtension(fd int, cap uintptr) int {
	r, err := ioctl(fd, kvmCheckExtension, cap)
	if err != nil {
		return 0
	}
	return int(r)
}

// ExitName names a KVM exit reason for messages.
func ExitName(reason uint32) string {
	switch reason {
	case ExitUnknown:
		return "unknown"
	case ExitException:
		return "exception"
	case ExitIO:
		return "io"
	case ExitHLT:
		return "hlt"
	case ExitMMIO:
		return "mmio"
	case ExitShutdown:
		return "shutdown"
	case ExitFailEntry:
		return "fail-entry"
	case ExitIntr:
		return "intr"
	case ExitInternalError:
		return "internal-error"
	case ExitSystemEvent:
		return "system-event"
	}
	return fmt.Sprintf("exit-%d", reason)
}

// InternalError describes a KVM_EXIT_INTERNAL_ERROR from the exit's
// union u (struct kvm_run's internal / emulation_failure). For an
// emulation failure KVM (Linux 5.14 and later) may add the bytes of the
// instruction it could not emulate; they are shown, so the instruction
// can be named without a disassembler at hand.
func InternalError(u []byte, rip uint64) string {
	le := binary.LittleEndian
	sub := le.Uint32(u[0:])
	if sub != internalErrorEmulation {
		return fmt.Sprintf("KVM internal error, suberror %d at RIP %#x", sub, rip)
	}
	s := fmt.Sprintf("KVM emulation failure (an instruction the host's KVM cannot emulate), suberror %d at RIP %#x", sub, rip)
	ndata, flags := le.Uint32(u[4:]), le.Uint64(u[8:])
	if n := int(u[16]); ndata >= 2 && flags&emulationFlagInstructionBytes != 0 && n >= 1 && n <= 15 {
		s += fmt.Sprintf(", instruction bytes % x", u[17:17+n])
	}
	return s
}
