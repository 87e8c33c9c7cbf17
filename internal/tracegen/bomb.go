package tracegen

import (
	"bytes"
	"fmt"
	"io"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// Bomb shapes: traces small on disk that decompress to a stream built to
// grow whatever a reader keeps per frame, per delivery or per tag.
const (
	BombFlood = "flood" // intact empty STIM frames in 256 KiB deliveries: per-verdict state
	BombTiny  = "tiny"  // one intact empty STIM frame per delivery: per-delivery state
	BombTags  = "tags"  // intact empty frames, each with a tag of its own: per-tag state
	BombBytes = "bytes" // one byte per delivery: per-delivery state of a stream held whole
)

// Bombs lists every bomb shape.
func Bombs() []string { return []string{BombFlood, BombTiny, BombTags, BombBytes} }

// WriteBomb writes a trace of the given shape holding size TX bytes (a
// whole number of 16-byte frames), with an END record whose outcome is
// left empty (replay then has nothing to match against but its
// invariants).
func WriteBomb(w io.Writer, shape string, size int) error {
	frame := wire.AppendFrame(nil, wire.Stimulus, nil)
	var deliver func(tw *capture.Writer) error
	switch shape {
	case BombFlood:
		chunk := bytes.Repeat(frame, (256<<10)/len(frame))
		deliver = func(tw *capture.Writer) error {
			for done, t := 0, int64(0); done < size; t++ {
				n := min(len(chunk), size-done)
				if err := tw.WriteData(capture.TX, capture.BulkPort, t*1000, chunk[:n]); err != nil {
					return err
				}
				done += n
			}
			return nil
		}
	case BombTiny:
		deliver = func(tw *capture.Writer) error {
			for i := 0; i < size/len(frame); i++ {
				if err := tw.WriteData(capture.TX, capture.BulkPort, int64(i), frame); err != nil {
					return err
				}
			}
			return nil
		}
	case BombTags:
		deliver = func(tw *capture.Writer) error {
			buf := make([]byte, 0, 256<<10)
			for i := 0; i < size/len(frame); i++ {
				buf = wire.AppendFrame(buf, wire.Tag(0x10000000+uint32(i)), nil)
				if len(buf) == cap(buf) || i == size/len(frame)-1 {
					if err := tw.WriteData(capture.TX, capture.BulkPort, int64(i), buf); err != nil {
						return err
					}
					buf = buf[:0]
				}
			}
			return nil
		}
	case BombBytes:
		deliver = func(tw *capture.Writer) error {
			for i := 0; i < size; i++ {
				if err := tw.WriteData(capture.TX, capture.BulkPort, int64(i), frame[i%len(frame):i%len(frame)+1]); err != nil {
					return err
				}
			}
			return nil
		}
	default:
		return fmt.Errorf("bomb shape %q: use one of %v", shape, Bombs())
	}
	tw, err := capture.NewWriter(w, capture.Meta{Backend: "tracegen", Scenario: "bomb-" + shape})
	if err != nil {
		return err
	}
	if err := deliver(tw); err != nil {
		tw.Close()
		return err
	}
	if err := tw.WriteEnd(capture.End{Reason: "bomb"}); err != nil {
		tw.Close()
		return err
	}
	return tw.Close()
}
