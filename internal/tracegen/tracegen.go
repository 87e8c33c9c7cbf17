// Package tracegen writes synthetic traces for benchmarks: bulk-port
// output shaped like a real run's (log-like SOUT text with some STIM
// frames), in 64 KiB deliveries. It stands in for the tap of the data
// flow (bytes → tap → Assembler → Dispatch → Sinks → Outcome) when a
// benchmark needs more bytes than a recorded run holds.
package tracegen

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// Delivery is the size of each TX delivery written.
const Delivery = 64 << 10

// Write writes a trace of at least size TX bytes to w: frames of 200 B to
// 4 KiB of compressible text (about 2 KiB on average), 1 in 16 a STIM,
// the rest SOUT, deliveries 1 ms apart. It is deterministic.
func Write(w io.Writer, size int) error {
	tw, err := capture.NewWriter(w, capture.Meta{Backend: "tracegen"})
	if err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"worker", "cpu", "runtime", "ns", "cgroup", "spread", "ok", "step", "vruntime", "lag"}
	var stream []byte
	var line bytes.Buffer
	total, t := 0, int64(0)
	for total < size {
		line.Reset()
		for target := 200 + r.IntN(3800); line.Len() < target; {
			fmt.Fprintf(&line, "%s=%d ", words[r.IntN(len(words))], r.IntN(100000))
		}
		tag := wire.Stdout
		if r.IntN(16) == 0 {
			tag = wire.Stimulus
		}
		stream = wire.AppendFrame(stream, tag, line.Bytes())
		for len(stream) >= Delivery {
			t += 1e6
			if err := tw.WriteData(capture.TX, capture.BulkPort, t, stream[:Delivery]); err != nil {
				tw.Close()
				return err
			}
			total += Delivery
			stream = append(stream[:0], stream[Delivery:]...)
		}
	}
	return tw.Close()
}
