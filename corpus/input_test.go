package corpus

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/replay"
)

func TestDispatchInputRoundTrip(t *testing.T) {
	streams := map[string]*replay.Stream{
		"empty":            {},
		"one empty":        {Data: []byte{}, Starts: []int64{0}, Times: []int64{5}},
		"empty in between": {Data: []byte("abcd"), Starts: []int64{0, 2, 2}, Times: []int64{1, 2, 3}},
		"clock goes back":  {Data: []byte("abcdef"), Starts: []int64{0, 3}, Times: []int64{1 << 40, -7}},
		"big delivery":     {Data: make([]byte, 70000), Starts: []int64{0}, Times: []int64{0}},
	}
	for _, seed := range Seeds() {
		streams["seed "+seed.Name] = seed.Stream()
	}
	for name, s := range streams {
		t.Run(name, func(t *testing.T) {
			got := DecodeDispatchInput(EncodeDispatchInput(s))
			assert.Equal(t, len(s.Data), len(got.Data))
			assert.Equal(t, string(s.Data), string(got.Data))
			assert.Equal(t, s.Starts, nilIfEmpty(got.Starts))
			assert.Equal(t, s.Times, nilIfEmpty(got.Times))
		})
	}
}

func nilIfEmpty(s []int64) []int64 {
	if len(s) == 0 {
		return nil
	}
	return s
}

func TestDecodeDispatchInput(t *testing.T) {
	table := func(entries ...int64) []byte {
		b := binary.AppendUvarint(nil, uint64(len(entries)/2))
		for i := 0; i < len(entries); i += 2 {
			b = binary.AppendUvarint(b, uint64(entries[i]))
			b = binary.AppendVarint(b, entries[i+1])
		}
		return b
	}
	tests := []struct {
		name   string
		in     []byte
		data   string
		starts []int64
		times  []int64
	}{
		{"nothing", nil, "", nil, nil},
		{"no table", append(table(), "xyz"...), "xyz", []int64{0}, []int64{0}},
		{"exact", append(table(1, 10, 2, 5), "abc"...), "abc", []int64{0, 1}, []int64{10, 15}},
		{"rest is one more delivery", append(table(1, 10), "abc"...), "abc", []int64{0, 1}, []int64{10, 10}},
		{"lengths cut short", append(table(2, 1, 9, 1, 4, 1), "abcd"...), "abcd", []int64{0, 2, 4}, []int64{1, 2, 3}},
		{"negative step", append(table(1, 5, 1, -3), "ab"...), "ab", []int64{0, 1}, []int64{5, 2}},
		// The count claims more entries than the bytes can hold: it is
		// capped, and what the capped table leaves is the stream.
		{"count too large", []byte{0x7f, 1, 0, 'a'}, "a", []int64{0}, []int64{0}},
		// A table entry that does not parse: everything is one delivery.
		{"unterminated varint in table", []byte{1, 0x80, 0x80}, "\x01\x80\x80", []int64{0}, []int64{0}},
		{"unterminated count", []byte{0x80}, "\x80", []int64{0}, []int64{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := DecodeDispatchInput(tt.in)
			assert.Equal(t, tt.data, string(s.Data))
			assert.Equal(t, tt.starts, nilIfEmpty(s.Starts))
			assert.Equal(t, tt.times, nilIfEmpty(s.Times))
		})
	}
}

// TestDecodeDispatchInputAnyBytes decodes random inputs: every result
// must be a well-formed stream (starts non-decreasing, within the data,
// one time per start) whose data is a suffix of the input.
func TestDecodeDispatchInputAnyBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		in := make([]byte, r.IntN(64))
		for i := range in {
			// Mostly small bytes so tables parse often.
			in[i] = byte(r.IntN(1 << (1 + r.IntN(8))))
		}
		s := DecodeDispatchInput(in)
		require.Len(t, s.Times, len(s.Starts))
		require.LessOrEqual(t, len(s.Data), len(in))
		require.Equal(t, string(in[len(in)-len(s.Data):]), string(s.Data))
		var prev int64
		for _, st := range s.Starts {
			require.GreaterOrEqual(t, st, prev, "input %x", in)
			require.LessOrEqual(t, st, int64(len(s.Data)), "input %x", in)
			prev = st
		}
		if len(s.Data) > 0 {
			require.NotEmpty(t, s.Starts, "input %x: bytes without a delivery", in)
			require.Zero(t, s.Starts[0])
		}
	}
}
