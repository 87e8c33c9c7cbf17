// Package virtio is the virtio device model of the native KVM backend:
// the Device interface that every virtio device implements and every
// transport drives, the split virtqueue, and the console device with the
// multiport feature whose port 1 ("ktstr-bulk") is the bulk port.
//
// A device never decodes its transport's registers: a transport
// (vmm/virtio/legacypci, vmm/virtio/mmio) owns the register file
// (feature selection, device status, queue selection and placement,
// interrupt status), checks what the guest writes there, and calls the
// Device's methods: Activate once the driver is ready, Notify for each
// queue notification, Reset. The device raises its interrupt through the
// Interrupt its transport hands it. A third transport implements the
// same calls; a second device implements Device.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it is the tap: every descriptor chain the guest driver makes
// available on the bulk port's transmit queue becomes one delivery,
// handed unchanged to the coordinator, which writes it to the trace and
// feeds it to the Assembler. Everything the guest controls (ring
// indices, descriptor addresses, lengths and links, queue placement)
// is checked before use; a guest that breaks the rules only breaks its
// own device.
package virtio
