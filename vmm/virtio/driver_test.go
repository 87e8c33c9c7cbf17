package virtio

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/vmm/guestmem"
)

// testMemSize is the fake guest memory of the tests: 1 MiB at address 0.
const testMemSize = 1 << 20

func newTestMem(t testing.TB) *guestmem.Memory {
	t.Helper()
	m, err := guestmem.New(guestmem.Region{GPA: 0, Data: make([]byte, testMemSize)})
	require.NoError(t, err)
	return m
}

// ring is the driver's view of one queue in fake guest memory.
type ring struct {
	mem                     *guestmem.Memory
	size                    uint16
	descAt, availAt, usedAt uint64
	availIdx                uint16
	lastUsed                uint16
}

// newRing is the driver's view of a queue in the legacy layout at pfn.
func newRing(mem *guestmem.Memory, size uint16, pfn uint32) *ring {
	base := uint64(pfn) * LegacyAlign
	return newSplitRing(mem, size, base, base+16*uint64(size), base+usedOffset(size))
}

// newSplitRing is the driver's view of a queue placed part by part.
func newSplitRing(mem *guestmem.Memory, size uint16, desc, avail, used uint64) *ring {
	return &ring{mem: mem, size: size, descAt: desc, availAt: avail, usedAt: used}
}

func (r *ring) desc(i uint16) uint64 { return r.descAt + 16*uint64(i) }
func (r *ring) avail() uint64        { return r.availAt }
func (r *ring) used() uint64         { return r.usedAt }

// setDesc writes descriptor i.
func (r *ring) setDesc(t testing.TB, i uint16, addr uint64, length uint32, flags, next uint16) {
	t.Helper()
	var d [16]byte
	binary.LittleEndian.PutUint64(d[0:], addr)
	binary.LittleEndian.PutUint32(d[8:], length)
	binary.LittleEndian.PutUint16(d[12:], flags)
	binary.LittleEndian.PutUint16(d[14:], next)
	require.NoError(t, r.mem.Write(r.desc(i), d[:]))
}

// offer makes the chain at head available.
func (r *ring) offer(t testing.TB, head uint16) {
	t.Helper()
	require.NoError(t, r.mem.PutUint16(r.avail()+4+2*uint64(r.availIdx%r.size), head))
	r.availIdx++
	require.NoError(t, r.mem.PutUint16(r.avail()+2, r.availIdx))
}

// setAvailIdx sets the available index to any value, as a buggy or
// hostile driver might.
func (r *ring) setAvailIdx(t testing.TB, idx uint16) {
	t.Helper()
	r.availIdx = idx
	require.NoError(t, r.mem.PutUint16(r.avail()+2, idx))
}

// usedEntry is one element of the used ring.
type usedEntry struct {
	ID  uint32
	Len uint32
}

// takeUsed returns the used entries the device added since the last call.
func (r *ring) takeUsed(t testing.TB) []usedEntry {
	t.Helper()
	idx, err := r.mem.Uint16(r.used() + 2)
	require.NoError(t, err)
	var out []usedEntry
	for ; r.lastUsed != idx; r.lastUsed++ {
		e := r.used() + 4 + 8*uint64(r.lastUsed%r.size)
		id, err := r.mem.Uint32(e)
		require.NoError(t, err)
		n, err := r.mem.Uint32(e + 4)
		require.NoError(t, err)
		out = append(out, usedEntry{id, n})
	}
	return out
}

// driver is a minimal console driver over a Console, the way the test
// guest and Linux drive it, talking to the device through the Device
// calls a transport makes (the transports' own tests check their
// registers); queues use the legacy layout.
type driver struct {
	t      testing.TB
	c      *Console
	mem    *guestmem.Memory
	rings  map[int]*ring
	queues []*Queue
	irqs   *irqCount
}

// irqCount is an Interrupt that counts the causes signalled.
type irqCount struct {
	n      int
	causes Cause
}

func (i *irqCount) Signal(c Cause) { i.n++; i.causes |= c }

// Queue page frames and buffer area of the fake driver.
const (
	drvQueuePFN0 = 0x10 // queue q at page 0x10 + 8q
	drvBufBase   = 0x80000
)

func newDriver(t testing.TB, cfg ConsoleConfig) *driver {
	t.Helper()
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 16
	}
	c, err := NewConsole(cfg)
	require.NoError(t, err)
	return &driver{t: t, c: c, mem: newTestMem(t), rings: map[int]*ring{}, irqs: &irqCount{}}
}

