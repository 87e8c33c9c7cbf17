// Package vmm holds the fuzz targets of the native VMM's device side
// (virtqueue_test.go): the split-virtqueue parser walking descriptor
// chains a guest wrote, and the virtio-console device model's MMIO
// registers.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) this is where the tap's bytes come from: a hostile guest
// controls every descriptor and register, and the device must neither
// panic nor touch memory outside the guest's. The package has no API:
// it is its tests.
package vmm
