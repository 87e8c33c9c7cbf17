package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// qmp is a minimal client of the QEMU Machine Protocol: one command at a
// time; of the events, only the last "reason" of each name is kept. The
// guest makes QEMU emit events (VSERPORT_CHANGE each time it opens or
// closes a port, RTC_CHANGE when it sets the clock), so nothing here
// grows with their number.
type qmp struct {
	conn    net.Conn
	cmdMu   sync.Mutex    // one command in flight
	replies chan qmpReply // the reader's answers to commands
	done    chan struct{} // closed when the connection is gone
	// alive ends, with cause ErrGuestShutdown, when QEMU reports a
	// SHUTDOWN event: the guest is gone (or going) whatever later
	// commands would say.
	alive    context.Context
	endAlive context.CancelCauseFunc
	version  string // QEMU version from the greeting
	lastID   uint64 // id of the last command sent; under cmdMu

	mu      sync.Mutex        // guards the fields below
	reasons map[string]string // event name → its "reason" field, last seen; QEMU's names only
	err     error             // why the reader stopped
}

// ErrGuestShutdown is why a monitor command fails once QEMU has reported
// the guest's shutdown: there is nothing left to pause or inspect.
var ErrGuestShutdown = errors.New("the guest has shut down")

type qmpReply struct {
	ID     uint64          `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
}

type qmpMessage struct {
	QMP *struct {
		Version struct {
			QEMU struct {
				Major, Minor, Micro int
			} `json:"qemu"`
			Package string `json:"package"`
		} `json:"version"`
	} `json:"QMP"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
	qmpReply
}

// dialQMP connects to the QMP socket at path, retrying until QEMU has
// created it or ctx ends, reads the greeting and leaves capabilities
// negotiation mode.
func dialQMP(ctx context.Context, path string) (*qmp, error) {
	var conn net.Conn
	var err error
	for {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "unix", path)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to QMP socket %s: %w", path, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	q := &qmp{conn: conn, replies: make(chan qmpReply, 16), done: make(chan struct{}),
		reasons: map[string]string{}}
	q.alive, q.endAlive = context.WithCancelCause(context.Background())
	greeting := make(chan error, 1)
	go q.read(greeting)
	select {
	case err := <-greeting:
		if err != nil {
			conn.Close()
			return nil, err
		}
	case <-ctx.Done():
		conn.Close()
		return nil, fmt.Errorf("QMP greeting: %w", ctx.Err())
	}
	if _, err := q.execute(ctx, "qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

// read decodes messages until the connection ends: the greeting first
// (reported on greeting), then replies and events.
func (q *qmp) read(greeting chan<- error) {
	defer close(q.done)
	sc := bufio.NewScanner(q.conn)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	first := true
	for sc.Scan() {
		var m qmpMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			q.setErr(fmt.Errorf("QMP: undecodable message: %w", err))
			if first {
				greeting <- q.err
			}
			return
		}
		switch {
		case first:
			first = false
			if m.QMP == nil {
				greeting <- errors.New("QMP: the first message is not a greeting")
				return
			}
			v := m.QMP.Version.QEMU
			q.version = fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro)
			greeting <- nil
		case m.Event != "":
			var d struct {
				Reason string `json:"reason"`
			}
			if json.Unmarshal(m.Data, &d) == nil && d.Reason != "" {
				q.mu.Lock()
				q.reasons[m.Event] = d.Reason
				q.mu.Unlock()
			}
			if m.Event == "SHUTDOWN" {
				q.endAlive(ErrGuestShutdown)
			}
		default:
			// A reply nobody waits for any more (its command timed
			// out) is dropped rather than blocking the reader.
			select {
			case q.replies <- m.qmpReply:
			default:
			}
		}
	}
	err := sc.Err()
	if err == nil {
		err = errors.New("QMP connection closed")
	}
	q.setErr(err)
	if first {
		greeting <- fmt.Errorf("QMP greeting: %w", err)
	}
}

func (q *qmp) setErr(err error) {
	q.mu.Lock()
	if q.err == nil {
		q.err = err
	}
	q.mu.Unlock()
}

// execute runs one command and returns its "return" value.
func (q *qmp) execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	q.cmdMu.Lock()
	defer q.cmdMu.Unlock()
	q.lastID++
	id := q.lastID
	req := map[string]any{"execute": cmd, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("QMP %s: %w", cmd, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = q.conn.SetWriteDeadline(dl)
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", cmd, err)
	}
	for {
		select {
		case r := <-q.replies:
			if r.ID != id {
				continue // the late answer to an abandoned command
			}
			if r.Error != nil {
				return nil, fmt.Errorf("QMP %s: %s: %s", cmd, r.Error.Class, r.Error.Desc)
			}
			return r.Return, nil
		case <-q.done:
			q.mu.Lock()
			err := q.err
			q.mu.Unlock()
			return nil, fmt.Errorf("QMP %s: %w", cmd, err)
		case <-ctx.Done():
			return nil, fmt.Errorf("QMP %s: %w", cmd, context.Cause(ctx))
		}
	}
}

// reason returns the "reason" of the last event called name, if any.
func (q *qmp) reason(name string) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.reasons[name]
}

func (q *qmp) close() error { return q.conn.Close() }
