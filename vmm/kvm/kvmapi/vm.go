//go:build linux && amd64

package kvmapi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ktstr/ktstr/vmm/boot"
	"github.com/ktstr/ktstr/vmm/guestmem"
)

// Addresses KVM needs on Intel hosts for the real-mode TSS and the
// identity page table, just below the BIOS area at the top of 4 GiB.
const (
	tssAddr         = 0xfffbd000
	identityMapAddr = 0xfffbc000
)

// VM is a KVM virtual machine with its memory and vCPUs. Its methods
// are not safe for concurrent use, except the vCPUs' own (see VCPU).
type VM struct {
	kvm, fd int
	runSize int
	mem     *guestmem.Memory
	maps    [][]byte
	vcpus   []*VCPU
	irqchip bool
	irqfds  map[uint32]int // GSI → eventfd
	closed  bool
}

// VCPU is one virtual CPU and its kvm_run page, shared with the kernel.
// Run, the exit accessors and Regs belong to the thread running the
// vCPU; Kick may be called from any thread until the VM is closed.
type VCPU struct {
	id  int
	fd  int
	run []byte
	tid atomic.Int32 // OS thread running it, 0 before it starts
}

// open opens the KVM device node and checks the API version. Its
// errors wrap ErrNoKVM and say how to fix the host.
func open(device string) (int, error) {
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

// Available reports whether the KVM device node device can be opened
// and speaks the KVM API; its error wraps ErrNoKVM and names the fix.
func Available(device string) error {
	if _, err := os.Stat(device); err != nil {
		return fmt.Errorf("%w: %w", ErrNoKVM, err)
	}
	fd, err := open(device)
	if err != nil {
		return err
	}
	unix.Close(fd)
	return nil
}

// NewVM creates a VM on the KVM device node device with memMiB of
// memory: up to boot.LowMemMax at address 0, the rest at
// boot.HighMemBase.
func NewVM(device string, memMiB int) (_ *VM, err error) {
	if memMiB < 2 || memMiB > 1<<20 {
		return nil, fmt.Errorf("guest memory %d MiB is outside 2..%d MiB", memMiB, 1<<20)
	}
	kfd, err := open(device)
	if err != nil {
		return nil, err
	}
	v := &VM{kvm: kfd, fd: -1, irqfds: map[uint32]int{}}
	defer func() {
		if err != nil {
			v.Close()
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

// Mem returns the guest's memory.
func (v *VM) Mem() *guestmem.Memory { return v.mem }

// VCPUs returns the vCPUs created so far, in order of creation.
func (v *VM) VCPUs() []*VCPU { return v.vcpus }

// IRQChip reports whether CreateIRQChip created the in-kernel irqchip.
func (v *VM) IRQChip() bool { return v.irqchip }

// IRQFD reports whether interrupts are raised through irqfds.
func (v *VM) IRQFD() bool { return len(v.irqfds) > 0 }

// CreateIRQChip creates the in-kernel PIC, IOAPIC and LAPICs and the
// in-kernel PIT, if the host supports them.
func (v *VM) CreateIRQChip() error {
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

// InterruptFunc returns a function that raises an edge on gsi: through
// an irqfd where the host has them, else with KVM_IRQ_LINE; without an
// irqchip it does nothing (the guest must poll).
func (v *VM) InterruptFunc(gsi uint32) (func(), error) {
	if !v.irqchip {
		return func() {}, nil
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

// NewVCPU creates vCPU id and maps its kvm_run page.
func (v *VM) NewVCPU(id int) (*VCPU, error) {
	fd, err := ioctl(v.fd, kvmCreateVCPU, uintptr(id))
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VCPU %d: %w", id, err)
	}
	run, err := unix.Mmap(int(fd), 0, v.runSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(int(fd))
		return nil, fmt.Errorf("mapping kvm_run of vCPU %d: %w", id, err)
	}
	c := &VCPU{id: id, fd: int(fd), run: run}
	v.vcpus = append(v.vcpus, c)
	return c, nil
}

// Close releases every resource of the VM. No vCPU may be running, and
// none may be kicked after it.
func (v *VM) Close() {
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

// SupportedCPUID returns the CPUID leaves KVM supports on this host.
func (v *VM) SupportedCPUID() (*CPUID, error) {
	c := &CPUID{nent: maxCPUIDEntries}
	if err := ioctlPtr(v.kvm, kvmGetSupportedCPUID, unsafe.Pointer(c)); err != nil {
		return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
	}
	return c, nil
}

// ID returns the vCPU's index (also its APIC ID).
func (c *VCPU) ID() int { return c.id }

// Setup gives the vCPU its CPUID (base with its APIC ID), and its local
// APIC the virtual-wire LINT0/LINT1 setup; the boot vCPU (st not nil)
// also gets the long-mode entry state st.
func (c *VCPU) Setup(base *CPUID, st *boot.CPUState, irqchip bool) error {
	id := *base
	for i := range id.nent {
		e := &id.entries[i]
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
			v := binary.LittleEndian.Uint32(l.Regs[r.off:])
			binary.LittleEndian.PutUint32(l.Regs[r.off:], v&^0x700|r.mode)
		}
		if err := ioctlPtr(c.fd, kvmSetLAPIC, unsafe.Pointer(&l)); err != nil {
			return fmt.Errorf("KVM_SET_LAPIC on vCPU %d: %w", c.id, err)
		}
	}
	if st == nil {
		return nil // application processors wait for INIT/SIPI
	}
	s, err := c.Sregs()
	if err != nil {
		return err
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

// Regs returns the vCPU's general registers (KVM_GET_REGS).
func (c *VCPU) Regs() (Regs, error) {
	var r Regs
	if err := ioctlPtr(c.fd, kvmGetRegs, unsafe.Pointer(&r)); err != nil {
		return r, fmt.Errorf("KVM_GET_REGS on vCPU %d: %w", c.id, err)
	}
	return r, nil
}

// Sregs returns the vCPU's segment and control registers
// (KVM_GET_SREGS).
func (c *VCPU) Sregs() (Sregs, error) {
	var s Sregs
	if err := ioctlPtr(c.fd, kvmGetSregs, unsafe.Pointer(&s)); err != nil {
		return s, fmt.Errorf("KVM_GET_SREGS on vCPU %d: %w", c.id, err)
	}
	return s, nil
}

// BindThread records the calling OS thread as the one running the vCPU,
// so Kick can interrupt it. The caller must have locked its goroutine to
// the thread.
func (c *VCPU) BindThread() { c.tid.Store(int32(unix.Gettid())) }

// Run enters the guest (KVM_RUN) until the next exit. It returns
// unix.EINTR, unretried, when a signal (a Kick) interrupted it.
func (c *VCPU) Run() error {
	_, err := ioctl(c.fd, kvmRun, 0)
	return err
}

// ClearImmediateExit clears kvm_run.immediate_exit, so the next Run
// enters the guest. Clear it before looking at the requests a Kick
// announces, so a request made after the look still stops that Run.
func (c *VCPU) ClearImmediateExit() {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&c.run[0])), 0)
}

// Kick makes the vCPU leave the guest soon: immediate_exit stops a Run
// about to enter, a SIGURG to its thread interrupts one inside (Go's
// runtime ignores an unexpected SIGURG). The VM must not be closed.
func (c *VCPU) Kick() {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&c.run[0])), 1<<(8*runImmediateExit))
	if tid := c.tid.Load(); tid != 0 {
		unix.Tgkill(unix.Getpid(), int(tid), unix.SIGURG) // ESRCH: the thread has ended
	}
}

// ExitReason returns the reason of the last exit (an Exit constant).
func (c *VCPU) ExitReason() uint32 {
	return binary.LittleEndian.Uint32(c.run[runExitReason:])
}

// ExitData returns the exit union of the kvm_run page: the raw details
// of the last exit.
func (c *VCPU) ExitData() []byte { return c.run[runExit:] }

// IOExit is a decoded ExitIO: Count accesses of Size bytes at Port, with
// Data (Size×Count bytes inside the kvm_run page) holding what an OUT
// wrote or receiving what an IN reads.
type IOExit struct {
	Out   bool
	Port  uint16
	Size  int
	Count int
	Data  []byte
}

// IO decodes the last exit as an ExitIO. KVM writes these fields; they
// are checked all the same, so a bad exit is an error, not a panic.
func (c *VCPU) IO() (IOExit, error) {
	u := c.ExitData()
	e := IOExit{
		Out:   u[0] == ioDirectionOut,
		Size:  int(u[1]),
		Port:  binary.LittleEndian.Uint16(u[2:]),
		Count: int(binary.LittleEndian.Uint32(u[4:])),
	}
	off := binary.LittleEndian.Uint64(u[8:])
	if e.Size != 1 && e.Size != 2 && e.Size != 4 || off > uint64(len(c.run)) || uint64(e.Size)*uint64(e.Count) > uint64(len(c.run))-off {
		return e, fmt.Errorf("malformed I/O exit (port %#x, size %d, count %d)", e.Port, e.Size, e.Count)
	}
	e.Data = c.run[off : off+uint64(e.Size*e.Count)]
	return e, nil
}

// MMIOExit is a decoded ExitMMIO: an access of len(Data) bytes (1 to 8)
// at guest physical address Addr that no memory backs. Data holds what
// a write wrote, or receives what a read reads.
type MMIOExit struct {
	Addr  uint64
	Write bool
	Data  []byte
}

// MMIO decodes the last exit as an ExitMMIO.
func (c *VCPU) MMIO() MMIOExit {
	u := c.ExitData()
	n := min(binary.LittleEndian.Uint32(u[16:]), 8)
	return MMIOExit{Addr: binary.LittleEndian.Uint64(u[0:]), Write: u[20] != 0, Data: u[8 : 8+n]}
}

// SystemEvent returns the type of the last ExitSystemEvent (a
// SystemEvent constant).
func (c *VCPU) SystemEvent() uint32 { return binary.LittleEndian.Uint32(c.ExitData()[0:]) }

// FailEntryReason returns the hardware reason of the last ExitFailEntry.
func (c *VCPU) FailEntryReason() uint64 { return binary.LittleEndian.Uint64(c.ExitData()[0:]) }
