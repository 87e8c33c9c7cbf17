// Package wire defines the bulk-port frame format shared by the guest
// agent and the host: the 16-byte frame header, the message tags of the
// gate table, and the fixed-layout payload codecs.
//
// It sits at the very start of the data flow (bytes → tap → Assembler →
// Dispatch → Sinks → Outcome): the guest encodes frames with it, and the
// host's Assembler and Dispatch decode them with it. It imports only the
// standard library so the static guest agent stays small.
//
// A frame is a Header followed by Header.Len payload bytes:
//
//	offset 0  tag  u32 LE  four ASCII characters packed big-endian
//	offset 4  len  u32 LE  payload length (at most MaxPayload)
//	offset 8  crc  u32 LE  CRC-32/IEEE of the payload
//	offset 12 pad  u32 LE  must be zero
package wire

import (
	"encoding/binary"
	"hash/crc32"
)

// HeaderSize is the size of an encoded frame header in bytes.
const HeaderSize = 16

// MaxPayload is the largest payload length a header may declare. A
// header declaring more cannot be trusted for framing; the host
// resynchronises past it.
const MaxPayload = 1 << 20

// Header is a decoded frame header.
type Header struct {
	Tag Tag    // message type
	Len uint32 // payload length in bytes
	CRC uint32 // CRC-32/IEEE of the payload, as declared by the sender
	Pad uint32 // must be zero in an intact frame
}

// DecodeHeader decodes the first HeaderSize bytes of b. It reports false
// if b is shorter than HeaderSize.
func DecodeHeader(b []byte) (Header, bool) {
	if len(b) < HeaderSize {
		return Header{}, false
	}
	return Header{
		Tag: Tag(binary.LittleEndian.Uint32(b[0:])),
		Len: binary.LittleEndian.Uint32(b[4:]),
		CRC: binary.LittleEndian.Uint32(b[8:]),
		Pad: binary.LittleEndian.Uint32(b[12:]),
	}, true
}

// AppendHeader appends the encoding of h to dst and returns the result.
func AppendHeader(dst []byte, h Header) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(h.Tag))
	dst = binary.LittleEndian.AppendUint32(dst, h.Len)
	dst = binary.LittleEndian.AppendUint32(dst, h.CRC)
	return binary.LittleEndian.AppendUint32(dst, h.Pad)
}

// Plausible reports whether h could start a frame while the host is
// resynchronising after an oversize header: its tag is listed in the
// gate table (host→guest tags included), its length is at most
// MaxPayload and its pad is zero.
func (h Header) Plausible() bool {
	return h.Tag.Listed() && h.Len <= MaxPayload && h.Pad == 0
}

// Checksum returns the CRC-32/IEEE of payload, the value an intact
// frame carries in its crc field.
func Checksum(payload []byte) uint32 {
	if len(payload) == 0 {
		return 0 // skips the table lookup on the hot path of empty frames
	}
	return crc32.ChecksumIEEE(payload)
}

// AppendFrame appends an intact frame carrying payload under tag to dst
// and returns the result. It does not check len(payload) against
// MaxPayload: callers that build adversarial streams rely on that.
func AppendFrame(dst []byte, tag Tag, payload []byte) []byte {
	dst = AppendHeader(dst, Header{Tag: tag, Len: uint32(len(payload)), CRC: Checksum(payload)})
	return append(dst, payload...)
}
