package libfuzzer

import (
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// be32 is a 4-byte big-endian length.
func be32(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func typesOf(vals ...any) []reflect.Type { return Types(vals) }

// TestDecodeRestatesTheConsumer pins Decode to go-fuzz-headers'
// ConsumeFuzzer as go-118-fuzz-build's F.Fuzz uses it, case by case,
// with inputs written out by hand rather than by Encode.
func TestDecodeRestatesTheConsumer(t *testing.T) {
	b := []byte(nil)
	tests := []struct {
		name  string
		data  []byte
		types []reflect.Type
		want  []any // nil: ErrIncomplete
	}{
		{"[]byte: the length equals the bytes left", cat(be32(3), []byte("abc")), typesOf(b), []any{[]byte("abc")}},
		{"[]byte: a length past the bytes left is taken modulo them", cat(be32(7), []byte("abc")), typesOf(b), []any{[]byte("a")}},
		{"[]byte: length 0 means 30", cat(be32(0), make([]byte, 40)), typesOf(b), []any{make([]byte, 30)}},
		{"[]byte: length 0 means 30, modulo the bytes left", cat(be32(0), []byte("abcdefgh")), typesOf(b), []any{[]byte("abcdef")}},
		{"[]byte: twice the bytes left is empty", cat(be32(2), []byte("x")), typesOf(b), []any{[]byte{}}},
		{"[]byte: nothing after the length", be32(5), typesOf(b), nil},
		{"[]byte: a short length", []byte{0, 0, 1}, typesOf(b), nil},
		{"two []byte", cat(be32(1), []byte("a"), be32(2), []byte("bc")), typesOf(b, b), []any{[]byte("a"), []byte("bc")}},
		{"string", cat(be32(2), []byte("hi!")), typesOf(""), []any{"hi"}},
		{"string: longer than what is left", cat(be32(4), []byte("hi")), typesOf(""), nil},
		{"string: nothing after the length, even when empty", be32(0), typesOf(""), nil},
		{"bool: even is true", []byte{2}, typesOf(false), []any{true}},
		{"bool: odd is false", []byte{7}, typesOf(false), []any{false}},
		{"uint32 is big-endian", []byte{1, 2, 3, 4}, typesOf(uint32(0)), []any{uint32(0x01020304)}},
		{"int32 from its bits", []byte{0xff, 0xff, 0xff, 0xfe}, typesOf(int32(0)), []any{int32(-2)}},
		{"uint16: an even order byte is little-endian", []byte{1, 2, 4}, typesOf(uint16(0)), []any{uint16(0x0201)}},
		{"uint16: an odd one big-endian", []byte{1, 2, 5}, typesOf(uint16(0)), []any{uint16(0x0102)}},
		{"uint64: little-endian", []byte{1, 0, 0, 0, 0, 0, 0, 0, 0}, typesOf(uint64(0)), []any{uint64(1)}},
		{"uint64: big-endian", []byte{0, 0, 0, 0, 0, 0, 0, 1, 1}, typesOf(uint64(0)), []any{uint64(1)}},
		{"uint64: no order byte", []byte{0, 0, 0, 0, 0, 0, 0, 1}, typesOf(uint64(0)), nil},
		{"uint8 and int8", []byte{0xff, 0xff}, typesOf(uint8(0), int8(0)), []any{uint8(0xff), int8(-1)}},
		{"empty input", nil, typesOf(uint8(0)), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.data, tt.types)
			if tt.want == nil {
				require.ErrorIs(t, err, ErrIncomplete)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	_, err := Decode([]byte{0, 0, 0, 0}, typesOf(float32(0)))
	require.ErrorIs(t, err, ErrType)
}

// TestEncodeRoundTrips: whatever the arguments, Decode gives them back,
// empty slices and strings at the end and in the middle included.
func TestEncodeRoundTrips(t *testing.T) {
	for _, args := range [][]any{
		{[]byte("stream")},
		{[]byte{}},
		{[]byte{}, []byte{}, []byte{}},
		{[]byte("s"), []byte{}, []byte{7, 200}},
		{[]byte{}, true},
		{[]byte("trace"), false},
		{[]byte{1, 2, 3}, uint8(3), uint32(0x11)},
		{[]byte("p"), uint32(7), uint32(1), uint64(1), uint64(2), uint64(3), "watch"},
		{[]byte("p"), uint32(0), uint32(2), uint64(0), uint64(0), uint64(1), ""},
		{"", ""},
		{[]byte("stream"), uint16(65535)},
		{int(-1), int8(-2), int16(-3), int32(-4), int64(-5), uint(6)},
	} {
		raw, err := Encode(args...)
		require.NoError(t, err, "%v", args)
		got, err := Decode(raw, Types(args))
		require.NoError(t, err, "%v", args)
		assert.Equal(t, normalize(args), normalize(got), "%v encoded as %x", args, raw)
	}
}

// TestEncodeIsCanonical: the same values give the same bytes, different
// values different bytes, which is what lets lfuzz check compare seed
// files by name.
func TestEncodeIsCanonical(t *testing.T) {
	a1, err := Encode([]byte("a"), true)
	require.NoError(t, err)
	a2, err := Encode([]byte("a"), true)
	require.NoError(t, err)
	b, err := Encode([]byte("a"), false)
	require.NoError(t, err)
	assert.Equal(t, a1, a2)
	assert.NotEqual(t, a1, b)
}

// TestEncodeRefuses: a type F.Fuzz cannot decode is refused, not guessed.
func TestEncodeRefuses(t *testing.T) {
	_, err := Encode(1.5)
	require.ErrorIs(t, err, ErrType)
	_, err = Encode([]byte("a"), struct{}{})
	require.ErrorIs(t, err, ErrType)
}
