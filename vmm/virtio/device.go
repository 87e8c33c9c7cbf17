package virtio

// Device types (virtio 1.2 §5), as Device.Type returns them.
const (
	IDNet     = 1
	IDBlock   = 2
	IDConsole = 3
	IDRNG     = 4
)

// Device status bits (virtio 1.2 §2.1), the register every transport
// has in its own place.
const (
	StatusAcknowledge = 1
	StatusDriver      = 2
	StatusDriverOK    = 4
	StatusFeaturesOK  = 8
	StatusNeedsReset  = 64
	StatusFailed      = 128
)

// FVersion1 is VIRTIO_F_VERSION_1 (feature bit 32): the device follows
// virtio 1.0 or later. It is a transport feature: the virtio-mmio
// transport (version 2) offers it and requires it, the legacy virtio-pci
// transport cannot express it (its feature register has 32 bits).
const FVersion1 = 1 << 32

// Cause is why a device interrupts its driver; the values are the bits
// of the legacy ISR and of virtio-mmio's InterruptStatus alike.
type Cause uint32

// Interrupt causes.
const (
	CauseUsedBuffer   Cause = 1 // a queue has used buffers
	CauseConfigChange Cause = 2 // the device configuration changed
)

// Interrupt is how a device tells its driver that something happened.
// Its transport implements it: it records the cause where the driver
// reads it (ISR, InterruptStatus) and raises the interrupt line. Signal
// may be called with the device's own lock held, from any goroutine; it
// never calls back into the device.
type Interrupt interface {
	Signal(Cause)
}

// Activation is what a transport hands a device when the driver has
// finished setting it up.
type Activation struct {
	// Features are the features both sides agreed on: those the device
	// offered (Device.Features, and the transport's own such as
	// FVersion1) that the driver acknowledged.
	Features uint64
	// Queues holds one queue per entry of Device.QueueMaxSizes, in order.
	// A queue the driver did not place is not Ready; the device must
	// leave it alone. A transport changes no queue while the device is
	// active: the device serialises its own use of them.
	Queues []*Queue
	// Interrupt raises the device's interrupt.
	Interrupt Interrupt
}

// Device is a virtio device as a transport drives it: what it offers
// (type, features, queues, configuration space) and what the driver
// does to it (activation, queue notifications, reset). Its methods are
// called by the transport, one at a time, from vCPU threads; a device
// with host-side users (the console's bulk port) serialises itself.
type Device interface {
	// Type returns the virtio device type (IDConsole, …).
	Type() uint32
	// Features returns the device-specific feature bits it offers.
	Features() uint64
	// QueueMaxSizes returns, for each of its queues, the most entries
	// the queue may have (a power of two).
	QueueMaxSizes() []uint16
	// ConfigSize returns the size of its configuration space in bytes.
	ConfigSize() int
	// ReadConfig reads len(p) bytes of the configuration space at off;
	// the transport has checked that off+len(p) ≤ ConfigSize.
	ReadConfig(off int, p []byte)
	// WriteConfig writes p into the configuration space at off (checked
	// as for ReadConfig); fields the driver may not write are left alone.
	WriteConfig(off int, p []byte)
	// Activate starts the device: the driver has negotiated a.Features
	// and placed its queues. The device processes whatever the driver
	// already made available. An error means the device cannot run as
	// set up; the transport then reports it as needing reset.
	Activate(a Activation) error
	// Notify tells an active device that the driver notified queue q
	// (the transport has checked 0 ≤ q < len(QueueMaxSizes)).
	Notify(q int)
	// Reset returns the device to its state before Activate. The
	// transport resets the queues itself.
	Reset()
	// Err returns the guest error that broke the device (a malformed
	// descriptor chain, a ring index out of bounds), nil if none; the
	// transport shows it to the driver as DEVICE_NEEDS_RESET. Reset
	// clears it.
	Err() error
}
