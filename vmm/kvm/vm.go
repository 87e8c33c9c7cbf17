//go:build linux && amd64

package kvm

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ktstr/ktstr/vmm/boot"
	"github.com/ktstr/ktstr/vmm/guestmem"
)

// ErrNoKVM reports that KVM cannot be used on this host.
var ErrNoKVM = errors.New("KVM is not available")

// DefaultDevice is the KVM device node the backend and the probe open
// unless told otherwise.
const DefaultDevice = "/dev/kvm"

// Addresses KVM needs on Intel hosts for the real-mode TSS and the
// identity page table, just below the BIOS area at the top of 4 GiB.
const (
	tssAddr         = 0xfffbd000
	identityMapAddr = 0xfffbc000
)

// vm is a KVM virtual machine with its memory and vCPU file descriptors.
type vm struct {
	kvm, fd int
	runSize int
	mem     *guestmem.Memory
	maps    [][]byte
	vcpus   []*vcpu
	irqchip bool
	irqfds  map[uint32]int // GSI → eventfd
	closed  bool
}

// vcpu is one virtual CPU and its shared kvm_run page.
type vcpu struct {
	id  int
	fd  int
	run []byte
	tid atomic.Int32 // OS thread running it, 0 before it starts
}

// openKVM opens the KVM device node and checks the API version. Its
// errors wrap ErrNoKVM and say how to fix the host.
func openKVM(device string) (int, error) {
	fd, err := unix.Open(device, unix.O_RDWR|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO) || errors.Is(err, unix.ENODEV):
		return -1, fmt.Errorf("%w: open %s: %w (load the KVM module: modprobe kvm_intel or modprobe kvm_amd; or run on a host with KVM)", ErrNoKVM, device, err)
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
		return -1, fmt.Errorf("%w: open %s: %w (make it readable and writable for this user: add the user to its group, e.g. usermod -aG kvm $USER, then log in again)", ErrNoKVM, device, err)
	case err != nil:
		return -1, fmt.Errorf("%w: open %s: %w (load the KVM module: modprobe kvm_intel or modprobe kvm_amd)", ErrNoKVM, device, err)
	}
	v, err := ioctl(fd, kvmGetAPIVersion, 0)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("%w: %s is not a KVM device: KVM_GET_API_VERSION: %w (use %s with the kvm_intel or kvm_amd module loaded)", ErrNoKVM, device, err, DefaultDevice)
	}
	if v != apiVersion {
		unix.Close(fd)
		return -1, fmt.Errorf("%w: %s has KVM API version %d, want %d (use a Linux host kernel with the stable KVM API)", ErrNoKVM, device, v, apiVersion)
	}
	return fd, nil
}

