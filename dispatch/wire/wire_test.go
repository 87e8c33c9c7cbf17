package wire_test

import (
	"bytes"
	"hash/crc32"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// TestTagValues pins every tag of the gate table to the value and the
// class docs/protocol.md gives it.
func TestTagValues(t *testing.T) {
	tests := []struct {
		tag   wire.Tag
		name  string
		value uint32
		class wire.Class
	}{
		{wire.SysRdy, "SRDY", 0x53524459, wire.Internal},
		{wire.SchedExit, "SCDX", 0x53434458, wire.Verdict},
		{wire.SnapshotRequest, "SNRQ", 0x534E5251, wire.Internal},
		{wire.KernelOpRequest, "KORQ", 0x4B4F5251, wire.Internal},
		{wire.KernelAddrs, "KADR", 0x4B414452, wire.Internal},
		{wire.WatchdogPause, "SCPP", 0x53435050, wire.Internal},
		{wire.WatchdogResume, "SCRR", 0x53435252, wire.Internal},
		{wire.Step, "STEP", 0x53544550, wire.Internal},
		{wire.ScenarioStart, "SCST", 0x53435354, wire.Verdict},
		{wire.Lifecycle, "LIFE", 0x4C494645, wire.Verdict},
		{wire.Scenario, "SCEN", 0x5343454E, wire.Verdict},
		{wire.Stimulus, "STIM", 0x5354494D, wire.Verdict},
		{wire.StepEnd, "STEN", 0x5354454E, wire.Verdict},
		{wire.Exit, "EXIT", 0x45584954, wire.Verdict},
		{wire.TestResult, "TEST", 0x54455354, wire.Verdict},
		{wire.Crash, "CRSH", 0x43525348, wire.Verdict},
		{wire.Stdout, "SOUT", 0x534F5554, wire.Verdict},
		{wire.Stderr, "SERR", 0x53455252, wire.Verdict},
		{wire.SchedLog, "SCLG", 0x53434C47, wire.Verdict},
		{wire.PerfMetrics, "PMET", 0x504D4554, wire.Verdict},
		{wire.RawOutput, "RAWO", 0x5241574F, wire.Verdict},
		{wire.ProbeRaw, "PRAW", 0x50524157, wire.Verdict},
		{wire.Dmesg, "DMSG", 0x444D5347, wire.Verdict},
		{wire.ExitContext, "EXCX", 0x45584358, wire.Verdict},
		{wire.Probe, "PROB", 0x50524F42, wire.Verdict},
		{wire.GuestProfile, "WPRF", 0x57505246, wire.Verdict},
		{wire.SnapshotReply, "SNRP", 0x534E5250, wire.HostToGuest},
		{wire.KernelOpReply, "KORP", 0x4B4F5250, wire.HostToGuest},
	}
	require.Len(t, wire.Tags(), len(tests), "Tags lists the whole table")
	for i, tc := range tests {
		assert.Equal(t, tc.value, uint32(tc.tag), tc.name)
		assert.Equal(t, tc.name, tc.tag.String())
		assert.Equal(t, tc.class, tc.tag.Class(), tc.name)
		assert.True(t, tc.tag.Listed())
		assert.Equal(t, tc.tag, wire.Tags()[i], "table order")
		parsed, ok := wire.ParseTag(tc.name)
		assert.True(t, ok)
		assert.Equal(t, tc.tag, parsed)
	}
	assert.Equal(t, wire.Unknown, wire.Tag(0xDEADBEEF).Class())
	assert.False(t, wire.Tag(0).Listed())
	assert.Equal(t, "0xdeadbeef", wire.Tag(0xDEADBEEF).String())
	assert.Equal(t, "0x00000001", wire.Tag(1).String())
	back, ok := wire.ParseTag("0xdeadbeef")
	assert.True(t, ok)
	assert.Equal(t, wire.Tag(0xDEADBEEF), back)
	_, ok = wire.ParseTag("ABC")
	assert.False(t, ok)
	for _, c := range []wire.Class{wire.Unknown, wire.Internal, wire.Verdict, wire.HostToGuest} {
		assert.NotEmpty(t, c.String())
	}
}

// TestHeaderLayout pins the byte layout: four little-endian u32s, with
// the tag's characters appearing reversed on the wire.
func TestHeaderLayout(t *testing.T) {
	h := wire.Header{Tag: wire.SchedExit, Len: 0x01020304, CRC: 0xA1B2C3D4, Pad: 0}
	b := wire.AppendHeader(nil, h)
	require.Len(t, b, wire.HeaderSize)
	assert.Equal(t, []byte("XDCS"), b[0:4], "tag u32 LE")
	assert.Equal(t, []byte{4, 3, 2, 1}, b[4:8])
	assert.Equal(t, []byte{0xD4, 0xC3, 0xB2, 0xA1}, b[8:12])
	assert.Equal(t, []byte{0, 0, 0, 0}, b[12:16])
	back, ok := wire.DecodeHeader(b)
	require.True(t, ok)
	assert.Equal(t, h, back)
	_, ok = wire.DecodeHeader(b[:15])
	assert.False(t, ok)
}

func TestAppendFrame(t *testing.T) {
	f := wire.AppendFrame([]byte("pre"), wire.Stimulus, []byte("hello"))
	require.Len(t, f, 3+16+5)
	h, _ := wire.DecodeHeader(f[3:])
	assert.Equal(t, wire.Header{Tag: wire.Stimulus, Len: 5, CRC: crc32.ChecksumIEEE([]byte("hello"))}, h)
	assert.Equal(t, []byte("hello"), f[19:])
}

func TestPlausible(t *testing.T) {
	tests := []struct {
		h    wire.Header
		want bool
	}{
		{wire.Header{Tag: wire.Stdout, Len: wire.MaxPayload}, true},
		{wire.Header{Tag: wire.SnapshotReply, Len: 0}, true},
		{wire.Header{Tag: wire.Stdout, Len: wire.MaxPayload + 1}, false},
		{wire.Header{Tag: wire.Stdout, Pad: 1}, false},
		{wire.Header{Tag: wire.Tag(0x61626364)}, false},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, tc.h.Plausible(), "%+v", tc.h)
	}
}

