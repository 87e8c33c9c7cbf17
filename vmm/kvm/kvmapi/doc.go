// Package kvmapi is the Linux KVM API as ktstr uses it, in one place:
// the ioctl request numbers and kernel structs (the only copy in the
// module), opening the device node with errors that name the fix, a VM
// with its memory and vCPUs and their shared kvm_run pages, and the KVM
// speed probe that both backends consult (Probe).
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it is below the source of the bytes: package kvm runs its
// vCPUs, and the devices on them produce the bulk port's deliveries.
// The probe decides before a run whether KVM can produce them at a
// useful speed: package kvm refuses to boot Linux where it cannot, and
// package qemu picks TCG over KVM there.
package kvmapi
