package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Console feature bits (virtio spec 5.3.3).
const (
	ConsoleFSize       = 1 << 0
	ConsoleFMultiport  = 1 << 1
	ConsoleFEmergWrite = 1 << 2
)

// Console control events (virtio spec 5.3.6.2).
const (
	CtrlDeviceReady  = 0 // driver → device: the driver is ready (value 1) or failed
	CtrlDeviceAdd    = 1 // device → driver: port id exists
	CtrlDeviceRemove = 2 // device → driver: port id is gone
	CtrlPortReady    = 3 // driver → device: port id is ready (value 1) or failed
	CtrlConsolePort  = 4 // device → driver: port id is a console
	CtrlResize       = 5 // device → driver: console size changed
	CtrlPortOpen     = 6 // both ways: the sender's end of port id is open (value 1) or closed
	CtrlPortName     = 7 // device → driver: the bytes after the header name port id
)

// ControlSize is the size of a console control message header: id u32,
// event u16, value u16.
const ControlSize = 8

// Console ports and their queues in the multiport layout: port 0 uses
// queues 0 (receive) and 1 (transmit), the control queues are 2 (device
// → driver) and 3 (driver → device), port p ≥ 1 uses 2p+2 and 2p+3.
const (
	NumPorts    = 2 // port 0: console; port 1: the bulk port
	BulkPort    = 1
	ctrlRXQueue = 2
	ctrlTXQueue = 3
	numQueues   = 2 * (NumPorts + 1)
)

// BulkPortName is the name the bulk port is announced under; the guest
// agent finds its /dev/vportNpM by it.
const BulkPortName = "ktstr-bulk"

// Limits on what the host buffers on the guest's behalf.
const (
	DefaultMaxPendingTX = 8 << 20 // host bytes held by delivered bulk chains not yet read (DeliveryCost)
	MaxPendingRX        = 1 << 20 // host bytes waiting for guest receive buffers
	maxPendingControl   = 64      // control messages waiting for guest buffers
)

// DeliveryOverhead is what one held delivery costs the host beyond its
// data: the Delivery itself (56 bytes), twice over for the room the
// pending slice grows into, and the smallest allocation of its data. It
// is counted against MaxPendingTX with the data, so that a guest sending
// one-byte chains cannot make the host hold 72 bytes for every byte of
// the budget (8 MiB of one-byte deliveries held 576 MiB before).
const DeliveryOverhead = 128

// DeliveryCost is what a delivery of n bytes counts against
// MaxPendingTX while it waits for the reader.
func DeliveryCost(n int) int { return n + DeliveryOverhead }

// ErrClosed is returned by writes to the bulk port of a closed console.
var ErrClosed = errors.New("virtio console closed")

func rxQueue(port int) int {
	if port == 0 {
		return 0
	}
	return 2*port + 2
}

func txQueue(port int) int { return rxQueue(port) + 1 }

// ConsoleConfig configures a Console.
type ConsoleConfig struct {
	QueueSize uint16    // most entries per queue, a power of two; 0 means 128
	Output    io.Writer // receives port 0 (hvc0) output; nil discards it
	// Stamp, if set, returns a counter (the VMM's exit count) recorded
	// with each delivery.
	Stamp func() uint64
	// MaxPendingTX bounds the host memory held by deliveries not yet
	// read from the bulk port, each counted as DeliveryCost of its
	// length; beyond it the device leaves chains in the ring, so the
	// guest waits. 0 means DefaultMaxPendingTX.
	MaxPendingTX int
}

// Delivery is one descriptor chain the guest sent on the bulk port.
type Delivery struct {
	Data     []byte    // the chain's readable bytes, in order
	Notified time.Time // when the device took the chain (at the guest's notify)
	Stamp    uint64    // ConsoleConfig.Stamp at that moment
}

// ConsoleStats counts what the console saw.
type ConsoleStats struct {
	Notifies       uint64 // queue notifications
	Deliveries     uint64 // bulk transmit chains delivered
	DeliveredBytes uint64 // bytes in them
	EmptyChains    uint64 // bulk transmit chains with no readable bytes (returned, not delivered)
	RXBytes        uint64 // bytes placed in the bulk port's receive buffers
	ConsoleBytes   uint64 // port 0 output bytes
	ControlIn      uint64 // control messages from the driver
	ControlDropped uint64 // control messages dropped: malformed, or too many pending
	Interrupts     uint64 // interrupts raised
}

type portState struct {
	ready     bool // the driver sent PORT_READY
	guestOpen bool // the driver's end is open
}

