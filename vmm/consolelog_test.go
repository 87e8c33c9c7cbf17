package vmm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// consoleStream is n bytes of numbered lines, so that any cut shows.
func consoleStream(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %08d\n", i)
	}
	return b.Bytes()[:n]
}

func TestConsoleLogBudget(t *testing.T) {
	const limit = MinMaxConsole
	tail := int(limit / 2)
	head := int(limit) - tail
	tests := []struct {
		name   string
		total  int
		chunks []int // write sizes, cycled; 0 means the whole stream at once
	}{
		{"empty", 0, []int{0}},
		{"under the budget", 1000, []int{7}},
		{"exactly the budget", int(limit), []int{4096}},
		{"one byte past", int(limit) + 1, []int{1 << 20}},
		{"far past, byte by byte", int(limit) + 3*tail + 17, []int{1}},
		{"far past, odd chunks", 10*int(limit) + 5, []int{999, 65537, 3}},
		{"far past, in one write", 5 * int(limit), []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := consoleStream(tt.total)
			var out bytes.Buffer
			l := NewConsoleLog(&out, limit)
			for p, i := in, 0; len(p) > 0; i++ {
				k := tt.chunks[i%len(tt.chunks)]
				if k == 0 || k > len(p) {
					k = len(p)
				}
				n, err := l.Write(p[:k])
				require.NoError(t, err)
				require.Equal(t, k, n)
				p = p[k:]
			}
			require.NoError(t, l.Close())
			got := out.Bytes()
			if tt.total <= int(limit) {
				// Positive control: what fits is kept whole, unmarked.
				assert.True(t, bytes.Equal(in, got), "kept whole: %d bytes in, %d out", len(in), len(got))
				assert.Zero(t, l.Dropped())
				return
			}
			dropped := tt.total - int(limit)
			assert.Equal(t, int64(dropped), l.Dropped())
			require.True(t, bytes.HasPrefix(got, in[:head]), "the head is kept as it came")
			require.True(t, bytes.HasSuffix(got, in[len(in)-tail:]), "the last bytes are kept, in order")
			marker := got[head : len(got)-tail]
			assert.Equal(t, fmt.Sprintf("\n[ktstr: the guest wrote %d bytes to its console, past the log's budget of %d; %d bytes in the middle were dropped, the last %d follow]\n", tt.total, limit, dropped, tail), string(marker))
			assert.LessOrEqual(t, len(got), int(limit)+200, "the file holds the budget and one line")
		})
	}
}

func TestConsoleLogSmallBudgetIsRaised(t *testing.T) {
	var out bytes.Buffer
	l := NewConsoleLog(&out, 1)
	in := consoleStream(int(MinMaxConsole))
	_, _ = l.Write(in)
	require.NoError(t, l.Close())
	assert.True(t, bytes.Equal(in, out.Bytes()), "a budget below the minimum keeps the minimum: %d bytes in, %d out", len(in), out.Len())
}

// failingWriter fails every write after the first n bytes.
type failingWriter struct {
	n      int
	writes int
}

func (w *failingWriter) Write(p []byte) (int, error) {
	w.writes++
	if len(p) > w.n {
		n := w.n
		w.n = 0
		return n, errors.New("no space left on device")
	}
	w.n -= len(p)
	return len(p), nil
}

func TestConsoleLogWriteError(t *testing.T) {
	w := &failingWriter{n: 10}
	l := NewConsoleLog(w, MinMaxConsole)
	for range 100 {
		n, err := l.Write([]byte("0123456789abcdef"))
		require.NoError(t, err, "the guest's console is never failed by the host's disk")
		require.Equal(t, 16, n)
	}
	assert.Equal(t, 1, w.writes, "after the first error the log writes nothing more")
	assert.Equal(t, int64(100*16-10), l.Dropped(), "all but the 10 bytes written before the error are dropped")
	err := l.Close()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no space left on device")
	assert.NoError(t, l.Close(), "a second Close has nothing to say")
	n, err := l.Write([]byte("late"))
	assert.NoError(t, err)
	assert.Equal(t, 4, n, "writes after Close are dropped, not failed")
}

func TestConsoleLogNilDiscards(t *testing.T) {
	var l *ConsoleLog
	n, err := l.Write([]byte("x"))
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Zero(t, l.Dropped())
	assert.NoError(t, l.Close())
	c, err := Config{}.OpenConsoleLog()
	require.NoError(t, err)
	assert.Nil(t, c, "a run without a console log path gets none")
}

// TestConsoleLogFile drives a console log on a file past its budget
// from several writers at once (vCPUs writing the UART together): the
// file stays within the budget and consoleWhy still reads the end.
func TestConsoleLogFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	l, err := Config{ConsoleLog: path, MaxConsole: 1 << 20}.OpenConsoleLog()
	require.NoError(t, err)
	line := []byte(strings.Repeat("x", 100) + "\n")
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 40000 { // 4 × 4 MB: 16 times the budget
				_, _ = l.Write(line)
			}
		})
	}
	wg.Wait()
	_, _ = l.Write([]byte("Kernel panic - not syncing: the end\n"))
	require.NoError(t, l.Close())
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.LessOrEqual(t, st.Size(), int64(1<<20)+200)
	assert.Equal(t, int64(4*40000*len(line)+36-(1<<20)), l.Dropped())
	_, why := consoleWhy(path)
	assert.Equal(t, "Kernel panic - not syncing: the end", why, "the log's end survives the budget")

	// Control: the default budget holds the same output whole.
	path2 := filepath.Join(t.TempDir(), "console.log")
	l2, err := Config{ConsoleLog: path2}.OpenConsoleLog()
	require.NoError(t, err)
	for range 40000 {
		_, _ = l2.Write(line)
	}
	require.NoError(t, l2.Close())
	st, err = os.Stat(path2)
	require.NoError(t, err)
	assert.Equal(t, int64(40000*len(line)), st.Size())
	assert.Zero(t, l2.Dropped())
}

// TestExitWithConsole: an exit carries what its console log dropped,
// and a log that could not be closed is named in the detail; control: a
// closed log adds nothing to the detail.
func TestExitWithConsole(t *testing.T) {
	var out bytes.Buffer
	l := NewConsoleLog(&out, MinMaxConsole)
	_, _ = l.Write(consoleStream(int(MinMaxConsole) + 10))
	require.NoError(t, l.Close())
	e := Exit{Reason: ExitPoweroff}.WithConsole(l, nil)
	assert.Equal(t, Exit{Reason: ExitPoweroff, ConsoleDropped: 10}, e)
	e = Exit{Reason: ExitPoweroff, Detail: "QEMU was killed"}.WithConsole(nil, errors.New("console log: no space left on device"))
	assert.Equal(t, "QEMU was killed; the serial console log is incomplete: console log: no space left on device", e.Detail)
	assert.Equal(t, "the serial console log is incomplete: x", Exit{}.WithConsole(nil, errors.New("x")).Detail)
}
