package legacy

import (
	"sync"
	"time"
)

// The CMOS index and data ports.
const (
	CMOSBase  = 0x70
	CMOSPorts = 2
	cmosIndex = 0 // offsets from CMOSBase
	cmosData  = 1
)

// CMOS is the battery-backed CMOS of a PC as far as Linux reads it: the
// real-time clock, reporting the host's current UTC time in BCD, never
// updating (so never "update in progress"), and every other byte 0. It
// is a bus.Device at CMOSBase; its methods are safe for concurrent use.
type CMOS struct {
	mu    sync.Mutex
	index uint8
	now   func() time.Time
}

// NewCMOS returns the CMOS; now, if nil, is time.Now.
func NewCMOS(now func() time.Time) *CMOS {
	if now == nil {
		now = time.Now
	}
	return &CMOS{now: now}
}

// Read reads the data port: every byte of p is the register the index
// names. The index port reads as all ones.
func (c *CMOS) Read(off uint64, p []byte) {
	if off != cmosData {
		for i := range p {
			p[i] = 0xff
		}
		return
	}
	c.mu.Lock()
	idx := c.index
	c.mu.Unlock()
	now := c.now().UTC()
	for i := range p {
		p[i] = cmosRegister(idx, now)
	}
}

// Write selects a register through the index port (bit 7, the NMI
// mask, is dropped); writes to the data port are ignored, so the guest
// cannot set the clock.
func (c *CMOS) Write(off uint64, p []byte) {
	if off != cmosIndex || len(p) == 0 {
		return
	}
	c.mu.Lock()
	c.index = p[0] & 0x7f
	c.mu.Unlock()
}

// cmosRegister returns CMOS register idx at time now.
func cmosRegister(idx uint8, now time.Time) byte {
	bcd := func(v int) byte { return byte(v/10<<4 | v%10) }
	switch idx {
	case 0x00:
		return bcd(now.Second())
	case 0x02:
		return bcd(now.Minute())
	case 0x04:
		return bcd(now.Hour())
	case 0x06:
		return bcd(int(now.Weekday()) + 1)
	case 0x07:
		return bcd(now.Day())
	case 0x08:
		return bcd(int(now.Month()))
	case 0x09:
		return bcd(now.Year() % 100)
	case 0x32:
		return bcd(now.Year() / 100)
	case 0x0a:
		return 0x26 // 32.768 kHz base, 1024 Hz rate, no update in progress
	case 0x0b:
		return 0x02 // 24-hour, BCD
	case 0x0d:
		return 0x80 // the RTC's power is good
	}
	return 0
}
