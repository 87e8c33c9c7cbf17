package legacy

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestTransmit(t *testing.T) {
	var out bytes.Buffer
	u := New(&out, nil)
	assert.Equal(t, byte(lsrTHRE|lsrTEMT), rd(u, regLSR), "always ready to send")
	for _, c := range []byte("hi\n") {
		wr(u, regData, c)
	}
	assert.Equal(t, "hi\n", out.String())
	assert.Equal(t, uint64(3), u.Written())
	assert.Equal(t, byte(0), rd(u, regData), "nothing received")
}

func TestDivisorLatch(t *testing.T) {
	var out bytes.Buffer
	u := New(&out, nil)
	wr(u, regLCR, lcrDLAB|3)
	wr(u, regData, 1)
	wr(u, regIER, 0)
	assert.Equal(t, byte(1), rd(u, regData))
	assert.Empty(t, out.String(), "divisor writes are not output")
	wr(u, regLCR, 3)
	wr(u, regData, 'x')
	assert.Equal(t, "x", out.String())
}

// TestLoopbackProbe runs the check Linux's 8250 probe makes.
func TestLoopbackProbe(t *testing.T) {
	var out bytes.Buffer
	u := New(&out, nil)
	wr(u, regMCR, mcrLoop|0x0a)
	assert.Equal(t, byte(0x90), rd(u, regMSR)&0xf0)
	wr(u, regData, 'z')
	assert.Empty(t, out.String(), "loopback does not transmit")
	wr(u, regMCR, mcrOut2|mcrRTS|mcrDTR)
	assert.Equal(t, byte(msrDCD|msrDSR|msrCTS), rd(u, regMSR))
}

func TestTHREInterrupt(t *testing.T) {
	irqs := 0
	u := New(nil, func() { irqs++ })
	assert.Equal(t, byte(iirNoPending), rd(u, regIIR))
	wr(u, regIER, ierTHRE)
	assert.Equal(t, 1, irqs, "enabling THRE with an empty holding register raises it")
	assert.Equal(t, byte(iirTHRE), rd(u, regIIR))
	assert.Equal(t, byte(iirNoPending), rd(u, regIIR), "reading IIR acknowledged it")
	wr(u, regData, 'a')
	assert.Equal(t, 2, irqs)
	wr(u, regIER, 0)
	wr(u, regData, 'b')
	assert.Equal(t, 2, irqs, "masked")
	assert.Equal(t, byte(iirNoPending), rd(u, regIIR))
	wr(u, regIIR, 1) // enable FIFOs
	assert.Equal(t, byte(iirFIFO|iirNoPending), rd(u, regIIR))
	wr(u, regSCR, 0x42)
	assert.Equal(t, byte(0x42), rd(u, regSCR))
}

// rd and wr access one register through the bus methods.
func rd(u *UART, off uint64) byte {
	var b [1]byte
	u.Read(off, b[:])
	return b[0]
}

func wr(u *UART, off uint64, v byte) { u.Write(off, []byte{v}) }

func TestUARTWideAccess(t *testing.T) {
	var out bytes.Buffer
	u := New(&out, nil)
	p := make([]byte, 2)
	u.Read(regLCR, p)
	assert.Equal(t, []byte{0, 0}, p, "LCR and MCR, one byte each")
	u.Write(regData, []byte{'a', 'b'})
	assert.Equal(t, "a", out.String(), "a 16-bit OUT sends its low byte")
	u.Read(regSCR, p)
	assert.Equal(t, byte(0xff), p[1], "past the last register")
}