// setup resets the device, places every queue and activates the device
// with features, as a transport does once the driver sets DRIVER_OK.
func (d *driver) setup(features uint64) {
	d.c.Reset()
	d.queues = nil
	for q, max := range d.c.QueueMaxSizes() {
		qq, err := NewQueue(d.mem, max)
		require.NoError(d.t, err)
		pfn := uint32(drvQueuePFN0 + 8*q)
		// Fresh rings, as a driver allocates them: zeroed.
		require.NoError(d.t, d.mem.Write(uint64(pfn)*LegacyAlign, make([]byte, LegacyLayoutSize(max))))
		require.NoError(d.t, qq.SetPFN(pfn))
		d.queues = append(d.queues, qq)
		d.rings[q] = newRing(d.mem, max, pfn)
	}
	require.NoError(d.t, d.c.Activate(Activation{Features: features & d.c.Features(), Queues: d.queues, Interrupt: d.irqs}))
}

// notify notifies queue q.
func (d *driver) notify(q int) { d.c.Notify(q) }

// buf returns the guest address of scratch buffer i (4 KiB each).
func buf(i int) uint64 { return drvBufBase + 4096*uint64(i) }

// send places data in buffer bi as one readable descriptor di of queue q
// and notifies.
func (d *driver) send(q int, di uint16, bi int, data []byte) {
	require.NoError(d.t, d.mem.Write(buf(bi), data))
	r := d.rings[q]
	r.setDesc(d.t, di, buf(bi), uint32(len(data)), 0, 0)
	r.offer(d.t, di)
	d.notify(q)
}

// control sends a control message.
func (d *driver) control(id uint32, event, value uint16) {
	m := binary.LittleEndian.AppendUint32(nil, id)
	m = binary.LittleEndian.AppendUint16(m, event)
	m = binary.LittleEndian.AppendUint16(m, value)
	d.send(ctrlTXQueue, 0, 0, m)
	require.Len(d.t, d.rings[ctrlTXQueue].takeUsed(d.t), 1)
}

// postRX offers n writable 4 KiB buffers (descriptors 0..n-1, scratch
// buffers from first) on queue q.
func (d *driver) postRX(q int, first, n int) {
	r := d.rings[q]
	for i := range n {
		r.setDesc(d.t, uint16(i), buf(first+i), 4096, DescFWrite, 0)
		r.offer(d.t, uint16(i))
	}
	d.notify(q)
}

// ctrlMsg is a decoded control message.
type ctrlMsg struct {
	ID    uint32
	Event uint16
	Value uint16
	Extra string
}

// takeControl returns the control messages the device placed in the
// control receive buffers posted by postRX(ctrlRXQueue, 10, n).
func (d *driver) takeControl() []ctrlMsg {
	var out []ctrlMsg
	for _, e := range d.rings[ctrlRXQueue].takeUsed(d.t) {
		b := make([]byte, e.Len)
		require.NoError(d.t, d.mem.Read(buf(10+int(e.ID)), b))
		require.GreaterOrEqual(d.t, len(b), ControlSize)
		out = append(out, ctrlMsg{
			ID:    binary.LittleEndian.Uint32(b),
			Event: binary.LittleEndian.Uint16(b[4:]),
			Value: binary.LittleEndian.Uint16(b[6:]),
			Extra: string(b[8:]),
		})
		// Re-post the buffer as the driver does.
		d.rings[ctrlRXQueue].offer(d.t, uint16(e.ID))
	}
	return out
}

// bringUp negotiates MULTIPORT and opens port 1 the way the test guest
// does, checking the device's side of the handshake.
func (d *driver) bringUp() {
	d.setup(ConsoleFMultiport)
	d.postRX(ctrlRXQueue, 10, 8)
	d.control(0xffffffff, CtrlDeviceReady, 1)
	require.Equal(d.t, []ctrlMsg{{0, CtrlDeviceAdd, 1, ""}, {1, CtrlDeviceAdd, 1, ""}}, d.takeControl())
	d.control(BulkPort, CtrlPortReady, 1)
	require.Equal(d.t, []ctrlMsg{{1, CtrlPortName, 1, BulkPortName}, {1, CtrlPortOpen, 1, ""}}, d.takeControl())
	d.control(BulkPort, CtrlPortOpen, 1)
}
