package main

import (
	"fmt"
	"strconv"
	"strings"
)

// byteSize is a flag value of bytes, written as a number with an
// optional unit: 4096, 64KiB, 512MiB, 4GiB (K, M, G and KB, MB, GB are
// read as powers of 1024 too; a byte budget is never meant in 1000s).
type byteSize int64

// String formats the size in the largest unit that divides it.
func (b *byteSize) String() string {
	v := int64(*b)
	for _, u := range []struct {
		name  string
		shift uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if v != 0 && v%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", v>>u.shift, u.name)
		}
	}
	return strconv.FormatInt(v, 10)
}

// Set parses a size; it must be positive and fit in 63 bits.
func (b *byteSize) Set(s string) error {
	// Longest suffix first, so "MiB" is not read as "B".
	units := []struct {
		suffix string
		shift  uint
	}{
		{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40},
		{"KB", 10}, {"MB", 20}, {"GB", 30}, {"TB", 40},
		{"K", 10}, {"M", 20}, {"G", 30}, {"T", 40}, {"B", 0},
	}
	num, shift := strings.TrimSpace(s), uint(0)
	for _, u := range units {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, shift = strings.TrimSpace(n), u.shift
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v <= 0 {
		return fmt.Errorf("%q is not a positive size (e.g. 4096, 512MiB, 4GiB)", s)
	}
	if v > (1<<63-1)>>shift {
		return fmt.Errorf("%q is too large", s)
	}
	*b = byteSize(v << shift)
	return nil
}

// maxHeldStream bounds the flags that hold a whole TX stream in memory
// (replay --model-limit, trace minimize --max, corpus export --max):
// holding one costs several times its size (the stream, the model's
// state and the split checks' copies: 598 MB at a 64 MiB limit), so the
// bound keeps the worst case to a few GB.
const maxHeldStream = 512 << 20

// checkHeld says what is wrong with a stream-holding flag's value.
func checkHeld(cmd, flag string, v byteSize) error {
	if bound := byteSize(maxHeldStream); v > bound {
		return usagef("%s: %s %s: at most %s (a stream is held in memory, at several times its size)", cmd, flag, v.String(), bound.String())
	}
	return nil
}
