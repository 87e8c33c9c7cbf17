// Package kvm is the native backend: a small virtual machine monitor in
// Go on the Linux KVM API (ioctls through golang.org/x/sys/unix, no
// cgo). It boots a 64-bit kernel (bzImage or ELF) with an in-kernel
// irqchip, an 8250 console and a legacy virtio-pci console whose port 1
// is the bulk port, and implements vmm.Backend and vmm.Machine.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it is the source of the bytes and the tap: every descriptor
// chain the guest driver makes available on the bulk port becomes one
// Read of Machine.Bulk, exactly as the driver built it, and the
// coordinator in package vmm records and dispatches it unchanged.
//
// Layering, bottom up: vm.go and api.go hold the KVM objects and ioctls;
// machine.go the vCPU threads, the run loop and the port I/O map;
// packages guestmem, boot, pci, serial and virtio the memory, the boot
// protocol and the devices.
package kvm
