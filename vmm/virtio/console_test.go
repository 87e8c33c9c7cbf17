package virtio

import (
	"bytes"
	"encoding/binary"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConsoleDevice(t *testing.T) {
	c, err := NewConsole(ConsoleConfig{QueueSize: 64})
	require.NoError(t, err)
	assert.Equal(t, uint32(IDConsole), c.Type())
	assert.Equal(t, uint64(ConsoleFMultiport), c.Features())
	assert.Equal(t, []uint16{64, 64, 64, 64, 64, 64}, c.QueueMaxSizes(), "port 0, control, port 1: two queues each")
	require.Equal(t, 12, c.ConfigSize())
	cfg := make([]byte, 12)
	c.ReadConfig(0, cfg)
	assert.Equal(t, uint32(NumPorts), binary.LittleEndian.Uint32(cfg[4:]), "max_nr_ports")
	c.WriteConfig(4, []byte{9, 9, 9, 9})
	c.ReadConfig(4, cfg[:4])
	assert.Equal(t, uint32(NumPorts), binary.LittleEndian.Uint32(cfg), "the configuration is read-only")
	for _, size := range []uint16{3, 100} {
		_, err := NewConsole(ConsoleConfig{QueueSize: size})
		assert.Error(t, err, "queue size %d", size)
	}
	assert.Error(t, c.Activate(Activation{Queues: make([]*Queue, 2)}), "activated with too few queues")
}

func TestConsoleInterruptsUnlessSuppressed(t *testing.T) {
	d := newDriver(t, ConsoleConfig{})
	d.bringUp()
	assert.NotZero(t, d.irqs.n)
	assert.Equal(t, CauseUsedBuffer, d.irqs.causes)
	assert.Equal(t, uint64(d.irqs.n), d.c.Stats().Interrupts)

	// A driver that polls (VRING_AVAIL_F_NO_INTERRUPT) gets none.
	before := d.irqs.n
	tx := d.rings[txQueue(BulkPort)]
	require.NoError(t, d.mem.PutUint16(tx.avail(), AvailFNoInterrupt))
	d.send(txQueue(BulkPort), 0, 1, []byte("quiet"))
	assert.Len(t, tx.takeUsed(t), 1, "the chain was used")
	assert.Equal(t, before, d.irqs.n, "without an interrupt")
}

// TestConsoleActivateTakesPending: what the driver made available
// before activation is taken when the device starts, as a transport
// activates at DRIVER_OK after the driver has queued buffers.
func TestConsoleActivateTakesPending(t *testing.T) {
	d := newDriver(t, ConsoleConfig{})
	d.bringUp()
	tx := d.rings[txQueue(BulkPort)]
	require.NoError(t, d.mem.Write(buf(1), []byte("early")))
	tx.setDesc(t, 0, buf(1), 5, 0, 0)
	tx.offer(t, 0)
	d.c.Reset()
	d.c.Notify(txQueue(BulkPort))
	assert.Zero(t, d.c.Stats().Deliveries, "an inactive device takes nothing")
	// Activate again over the same (still placed) queues.
	require.NoError(t, d.c.Activate(Activation{Features: ConsoleFMultiport, Queues: d.queues, Interrupt: d.irqs}))
	got, err := d.c.ReadDelivery()
	require.NoError(t, err)
	assert.Equal(t, "early", string(got.Data))
}

// TestConsoleBulkTap checks that each chain on the bulk transmit queue is
// one delivery holding its readable bytes in order.
func TestConsoleBulkTap(t *testing.T) {
	var stamp uint64
	d := newDriver(t, ConsoleConfig{Stamp: func() uint64 { stamp++; return stamp }})
	d.bringUp()
	tx := d.rings[txQueue(BulkPort)]
	require.NoError(t, d.mem.Write(buf(1), []byte("header..")))
	require.NoError(t, d.mem.Write(buf(2), []byte("payload")))
	tx.setDesc(t, 0, buf(1), 8, DescFNext, 1)
	tx.setDesc(t, 1, buf(2), 7, 0, 0)
	tx.offer(t, 0)
	d.send(txQueue(BulkPort), 2, 3, []byte("second"))
	assert.Equal(t, []usedEntry{{0, 0}, {2, 0}}, tx.takeUsed(t))

	first, err := d.c.ReadDelivery()
	require.NoError(t, err)
	assert.Equal(t, "header..payload", string(first.Data), "one chain, one delivery")
	assert.WithinDuration(t, time.Now(), first.Notified, time.Minute)
	second, err := d.c.ReadDelivery()
	require.NoError(t, err)
	assert.Equal(t, "second", string(second.Data))

	// The tap copied the bytes: the guest reusing its buffer changes
	// nothing delivered.
	require.NoError(t, d.mem.Write(buf(3), []byte("XXXXXX")))
	assert.Equal(t, "second", string(second.Data))
	st := d.c.Stats()
	assert.Equal(t, uint64(2), st.Deliveries)
	assert.Equal(t, uint64(21), st.DeliveredBytes)

	d.c.Close()
	_, err = d.c.ReadDelivery()
	assert.ErrorIs(t, err, io.EOF)
}

func TestConsoleBulkReadShortBuffer(t *testing.T) {
	d := newDriver(t, ConsoleConfig{})
	d.bringUp()
	d.send(txQueue(BulkPort), 0, 1, []byte("0123456789"))
	d.send(txQueue(BulkPort), 1, 2, []byte("ab"))
	p := make([]byte, 4)
	var got []string
	for range 4 {
		n, err := d.c.Bulk().Read(p)
		require.NoError(t, err)
		got = append(got, string(p[:n]))
	}
	assert.Equal(t, []string{"0123", "4567", "89", "ab"}, got, "a delivery is never merged with the next")
}

// TestConsoleBackpressure leaves chains in the ring while unread
// deliveries exceed MaxPendingTX, and takes them when the reader catches
// up.
func TestConsoleBackpressure(t *testing.T) {
	d := newDriver(t, ConsoleConfig{MaxPendingTX: 10})
	d.bringUp()
	tx := d.rings[txQueue(BulkPort)]
	d.send(txQueue(BulkPort), 0, 1, []byte("0123456789"))
	d.send(txQueue(BulkPort), 1, 2, []byte("abc"))
	assert.Len(t, tx.takeUsed(t), 1, "the second chain waits for the reader")
	first, err := d.c.ReadDelivery()
	require.NoError(t, err)
	assert.Equal(t, "0123456789", string(first.Data))
	assert.Len(t, tx.takeUsed(t), 1, "reading made room and took the waiting chain")
	second, err := d.c.ReadDelivery()
	require.NoError(t, err)
	assert.Equal(t, "abc", string(second.Data))
}

// TestConsoleBulkRX writes host bytes to the bulk port: nothing reaches
// the guest before it opens the port (Linux would discard it), then the
// bytes fill its receive buffers in order.
func TestConsoleBulkRX(t *testing.T) {
	d := newDriver(t, ConsoleConfig{})
	d.setup(ConsoleFMultiport)
	d.postRX(ctrlRXQueue, 10, 8)
	d.postRX(rxQueue(BulkPort), 20, 2)
	n, err := d.c.Bulk().Write([]byte("early"))
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	rx := d.rings[rxQueue(BulkPort)]
	assert.Empty(t, rx.takeUsed(t), "port not open: the bytes wait")

	d.control(0xffffffff, CtrlDeviceReady, 1)
	d.control(BulkPort, CtrlPortReady, 1)
	d.control(BulkPort, CtrlPortOpen, 1)
	used := rx.takeUsed(t)
	require.Equal(t, []usedEntry{{0, 5}}, used, "opening the port delivered the waiting bytes")
	got := make([]byte, 5)
	require.NoError(t, d.mem.Read(buf(20), got))
	assert.Equal(t, "early", string(got))

	big := bytes.Repeat([]byte{'z'}, 5000)
	_, err = d.c.Bulk().Write(big)
	require.NoError(t, err)
	assert.Equal(t, []usedEntry{{1, 4096}}, rx.takeUsed(t), "one buffer filled, the rest waits")
	d.postRX(rxQueue(BulkPort), 20, 1)
	assert.Equal(t, []usedEntry{{0, 5000 - 4096}}, rx.takeUsed(t))
	assert.Equal(t, uint64(5005), d.c.Stats().RXBytes)

	d.c.Close()
	_, err = d.c.Bulk().Write([]byte("late"))
	assert.ErrorIs(t, err, ErrClosed)
}

func TestConsolePort0Output(t *testing.T) {
	var out bytes.Buffer
	d := newDriver(t, ConsoleConfig{Output: &out})
	d.setup(0)
	d.send(txQueue(0), 0, 1, []byte("hvc0 says hi"))
	assert.Equal(t, "hvc0 says hi", out.String())
	d.send(ctrlTXQueue, 0, 2, []byte("12345678"))
	assert.Empty(t, d.rings[ctrlTXQueue].takeUsed(t), "control queues are dead without MULTIPORT")
}

func TestConsolePortReadyForConsolePort(t *testing.T) {
	d := newDriver(t, ConsoleConfig{})
	d.setup(ConsoleFMultiport)
	d.postRX(ctrlRXQueue, 10, 8)
	d.control(0, CtrlPortReady, 1)
	assert.Equal(t, []ctrlMsg{{0, CtrlConsolePort, 1, ""}, {0, CtrlPortOpen, 1, ""}}, d.takeControl())
	d.control(7, CtrlPortReady, 1)
	assert.Empty(t, d.takeControl(), "a port that does not exist")
	assert.Equal(t, uint64(1), d.c.Stats().ControlDropped)
}

func TestConsolePendingControlBounded(t *testing.T) {
	d := newDriver(t, ConsoleConfig{})
	d.setup(ConsoleFMultiport)
	for range maxPendingControl {
		d.control(0xffffffff, CtrlDeviceReady, 1) // two replies each, no buffers posted
	}
	assert.Len(t, d.c.ctrlOut, maxPendingControl)
	assert.Equal(t, uint64(maxPendingControl), d.c.Stats().ControlDropped)
}

// TestConsoleBrokenUntilReset breaks the device with a looping chain: it
// sets NEEDS_RESET, ignores the queue, and works again after a reset.
func TestConsoleBrokenUntilReset(t *testing.T) {
	d := newDriver(t, ConsoleConfig{})
	d.bringUp()
	tx := d.rings[txQueue(BulkPort)]
	tx.setDesc(t, 0, buf(1), 4, DescFNext, 0)
	tx.offer(t, 0)
	d.notify(txQueue(BulkPort))
	require.ErrorIs(t, d.c.Err(), ErrBadChain)
	d.send(txQueue(BulkPort), 1, 2, []byte("ignored"))
	assert.Zero(t, d.c.Stats().Deliveries, "a broken device takes nothing")

	d.bringUp() // resets first
	assert.NoError(t, d.c.Err())
	d.send(txQueue(BulkPort), 0, 1, []byte("works"))
	got, err := d.c.ReadDelivery()
	require.NoError(t, err)
	assert.Equal(t, "works", string(got.Data))
}

func TestControlLayout(t *testing.T) {
	// struct virtio_console_control: id u32, event u16, value u16.
	d := newDriver(t, ConsoleConfig{})
	d.setup(ConsoleFMultiport)
	d.postRX(ctrlRXQueue, 10, 1)
	d.control(0xffffffff, CtrlDeviceReady, 1)
	raw := make([]byte, 8)
	require.NoError(t, d.mem.Read(buf(10), raw))
	assert.Equal(t, uint32(0), binary.LittleEndian.Uint32(raw))
	assert.Equal(t, uint16(CtrlDeviceAdd), binary.LittleEndian.Uint16(raw[4:]))
	assert.Equal(t, uint16(1), binary.LittleEndian.Uint16(raw[6:]))
}

// TestConsolePendingTXBoundsHostMemory: with nobody reading the bulk
// port, a guest sending one-byte chains (one write(2) of one byte each)
// is throttled once the deliveries it left cost MaxPendingTX, each
// counted with DeliveryOverhead, and the host memory they hold stays
// within twice the budget (counting data alone, 8 MiB of one-byte
// deliveries held 576 MiB). The control: chains of 4 KiB still fill the
// budget almost wholly with data.
func TestConsolePendingTXBoundsHostMemory(t *testing.T) {
	const budget = DefaultMaxPendingTX
	for _, tc := range []struct {
		name    string
		size    int
		minHeld int // deliveries held when throttled, at least
		maxHeld int // and at most
	}{
		{"one-byte chains", 1, budget/DeliveryCost(1) - 1, budget/DeliveryCost(1) + 1},
		{"4 KiB chains (control)", 4096, budget / DeliveryCost(4096), budget/DeliveryCost(4096) + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t, ConsoleConfig{QueueSize: 128})
			d.bringUp()
			tx := d.rings[txQueue(BulkPort)]
			data := bytes.Repeat([]byte{'x'}, tc.size)
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			held := 0
			for i := 0; ; i++ {
				require.Less(t, i, budget+1, "the device never throttled the guest")
				d.send(txQueue(BulkPort), uint16(i%128), 1, data)
				if len(tx.takeUsed(t)) == 0 {
					break // left in the ring: throttled
				}
				held++
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			assert.GreaterOrEqual(t, held, tc.minHeld)
			assert.LessOrEqual(t, held, tc.maxHeld)
			grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			assert.Less(t, grown, int64(2*budget), "host heap held by %d pending deliveries", held)
			t.Logf("%d deliveries of %d bytes held, heap grew %d KiB", held, tc.size, grown>>10)

			// Reading one delivery makes room for the chain left waiting.
			_, err := d.c.ReadDelivery()
			require.NoError(t, err)
			assert.Len(t, tx.takeUsed(t), 1)
		})
	}
}

