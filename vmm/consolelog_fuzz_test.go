package vmm

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/ktstr/ktstr/internal/libfuzzer"
)

// FuzzConsoleLog writes data in the chunk sizes cuts gives and checks
// the log against what it must hold, computed whole: everything within
// the budget, else the head, the line, and the tail. It calls nothing
// from the package's other test files and fails with t.Fatalf, as a
// harness go-118-fuzz-build compiles alone needs (docs/fuzzing.md).
func FuzzConsoleLog(f *testing.F) {
	f.Add([]byte("hello\n"), []byte{1, 2, 3}, uint8(0))
	f.Add(bytes.Repeat([]byte("x"), 300), []byte{255}, uint8(1))
	f.Add([]byte("line 1\nline 2\n"), []byte{3, 200, 0}, uint8(200)) // 400 KB: past the budget
	export := libfuzzer.Exporter()                                   // the seeds, for the libFuzzer build's corpus
	f.Fuzz(func(t *testing.T, data, cuts []byte, grow uint8) {
		if export != nil {
			export(t, data, cuts, grow)
		}
		// Stretch the input past the smallest budget so both sides of
		// it are reached without fuzzing megabytes.
		in := bytes.Repeat(data, 1+int(grow)*int(MinMaxConsole)/max(1, 64*len(data)))
		var out bytes.Buffer
		l := NewConsoleLog(&out, MinMaxConsole)
		for p, i := in, 0; len(p) > 0; i++ {
			k := len(p)
			if len(cuts) > 0 {
				k = min(len(p), 1+int(cuts[i%len(cuts)])*97)
			}
			if n, err := l.Write(p[:k]); err != nil || n != k {
				t.Fatalf("Write of %d bytes: %d, %v", k, n, err)
			}
			p = p[k:]
		}
		if err := l.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		tail := int(MinMaxConsole / 2)
		want, dropped := in, 0
		if len(in) > int(MinMaxConsole) {
			dropped = len(in) - int(MinMaxConsole)
			want = slices.Concat(in[:int(MinMaxConsole)-tail],
				fmt.Appendf(nil, "\n[ktstr: the guest wrote %d bytes to its console, past the log's budget of %d; %d bytes in the middle were dropped, the last %d follow]\n", len(in), MinMaxConsole, dropped, tail),
				in[len(in)-tail:])
		}
		if got := l.Dropped(); got != int64(dropped) {
			t.Fatalf("Dropped %d, want %d", got, dropped)
		}
		if !bytes.Equal(want, out.Bytes()) {
			t.Fatalf("%d bytes in, %d out, %d wanted", len(in), out.Len(), len(want))
		}
	})
}
