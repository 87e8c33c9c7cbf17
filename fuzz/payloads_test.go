package fuzz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// FuzzPayloads gives arbitrary bytes to the decoders of the fixed
// payloads (SNRQ, KORQ, KADR): every wrong size is rejected with
// wire.ErrShape; a right-sized payload is accepted exactly when the
// layout's rules hold, checked against a plain restatement of the gate
// table written here; and an accepted payload re-encodes to the same
// bytes.
func FuzzPayloads(f *testing.F) {
	snrq := wire.NewSnapshotRequest(7, wire.SnapshotCapture, "tag")
	b, _ := snrq.AppendBinary(nil)
	f.Add(b)
	korq := wire.KernelOpRequestPayload{RequestID: 1, Op: 2, Arg: 3, Arg2: 4}
	b, _ = korq.AppendBinary(nil)
	f.Add(b)
	f.Add(make([]byte, 72))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		if msg := checkPayloads(p); msg != "" {
			t.Fatal(msg)
		}
	})
}

// checkPayloads decodes p as each fixed payload and returns what is
// wrong, or "".
func checkPayloads(p []byte) string {
	// SNRQ: 72 bytes; kind 1 or 2; tag UTF-8 up to the first NUL, NULs after.
	r, err := wire.DecodeSnapshotRequest(p)
	if ok := snrqValid(p); ok != (err == nil) {
		return "SNRQ decoder disagrees with the gate table on " + quote(p) + ": " + errString(err)
	}
	if err != nil && !errors.Is(err, wire.ErrShape) {
		return "SNRQ rejection is not ErrShape: " + err.Error()
	}
	if err == nil {
		if out, _ := r.AppendBinary(nil); !bytes.Equal(out, p) {
			return "SNRQ does not round-trip " + quote(p)
		}
	}
	// KORQ: exactly 24 bytes, any values.
	k, err := wire.DecodeKernelOpRequest(p)
	if (len(p) == wire.KernelOpRequestSize) != (err == nil) {
		return "KORQ decoder accepts a wrong size or rejects the right one: " + errString(err)
	}
	if err != nil && !errors.Is(err, wire.ErrShape) {
		return "KORQ rejection is not ErrShape: " + err.Error()
	}
	if err == nil {
		if out, _ := k.AppendBinary(nil); !bytes.Equal(out, p) {
			return "KORQ does not round-trip " + quote(p)
		}
	}
	// KADR: exactly 24 bytes with both "+1" fields (0 and 16) non-zero.
	a, err := wire.DecodeKernelAddrs(p)
	kadrOK := len(p) == wire.KernelAddrsSize && binary.LittleEndian.Uint64(p) != 0 && binary.LittleEndian.Uint64(p[16:]) != 0
	if kadrOK != (err == nil) {
		return "KADR decoder disagrees with the gate table on " + quote(p) + ": " + errString(err)
	}
	if err != nil && !errors.Is(err, wire.ErrShape) {
		return "KADR rejection is not ErrShape: " + err.Error()
	}
	if err == nil {
		if out, _ := a.AppendBinary(nil); !bytes.Equal(out, p) {
			return "KADR does not round-trip " + quote(p)
		}
		if a.PhysBase()+1 != binary.LittleEndian.Uint64(p) || a.TextAddr()+1 != binary.LittleEndian.Uint64(p[16:]) {
			return "KADR values are not the fields minus one"
		}
	}
	return ""
}

// snrqValid restates the SNRQ row of the gate table plainly.
func snrqValid(p []byte) bool {
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
	return utf8.Valid(tag[:end])
}

// quote describes p for a failure message.
func quote(p []byte) string {
	return fmt.Sprintf("a %d-byte payload %q", len(p), p[:min(len(p), 80)])
}

func errString(err error) string {
	if err == nil {
		return "accepted"
	}
	return err.Error()
}

// TestPayloadsOracle: known-good payloads pass the check, and the check
// catches a decoder that disagrees with the table (positive control: a
// tag with a byte after its NUL must be rejected, and snrqValid says so).
func TestPayloadsOracle(t *testing.T) {
	good := wire.NewSnapshotRequest(1, wire.SnapshotWatch, "watch")
	g, _ := good.AppendBinary(nil)
	kadr := wire.NewKernelAddrs(0, 0, 0)
	k, _ := kadr.AppendBinary(nil)
	for _, p := range [][]byte{g, k, {}, make([]byte, 24), make([]byte, 73), bytes.Repeat([]byte{0xff}, 72)} {
		assert.Empty(t, checkPayloads(p))
	}
	bad := bytes.Clone(g)
	bad[8+10] = 'x' // after the tag's NUL
	assert.False(t, snrqValid(bad))
	_, err := wire.DecodeSnapshotRequest(bad)
	assert.ErrorIs(t, err, wire.ErrShape)
	invalidUTF8 := bytes.Clone(g)
	invalidUTF8[8] = 0xff
	assert.False(t, snrqValid(invalidUTF8))
	assert.True(t, snrqValid(g))
}
