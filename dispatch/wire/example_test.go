package wire_test

import (
	"fmt"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// A frame is a 16-byte little-endian header (tag, payload length, CRC-32
// of the payload, pad) followed by the payload.
func ExampleAppendFrame() {
	frame := wire.AppendFrame(nil, wire.Stimulus, []byte("hello"))
	h, ok := wire.DecodeHeader(frame)
	fmt.Println(ok, h.Tag, h.Len, h.CRC == wire.Checksum(frame[wire.HeaderSize:]), h.Pad)
	fmt.Printf("% x\n", frame[:wire.HeaderSize])
	// Output:
	// true STIM 5 true 0
	// 4d 49 54 53 05 00 00 00 86 a6 10 36 00 00 00 00
}
