package libfuzzer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
)

// MaxStringOffset is go-fuzz-headers' MaxTotalLen: a string argument
// whose bytes would start past this offset is not decoded.
const MaxStringOffset = 2_000_000

// ErrIncomplete reports raw bytes that run out (or break a rule) before
// every argument is decoded: go-118-fuzz-build's F.Fuzz then returns
// without calling the target's function.
var ErrIncomplete = errors.New("libfuzzer: the input ends before every argument is decoded")

// ErrType reports an argument type go-118-fuzz-build cannot decode
// (or this package does not restate).
var ErrType = errors.New("libfuzzer: unsupported argument type")

// Encode returns the libFuzzer input that go-118-fuzz-build's F.Fuzz
// decodes into exactly args, in order. Per argument:
//
//   - []byte: a 4-byte big-endian length L, then the bytes. The decoder
//     takes L modulo the bytes left after the length (unless L equals
//     them; L of 0 means 30), so an empty slice is written as twice the
//     bytes left, and at least one byte must follow the length.
//   - string: a 4-byte big-endian length, then the bytes; at least one
//     byte must follow the length.
//   - bool: one byte, even for true, odd for false.
//   - uint8, int8: one byte. uint32, int32: four bytes, big-endian.
//   - uint16, int16: two bytes, then a byte choosing the byte order (even:
//     little-endian); uint64, int64, uint, int: eight bytes and that byte.
//
// A padding byte is appended where an empty last []byte or string needs
// one to follow its length. Encode checks its output with Decode.
func Encode(args ...any) ([]byte, error) {
	types := make([]reflect.Type, len(args))
	// Built back to front: a []byte's length field depends on how many
	// bytes follow it.
	var rest []byte
	for i := len(args) - 1; i >= 0; i-- {
		types[i] = reflect.TypeOf(args[i])
		var enc []byte
		switch v := args[i].(type) {
		case []byte:
			if len(v)+len(rest) == 0 {
				rest = []byte{0}
			}
			left := uint64(len(v) + len(rest))
			n := uint64(len(v))
			switch {
			case n == left:
			case n == 0:
				n = 2 * left
			}
			if n > 1<<32-1 {
				return nil, fmt.Errorf("libfuzzer: a %d-byte argument does not fit the 4-byte length", len(v))
			}
			enc = append(binary.BigEndian.AppendUint32(nil, uint32(n)), v...)
		case string:
			if len(v)+len(rest) == 0 {
				rest = []byte{0}
			}
			if uint64(len(v)) > 1<<32-1 {
				return nil, fmt.Errorf("libfuzzer: a %d-byte string does not fit the 4-byte length", len(v))
			}
			enc = append(binary.BigEndian.AppendUint32(nil, uint32(len(v))), v...)
		case bool:
			enc = []byte{1}
			if v {
				enc[0] = 0
			}
		case uint8:
			enc = []byte{v}
		case int8:
			enc = []byte{byte(v)}
		case uint16:
			enc = append(binary.LittleEndian.AppendUint16(nil, v), 0)
		case int16:
			enc = append(binary.LittleEndian.AppendUint16(nil, uint16(v)), 0)
		case uint32:
			enc = binary.BigEndian.AppendUint32(nil, v)
		case int32:
			enc = binary.BigEndian.AppendUint32(nil, uint32(v))
		case uint64:
			enc = append(binary.LittleEndian.AppendUint64(nil, v), 0)
		case int64:
			enc = append(binary.LittleEndian.AppendUint64(nil, uint64(v)), 0)
		case uint:
			enc = append(binary.LittleEndian.AppendUint64(nil, uint64(v)), 0)
		case int:
			enc = append(binary.LittleEndian.AppendUint64(nil, uint64(v)), 0)
		default:
			return nil, fmt.Errorf("%w: argument %d is a %T", ErrType, i, args[i])
		}
		rest = append(enc, rest...)
	}
	back, err := Decode(rest, types)
	if err != nil {
		return nil, fmt.Errorf("libfuzzer: the encoding does not decode: %w", err)
	}
	if !reflect.DeepEqual(normalize(back), normalize(args)) {
		return nil, fmt.Errorf("libfuzzer: the encoding decodes to %v, not %v", back, args)
	}
	return rest, nil
}