// Console is a virtio console with the multiport feature: port 0 is a
// console, port 1 is the bulk port named BulkPortName. It is a Device;
// any transport drives it. Its methods are safe for concurrent use by
// vCPU threads (through its transport) and the host (Bulk).
type Console struct {
	mu       sync.Mutex
	cond     *sync.Cond // new delivery, receive space, close
	cfg      ConsoleConfig
	active   bool
	features uint64
	queues   []*Queue
	irq      Interrupt
	ports    [NumPorts]portState
	ctrlOut  [][]byte   // control messages waiting for guest buffers
	rx       []byte     // host bytes waiting for bulk receive buffers
	tx       []Delivery // bulk deliveries not yet read
	txBytes  int        // DeliveryCost of each, summed
	partial  []byte     // unread rest of a delivery Read could not hold
	// throttled is set when tap left chains in the ring because the
	// reader was behind; the next read takes them.
	throttled bool
	closed    bool
	err       error // the guest error that broke the device, until reset
	stats     ConsoleStats
}

// NewConsole returns a console device.
func NewConsole(cfg ConsoleConfig) (*Console, error) {
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 128
	}
	if !validSize(cfg.QueueSize, MaxQueueSize) {
		return nil, fmt.Errorf("virtio console: queue size %d is not a power of two in 1..%d", cfg.QueueSize, MaxQueueSize)
	}
	if cfg.MaxPendingTX <= 0 {
		cfg.MaxPendingTX = DefaultMaxPendingTX
	}
	if cfg.Output == nil {
		cfg.Output = io.Discard
	}
	c := &Console{cfg: cfg}
	c.cond = sync.NewCond(&c.mu)
	return c, nil
}

var _ Device = (*Console)(nil)

// Type returns IDConsole.
func (c *Console) Type() uint32 { return IDConsole }

// Features returns the one feature the console offers, multiport.
func (c *Console) Features() uint64 { return ConsoleFMultiport }

// QueueMaxSizes returns the sizes of the multiport layout's queues.
func (c *Console) QueueMaxSizes() []uint16 {
	s := make([]uint16, numQueues)
	for i := range s {
		s[i] = c.cfg.QueueSize
	}
	return s
}

// Stats returns the counters.
func (c *Console) Stats() ConsoleStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Err returns the guest error that stopped the device, nil if none. The
// device works again after the driver resets it.
func (c *Console) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// configSize is the size of struct virtio_console_config: cols, rows,
// max_nr_ports, emerg_wr.
const configSize = 12

// ConfigSize returns the size of the console's configuration space.
func (c *Console) ConfigSize() int { return configSize }

// ReadConfig reads the configuration: no console size, NumPorts ports,
// no emergency write.
func (c *Console) ReadConfig(off int, p []byte) {
	var b [configSize]byte
	binary.LittleEndian.PutUint32(b[4:], NumPorts)
	for i := range p {
		p[i] = 0
		if o := off + i; o >= 0 && o < configSize {
			p[i] = b[o]
		}
	}
}

// WriteConfig ignores the write: emerg_wr, the one writable field, is
// not offered (ConsoleFEmergWrite).
func (c *Console) WriteConfig(off int, p []byte) {}

// Activate starts the console on the driver's queues and takes what the
// driver already made available on them.
func (c *Console) Activate(a Activation) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(a.Queues) != numQueues {
		return fmt.Errorf("virtio console: activated with %d queues, want %d", len(a.Queues), numQueues)
	}
	c.active, c.features, c.queues, c.irq = true, a.Features, a.Queues, a.Interrupt
	for q := range numQueues {
		c.service(q)
	}
	return nil
}

// Notify handles the driver's notification of queue q.
func (c *Console) Notify(q int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.Notifies++
	c.service(q)
}

// Reset returns the device to its state before activation. Deliveries
// already taken and host bytes not yet received are kept: they belong
// to the streams, not to the device.
func (c *Console) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active, c.features, c.queues, c.irq = false, 0, nil, nil
	c.ports = [NumPorts]portState{}
	c.ctrlOut = nil
	c.throttled = false
	c.err = nil
}

// fail stops the device after a guest error; the transport shows it as
// DEVICE_NEEDS_RESET.
func (c *Console) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

func (c *Console) multiport() bool { return c.features&ConsoleFMultiport != 0 }

