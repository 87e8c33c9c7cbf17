// Package legacy holds the PC devices of the native VMM that are not
// virtio, one file each, each a bus.Device at its fixed I/O ports: the
// 16550A UART (uart.go, the serial console), the i8042's reset line
// (i8042.go) and the CMOS real-time clock (cmos.go). Package kvm
// registers them on its port-I/O bus (vmm/kvm/devices.go); a new legacy
// device is a new file here and one Register call there.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) they sit beside the tap, not on it: they boot and end the
// guest and carry its console text, never frames. Every access is the
// guest's to make; a register that does not exist reads as all ones.
package legacy
