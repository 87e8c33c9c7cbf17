package pci

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type recorder struct {
	reads, writes []uint64
}

func (r *recorder) IORead(bar int, off uint64, p []byte) {
	r.reads = append(r.reads, off)
	for i := range p {
		p[i] = byte(off) + byte(i)
	}
}

func (r *recorder) IOWrite(bar int, off uint64, p []byte) { r.writes = append(r.writes, off) }

func cfgAddr(slot, off uint32) []byte {
	return binary.LittleEndian.AppendUint32(nil, 1<<31|slot<<11|off)
}

func read32(b *Bus, slot, off uint32) uint32 {
	b.PortWrite(ConfigAddressPort, cfgAddr(slot, off))
	var p [4]byte
	b.PortRead(ConfigDataPort, p[:])
	return binary.LittleEndian.Uint32(p[:])
}

func write32(b *Bus, slot, off, v uint32) {
	b.PortWrite(ConfigAddressPort, cfgAddr(slot, off))
	b.PortWrite(ConfigDataPort, binary.LittleEndian.AppendUint32(nil, v))
}

func newTestBus(t *testing.T) (*Bus, *recorder) {
	b := NewBus()
	r := &recorder{}
	require.NoError(t, b.Add(1, Header{VendorID: 0x1af4, DeviceID: 0x1003, SubsystemVendorID: 0x1af4, SubsystemID: 3,
		Class: 0x078000, InterruptPin: 1, InterruptLine: 5, IOBARSize: [6]uint32{64}}, r))
	return b, r
}

func TestEnumeration(t *testing.T) {
	b, _ := newTestBus(t)
	assert.Equal(t, uint32(0x12378086), read32(b, 0, 0), "host bridge")
	assert.Equal(t, uint32(0x10031af4), read32(b, 1, 0))
	assert.Equal(t, uint32(0x00031af4), read32(b, 1, RegSubsystem))
	assert.Equal(t, uint32(0x07800000), read32(b, 1, RegRevisionClass))
	assert.Equal(t, uint32(0xffffffff), read32(b, 2, 0), "empty slot")
	assert.Equal(t, uint32(0x0105), read32(b, 1, RegInterruptLine)&0xffff)
	// Another bus or function: nothing.
	b.PortWrite(ConfigAddressPort, binary.LittleEndian.AppendUint32(nil, 1<<31|1<<16))
	var p [4]byte
	b.PortRead(ConfigDataPort, p[:])
	assert.Equal(t, uint32(0xffffffff), binary.LittleEndian.Uint32(p[:]))
	// Address register reads back; disabled: nothing.
	b.PortWrite(ConfigAddressPort, cfgAddr(1, 0)[:4])
	b.PortRead(ConfigAddressPort, p[:])
	assert.Equal(t, uint32(1<<31|1<<11), binary.LittleEndian.Uint32(p[:]))
	b.PortWrite(ConfigAddressPort, []byte{0, 0, 0, 0})
	b.PortRead(ConfigDataPort, p[:])
	assert.Equal(t, uint32(0xffffffff), binary.LittleEndian.Uint32(p[:]))
}

func TestByteAndWordConfigAccess(t *testing.T) {
	b, _ := newTestBus(t)
	b.PortWrite(ConfigAddressPort, cfgAddr(1, 0))
	var w [2]byte
	b.PortRead(ConfigDataPort+2, w[:])
	assert.Equal(t, uint16(0x1003), binary.LittleEndian.Uint16(w[:]), "device ID through 0xcfe")
	var one [1]byte
	b.PortRead(ConfigDataPort+3, one[:])
	assert.Equal(t, byte(0x10), one[0])
}