func TestSnapshotRequestCodec(t *testing.T) {
	r := wire.NewSnapshotRequest(42, wire.SnapshotCapture, "valid_tag")
	b, err := r.AppendBinary(nil)
	require.NoError(t, err)
	require.Len(t, b, wire.SnapshotRequestSize)
	assert.Equal(t, []byte{42, 0, 0, 0, 1, 0, 0, 0}, b[:8])
	back, err := wire.DecodeSnapshotRequest(b)
	require.NoError(t, err)
	assert.Equal(t, r, back)
	assert.Equal(t, "valid_tag", back.TagString())

	full := wire.NewSnapshotRequest(1, wire.SnapshotWatch, string(bytes.Repeat([]byte("é"), 32)))
	fb, _ := full.AppendBinary(nil)
	back, err = wire.DecodeSnapshotRequest(fb)
	require.NoError(t, err, "a tag filling all 64 bytes with no NUL is valid")
	assert.Len(t, back.TagString(), 64)

	bad := map[string][]byte{
		"short":       b[:71],
		"long":        append(append([]byte{}, b...), 0),
		"empty":       nil,
		"kind 0":      func() []byte { c := bytes.Clone(b); c[4] = 0; return c }(),
		"kind 3":      func() []byte { c := bytes.Clone(b); c[4] = 3; return c }(),
		"invalid utf": func() []byte { c := bytes.Clone(b); c[8] = 0xff; return c }(),
		"after nul":   func() []byte { c := bytes.Clone(b); c[71] = 'x'; return c }(),
		"cut rune":    func() []byte { c := bytes.Clone(fb); c[71] = 0; return c }(),
	}
	for name, p := range bad {
		_, err := wire.DecodeSnapshotRequest(p)
		assert.ErrorIs(t, err, wire.ErrShape, name)
	}
}

func TestSnapshotReplyCodec(t *testing.T) {
	r := wire.NewSnapshotReply(9, wire.SnapshotError, "no such vcpu")
	b, err := r.AppendBinary(nil)
	require.NoError(t, err)
	require.Len(t, b, wire.SnapshotReplySize)
	back, err := wire.DecodeSnapshotReply(b)
	require.NoError(t, err)
	assert.Equal(t, r, back)
	assert.Equal(t, "no such vcpu", back.ReasonString())
	_, err = wire.DecodeSnapshotReply(b[:519])
	assert.ErrorIs(t, err, wire.ErrShape)
}

func TestKernelOpRequestCodec(t *testing.T) {
	r := wire.KernelOpRequestPayload{RequestID: 1, Op: 2, Arg: 1 << 40, Arg2: 1<<63 + 5}
	b, err := r.AppendBinary(nil)
	require.NoError(t, err)
	require.Len(t, b, wire.KernelOpRequestSize)
	back, err := wire.DecodeKernelOpRequest(b)
	require.NoError(t, err)
	assert.Equal(t, r, back)
	for _, n := range []int{0, 23, 25} {
		_, err := wire.DecodeKernelOpRequest(make([]byte, n))
		assert.ErrorIs(t, err, wire.ErrShape, n)
	}
}

func TestKernelAddrsCodec(t *testing.T) {
	k := wire.NewKernelAddrs(0, 0xffff888000000000, 0xffffffff81000000)
	assert.EqualValues(t, 1, k.PhysBasePlus1)
	b, err := k.AppendBinary(nil)
	require.NoError(t, err)
	require.Len(t, b, wire.KernelAddrsSize)
	back, err := wire.DecodeKernelAddrs(b)
	require.NoError(t, err)
	assert.Equal(t, k, back)
	assert.EqualValues(t, 0, back.PhysBase())
	assert.EqualValues(t, uint64(0xffffffff81000000), back.TextAddr())
	for name, p := range map[string]wire.KernelAddrsPayload{
		"phys zero": {PhysBasePlus1: 0, TextAddrPlus1: 1},
		"text zero": {PhysBasePlus1: 1, TextAddrPlus1: 0},
	} {
		pb, _ := p.AppendBinary(nil)
		_, err := wire.DecodeKernelAddrs(pb)
		assert.ErrorIs(t, err, wire.ErrShape, name)
	}
	_, err = wire.DecodeKernelAddrs(b[:23])
	assert.ErrorIs(t, err, wire.ErrShape)
}

func TestStepAndLifecycle(t *testing.T) {
	s, err := wire.DecodeStep([]byte{0x34, 0x12})
	require.NoError(t, err)
	assert.EqualValues(t, 0x1234, s)
	for _, p := range [][]byte{nil, {1}, {1, 2, 3}} {
		_, err := wire.DecodeStep(p)
		assert.ErrorIs(t, err, wire.ErrShape)
	}
	for v := 1; v <= 4; v++ {
		got, err := wire.DecodeLifecycle([]byte{byte(v)})
		require.NoError(t, err)
		assert.EqualValues(t, v, got)
	}
	for _, p := range [][]byte{nil, {0}, {5}, {1, 1}} {
		_, err := wire.DecodeLifecycle(p)
		assert.ErrorIs(t, err, wire.ErrShape)
	}
}