// service takes what queue q holds.
func (c *Console) service(q int) {
	if !c.active || c.err != nil || q < 0 || q >= len(c.queues) {
		return
	}
	if q >= ctrlRXQueue && !c.multiport() {
		return
	}
	var pushed bool
	switch q {
	case rxQueue(0):
		// Port 0 has no host input.
	case txQueue(0):
		pushed = c.drainConsole()
	case ctrlRXQueue:
		pushed = c.fillControl()
	case ctrlTXQueue:
		pushed = c.handleControl()
	case rxQueue(BulkPort):
		pushed = c.fillRX()
	case txQueue(BulkPort):
		pushed = c.tap()
	}
	if pushed {
		c.interrupt(c.queues[q])
	}
}

// interrupt tells the driver that q has used buffers, unless the driver
// asked not to be told.
func (c *Console) interrupt(q *Queue) {
	if c.irq != nil && q.NeedsInterrupt() {
		c.stats.Interrupts++
		c.irq.Signal(CauseUsedBuffer)
	}
}

// pop takes the next chain of queue qi, stopping the device on a guest
// error.
func (c *Console) pop(qi int) (Chain, bool) {
	if !c.active || c.err != nil {
		return Chain{}, false
	}
	q := c.queues[qi]
	if !q.Ready() {
		return Chain{}, false
	}
	ch, ok, err := q.Pop()
	if err != nil {
		c.fail(fmt.Errorf("queue %d: %w", qi, err))
		return Chain{}, false
	}
	return ch, ok
}

// push returns a chain of queue qi to the driver.
func (c *Console) push(qi int, head uint16, written int) bool {
	if err := c.queues[qi].Push(head, uint32(written)); err != nil {
		c.fail(fmt.Errorf("queue %d: %w", qi, err))
		return false
	}
	return true
}

// drainConsole writes port 0 output to the console writer.
func (c *Console) drainConsole() bool {
	pushed := false
	for {
		ch, ok := c.pop(txQueue(0))
		if !ok {
			return pushed
		}
		for _, b := range ch.Out {
			n, _ := c.cfg.Output.Write(b) // a full log must not stop the guest
			c.stats.ConsoleBytes += uint64(n)
		}
		pushed = c.push(txQueue(0), ch.Head, 0) || pushed
	}
}

// tap turns each available chain of the bulk transmit queue into one
// delivery, while the unread deliveries cost less than MaxPendingTX.
func (c *Console) tap() bool {
	now := time.Now()
	var stamp uint64
	if c.cfg.Stamp != nil {
		stamp = c.cfg.Stamp()
	}
	pushed := false
	c.throttled = false
	for {
		if c.txBytes >= c.cfg.MaxPendingTX {
			c.throttled = true
			break
		}
		ch, ok := c.pop(txQueue(BulkPort))
		if !ok {
			break
		}
		if n := ch.OutLen(); n > 0 {
			d := Delivery{Data: ch.AppendOut(make([]byte, 0, n)), Notified: now, Stamp: stamp}
			c.tx = append(c.tx, d)
			c.txBytes += DeliveryCost(n)
			c.stats.Deliveries++
			c.stats.DeliveredBytes += uint64(n)
		} else {
			c.stats.EmptyChains++
		}
		pushed = c.push(txQueue(BulkPort), ch.Head, 0) || pushed
	}
	if pushed {
		c.cond.Broadcast()
	}
	return pushed
}

// handleControl reads the driver's control messages.
func (c *Console) handleControl() bool {
	pushed := false
	for {
		ch, ok := c.pop(ctrlTXQueue)
		if !ok {
			break
		}
		var hdr [ControlSize]byte
		n := 0
		for _, b := range ch.Out {
			n += copy(hdr[n:], b)
		}
		c.stats.ControlIn++
		if n == ControlSize {
			c.control(binary.LittleEndian.Uint32(hdr[0:]), binary.LittleEndian.Uint16(hdr[4:]), binary.LittleEndian.Uint16(hdr[6:]))
		} else {
			c.stats.ControlDropped++
		}
		pushed = c.push(ctrlTXQueue, ch.Head, 0) || pushed
	}
	if c.fillControl() {
		c.interrupt(c.queues[ctrlRXQueue])
	}
	return pushed
}

// control acts on one control message from the driver.
func (c *Console) control(id uint32, event, value uint16) {
	if event == CtrlDeviceReady {
		if value == 1 {
			for p := range NumPorts {
				c.sendControl(uint32(p), CtrlDeviceAdd, 1, nil)
			}
		}
		return
	}
	if id >= NumPorts {
		c.stats.ControlDropped++
		return
	}
	port := &c.ports[id]
	switch event {
	case CtrlPortReady:
		if value != 1 {
			return
		}
		port.ready = true
		if id == 0 {
			c.sendControl(id, CtrlConsolePort, 1, nil)
		} else {
			c.sendControl(id, CtrlPortName, 1, []byte(BulkPortName))
		}
		c.sendControl(id, CtrlPortOpen, 1, nil) // the host end is always open
	case CtrlPortOpen:
		port.guestOpen = value == 1
		if id == BulkPort && port.guestOpen && c.fillRX() {
			c.interrupt(c.queues[rxQueue(BulkPort)])
		}
	default:
		c.stats.ControlDropped++
	}
}

