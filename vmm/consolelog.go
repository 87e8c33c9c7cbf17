package vmm

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// DefaultMaxConsole is how much of a guest's serial console output a
// console log keeps unless the run says otherwise (Config.MaxConsole,
// `ktstr record --max-console`). A kernel's boot log is tens of KiB and a
// sched_ext error dump a few MiB; a guest printing in a loop would
// otherwise fill the host's disk.
const DefaultMaxConsole = 64 << 20

// MinMaxConsole is the smallest console budget a run may ask for: enough
// for a kernel's boot log and the tail that explains a failed boot.
const MinMaxConsole = 2 * consoleTail

// ConsoleLog writes a guest's console output to a file within a budget of
// limit bytes. It keeps the first limit−tail bytes as they come, and of what
// follows only the last tail bytes (tail is consoleTail, or limit/2 for a
// smaller budget) in memory, which Close appends after a line saying how
// much was dropped: the start of a boot and the end of a run (a panic,
// the agent's last words, what consoleWhy reads) both survive a guest
// that prints without end. If the recorder dies before Close, the file
// holds the head. It is safe for concurrent use (vCPUs write the UART
// and the virtio console's port 0 at once). A nil *ConsoleLog discards
// what it is given: the log of a run that asked for none.
type ConsoleLog struct {
	mu      sync.Mutex
	w       io.Writer
	head    int64  // bytes kept as they came
	written int64  // bytes written to w so far (of head)
	tail    []byte // ring of the latest bytes past head, cap = tail size
	next    int    // where the ring's next byte goes once full
	past    int64  // bytes the guest wrote past head
	stored  int64  // bytes of the guest's output written to w without error
	err     error  // first write error; later output is dropped
	closed  bool
}

// NewConsoleLog returns a ConsoleLog writing to w within limit bytes
// (a limit below MinMaxConsole is raised to it).
func NewConsoleLog(w io.Writer, limit int64) *ConsoleLog {
	limit = max(limit, MinMaxConsole)
	tail := min(int64(consoleTail), limit/2)
	return &ConsoleLog{w: w, head: limit - tail, tail: make([]byte, 0, tail)}
}

// CreateConsoleLog creates (or truncates) the file at path and returns a
// ConsoleLog writing to it within limit bytes; Close closes the file.
func CreateConsoleLog(path string, limit int64) (*ConsoleLog, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating the console log: %w", err)
	}
	return NewConsoleLog(f, limit), nil
}

// Write takes the guest's output. It never fails: a guest's console is
// not slowed or stopped by the host's disk. A write error is kept for
// Close, and what follows it is dropped.
func (l *ConsoleLog) Write(p []byte) (int, error) {
	if l == nil {
		return len(p), nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	if l.closed {
		return n, nil
	}
	if room := l.head - l.written; room > 0 {
		k := int(min(room, int64(len(p))))
		if l.err == nil {
			var w int
			w, l.err = l.w.Write(p[:k])
			l.stored += int64(w)
		}
		l.written += int64(k)
		p = p[k:]
	}
	if len(p) == 0 {
		return n, nil
	}
	l.past += int64(len(p))
	l.keepTail(p)
	return n, nil
}

// keepTail puts p into the ring of the latest bytes past the head.
func (l *ConsoleLog) keepTail(p []byte) {
	c := cap(l.tail)
	if len(p) >= c {
		l.tail = append(l.tail[:0], p[len(p)-c:]...)
		l.next = 0
		return
	}
	if k := min(c-len(l.tail), len(p)); k > 0 {
		l.tail = append(l.tail, p[:k]...)
		p = p[k:]
	}
	for len(p) > 0 {
		k := copy(l.tail[l.next:], p)
		l.next = (l.next + k) % c
		p = p[k:]
	}
}

// Dropped returns how many bytes of the guest's output the log does not
// hold: none while the output fits the budget and the file takes it;
// after a write error, everything not written before it.
func (l *ConsoleLog) Dropped() int64 {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.written + l.past - l.stored // all the guest wrote, less what reached w
	}
	return l.past - int64(len(l.tail))
}

// Close writes what the budget kept of the output's end (after a line
// saying how much was dropped, if anything was: output within the budget
// is written whole), closes the file if the
// log was created on one, and returns the first write or close error.
// Later writes are dropped; calling Close again returns nil.
func (l *ConsoleLog) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if kept := int64(len(l.tail)); l.past > kept && l.err == nil {
		_, l.err = fmt.Fprintf(l.w, "\n[ktstr: the guest wrote %d bytes to its console, past the log's budget of %d; %d bytes in the middle were dropped, the last %d follow]\n",
			l.head+l.past, l.head+int64(cap(l.tail)), l.past-kept, kept)
	}
	// The ring, oldest byte first: all of what came past the head when
	// nothing was dropped, else its end.
	for _, part := range [][]byte{l.tail[l.next:], l.tail[:l.next]} {
		if l.err == nil {
			var w int
			w, l.err = l.w.Write(part)
			l.stored += int64(w)
		}
	}
	err := l.err
	if c, ok := l.w.(io.Closer); ok {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("console log: %w", err)
	}
	return nil
}

// WithConsole returns e with what the backend's console log l says of
// the run: how much it dropped, and, if closing it failed (closeErr),
// that the log is incomplete; the guest ended as e says either way.
func (e Exit) WithConsole(l *ConsoleLog, closeErr error) Exit {
	e.ConsoleDropped = l.Dropped()
	if closeErr != nil {
		e.Detail = strings.TrimPrefix(e.Detail+"; the serial console log is incomplete: "+closeErr.Error(), "; ")
	}
	return e
}
