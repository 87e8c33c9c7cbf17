package wire_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// These tests pin behaviour that mutation testing (make mutation,
// docs/mutation.md) showed the other tests left loose.

// TestEmptyTextFields: a tag or reason field that starts with NUL is
// the empty string.
func TestEmptyTextFields(t *testing.T) {
	r := wire.NewSnapshotRequest(1, wire.SnapshotCapture, "")
	assert.Equal(t, "", r.TagString())
	rep := wire.NewSnapshotReply(1, wire.SnapshotOK, "")
	assert.Equal(t, "", rep.ReasonString())
	// The positive control: a non-empty field reads back.
	r = wire.NewSnapshotRequest(1, wire.SnapshotCapture, "x")
	assert.Equal(t, "x", r.TagString())
}

// TestSnapshotTagAfterLeadingNUL: a tag field whose first byte is NUL
// must hold only NULs; text after it is a wrong shape.
func TestSnapshotTagAfterLeadingNUL(t *testing.T) {
	for _, tc := range []struct {
		tag  string
		okay bool
	}{
		{"", true},
		{"\x00abc", false},
		{"abc", true},
		{"abc\x00d", false},
	} {
		r := wire.SnapshotRequestPayload{RequestID: 1, Kind: wire.SnapshotWatch}
		copy(r.Tag[:], tc.tag)
		p, _ := r.AppendBinary(nil)
		_, err := wire.DecodeSnapshotRequest(p)
		if tc.okay {
			assert.NoError(t, err, "%q", tc.tag)
		} else {
			assert.ErrorIs(t, err, wire.ErrShape, "%q", tc.tag)
		}
	}
}

// TestTagStringPrintableRange: printable ASCII is 0x20 (space) to 0x7e
// (~) inclusive; a tag with anything else prints as hex.
func TestTagStringPrintableRange(t *testing.T) {
	tag := func(s string) wire.Tag {
		return wire.Tag(uint32(s[0])<<24 | uint32(s[1])<<16 | uint32(s[2])<<8 | uint32(s[3]))
	}
	assert.Equal(t, "A ~B", tag("A ~B").String())
	assert.Equal(t, "0x411f4242", tag("A\x1fBB").String())
	assert.Equal(t, "0x417f4242", tag("A\x7fBB").String())
	for _, s := range []string{"A ~B", "SCDX"} {
		back, ok := wire.ParseTag(tag(s).String())
		assert.True(t, ok)
		assert.Equal(t, tag(s), back)
	}
	_, ok := wire.ParseTag("0x")
	assert.False(t, ok)
}

// TestMaxPayloadIsOneMiB: the contract's bound (docs/protocol.md).
func TestMaxPayloadIsOneMiB(t *testing.T) {
	assert.Equal(t, 1<<20, wire.MaxPayload)
}

// TestParseTagSpellings: ParseTag reads exactly four characters, or a
// 0x- or 0X-prefixed hex number of at most 32 bits — the two forms
// String prints; anything else is not a tag.
func TestParseTagSpellings(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want wire.Tag
		ok   bool
	}{
		{"SCDX", wire.SchedExit, true},
		{"0x53434458", wire.SchedExit, true},
		{"0X53434458", wire.SchedExit, true},
		{"0x1", 1, true},
		{"0xFFFFFFFF", 0xFFFFFFFF, true},
		{"0x12", wire.Tag(0x30783132), true}, // four characters first
		{"", 0, false},
		{"0x", 0, false},
		{"SCD", 0, false},
		{"SCDXX", 0, false},
		{"12345", 0, false},
		{"0y12345", 0, false},
		{"x0123", 0, false},
		{"0x12g", 0, false},
		{"0x100000000", 0, false},
	} {
		got, ok := wire.ParseTag(tc.in)
		assert.Equal(t, tc.ok, ok, "%q", tc.in)
		assert.Equal(t, tc.want, got, "%q", tc.in)
	}
}
