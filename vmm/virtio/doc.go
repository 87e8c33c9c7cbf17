// Package virtio is the virtio device model of the native KVM backend:
// the split virtqueue, the legacy virtio-pci transport, and the console
// device with the multiport feature whose port 1 ("ktstr-bulk") is the
// bulk port.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it is the tap: every descriptor chain the guest driver makes
// available on the bulk port's transmit queue becomes one delivery,
// handed unchanged to the coordinator, which writes it to the trace and
// feeds it to the Assembler. Everything the guest controls (ring
// indices, descriptor addresses, lengths and links, queue placement,
// register writes) is checked before use; a guest that breaks the rules
// only breaks its own device.
package virtio
