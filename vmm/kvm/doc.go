// Package kvm is the native backend: a small virtual machine monitor in
// Go on the Linux KVM API (ioctls through golang.org/x/sys/unix, no
// cgo). It boots a 64-bit kernel (bzImage or ELF) with an in-kernel
// irqchip, an 8250 console and a virtio console whose port 1 is the bulk
// port, behind legacy virtio-pci (the default) or virtio-mmio
// (Backend.Transport), and implements vmm.Backend and vmm.Machine.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it is the source of the bytes and the tap: every descriptor
// chain the guest driver makes available on the bulk port becomes one
// Read of Machine.Bulk, exactly as the driver built it, and the
// coordinator in package vmm records and dispatches it unchanged.
//
// Layering, bottom up: package kvmapi holds the KVM objects, ioctls and
// the speed probe; machine.go the vCPU threads and the run loop, which
// hands every port-I/O and MMIO exit to a vmm/bus.Bus and holds no
// device logic; devices.go the device map (what sits where, on which
// interrupt); registers.go the snapshot registers in vmm/regs's schema.
// The devices themselves live in vmm/legacy (UART, CMOS, i8042),
// vmm/pci, vmm/virtio (the console, the queues) and its transports
// vmm/virtio/legacypci and vmm/virtio/mmio; guest memory and the boot
// protocol in vmm/guestmem and vmm/boot.
package kvm