// sendControl queues a control message for the driver.
func (c *Console) sendControl(id uint32, event, value uint16, extra []byte) {
	if len(c.ctrlOut) >= maxPendingControl {
		c.stats.ControlDropped++
		return
	}
	m := make([]byte, ControlSize, ControlSize+len(extra))
	binary.LittleEndian.PutUint32(m[0:], id)
	binary.LittleEndian.PutUint16(m[4:], event)
	binary.LittleEndian.PutUint16(m[6:], value)
	c.ctrlOut = append(c.ctrlOut, append(m, extra...))
}

// fillControl places pending control messages in the driver's control
// receive buffers, one message per chain.
func (c *Console) fillControl() bool {
	pushed := false
	for len(c.ctrlOut) > 0 {
		ch, ok := c.pop(ctrlRXQueue)
		if !ok {
			break
		}
		n := ch.WriteIn(c.ctrlOut[0])
		c.ctrlOut = c.ctrlOut[1:]
		pushed = c.push(ctrlRXQueue, ch.Head, n) || pushed
	}
	return pushed
}

// fillRX places host bytes in the bulk port's receive buffers once the
// driver has opened the port (Linux discards data for a closed port).
func (c *Console) fillRX() bool {
	if !c.ports[BulkPort].guestOpen {
		return false
	}
	pushed := false
	for len(c.rx) > 0 {
		ch, ok := c.pop(rxQueue(BulkPort))
		if !ok {
			break
		}
		n := ch.WriteIn(c.rx)
		c.rx = c.rx[n:]
		c.stats.RXBytes += uint64(n)
		pushed = c.push(rxQueue(BulkPort), ch.Head, n) || pushed
	}
	if len(c.rx) == 0 {
		c.rx = nil
	}
	if pushed {
		c.cond.Broadcast()
	}
	return pushed
}

// Close ends the bulk port: reads return the deliveries already taken,
// then io.EOF; writes fail with ErrClosed.
func (c *Console) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.cond.Broadcast()
}

// ReadDelivery returns the next bulk delivery, waiting for one. It
// returns io.EOF once the console is closed and every delivery was read.
func (c *Console) ReadDelivery() (Delivery, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.tx) == 0 && !c.closed {
		c.cond.Wait()
	}
	if len(c.tx) == 0 {
		return Delivery{}, io.EOF
	}
	d := c.tx[0]
	c.tx[0] = Delivery{}
	c.tx = c.tx[1:]
	c.txBytes -= DeliveryCost(len(d.Data))
	if c.throttled && !c.closed && c.tap() {
		// Chains left in the ring while the reader was behind.
		c.interrupt(c.queues[txQueue(BulkPort)])
	}
	return d, nil
}

// Bulk returns the bulk port as the host sees it: Read returns one
// delivery per call (the rest of a delivery longer than the buffer comes
// with the next Read, so use buffers of at least MaxChainBytes to keep
// deliveries whole) and io.EOF after Close; Write queues bytes for the
// guest's receive buffers.
func (c *Console) Bulk() io.ReadWriter { return bulkPort{c} }

type bulkPort struct{ c *Console }

func (b bulkPort) Read(p []byte) (int, error) {
	c := b.c
	c.mu.Lock()
	if len(c.partial) > 0 {
		n := copy(p, c.partial)
		c.partial = c.partial[n:]
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	d, err := c.ReadDelivery()
	if err != nil {
		return 0, err
	}
	n := copy(p, d.Data)
	if n < len(d.Data) {
		c.mu.Lock()
		c.partial = d.Data[n:]
		c.mu.Unlock()
	}
	return n, nil
}

// Write queues p for the guest, waiting while more than MaxPendingRX
// bytes are already waiting for the guest's receive buffers.
func (b bulkPort) Write(p []byte) (int, error) {
	c := b.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.rx) > MaxPendingRX && !c.closed {
		c.cond.Wait()
	}
	if c.closed {
		return 0, ErrClosed
	}
	c.rx = append(c.rx, p...)
	if c.fillRX() {
		c.interrupt(c.queues[rxQueue(BulkPort)])
	}
	return len(p), nil
}