// newVM creates a VM on the KVM device node device with memMiB of
// memory: up to LowMemMax at address 0, the rest at HighMemBase.
func newVM(device string, memMiB int) (_ *vm, err error) {
	if memMiB < 2 || memMiB > 1<<20 {
		return nil, fmt.Errorf("guest memory %d MiB is outside 2..%d MiB", memMiB, 1<<20)
	}
	kfd, err := openKVM(device)
	if err != nil {
		return nil, err
	}
	v := &vm{kvm: kfd, fd: -1, irqfds: map[uint32]int{}}
	defer func() {
		if err != nil {
			v.close()
		}
	}()
	for _, c := range []struct {
		cap  uintptr
		name string
	}{{capUserMemory, "KVM_CAP_USER_MEMORY"}, {capSetTSSAddr, "KVM_CAP_SET_TSS_ADDR"}, {capImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"}} {
		if checkExtension(kfd, c.cap) == 0 {
			return nil, fmt.Errorf("%w: the host kernel lacks %s (use Linux 4.11 or later)", ErrNoKVM, c.name)
		}
	}
	size, err := ioctl(kfd, kvmGetVCPUMmapSize, 0)
	if err != nil {
		return nil, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	v.runSize = int(size)
	fd, err := ioctl(kfd, kvmCreateVM, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: KVM_CREATE_VM: %w", ErrNoKVM, err)
	}
	v.fd = int(fd)
	if _, err := ioctl(v.fd, kvmSetTSSAddr, tssAddr); err != nil {
		return nil, fmt.Errorf("KVM_SET_TSS_ADDR: %w", err)
	}
	ident := uint64(identityMapAddr)
	if err := ioctlPtr(v.fd, kvmSetIdentityMapAddr, unsafe.Pointer(&ident)); err != nil {
		return nil, fmt.Errorf("KVM_SET_IDENTITY_MAP_ADDR: %w", err)
	}

	total := uint64(memMiB) << 20
	low := min(total, boot.LowMemMax)
	regions := []guestmem.Region{}
	for _, r := range []struct{ gpa, size uint64 }{{0, low}, {boot.HighMemBase, total - low}} {
		if r.size == 0 {
			continue
		}
		b, err := unix.Mmap(-1, 0, int(r.size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err != nil {
			return nil, fmt.Errorf("mapping %d MiB of guest memory: %w", r.size>>20, err)
		}
		v.maps = append(v.maps, b)
		reg := userspaceMemoryRegion{
			Slot:          uint32(len(regions)),
			GuestPhysAddr: r.gpa,
			MemorySize:    r.size,
			UserspaceAddr: uint64(uintptr(unsafe.Pointer(&b[0]))),
		}
		if err := ioctlPtr(v.fd, kvmSetUserMemoryRegion, unsafe.Pointer(&reg)); err != nil {
			return nil, fmt.Errorf("KVM_SET_USER_MEMORY_REGION at %#x: %w", r.gpa, err)
		}
		regions = append(regions, guestmem.Region{GPA: r.gpa, Data: b})
	}
	if v.mem, err = guestmem.New(regions...); err != nil {
		return nil, err
	}
	return v, nil
}

// createIRQChip creates the in-kernel PIC, IOAPIC and LAPICs and the
// in-kernel PIT, if the host supports them.
func (v *vm) createIRQChip() error {
	if checkExtension(v.kvm, capIRQChip) == 0 {
		return nil
	}
	if _, err := ioctl(v.fd, kvmCreateIRQChip, 0); err != nil {
		return fmt.Errorf("KVM_CREATE_IRQCHIP: %w", err)
	}
	v.irqchip = true
	if checkExtension(v.kvm, capPIT2) != 0 {
		pit := pitConfig{Flags: 1} // KVM_PIT_SPEAKER_DUMMY: port 0x61 handled in the kernel
		if err := ioctlPtr(v.fd, kvmCreatePIT2, unsafe.Pointer(&pit)); err != nil {
			return fmt.Errorf("KVM_CREATE_PIT2: %w", err)
		}
	}
	return nil
}

// interruptFunc returns a function that raises an edge on gsi: through
// an irqfd where the host has them, else with KVM_IRQ_LINE.
func (v *vm) interruptFunc(gsi uint32) (func(), error) {
	if !v.irqchip {
		return func() {}, nil // no interrupt controller: the guest must poll
	}
	if checkExtension(v.kvm, capIRQFD) != 0 {
		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			return nil, fmt.Errorf("eventfd for GSI %d: %w", gsi, err)
		}
		req := irqfd{FD: uint32(efd), GSI: gsi}
		if err := ioctlPtr(v.fd, kvmIRQFD, unsafe.Pointer(&req)); err != nil {
			unix.Close(efd)
			return nil, fmt.Errorf("KVM_IRQFD for GSI %d: %w", gsi, err)
		}
		v.irqfds[gsi] = efd
		one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
		return func() { unix.Write(efd, one) }, nil // EAGAIN: the counter is already raised
	}
	vmfd := v.fd
	return func() {
		for _, level := range []uint32{1, 0} {
			l := irqLevel{IRQ: gsi, Level: level}
			ioctlPtr(vmfd, kvmIRQLine, unsafe.Pointer(&l)) // fails only for a bad GSI
		}
	}, nil
}

// newVCPU creates vCPU id and maps its kvm_run page.
func (v *vm) newVCPU(id int) (*vcpu, error) {
	fd, err := ioctl(v.fd, kvmCreateVCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VCPU %d: %w", id, err)
	}
	run, err := unix.Mmap(int(fd), 0, v.runSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("mapping kvm_run of vCPU %d: %w", id, err)
	}
	c := &vcpu{id: id, fd: int(fd), run: run}
	v.vcpus = append(v.vcpus, c)
	return c, nil
}

// close releases every resource of the VM. No vCPU may be running.
func (v *vm) close() {
	if v.closed {
		return
	}
	v.closed = true
	for _, c := range v.vcpus {
		unix.Munmap(c.run)
		unix.Close(c.fd)
	}
	for _, efd := range v.irqfds {
		unix.Close(efd)
	}
	if v.fd >= 0 {
		unix.Close(v.fd)
	}
	for _, b := range v.maps {
		unix.Munmap(b)
	}
	unix.Close(v.kvm)
}

// supportedCPUID returns the CPUID leaves KVM supports on this host.
func (v *vm) supportedCPUID() (*cpuid, error) {
	c := &cpuid{Nent: maxCPUIDEntries}
	if err := ioctlPtr(v.kvm, kvmGetSupportedCPUID, unsafe.Pointer(c)); err != nil {
		return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
	}
	return c, nil
}

// setup gives vCPU c its CPUID (with its APIC ID), and its local APIC
// the virtual-wire LINT0/LINT1 setup; the boot vCPU also gets the
// long-mode entry state st.
func (c *vcpu) setup(base *cpuid, st *boot.CPUState, irqchip bool) error {
	id := *base
	for i := range id.Nent {
		e := &id.Entries[i]
		switch e.Function {
		case 1:
			e.EBX = e.EBX&0x00ffffff | uint32(c.id)<<24
			e.ECX |= 1 << 31 // running under a hypervisor
		case 0xb, 0x1f:
			e.EDX = uint32(c.id)
		}
	}
	if err := ioctlPtr(c.fd, kvmSetCPUID2, unsafe.Pointer(&id)); err != nil {
		return fmt.Errorf("KVM_SET_CPUID2 on vCPU %d: %w", c.id, err)
	}
	if irqchip {
		var l lapicState
		if err := ioctlPtr(c.fd, kvmGetLAPIC, unsafe.Pointer(&l)); err != nil {
			return fmt.Errorf("KVM_GET_LAPIC on vCPU %d: %w", c.id, err)
		}
		const lvt0, lvt1, extINT, nmi = 0x350, 0x360, 7 << 8, 4 << 8
		for _, r := range []struct{ off, mode uint32 }{{lvt0, extINT}, {lvt1, nmi}} {
			v := uint32(l.Regs[r.off]) | uint32(l.Regs[r.off+1])<<8 | uint32(l.Regs[r.off+2])<<16 | uint32(l.Regs[r.off+3])<<24
			v = v&^0x700 | r.mode
			l.Regs[r.off], l.Regs[r.off+1], l.Regs[r.off+2], l.Regs[r.off+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		}
		if err := ioctlPtr(c.fd, kvmSetLAPIC, unsafe.Pointer(&l)); err != nil {
			return fmt.Errorf("KVM_SET_LAPIC on vCPU %d: %w", c.id, err)
		}
	}
	if st == nil {
		return nil // application processors wait for INIT/SIPI
	}
	var s Sregs
	if err := ioctlPtr(c.fd, kvmGetSregs, unsafe.Pointer(&s)); err != nil {
		return fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	code := Segment{Limit: 0xffffffff, Selector: boot.SelectorCode, Type: 11, Present: 1, S: 1, L: 1, G: 1}
	data := Segment{Limit: 0xffffffff, Selector: boot.SelectorData, Type: 3, Present: 1, S: 1, DB: 1, G: 1}
	s.CS = code
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	s.TR = Segment{Limit: 0x67, Selector: boot.SelectorTSS, Type: 11, Present: 1}
	s.LDT = Segment{Type: 2, Present: 1, Unusable: 1}
	s.GDT = DTable{Base: st.GDTBase, Limit: st.GDTLimit}
	s.IDT = DTable{Base: st.IDTBase, Limit: st.IDTLimit}
	s.CR0 = 0x80050033 // PG | AM | WP | NE | ET | MP | PE
	s.CR3 = st.CR3
	s.CR4 = 0x20   // PAE
	s.EFER = 0x500 // LME | LMA
	if err := ioctlPtr(c.fd, kvmSetSregs, unsafe.Pointer(&s)); err != nil {
		return fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	f := fpu{FCW: 0x37f, MXCSR: 0x1f80}
	if err := ioctlPtr(c.fd, kvmSetFPU, unsafe.Pointer(&f)); err != nil {
		return fmt.Errorf("KVM_SET_FPU: %w", err)
	}
	r := Regs{RIP: st.RIP, RSP: st.RSP, RBP: st.RSP, RSI: st.RSI, RFLAGS: 2}
	if err := ioctlPtr(c.fd, kvmSetRegs, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("KVM_SET_REGS: %w", err)
	}
	return nil
}

// kvmAvailable reports whether DefaultDevice can be opened, for tests.
func kvmAvailable() error {
	if _, err := os.Stat(DefaultDevice); err != nil {
		return fmt.Errorf("%w: %w", ErrNoKVM, err)
	}
	fd, err := openKVM(DefaultDevice)
	if err != nil {
		return err
	}
	unix.Close(fd)
	return nil
}