func TestBARDecodingAndSizing(t *testing.T) {
	b, r := newTestBus(t)
	bar := read32(b, 1, RegBAR0)
	require.Equal(t, uint32(1), bar&1, "I/O BAR")
	base := uint16(bar &^ 3)
	got, ok := b.BAR(1, 0)
	require.True(t, ok)
	assert.Equal(t, base, got)

	var p [2]byte
	require.True(t, b.PortRead(base+18, p[:]))
	assert.Equal(t, []uint64{18}, r.reads)
	require.True(t, b.PortWrite(base+16, p[:]))
	assert.Equal(t, []uint64{16}, r.writes)
	assert.False(t, b.PortRead(base+63, p[:]), "an access running past the BAR")
	assert.False(t, b.PortRead(base+64, p[:1]))

	// Sizing: all ones reads back the size mask.
	write32(b, 1, RegBAR0, 0xffffffff)
	assert.Equal(t, uint32(0xffc1), read32(b, 1, RegBAR0))
	write32(b, 1, RegBAR0, 0x1234_e003)
	assert.Equal(t, uint32(0xe001), read32(b, 1, RegBAR0), "low bits and bits above 16 are not writable")
	_, ok = b.BAR(1, 0)
	assert.True(t, ok)
	assert.True(t, b.PortRead(0xe000, p[:]), "the BAR moved")
	assert.False(t, b.PortRead(base, p[:]), "and left its old place")

	// Disabling I/O decoding hides the BAR; the rest of the command
	// register's bits are read-only.
	write32(b, 1, RegCommand, 0xffff0000)
	assert.Equal(t, uint32(0), read32(b, 1, RegCommand)&0xffff)
	assert.False(t, b.PortRead(0xe000, p[:]))
	write32(b, 1, RegCommand, 0xffff)
	assert.Equal(t, uint32(commandWritable), read32(b, 1, RegCommand)&0xffff)
}

func TestIdentityIsReadOnly(t *testing.T) {
	b, _ := newTestBus(t)
	for _, off := range []uint32{0, RegRevisionClass, RegSubsystem, 0x24, 0x40, 0xfc} {
		before := read32(b, 1, off)
		write32(b, 1, off, 0x5a5a5a5a)
		assert.Equal(t, before, read32(b, 1, off), "offset %#x", off)
	}
	write32(b, 1, RegInterruptLine, 0x0b)
	assert.Equal(t, uint32(0x010b), read32(b, 1, RegInterruptLine)&0xffff, "the line is writable, the pin is not")
	write32(b, 0, RegBAR0, 0xffffffff)
	assert.Equal(t, uint32(0), read32(b, 0, RegBAR0), "the host bridge has no BAR")
}

func TestConfigPortsWinOverBARs(t *testing.T) {
	b, r := newTestBus(t)
	write32(b, 1, RegBAR0, 0xcc0)
	assert.Equal(t, uint32(0xcc1), read32(b, 1, RegBAR0))
	// 0xcf8 lies in 0xcc0..0xcff, yet stays the address register.
	b.PortWrite(ConfigAddressPort, cfgAddr(1, 0))
	assert.Empty(t, r.writes)
	assert.Equal(t, uint32(0x10031af4), read32(b, 1, 0))
}

func TestAddChecks(t *testing.T) {
	b := NewBus()
	assert.Error(t, b.Add(0, Header{}, &recorder{}), "slot of the host bridge")
	assert.Error(t, b.Add(32, Header{}, &recorder{}))
	assert.Error(t, b.Add(2, Header{IOBARSize: [6]uint32{48}}, &recorder{}), "not a power of two")
	require.NoError(t, b.Add(2, Header{IOBARSize: [6]uint32{32}}, &recorder{}))
	assert.Error(t, b.Add(2, Header{}, &recorder{}), "taken")
}

// TestDefaultDecoder: as the port bus's default, the bus answers its own
// ports and its BARs, and ports nothing claims read as all ones.
func TestDefaultDecoder(t *testing.T) {
	b, rec := newTestBus(t)
	base, ok := b.BAR(1, 0)
	require.True(t, ok)
	p := make([]byte, 2)
	b.Read(uint64(base)+2, p)
	assert.Equal(t, []byte{2, 3}, p, "a BAR access reaches the device")
	b.Write(uint64(base)+4, []byte{0})
	assert.Equal(t, []uint64{4}, rec.writes)
	b.Read(0x80, p)
	assert.Equal(t, []byte{0xff, 0xff}, p, "nothing at the port")
	b.Read(0x10000, p)
	assert.Equal(t, []byte{0xff, 0xff}, p, "past the 64 KiB of I/O space")
	b.Write(ConfigAddressPort, cfgAddr(0, 0))
	q := make([]byte, 4)
	b.Read(ConfigDataPort, q)
	assert.Equal(t, uint32(0x12378086), binary.LittleEndian.Uint32(q), "the host bridge through the configuration ports")
}
