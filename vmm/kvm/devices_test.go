//go:build linux && amd64

package kvm

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/vmm/guestmem"
	"github.com/ktstr/ktstr/vmm/legacy"
	"github.com/ktstr/ktstr/vmm/pci"
	"github.com/ktstr/ktstr/vmm/virtio"
	"github.com/ktstr/ktstr/vmm/virtio/legacypci"
	"github.com/ktstr/ktstr/vmm/virtio/mmio"
)

// fakeEnv is a device environment over 16 MiB of fake guest memory at
// 0, with interrupt lines that count their edges.
type fakeEnv struct {
	env    deviceEnv
	mem    *guestmem.Memory
	edges  map[uint32]int
	resets int
	serial bytes.Buffer
}

func newFakeEnv(t testing.TB) *fakeEnv {
	mem, err := guestmem.New(guestmem.Region{GPA: 0, Data: make([]byte, 16<<20)})
	require.NoError(t, err)
	f := &fakeEnv{mem: mem, edges: map[uint32]int{}}
	f.env = deviceEnv{
		mem: mem,
		interrupt: func(gsi uint32) (func(), error) {
			return func() { f.edges[gsi]++ }, nil
		},
		serial: &f.serial,
		reset:  func() { f.resets++ },
	}
	return f
}

func r32(read func(uint64, []byte), addr uint64) uint32 {
	var b [4]byte
	read(addr, b[:])
	return binary.LittleEndian.Uint32(b[:])
}

// TestDeviceMap: the legacy devices sit at their ports whatever the
// transport, and the console is where its transport puts it, nowhere
// else.
func TestDeviceMap(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr, func(t *testing.T) {
			f := newFakeEnv(t)
			d, err := newDeviceMap(f.env, tr, 16)
			require.NoError(t, err)
			var names []string
			for _, r := range d.pio.Ranges() {
				names = append(names, r.Name)
			}
			assert.Equal(t, []string{"i8042", "cmos", "uart (ttyS0)"}, names, "by port: 0x64, 0x70, 0x3f8")

			d.pio.Write(legacy.COM1Base, []byte{'k'})
			assert.Equal(t, "k", f.serial.String(), "the UART at 0x3f8")
			d.pio.Write(legacy.CMOSBase, []byte{0x0b})
			p := []byte{0}
			d.pio.Read(legacy.CMOSBase+1, p)
			assert.Equal(t, byte(0x02), p[0], "CMOS status B at 0x71")
			d.pio.Write(legacy.I8042CommandPort, []byte{0xfe})
			assert.Equal(t, 1, f.resets, "the i8042's reset line")

			d.pio.Write(pci.ConfigAddressPort, binary.LittleEndian.AppendUint32(nil, 1<<31|consoleSlot<<11))
			pciID := r32(d.pio.Read, pci.ConfigDataPort)
			magic := r32(d.mmio.Read, mmioBase)
			switch tr {
			case TransportPCI:
				assert.Equal(t, uint32(0x10031af4), pciID, "the transitional console in slot 1")
				assert.Equal(t, uint32(0xffffffff), magic, "nothing at the MMIO window")
				assert.Empty(t, d.layout.cmdline)
				assert.Equal(t, []uint8{consoleSlot}, []uint8{d.layout.pciIRQs[0].Slot})
			case TransportMMIO:
				assert.Equal(t, uint32(0xffffffff), pciID, "slot 1 empty")
				assert.Equal(t, uint32(mmio.Magic), magic, "the virtio-mmio window at 0xd0000000")
				assert.Equal(t, "virtio_mmio.device=4K@0xd0000000:5", d.layout.cmdline)
				assert.Empty(t, d.layout.pciIRQs)
			}
		})
	}
	_, err := newDeviceMap(newFakeEnv(t).env, "ccw", 16)
	assert.ErrorContains(t, err, `transport "ccw"`)
}

// guestDriver is the test guest's driver in Go: it finds the console
// through the buses as the guest does, places the bulk transmit queue,
// and sends one frame per delivery with one notify.
type guestDriver struct {
	d      *deviceMap
	mem    *guestmem.Memory
	notify func()
	idx    uint16
}

// Where the driver keeps its queue and frame.
const (
	drvQueue = 0x100000 // descriptors; the available ring at +0x100, the used ring at +0x1000
	drvFrame = 0x200000
	bulkTX   = 5
	drvSize  = 16
)

