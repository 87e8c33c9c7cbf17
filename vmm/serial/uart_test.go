package serial

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestTransmit(t *testing.T) {
	var out bytes.Buffer
	u := New(&out, nil)
	assert.Equal(t, byte(lsrTHRE|lsrTEMT), u.Read(regLSR), "always ready to send")
	for _, c := range []byte("hi\n") {
		u.Write(regData, c)
	}
	assert.Equal(t, "hi\n", out.String())
	assert.Equal(t, uint64(3), u.Written())
	assert.Equal(t, byte(0), u.Read(regData), "nothing received")
}

func TestDivisorLatch(t *testing.T) {
	var out bytes.Buffer
	u := New(&out, nil)
	u.Write(regLCR, lcrDLAB|3)
	u.Write(regData, 1)
	u.Write(regIER, 0)
	assert.Equal(t, byte(1), u.Read(regData))
	assert.Empty(t, out.String(), "divisor writes are not output")
	u.Write(regLCR, 3)
	u.Write(regData, 'x')
	assert.Equal(t, "x", out.String())
}

// TestLoopbackProbe runs the check Linux's 8250 probe makes.
func TestLoopbackProbe(t *testing.T) {
	var out bytes.Buffer
	u := New(&out, nil)
	u.Write(regMCR, mcrLoop|0x0a)
	assert.Equal(t, byte(0x90), u.Read(regMSR)&0xf0)
	u.Write(regData, 'z')
	assert.Empty(t, out.String(), "loopback does not transmit")
	u.Write(regMCR, mcrOut2|mcrRTS|mcrDTR)
	assert.Equal(t, byte(msrDCD|msrDSR|msrCTS), u.Read(regMSR))
}

func TestTHREInterrupt(t *testing.T) {
	irqs := 0
	u := New(nil, func() { irqs++ })
	assert.Equal(t, byte(iirNoPending), u.Read(regIIR))
	u.Write(regIER, ierTHRE)
	assert.Equal(t, 1, irqs, "enabling THRE with an empty holding register raises it")
	assert.Equal(t, byte(iirTHRE), u.Read(regIIR))
	assert.Equal(t, byte(iirNoPending), u.Read(regIIR), "reading IIR acknowledged it")
	u.Write(regData, 'a')
	assert.Equal(t, 2, irqs)
	u.Write(regIER, 0)
	u.Write(regData, 'b')
	assert.Equal(t, 2, irqs, "masked")
	assert.Equal(t, byte(iirNoPending), u.Read(regIIR))
	u.Write(regIIR, 1) // enable FIFOs
	assert.Equal(t, byte(iirFIFO|iirNoPending), u.Read(regIIR))
	u.Write(regSCR, 0x42)
	assert.Equal(t, byte(0x42), u.Read(regSCR))
}
