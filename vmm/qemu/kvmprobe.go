package qemu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// KVM ioctls and constants used by the probe (linux/kvm.h).
const (
	kvmCreateVM             = 0xae01
	kvmGetVCPUMmapSize      = 0xae04
	kvmCreateVCPU           = 0xae41
	kvmSetUserMemoryRegion  = 0x4020ae46
	kvmRun                  = 0xae80
	kvmSetRegs              = 0x4090ae82
	kvmGetSregs             = 0x8138ae83
	kvmSetSregs             = 0x4138ae84
	kvmExitHLT              = 5
	kvmRunExitReasonOffset  = 8
	kvmSregsSize            = 312
	kvmRegsSize             = 144
	probeCodeAddr           = 0x1000
	probeMemSize            = 0x10000
	probeIterations         = 1 << 18
	probeNativeThreshold    = 10 * time.Millisecond
	probeMaxExits           = 1 << 16
	kvmSegmentSelectorOffst = 12
)

// probeCode is 16-bit real-mode code: `dec ecx; jnz .-2; hlt`, two
// instructions per iteration.
var probeCode = [...]byte{0x66, 0x49, 0x75, 0xfc, 0xf4}

// KVMProbe is the result of timing a tiny guest loop under KVM.
type KVMProbe struct {
	Native  bool          // the loop ran at hardware speed
	Elapsed time.Duration // time KVM_RUN took for the loop
	Detail  string        // one line for humans and trace metadata
}

// ProbeKVM runs a 2^18-iteration loop (2^19 instructions) in a fresh
// KVM guest and times it. Hardware virtualisation finishes in well under
// a millisecond; a host whose KVM emulates every guest instruction
// (0.2 to 1 µs each) needs 100 ms or more. The threshold is 10 ms. Any
// failure (no /dev/kvm, an ioctl error, an unexpected exit) reports not
// native.
func ProbeKVM() KVMProbe {
	d, err := runProbe()
	if err != nil {
		return KVMProbe{Detail: "KVM unusable: " + err.Error()}
	}
	p := KVMProbe{Elapsed: d, Native: d < probeNativeThreshold}
	verdict := "native"
	if !p.Native {
		verdict = "emulated, not native"
	}
	p.Detail = fmt.Sprintf("KVM probe: %d-instruction loop took %v (%s; native is under %v)",
		2*probeIterations, d.Round(time.Microsecond), verdict, probeNativeThreshold)
	return p
}

func ioctl(fd int, req uintptr, arg uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

func runProbe() (time.Duration, error) {
	kvm, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open /dev/kvm: %w", err)
	}
	defer unix.Close(kvm)
	vmfd, err := ioctl(kvm, kvmCreateVM, 0)
	if err != nil {
		return 0, fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	vm := int(vmfd)
	defer unix.Close(vm)

	mem, err := unix.Mmap(-1, 0, probeMemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return 0, fmt.Errorf("mmap guest memory: %w", err)
	}
	defer unix.Munmap(mem)
	copy(mem[probeCodeAddr:], probeCode[:])
	var region [32]byte // struct kvm_userspace_memory_region
	binary.LittleEndian.PutUint64(region[16:], probeMemSize)
	binary.LittleEndian.PutUint64(region[24:], uint64(uintptr(unsafe.Pointer(&mem[0]))))
	if _, err := ioctl(vm, kvmSetUserMemoryRegion, uintptr(unsafe.Pointer(&region[0]))); err != nil {
		return 0, fmt.Errorf("KVM_SET_USER_MEMORY_REGION: %w", err)
	}
	cpufd, err := ioctl(vm, kvmCreateVCPU, 0)
	if err != nil {
		return 0, fmt.Errorf("KVM_CREATE_VCPU: %w", err)
	}
	cpu := int(cpufd)
	defer unix.Close(cpu)
	size, err := ioctl(kvm, kvmGetVCPUMmapSize, 0)
	if err != nil {
		return 0, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	run, err := unix.Mmap(cpu, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return 0, fmt.Errorf("mmap kvm_run: %w", err)
	}
	defer unix.Munmap(run)

	// Real mode with CS base 0 so that IP addresses the code directly.
	var sregs [kvmSregsSize]byte
	if _, err := ioctl(cpu, kvmGetSregs, uintptr(unsafe.Pointer(&sregs[0]))); err != nil {
		return 0, fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	binary.LittleEndian.PutUint64(sregs[0:], 0)                       // cs.base
	binary.LittleEndian.PutUint16(sregs[kvmSegmentSelectorOffst:], 0) // cs.selector
	if _, err := ioctl(cpu, kvmSetSregs, uintptr(unsafe.Pointer(&sregs[0]))); err != nil {
		return 0, fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	var regs [kvmRegsSize]byte // rax rbx rcx ... r15 rip rflags
	binary.LittleEndian.PutUint64(regs[2*8:], probeIterations)
	binary.LittleEndian.PutUint64(regs[16*8:], probeCodeAddr)
	binary.LittleEndian.PutUint64(regs[17*8:], 2)
	if _, err := ioctl(cpu, kvmSetRegs, uintptr(unsafe.Pointer(&regs[0]))); err != nil {
		return 0, fmt.Errorf("KVM_SET_REGS: %w", err)
	}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := time.Now()
	var reason uint32
	for exits := 0; exits < probeMaxExits; exits++ {
		if _, err := ioctl(cpu, kvmRun, 0); err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			return 0, fmt.Errorf("KVM_RUN: %w", err)
		}
		reason = binary.LittleEndian.Uint32(run[kvmRunExitReasonOffset:])
		if reason == kvmExitHLT {
			return time.Since(start), nil
		}
		if time.Since(start) > 10*probeNativeThreshold {
			break
		}
	}
	return 0, fmt.Errorf("the probe guest did not reach HLT (last exit reason %d after %v)", reason, time.Since(start).Round(time.Millisecond))
}
