// Package oracle restates, in plain code that shares nothing with
// dispatch/wire, the payload rows of the gate table (docs/protocol.md):
// the rules the payload and frame fuzz targets (fuzz/payloads_test.go,
// fuzz/frames) hold the production decoders to.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it is a second opinion on one step: whether Dispatch may
// accept a frame's payload.
package oracle

import (
	"encoding/binary"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// SnapshotRequestValid restates the SNRQ row of the gate table: exactly 72 bytes,
// kind 1 or 2, and a tag field that is valid UTF-8 up to its first NUL
// with only NULs after it.
func SnapshotRequestValid(p []byte) bool {
	if len(p) != wire.SnapshotRequestSize {
		return false
	}
	if kind := binary.LittleEndian.Uint32(p[4:]); kind != 1 && kind != 2 {
		return false
	}
	tag := p[8:]
	end := len(tag)
	for i, c := range tag {
		if c == 0 {
			end = i
			break
		}
	}
	for _, c := range tag[end:] {
		if c != 0 {
			return false
		}
	}
	return PlainUTF8(tag[:end])
}

// KernelAddrsValid restates the KADR row: exactly 24 bytes with the "+1"
// fields (offsets 0 and 16) non-zero.
func KernelAddrsValid(p []byte) bool {
	return len(p) == wire.KernelAddrsSize && binary.LittleEndian.Uint64(p) != 0 && binary.LittleEndian.Uint64(p[16:]) != 0
}

// PlainUTF8 reports whether b is valid UTF-8 (RFC 3629: shortest form,
// no surrogates, nothing past U+10FFFF), written out by hand so the tag
// rule is checked against something that shares no code with wire.
func PlainUTF8(b []byte) bool {
	for i := 0; i < len(b); {
		c := b[i]
		var more int
		var r, least rune
		switch {
		case c < 0x80:
			i++
			continue
		case c&0xe0 == 0xc0:
			more, r, least = 1, rune(c&0x1f), 0x80
		case c&0xf0 == 0xe0:
			more, r, least = 2, rune(c&0x0f), 0x800
		case c&0xf8 == 0xf0:
			more, r, least = 3, rune(c&0x07), 0x10000
		default:
			return false
		}
		if i+more >= len(b) {
			return false
		}
		for _, x := range b[i+1 : i+1+more] {
			if x&0xc0 != 0x80 {
				return false
			}
			r = r<<6 | rune(x&0x3f)
		}
		if r < least || r > 0x10ffff || (r >= 0xd800 && r <= 0xdfff) {
			return false
		}
		i += 1 + more
	}
	return true
}
