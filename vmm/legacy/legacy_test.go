package legacy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestCMOSClock(t *testing.T) {
	at := time.Date(2026, time.November, 23, 14, 5, 9, 0, time.FixedZone("CET", 3600))
	c := NewCMOS(func() time.Time { return at })
	read := func(idx byte) byte {
		c.Write(cmosIndex, []byte{idx | 0x80}) // the NMI-mask bit is dropped
		var b [1]byte
		c.Read(cmosData, b[:])
		return b[0]
	}
	tests := []struct {
		name string
		idx  byte
		want byte
	}{
		{"seconds", 0x00, 0x09},
		{"minutes", 0x02, 0x05},
		{"hours, UTC", 0x04, 0x13},
		{"weekday (Monday = 2)", 0x06, 0x02},
		{"day", 0x07, 0x23},
		{"month", 0x08, 0x11},
		{"year", 0x09, 0x26},
		{"century", 0x32, 0x20},
		{"status A: no update in progress", 0x0a, 0x26},
		{"status B: 24-hour BCD", 0x0b, 0x02},
		{"status D: power good", 0x0d, 0x80},
		{"anything else", 0x40, 0},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, read(tt.idx), tt.name)
	}
	p := []byte{0, 0}
	c.Read(cmosIndex, p)
	assert.Equal(t, []byte{0xff, 0xff}, p, "the index port reads as all ones")
	c.Write(cmosData, []byte{0x42})
	assert.Equal(t, byte(0x26), read(0x09), "the guest cannot set the clock")
}

func TestI8042Reset(t *testing.T) {
	resets := 0
	k := NewI8042(func() { resets++ })
	for _, v := range []byte{0x00, 0xaa, 0xfd, 0xff} {
		k.Write(0, []byte{v})
	}
	assert.Zero(t, resets, "commands other than pulse-reset")
	k.Write(0, []byte{0xfe})
	assert.Equal(t, 1, resets, "0xfe pulses the reset line")
	p := []byte{0}
	k.Read(0, p)
	assert.Equal(t, byte(0xff), p[0], "reads as no controller")
}
