package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// checkedWriter passes writes through to w and remembers the first
// error, so that a command whose standard output or error fails (a full
// disk, /dev/full, a closed descriptor) ends with exit 2 even where it
// printed with fmt.Fprintf and never looked at the result. After the
// first error it writes nothing more.
type checkedWriter struct {
	w   io.Writer
	err error
}

func (c *checkedWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		c.err = err
	}
	return n, err
}

// failed reports whether a write has failed.
func (c *checkedWriter) failed() bool { return c.err != nil }

// writeFailed returns the error of a writer that is a failed
// checkedWriter, or nil: commands that produce output as they go use it
// to stop early instead of working on for nobody.
func writeFailed(w io.Writer) error {
	if c, ok := w.(*checkedWriter); ok {
		return c.err
	}
	return nil
}

// safe returns s as it is when every rune in it is printable (letters,
// marks, numbers, punctuation, symbols, the ASCII space), and otherwise
// quoted as a Go string literal, so that a string taken from a trace or
// from a guest can never start a line, move the cursor or change the
// terminal's state in what ktstr prints for a person: newlines, escape
// sequences, other control characters, Unicode line separators and
// direction overrides, and invalid UTF-8 all come out escaped. The empty
// string is shown as "".
func safe(s string) string {
	if s != "" && printable(s) {
		return s
	}
	return strconv.Quote(s)
}

// printable reports whether every rune of s is valid UTF-8 and
// strconv.IsPrint.
func printable(s string) bool {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n <= 1 {
				return false
			}
		}
		if !strconv.IsPrint(r) {
			return false
		}
	}
	return true
}

// safeLines is safe for text meant to span lines (a guest's panic, the
// console's last lines): it keeps the newlines and escapes every other
// rune that is not printable (tab included) as strconv.Quote would,
// without the quotes, so no line can carry a control character.
func safeLines(s string) string { return escapeUnprintable(s, true) }

// safeInline is safeLines for text printed inside one line: newlines
// are escaped too.
func safeInline(s string) string { return escapeUnprintable(s, false) }

// escapeUnprintable writes every rune of s that is not printable (and
// every byte that is not UTF-8) as its Go escape, \n, \x1b, \u2028,
// keeping newlines when keepNewlines is set. Printable text is left as
// it is, backslashes included.
func escapeUnprintable(s string, keepNewlines bool) string {
	if printable(strings.ReplaceAll(s, "\n", "")) && (keepNewlines || !strings.Contains(s, "\n")) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n' && keepNewlines, strconv.IsPrint(r):
			b.WriteString(s[i : i+n])
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}

// maxJSONShown is how much of a JSON value from a trace trace show
// prints on its line: a detail may be 16 MiB, which no one reads on one
// line and no reader should copy whole to print.
const maxJSONShown = 4 << 10

// printableJSON returns js (encoding/json output: valid UTF-8, no raw
// ASCII controls) with every rune that is not printable (C1 controls,
// DEL, direction overrides, line separators) written as a \u escape:
// the same JSON value, whose bytes cannot change a terminal's state or
// split a line for a reader that splits on Unicode line breaks.
func printableJSON(js []byte) []byte {
	if !slices.ContainsFunc(js, func(c byte) bool { return c >= 0x7f }) {
		return js // ASCII: encoding/json escaped every control already
	}
	out := make([]byte, 0, len(js))
	for _, r := range string(js) {
		if r < utf8.RuneSelf && r != 0x7f || strconv.IsPrint(r) {
			out = utf8.AppendRune(out, r)
			continue
		}
		if r > 0xffff {
			hi, lo := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, hi, lo)
			continue
		}
		out = fmt.Appendf(out, `\u%04x`, r)
	}
	return out
}

// printableWriter passes each Write through printableJSON: for a
// json.Encoder, which writes each value in one Write.
type printableWriter struct{ w io.Writer }

func (p printableWriter) Write(b []byte) (int, error) {
	if _, err := p.w.Write(printableJSON(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}

// safeJSON renders a JSON value from a trace on one line for a person:
// compacted (a pretty-printed detail spans no lines), with every rune
// that is not printable written as a \u escape, which keeps it valid
// JSON, and cut after maxJSONShown bytes with a note of how many more
// there were. It works in one pass over v without copying it: outside
// its strings, valid JSON holds only printable ASCII and whitespace,
// which goes; inside them every rune is written as it is or escaped.
func safeJSON(v []byte) string {
	var out strings.Builder
	inString, escaped := false, false
	for i := 0; i < len(v); {
		if out.Len() >= maxJSONShown {
			fmt.Fprintf(&out, "…(%d more bytes)", len(v)-i)
			break
		}
		c := v[i]
		if !inString && c < utf8.RuneSelf {
			switch c {
			case ' ', '\t', '\r', '\n':
			case '"':
				inString = true
				out.WriteByte(c)
			default:
				if strconv.IsPrint(rune(c)) {
					out.WriteByte(c)
				} else {
					fmt.Fprintf(&out, `\u%04x`, c)
				}
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(v[i:])
		if inString {
			switch {
			case escaped:
				escaped = false
			case r == '\\':
				escaped = true
			case r == '"':
				inString = false
			}
		}
		switch {
		case r == utf8.RuneError && n <= 1:
			out.WriteString(`\ufffd`) // not UTF-8: the Reader refuses it
		case strconv.IsPrint(r) && r != utf8.RuneError:
			out.Write(v[i : i+n])
		case r > 0xFFFF:
			r -= 0x10000
			fmt.Fprintf(&out, `\u%04x\u%04x`, 0xD800+(r>>10), 0xDC00+(r&0x3FF))
		default:
			fmt.Fprintf(&out, `\u%04x`, r)
		}
		i += n
	}
	return out.String()
}
