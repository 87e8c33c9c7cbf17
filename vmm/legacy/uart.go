package legacy

import (
	"io"
	"sync"
)

// COM1 is the I/O base and IRQ of the first serial port, the guest's
// ttyS0.
const (
	COM1Base  = 0x3f8
	COM1IRQ   = 4
	UARTPorts = 8 // registers from the base
)

// Register offsets from the base.
const (
	regData = 0 // THR on write, RBR on read; DLL when DLAB is set
	regIER  = 1 // DLM when DLAB is set
	regIIR  = 2 // FCR on write
	regLCR  = 3
	regMCR  = 4
	regLSR  = 5
	regMSR  = 6
	regSCR  = 7
)

// Register bits.
const (
	ierTHRE      = 0x02
	iirNoPending = 0x01
	iirTHRE      = 0x02
	iirFIFO      = 0xc0
	lcrDLAB      = 0x80
	mcrDTR       = 0x01
	mcrRTS       = 0x02
	mcrOut1      = 0x04
	mcrOut2      = 0x08
	mcrLoop      = 0x10
	lsrTHRE      = 0x20
	lsrTEMT      = 0x40
	msrCTS       = 0x10
	msrDSR       = 0x20
	msrRI        = 0x40
	msrDCD       = 0x80
)

// UART is a transmit-only 8250/16550A, the guest's serial console:
// console output goes to the run's console log for people to read;
// frames never travel over it, and the guest never receives input. It
// is a bus.Device over its UARTPorts registers; its methods are safe for
// concurrent use.
type UART struct {
	mu          sync.Mutex
	out         io.Writer
	irq         func()
	ier, lcr    uint8
	mcr, scr    uint8
	fcr         uint8
	dll, dlm    uint8
	threPending bool // a transmitter-empty interrupt is pending
	written     uint64
}

// New returns a UART writing transmitted bytes to out (nil discards
// them) and calling irq, if not nil, to raise its interrupt (an edge).
func New(out io.Writer, irq func()) *UART {
	if out == nil {
		out = io.Discard
	}
	return &UART{out: out, irq: irq, dll: 12} // 9600 baud, like firmware leaves it
}

// Written returns the number of bytes transmitted.
func (u *UART) Written() uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.written
}

// Read handles a read at register off: each byte of p reads the
// register at its own offset (past the last one: all ones).
func (u *UART) Read(off uint64, p []byte) {
	for i := range p {
		p[i] = u.readReg(off + uint64(i))
	}
}

// Write handles a write at register off. Only the first byte counts: a
// wider OUT reaches the register at off with its low byte, as on the
// 8-bit ISA bus.
func (u *UART) Write(off uint64, p []byte) {
	if len(p) > 0 {
		u.writeReg(off, p[0])
	}
}

// readReg returns register off.
func (u *UART) readReg(off uint64) byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch off {
	case regData:
		if u.lcr&lcrDLAB != 0 {
			return u.dll
		}
		return 0 // no input
	case regIER:
		if u.lcr&lcrDLAB != 0 {
			return u.dlm
		}
		return u.ier
	case regIIR:
		fifo := uint8(0)
		if u.fcr&1 != 0 {
			fifo = iirFIFO
		}
		if u.threPending && u.ier&ierTHRE != 0 {
			u.threPending = false // reading IIR acknowledges THRE
			return fifo | iirTHRE
		}
		return fifo | iirNoPending
	case regLCR:
		return u.lcr
	case regMCR:
		return u.mcr
	case regLSR:
		return lsrTHRE | lsrTEMT // always ready to send; nothing received
	case regMSR:
		if u.mcr&mcrLoop != 0 {
			// Loopback: modem outputs come back as inputs (Linux's probe
			// checks this).
			var v uint8
			if u.mcr&mcrRTS != 0 {
				v |= msrCTS
			}
			if u.mcr&mcrDTR != 0 {
				v |= msrDSR
			}
			if u.mcr&mcrOut1 != 0 {
				v |= msrRI
			}
			if u.mcr&mcrOut2 != 0 {
				v |= msrDCD
			}
			return v
		}
		return msrDCD | msrDSR | msrCTS
	case regSCR:
		return u.scr
	}
	return 0xff
}

// writeReg writes v to register off.
func (u *UART) writeReg(off uint64, v byte) {
	u.mu.Lock()
	raise := false
	switch off {
	case regData:
		if u.lcr&lcrDLAB != 0 {
			u.dll = v
			break
		}
		if u.mcr&mcrLoop == 0 {
			n, _ := u.out.Write([]byte{v}) // a full log must not stop the guest
			u.written += uint64(n)
		}
		// The byte leaves at once, so the holding register is empty again.
		u.threPending = true
		raise = u.ier&ierTHRE != 0
	case regIER:
		if u.lcr&lcrDLAB != 0 {
			u.dlm = v
			break
		}
		was := u.ier
		u.ier = v & 0x0f
		if u.ier&ierTHRE != 0 && was&ierTHRE == 0 {
			u.threPending = true
			raise = true
		}
	case regIIR:
		u.fcr = v
	case regLCR:
		u.lcr = v
	case regMCR:
		u.mcr = v & 0x1f
	case regSCR:
		u.scr = v
	}
	irq := u.irq
	u.mu.Unlock()
	if raise && irq != nil {
		irq()
	}
}
