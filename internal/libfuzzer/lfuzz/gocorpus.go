package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ktstr/ktstr/internal/libfuzzer"
)

// goHeader is the first line of a `go test` corpus file.
const goHeader = "go test fuzz v1"

// ErrGoCorpus reports a file that is not a "go test fuzz v1" corpus file
// of the types this package handles.
var ErrGoCorpus = errors.New("not a go test fuzz v1 corpus file")

// MarshalGo returns the "go test fuzz v1" file holding vals, byte for
// byte as `go test` writes it (internal/fuzz's marshalCorpusFile): a
// uint8 as byte('…'), an int32 that is a valid rune as rune('…'),
// strings and byte slices %q-quoted, other integers and bools with %v.
func MarshalGo(vals ...any) ([]byte, error) {
	if len(vals) == 0 {
		return nil, fmt.Errorf("%w: no values", ErrGoCorpus)
	}
	b := bytes.NewBufferString(goHeader + "\n")
	for i, v := range vals {
		switch t := v.(type) {
		case int, int8, int16, int64, uint, uint16, uint32, uint64, bool:
			fmt.Fprintf(b, "%T(%v)\n", t, t)
		case string:
			fmt.Fprintf(b, "string(%q)\n", t)
		case int32:
			if utf8.ValidRune(t) {
				fmt.Fprintf(b, "rune(%q)\n", t)
			} else {
				fmt.Fprintf(b, "int32(%v)\n", t)
			}
		case uint8:
			fmt.Fprintf(b, "byte(%q)\n", t)
		case []byte:
			fmt.Fprintf(b, "[]byte(%q)\n", t)
		default:
			return nil, fmt.Errorf("%w: value %d is a %T", libfuzzer.ErrType, i, v)
		}
	}
	return b.Bytes(), nil
}

// GoName returns the name `go test` gives a corpus file with this
// content: the first 16 hex digits of its SHA-256.
func GoName(content []byte) string {
	sum := sha256.Sum256(content)
	return hex.EncodeToString(sum[:8])
}

// UnmarshalGo returns the values of a "go test fuzz v1" file: one
// TYPE(LITERAL) a line after the header, as `go test` writes them and
// as people write them by hand (a uint8 as byte('a') or uint8(97), an
// int32 as rune('a') or int32(97), numbers in any base strconv reads,
// strings and byte slices in interpreted or raw quotes). Floats are not
// handled: no target here takes one.
func UnmarshalGo(content []byte) ([]any, error) {
	lines := strings.Split(strings.TrimRight(string(content), "\r\n"), "\n")
	if strings.TrimSuffix(lines[0], "\r") != goHeader {
		return nil, fmt.Errorf("%w: the first line is not %q", ErrGoCorpus, goHeader)
	}
	var vals []any
	for i, line := range lines[1:] {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		v, err := parseGoValue(line)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrGoCorpus, i+2, err)
		}
		vals = append(vals, v)
	}
	if len(vals) == 0 {
		return nil, fmt.Errorf("%w: no values", ErrGoCorpus)
	}
	return vals, nil
}

// parseGoValue parses one TYPE(LITERAL) line.
func parseGoValue(line string) (any, error) {
	typ, lit, ok := strings.Cut(line, "(")
	if !ok || !strings.HasSuffix(lit, ")") {
		return nil, fmt.Errorf("%q is not TYPE(LITERAL)", line)
	}
	lit = strings.TrimSpace(strings.TrimSuffix(lit, ")"))
	bits := map[string]int{"int": 0, "int8": 8, "int16": 16, "int32": 32, "rune": 32, "int64": 64,
		"uint": 0, "uint8": 8, "byte": 8, "uint16": 16, "uint32": 32, "uint64": 64}
	switch typ {
	case "[]byte", "[]uint8", "string":
		s, err := strconv.Unquote(lit)
		if err != nil {
			return nil, fmt.Errorf("%s literal %s: %w", typ, lit, err)
		}
		if typ == "string" {
			return s, nil
		}
		return []byte(s), nil
	case "bool":
		return strconv.ParseBool(lit)
	}
	size, known := bits[typ]
	if !known {
		return nil, fmt.Errorf("%w: %s", libfuzzer.ErrType, typ)
	}
	var u uint64
	var n int64
	var err error
	signed := !strings.HasPrefix(typ, "u") && typ != "byte"
	if strings.HasPrefix(lit, "'") {
		// A character literal, for byte and rune (and any integer type).
		var s string
		s, err = strconv.Unquote(lit)
		if err == nil {
			r, w := utf8.DecodeRuneInString(s)
			switch {
			case w != len(s):
				err = fmt.Errorf("%s is not one character", lit)
			case r == utf8.RuneError && w == 1:
				u, n = uint64(s[0]), int64(s[0]) // a \x escape above 0x7f
			default:
				u, n = uint64(r), int64(r)
			}
		}
		limit := uint64(1) << size // size 0: int and uint, which hold any rune
		if signed {
			limit >>= 1
		}
		if err == nil && size > 0 && u >= limit {
			err = fmt.Errorf("%s does not fit a %s", lit, typ)
		}
	} else if signed {
		n, err = strconv.ParseInt(lit, 0, size)
	} else {
		u, err = strconv.ParseUint(lit, 0, size)
	}
	if err != nil {
		return nil, fmt.Errorf("%s literal %s: %w", typ, lit, err)
	}
	var v any
	switch typ {
	case "int":
		v = int(n)
	case "int8":
		v = int8(n)
	case "int16":
		v = int16(n)
	case "int32", "rune":
		v = int32(n)
	case "int64":
		v = n
	case "uint":
		v = uint(u)
	case "uint8", "byte":
		v = uint8(u)
	case "uint16":
		v = uint16(u)
	case "uint32":
		v = uint32(u)
	case "uint64":
		v = u
	}
	return v, nil
}
