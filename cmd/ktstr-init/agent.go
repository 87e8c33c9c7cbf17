package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// agent is the state one run of the guest agent shares between its
// scenario, the scheduler supervisor and the port reader.
type agent struct {
	cfg   config
	port  io.Writer // the bulk port's TX side
	wmu   sync.Mutex
	start time.Time
	log   io.Writer // the serial console, for humans reading the log
	self  string    // executable re-run for helper processes
	cg    cgroups

	// replies carries SNRP payloads read from the port's RX side.
	replies chan wire.SnapshotReplyPayload
	// crashed is closed once a panic has been reported as CRSH.
	crashOnce sync.Once
	crashed   chan struct{}
}

func newAgent(cfg config, port io.Writer, log io.Writer) *agent {
	return &agent{
		cfg:     cfg,
		port:    port,
		start:   time.Now(),
		log:     log,
		self:    "/proc/self/exe",
		cg:      cgroups{root: cgroupRoot},
		replies: make(chan wire.SnapshotReplyPayload, 2*replyQueue),
		crashed: make(chan struct{}),
	}
}

// replyQueue bounds the SNRP replies held for the scenario; more are
// dropped (a hostile scenario floods requests it never waits on).
const replyQueue = 64

// send writes one intact frame with a single write, so concurrent
// senders never interleave inside a frame.
func (a *agent) send(tag wire.Tag, payload []byte) error {
	if len(payload) > wire.MaxPayload {
		return fmt.Errorf("%v payload of %d bytes exceeds the %d-byte maximum", tag, len(payload), wire.MaxPayload)
	}
	return a.writeRaw(wire.AppendFrame(nil, tag, payload))
}

// writeRaw writes b to the port in one write call, under the port lock.
func (a *agent) writeRaw(b []byte) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	if _, err := a.port.Write(b); err != nil {
		return fmt.Errorf("write bulk port: %w", err)
	}
	return nil
}

// sendJSON sends v as the JSON payload of a tag frame.
func (a *agent) sendJSON(tag wire.Tag, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %v payload: %w", tag, err)
	}
	return a.send(tag, b)
}

// sendStatus sends an i32 status (EXIT, SCDX).
func (a *agent) sendStatus(tag wire.Tag, status int) error {
	return a.send(tag, binary.LittleEndian.AppendUint32(nil, uint32(int32(status))))
}

// sendStep sends STEP n followed by a STIM describing what the step does.
func (a *agent) sendStep(n uint16, action string, extra map[string]any) error {
	if err := a.send(wire.Step, binary.LittleEndian.AppendUint16(nil, n)); err != nil {
		return err
	}
	stim := map[string]any{"step": n, "action": action, "t_ns": a.since()}
	for k, v := range extra {
		stim[k] = v
	}
	return a.sendJSON(wire.Stimulus, stim)
}

// since is the agent's clock: nanoseconds since the agent started.
func (a *agent) since() int64 { return int64(time.Since(a.start)) }

// logf writes a line to the serial console.
func (a *agent) logf(format string, args ...any) {
	fmt.Fprintf(a.log, "ktstr-init: "+format+"\n", args...)
}

// crash reports a recovered panic as a CRSH frame (once) and on the
// console.
func (a *agent) crash(v any) {
	a.crashOnce.Do(func() {
		msg := fmt.Sprintf("panic: %v\n\n%s", v, debug.Stack())
		a.logf("%s", msg)
		if len(msg) > wire.MaxPayload {
			msg = msg[:wire.MaxPayload]
		}
		if err := a.send(wire.Crash, []byte(msg)); err != nil {
			a.logf("could not send CRSH: %v", err)
		}
		close(a.crashed)
	})
}

// goSafe runs f in a goroutine whose panic is reported as CRSH instead
// of killing PID 1 silently.
func (a *agent) goSafe(f func()) {
	go func() {
		defer func() {
			if v := recover(); v != nil {
				a.crash(v)
			}
		}()
		f()
	}()
}

// frameWriter turns each Write into one frame of its tag: the output of
// a worker (SOUT, SERR) or of the scheduler (SCLG).
type frameWriter struct {
	a   *agent
	tag wire.Tag
}

func (w frameWriter) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0; {
		n := min(len(rest), maxOutputFrame)
		if err := w.a.send(w.tag, rest[:n]); err != nil {
			return len(p) - len(rest), err
		}
		rest = rest[n:]
	}
	return len(p), nil
}

// maxOutputFrame caps the payload of one output frame.
const maxOutputFrame = 64 << 10

// readReplies reads host→guest frames from the port's RX side and
// passes SNRP payloads to a.replies until r fails. Frames that are not
// intact, not SNRP, or do not decode are dropped: the host is trusted,
// but a torn reply must not be mistaken for a good one.
func (a *agent) readReplies(r io.Reader) {
	var hdr [wire.HeaderSize]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			a.logRead(err)
			return
		}
		h, _ := wire.DecodeHeader(hdr[:])
		if h.Len > wire.MaxPayload {
			a.logf("host sent a frame header declaring %d bytes; RX stream abandoned", h.Len)
			return
		}
		p := make([]byte, h.Len)
		if _, err := io.ReadFull(r, p); err != nil {
			a.logRead(err)
			return
		}
		if h.Tag != wire.SnapshotReply || h.Pad != 0 || wire.Checksum(p) != h.CRC {
			a.logf("dropped host frame %v (%d bytes)", h.Tag, h.Len)
			continue
		}
		rep, err := wire.DecodeSnapshotReply(p)
		if err != nil {
			a.logf("dropped SNRP: %v", err)
			continue
		}
		select {
		case a.replies <- rep:
		default:
		}
	}
}

func (a *agent) logRead(err error) {
	if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
		a.logf("read bulk port: %v", err)
	}
}

// waitReply waits for the SNRP answering request id; replies to other
// requests are discarded.
func (a *agent) waitReply(ctx context.Context, id uint32) (wire.SnapshotReplyPayload, error) {
	for {
		select {
		case r := <-a.replies:
			if r.RequestID == id {
				return r, nil
			}
			// Said on the console: a reply that comes after its waiter
			// gave up tells a late RX delivery from a lost one.
			a.logf("SNRP for request %d while waiting for %d (late, discarded)", r.RequestID, id)
		case <-ctx.Done():
			return wire.SnapshotReplyPayload{}, fmt.Errorf("no SNRP for request %d: %w", id, ctx.Err())
		}
	}
}