// normalize makes empty and nil byte slices compare equal.
func normalize(vals []any) []any {
	out := make([]any, len(vals))
	for i, v := range vals {
		if b, ok := v.([]byte); ok && len(b) == 0 {
			v = []byte{}
		}
		out[i] = v
	}
	return out
}

// Decode reads one value of each type from data as go-118-fuzz-build's
// F.Fuzz does, and returns them; ErrIncomplete when F.Fuzz would stop
// before calling the target (the bytes run out, or a string would start
// past MaxStringOffset). Byte slices alias data.
func Decode(data []byte, types []reflect.Type) ([]any, error) {
	c := consumer{data: data}
	out := make([]any, 0, len(types))
	for i, t := range types {
		v, err := c.value(t)
		if err != nil {
			return nil, fmt.Errorf("argument %d (%s): %w", i, t, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// consumer walks the input as go-fuzz-headers' ConsumeFuzzer does.
type consumer struct {
	data []byte
	pos  int
}

func (c *consumer) left() int { return len(c.data) - c.pos }

func (c *consumer) next(n int) ([]byte, error) {
	if c.left() < n || c.left() == 0 {
		return nil, ErrIncomplete
	}
	b := c.data[c.pos : c.pos+n]
	c.pos += n
	return b, nil
}

// order reads the byte that picks little-endian (even) or big-endian.
func (c *consumer) order() (binary.ByteOrder, error) {
	b, err := c.next(1)
	if err != nil {
		return nil, err
	}
	if b[0]%2 == 0 {
		return binary.LittleEndian, nil
	}
	return binary.BigEndian, nil
}

func (c *consumer) u16() (uint16, error) {
	b, err := c.next(2)
	if err != nil {
		return 0, err
	}
	o, err := c.order()
	if err != nil {
		return 0, err
	}
	return o.Uint16(b), nil
}

func (c *consumer) u32() (uint32, error) {
	b, err := c.next(4)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b), nil
}

func (c *consumer) u64() (uint64, error) {
	b, err := c.next(8)
	if err != nil {
		return 0, err
	}
	o, err := c.order()
	if err != nil {
		return 0, err
	}
	return o.Uint64(b), nil
}

// value decodes one argument of type t (matched by its name, as F.Fuzz
// switches on reflect.Type.String).
func (c *consumer) value(t reflect.Type) (any, error) {
	switch t.String() {
	case "[]uint8":
		n, err := c.u32()
		if err != nil {
			return nil, err
		}
		if n == 0 {
			n = 30
		}
		left := uint32(c.left())
		if left == 0 {
			return nil, ErrIncomplete
		}
		if n != left {
			n %= left
		}
		b := c.data[c.pos : c.pos+int(n)]
		c.pos += int(n)
		return b, nil
	case "string":
		if c.left() == 0 {
			return nil, ErrIncomplete
		}
		n, err := c.u32()
		if err != nil {
			return nil, err
		}
		if c.pos > MaxStringOffset || c.left() == 0 || uint64(n) > uint64(c.left()) {
			return nil, ErrIncomplete
		}
		s := string(c.data[c.pos : c.pos+int(n)])
		c.pos += int(n)
		return s, nil
	case "bool":
		b, err := c.next(1)
		if err != nil {
			return nil, err
		}
		return b[0]%2 == 0, nil
	case "uint8":
		b, err := c.next(1)
		if err != nil {
			return nil, err
		}
		return b[0], nil
	case "int8":
		b, err := c.next(1)
		if err != nil {
			return nil, err
		}
		return int8(b[0]), nil
	case "uint16", "int16":
		v, err := c.u16()
		if err != nil {
			return nil, err
		}
		if t.Kind() == reflect.Int16 {
			return int16(v), nil
		}
		return v, nil
	case "uint32", "int32":
		v, err := c.u32()
		if err != nil {
			return nil, err
		}
		if t.Kind() == reflect.Int32 {
			return int32(v), nil
		}
		return v, nil
	case "uint64", "int64", "uint", "int":
		v, err := c.u64()
		if err != nil {
			return nil, err
		}
		switch t.Kind() {
		case reflect.Int64:
			return int64(v), nil
		case reflect.Uint:
			return uint(v), nil
		case reflect.Int:
			return int(v), nil
		}
		return v, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrType, t)
}

// Types returns the types of vals, for Decode.
func Types(vals []any) []reflect.Type {
	t := make([]reflect.Type, len(vals))
	for i, v := range vals {
		t[i] = reflect.TypeOf(v)
	}
	return t
}