// TestConsolePendingRXBounded: a guest that never takes its receive
// side leaves host writes waiting; past MaxPendingRX a write waits for
// room instead of growing the buffer, and Close (the guest is gone)
// ends the wait with ErrClosed. The control: a guest that opens the port
// and posts buffers lets the waiting write through.
func TestConsolePendingRXBounded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		guest func(d *driver)
		err   error
	}{
		{"guest gone", func(d *driver) { d.c.Close() }, ErrClosed},
		{"guest reads (control)", func(d *driver) {
			d.control(BulkPort, CtrlPortOpen, 1)
			for range MaxPendingRX/4096 + 2 {
				d.postRX(rxQueue(BulkPort), 20, 1)
				d.rings[rxQueue(BulkPort)].takeUsed(d.t)
			}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDriver(t, ConsoleConfig{})
			d.setup(ConsoleFMultiport)
			d.postRX(ctrlRXQueue, 10, 8)
			d.control(0xffffffff, CtrlDeviceReady, 1)
			d.control(BulkPort, CtrlPortReady, 1)
			chunk := bytes.Repeat([]byte{'r'}, 4096)
			for written := 0; written <= MaxPendingRX; written += len(chunk) {
				_, err := d.c.Bulk().Write(chunk)
				require.NoError(t, err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := d.c.Bulk().Write(chunk)
				done <- err
			}()
			select {
			case err := <-done:
				t.Fatalf("a write past MaxPendingRX returned (%v) instead of waiting", err)
			case <-time.After(100 * time.Millisecond):
			}
			d.c.mu.Lock()
			assert.LessOrEqual(t, len(d.c.rx), MaxPendingRX+len(chunk), "the buffer never outgrows the bound by more than a write")
			d.c.mu.Unlock()
			tc.guest(d)
			select {
			case err := <-done:
				assert.ErrorIs(t, err, tc.err)
			case <-time.After(5 * time.Second):
				t.Fatal("the waiting write never returned")
			}
		})
	}
}