func newGuestDriver(t testing.TB, d *deviceMap, mem *guestmem.Memory, transport string) *guestDriver {
	g := &guestDriver{d: d, mem: mem}
	le := binary.LittleEndian
	switch transport {
	case TransportPCI:
		d.pio.Write(pci.ConfigAddressPort, le.AppendUint32(nil, 1<<31|consoleSlot<<11|pci.RegBAR0))
		io := uint64(r32(d.pio.Read, pci.ConfigDataPort) &^ 3)
		w := func(off uint64, p []byte) { d.pio.Write(io+off, p) }
		w(legacypci.RegStatus, []byte{0})
		w(legacypci.RegStatus, []byte{virtio.StatusAcknowledge | virtio.StatusDriver})
		w(legacypci.RegGuestFeatures, le.AppendUint32(nil, virtio.ConsoleFMultiport))
		w(legacypci.RegQueueSelect, le.AppendUint16(nil, bulkTX))
		w(legacypci.RegQueuePFN, le.AppendUint32(nil, drvQueue/virtio.LegacyAlign))
		w(legacypci.RegStatus, []byte{virtio.StatusAcknowledge | virtio.StatusDriver | virtio.StatusDriverOK})
		notify := le.AppendUint16(nil, bulkTX)
		g.notify = func() { d.pio.Write(io+legacypci.RegQueueNotify, notify) }
	case TransportMMIO:
		w := func(off uint64, v uint32) { d.mmio.Write(mmioBase+off, le.AppendUint32(nil, v)) }
		const ack, drv, fok, dok = virtio.StatusAcknowledge, virtio.StatusDriver, virtio.StatusFeaturesOK, virtio.StatusDriverOK
		w(mmio.RegStatus, 0)
		w(mmio.RegStatus, ack)
		w(mmio.RegStatus, ack|drv)
		w(mmio.RegDriverFeatures, virtio.ConsoleFMultiport)
		w(mmio.RegDriverFeaturesSel, 1)
		w(mmio.RegDriverFeatures, 1)
		w(mmio.RegStatus, ack|drv|fok)
		w(mmio.RegQueueSel, bulkTX)
		w(mmio.RegQueueNum, 128) // the device's maximum, so the legacy layout's offsets hold
		w(mmio.RegQueueDescLow, drvQueue)
		w(mmio.RegQueueDriverLow, drvQueue+16*128)
		w(mmio.RegQueueDeviceLow, drvQueue+virtio.LegacyAlign)
		w(mmio.RegQueueReady, 1)
		w(mmio.RegStatus, ack|drv|fok|dok)
		notify := le.AppendUint32(nil, bulkTX)
		g.notify = func() { d.mmio.Write(mmioBase+mmio.RegQueueNotify, notify) }
	}
	require.NoError(t, mem.Write(drvFrame, []byte("STIM\x06\x00\x00\x00crc.\x00\x00\x00\x00stim 0")))
	require.NoError(t, mem.PutUint64(drvQueue, drvFrame))
	require.NoError(t, mem.PutUint32(drvQueue+8, 22))
	return g
}

// send offers the frame's chain once and notifies: one delivery.
func (g *guestDriver) send() {
	avail := uint64(drvQueue + 16*128)
	g.mem.PutUint16(avail+4+2*uint64(g.idx%128), 0)
	g.idx++
	g.mem.PutUint16(avail+2, g.idx)
	g.notify()
}

// TestGuestDriver runs the Go driver over each transport: every notify
// is one delivery of the frame.
func TestGuestDriver(t *testing.T) {
	for _, tr := range transports() {
		t.Run(tr, func(t *testing.T) {
			f := newFakeEnv(t)
			d, err := newDeviceMap(f.env, tr, 128)
			require.NoError(t, err)
			g := newGuestDriver(t, d, f.mem, tr)
			for i := range 300 { // past the end of the 128-entry ring
				g.send()
				got, err := d.console.ReadDelivery()
				require.NoError(t, err, "delivery %d", i)
				require.Equal(t, 22, len(got.Data))
			}
			assert.NoError(t, d.console.Err())
			assert.Equal(t, 300, f.edges[consoleGSI], "one interrupt per used chain: the driver did not suppress them")
		})
	}
}

// BenchmarkDelivery is the VMM's own cost of one bulk delivery on each
// transport, without KVM: the notify's write through the bus and the
// transport, the device taking the chain and returning it, and the host
// reading the delivery. The VM exit that carries the notify comes on
// top (TestBulkDeliveryCost measures the whole on a real guest).
func BenchmarkDelivery(b *testing.B) {
	for _, tr := range transports() {
		b.Run(tr, func(b *testing.B) {
			f := newFakeEnv(b)
			d, err := newDeviceMap(f.env, tr, 128)
			require.NoError(b, err)
			g := newGuestDriver(b, d, f.mem, tr)
			b.ReportAllocs()
			for b.Loop() {
				g.send()
				if _, err := d.console.ReadDelivery(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
