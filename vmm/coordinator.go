package vmm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktstr/ktstr/capture"
	"github.com/ktstr/ktstr/dispatch"
	"github.com/ktstr/ktstr/dispatch/wire"
)

// Reasons a run ends, stored in the trace's END record.
const (
	EndPoweroff  = "poweroff"     // the guest powered off by itself
	EndSchedExit = "sched_exit"   // an accepted SCDX made the host stop the guest
	EndWatchdog  = "watchdog"     // the run watchdog expired
	EndTimeout   = "timeout"      // the overall timeout expired
	EndSignal    = "signal"       // the recorder was interrupted
	EndGuestDied = "guest_died"   // the guest reset, panicked or its VMM failed
	EndTraceErr  = "trace_error"  // the trace could not be written
	EndTraceFull = "trace_budget" // the guest would have written past Run.MaxTrace
)

// DefaultSnapshotBudget is the snapshot time budget of a run
// (Run.SnapshotBudget): how long its captures may take together. The 64
// captures a run accepts took 150 ms in all under TCG on an idle build
// machine; the budget leaves room for a loaded host, and bounds how long
// a guest can keep the dispatch loop busy with captures when every
// monitor command is slow.
const DefaultSnapshotBudget = 10 * time.Second

// DefaultMaxTrace is the trace budget of a run: the most TX bytes it
// records (and dispatches) before it stops the guest with EndTraceFull.
const DefaultMaxTrace = 4 << 30

// Run is one live recording: it boots a guest through Backend, taps
// every bulk-port delivery into a trace, and dispatches it with live
// sinks.
type Run struct {
	Backend Backend
	Config  Config
	// Trace receives the trace; Meta is its metadata, completed with the
	// backend's name and Info before the first record.
	Trace io.Writer
	Meta  capture.Meta
	// Timeout bounds the whole run; 0 means no bound.
	Timeout time.Duration
	// Watchdog is the run watchdog period: armed at start, re-armed by
	// SCST, paused by SCPP and resumed by SCRR. 0 disables it.
	Watchdog time.Duration
	// ExpectPass says the scenario reports its verdict in a TEST frame:
	// the run then succeeds only when an accepted TEST says "pass": true
	// (a run stopped before its TEST, or whose TEST fails, exits 1).
	ExpectPass bool
	// MinStep, if not 0, is the scenario step an SCDX must come at or
	// after for the run to succeed (sched-ext: the ejection, step 3; a
	// scheduler that dies earlier failed).
	MinStep uint16
	// MaxTrace is the most TX bytes the run records; a guest that would
	// write past it is stopped with EndTraceFull, and what it wrote up
	// to the budget is recorded and dispatched. 0 means DefaultMaxTrace.
	// It bounds the trace file too: each delivery is a record with a
	// 16-byte head, so a guest whose deliveries are a byte or two makes
	// a trace larger than its bytes (4 trace bytes per TX byte,
	// compressed, measured); once the file written to Trace has grown
	// by MaxTrace past its header the run stops the same way, having
	// written at most one more zstd frame (capture.FrameSize before
	// compression) past it.
	MaxTrace int64
	// Progress, if set, is called from the run's goroutine whenever the
	// run's state changes; it must return quickly.
	Progress func(Progress)
	// YieldCPU makes every thread of this process SCHED_BATCH from the
	// moment the guest has started until the run ends, so that the
	// recorder waking up never preempts a vCPU thread that shares its
	// core. The guest's VMM, started before, keeps its policy. It is
	// meant for hosts with no core to spare (see GuestFillsHost).
	YieldCPU bool
	// SnapshotBudget is the most time the run's snapshot captures may
	// take together, each from its pause to its resume; 0 means
	// DefaultSnapshotBudget. A capture asked for once it is spent is
	// answered with an error and does not pause the guest.
	SnapshotBudget time.Duration
}

// MakeRoom prepares the run for a host it can fill (GuestFillsHost of
// Config.CPUs and this host's CPUs): it sets YieldCPU and runs the Go
// scheduler on one P (GOMAXPROCS 1: the recorder's work is one stream,
// and the runtime's idle Ps only spin on the cores the vCPUs need),
// unless GOMAXPROCS is set in the environment. restore puts GOMAXPROCS
// back. Elsewhere it changes nothing. `ktstr record` and the e2e tests
// both run this way.
func (r *Run) MakeRoom() (restore func()) {
	if !GuestFillsHost(r.Config.CPUs, runtime.NumCPU()) {
		return func() {}
	}
	r.YieldCPU = true
	if os.Getenv("GOMAXPROCS") != "" {
		return func() {}
	}
	procs := runtime.GOMAXPROCS(1)
	return func() { runtime.GOMAXPROCS(procs) }
}

// Progress is a snapshot of a run for a progress display.
type Progress struct {
	Phase     string // "booting", "running", "stopping", "ended"
	SysRdyNS  int64  // run clock at the accepted SRDY, or -1
	Frames    int64  // frames framed so far
	Bytes     int64  // TX bytes so far
	Rejected  uint64 // frames rejected so far
	Snapshots int    // snapshot requests answered
	NowNS     int64  // run clock
}

// Result is how a run went.
type Result struct {
	Outcome dispatch.Outcome // the live outcome, as stored in END
	Reason  string           // one of the End* reasons
	Detail  string           // a sentence on why, for humans
	Exit    Exit             // how the backend says the guest ended
	Info    map[string]string
	Stats   dispatch.Stats

	SysRdyNS    int64 // run clock at the accepted SRDY, or -1
	SchedExitNS int64 // run clock of the delivery holding the first accepted SCDX, or -1
	FrozenNS    int64 // run clock when the guest's vCPUs were stopped after that SCDX (Freezer), or -1
	GoneNS      int64 // run clock when the guest was seen gone (Stop returned, or the port ended)
	EndNS       int64 // run clock of the END record

	Usage Usage // what the recording process cost (SelfUsage at the end)

	Snapshots  int    // snapshot requests answered
	TestResult []byte // payload of the last accepted TEST frame
	GuestExit  *int32 // status in the last accepted EXIT frame
	Crash      []byte // payload of the first accepted CRSH frame
	ExitStatus int32  // the recorder's exit status stored in END
}

// Reading the bulk port. The reader must keep up with the guest even
// while the loop is busy (a burst of snapshot captures can hold it for
// a second): when the reader stops, the socket fills and QEMU throttles
// the port, and what a throttled port still holds in the guest's
// virtqueue is lost if the guest then powers off (seen: a hostile run
// lost its last 56 frames, TEST and EXIT among them). A throttled port
// was also seen not to wake up again across stop/cont. So deliveries are
// packed into a few large buffers, many small reads to a buffer, rather
// than one buffer per read: a flood of small frames then costs channel
// slots, not buffers.
const (
	readBufSize   = 256 << 10 // one read buffer
	readMin       = 32 << 10  // a read gets at least this much room; less left: the next buffer
	readBuffers   = 64        // read buffers, allocated on first use (most runs need a few)
	maxDeliveries = 8192      // deliveries read ahead of dispatch
)

// readBuf is a read buffer shared by the deliveries packed into it. It
// goes back to the free list when the reader has moved on from it and
// the loop has dispatched every delivery in it.
type readBuf struct {
	b    []byte
	refs atomic.Int32 // deliveries not yet dispatched, +1 while the reader fills it
}

// release drops one reference, returning buf to free on the last.
func (buf *readBuf) release(free chan<- *readBuf) {
	if buf.refs.Add(-1) == 0 {
		free <- buf
	}
}

// delivery is one read from the bulk port, stamped when it returned.
type delivery struct {
	b   []byte
	buf *readBuf // holds b; nil on the last delivery
	t   int64
	err error // set on the last one
}

// Execute performs the run. It returns an error only when the run could
// not start or the trace could not be written; how the guest ended is in
// the Result.
func (r *Run) Execute(ctx context.Context) (Result, error) {
	c := &coordinator{run: r, start: time.Now(), ctx: ctx}
	return c.execute(ctx)
}

// coordinator is the state of one Execute.
type coordinator struct {
	run           *Run
	start         time.Time       // the run clock's zero
	ctx           context.Context // Execute's: done when the recorder is interrupted
	snapshotNS    int64           // time the captures took so far, against Run.SnapshotBudget
	m             Machine
	trace         *capture.Writer
	traceOut      countingWriter // Run.Trace, counting the bytes of the trace file
	traceBase     int64          // bytes of the trace file before the first delivery (header, metadata, start)
	traceFull     bool           // the trace file grew by Run.MaxTrace: nothing more is recorded
	sess          *dispatch.Session
	onFrame       dispatch.FrameFunc // c.frame, bound once
	wd            liveWatchdog
	now           int64  // timestamp of the delivery being dispatched
	txBytes       int64  // TX bytes recorded, against the trace budget
	schedExitStep uint16 // the scenario step at the first accepted SCDX
	res           Result
	rx            chan []byte // frames for the guest's RX side
	rxWG          sync.WaitGroup
	phase         string
	stop          struct {
		reason, detail string
	}
}

// clock is the run clock: monotonic ns since the run started.
func (c *coordinator) clock() int64 { return int64(time.Since(c.start)) }

func (c *coordinator) execute(ctx context.Context) (Result, error) {
	r := c.run
	c.res = Result{SysRdyNS: -1, SchedExitNS: -1, FrozenNS: -1}
	c.phase = "booting"
	c.progress()

	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	m, err := r.Backend.Start(startCtx, r.Config)
	cancel()
	if err != nil {
		return c.res, err
	}
	c.m = m
	c.res.Info = m.Info()

	meta := r.Meta
	meta.Backend = r.Backend.Name()
	meta.Accel = c.res.Info["accel"]
	meta.StartTime = time.Now().Add(-time.Since(c.start)).UTC()
	if meta.Extra == nil {
		meta.Extra = map[string]string{}
	}
	for k, v := range c.res.Info {
		meta.Extra[k] = v
	}
	c.traceOut.w = r.Trace
	c.trace, err = capture.NewWriter(&c.traceOut, meta)
	if err != nil {
		_ = m.Stop()
		_, _ = m.Wait()
		return c.res, fmt.Errorf("start trace: %w", err)
	}
	defer c.trace.Close()
	c.event("start", c.res.Info)
	c.traceBase = c.traceOut.n.Load()
	if r.YieldCPU {
		if err := setThreadsPolicy(unix.SCHED_BATCH); err != nil {
			c.event("yield_error", map[string]string{"error": err.Error()})
		}
	}

	c.sess = dispatch.NewSession()
	c.onFrame = c.frame
	if r.Watchdog > 0 {
		c.wd = liveWatchdog{period: int64(r.Watchdog), deadline: c.clock() + int64(r.Watchdog), armed: true}
	}
	c.rx = make(chan []byte, 2*dispatch.MaxSnapshotRequests)
	c.rxWG.Add(1)
	go c.writeRX()

	deliveries := make(chan delivery, maxDeliveries)
	free := make(chan *readBuf, readBuffers)
	for range readBuffers {
		free <- nil // allocated on first use
	}
	go c.read(deliveries, free)
	c.loop(ctx, deliveries, free)

	close(c.rx)
	c.rxWG.Wait()
	exit, werr := m.Wait()
	c.res.Exit = exit
	if r.YieldCPU { // also after a partial failure: threads already normal are left alone
		if err := setThreadsPolicy(unix.SCHED_NORMAL); err != nil {
			c.event("yield_error", map[string]string{"error": err.Error()})
		}
	}
	if c.res.GoneNS == 0 {
		c.res.GoneNS = c.clock()
	}
	c.finish(exit, werr)
	return c.res, c.trace.Close()
}

// read forwards bulk-port deliveries, each stamped with the run clock
// the moment its read returned, until the port ends. Deliveries are
// packed into the buffers of free, which come back once every delivery
// in them is written and dispatched: at 100 MB/s a fresh copy per read
// would make the recorder a garbage collector competing with the guest
// for the CPU.
func (c *coordinator) read(out chan<- delivery, free chan *readBuf) {
	defer close(out)
	port := c.m.Bulk()
	var cur *readBuf
	off := 0
	for {
		if cur == nil || len(cur.b)-off < readMin {
			if cur != nil {
				cur.release(free)
			}
			if cur = <-free; cur == nil {
				cur = &readBuf{b: make([]byte, readBufSize)}
			}
			cur.refs.Store(1)
			off = 0
		}
		n, err := port.Read(cur.b[off:])
		t := c.clock()
		if n > 0 {
			cur.refs.Add(1)
			out <- delivery{b: cur.b[off : off+n : off+n], buf: cur, t: t}
			off += n
		}
		if err != nil {
			cur.release(free)
			out <- delivery{t: t, err: err}
			return
		}
	}
}

// loop dispatches deliveries and watches the clocks until the port ends.
func (c *coordinator) loop(ctx context.Context, deliveries <-chan delivery, free chan<- *readBuf) {
	r := c.run
	var timeout <-chan time.Time
	if r.Timeout > 0 {
		t := time.NewTimer(r.Timeout - time.Since(c.start))
		defer t.Stop()
		timeout = t.C
	}
	wdTimer := time.NewTimer(time.Hour)
	defer wdTimer.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		wdTimer.Stop()
		var wdC <-chan time.Time
		if d, ok := c.wd.due(c.clock()); ok && c.stop.reason == "" {
			wdTimer.Reset(d)
			wdC = wdTimer.C
		}
		select {
		case d, ok := <-deliveries:
			if !ok {
				return
			}
			if d.err != nil {
				if !errors.Is(d.err, io.EOF) {
					c.event("bulk_error", map[string]string{"error": d.err.Error()})
				}
				if c.res.GoneNS == 0 {
					c.res.GoneNS = d.t
				}
				continue
			}
			c.deliver(d)
			d.buf.release(free) // the trace and the Assembler keep no reference
		case <-wdC:
			if left, ok := c.wd.due(c.clock()); ok && left <= 0 {
				c.halt(EndWatchdog, fmt.Sprintf("no SCST re-armed the %v watchdog", r.Watchdog))
			}
		case <-timeout:
			timeout = nil
			c.haltTimeout()
		case <-ctx.Done():
			ctx = context.Background()
			c.haltSignal()
		case <-tick.C:
			c.progress()
		}
	}
}

// deliver taps one delivery into the trace and feeds it to the Session.
// Past the trace budget nothing more is recorded or dispatched: the
// guest is stopped, and what it still sends until it is gone is read
// and dropped, so the port never backs up.
func (c *coordinator) deliver(d delivery) {
	b := d.b
	if !c.traceFull && c.traceOut.n.Load()-c.traceBase >= c.maxTrace() {
		c.traceFull = true
		if c.txBytes >= c.maxTrace() {
			// The TX bytes filled the budget too (bytes that do not
			// compress make the file as large as they are): say so,
			// not that the deliveries were small.
			c.halt(EndTraceFull, c.txFullDetail())
		} else {
			c.halt(EndTraceFull, fmt.Sprintf("the trace file reached the budget of %d bytes (--max-trace) after %d TX bytes: each delivery costs the file a 16-byte record head, so small deliveries (or bytes that do not compress) make it outgrow the bytes it holds", c.maxTrace(), c.txBytes))
		}
	}
	if c.traceFull {
		return
	}
	if left := c.maxTrace() - c.txBytes; int64(len(b)) > left {
		b = b[:max(left, 0)]
		defer c.halt(EndTraceFull, c.txFullDetail())
	}
	if len(b) == 0 {
		return
	}
	c.now = d.t
	c.txBytes += int64(len(b))
	if err := c.trace.WriteData(capture.TX, capture.BulkPort, d.t, b); err != nil {
		c.halt(EndTraceErr, "cannot write the trace: "+err.Error())
	}
	c.sess.Feed(d.t, b, c.onFrame)
	c.progress()
}

// countingWriter passes writes to w, counting the bytes written. The
// trace writer's flush timer writes from its own goroutine.
type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (cw *countingWriter) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	cw.n.Add(int64(n))
	return n, err
}

// txFullDetail says that the guest's TX bytes reached Run.MaxTrace.
func (c *coordinator) txFullDetail() string {
	return fmt.Sprintf("the guest wrote past the trace budget of %d bytes (--max-trace)", c.maxTrace())
}

func (c *coordinator) maxTrace() int64 {
	if c.run.MaxTrace > 0 {
		return c.run.MaxTrace
	}
	return DefaultMaxTrace
}

// frame carries out what an accepted frame asks of the live run: its
// Result's Effect is the one channel by which the gates reach the world,
// the same one replay counts.
func (c *coordinator) frame(msg *dispatch.Message, r dispatch.Result) {
	if !r.Accepted() {
		return
	}
	t := msg.Time
	switch r.Effect {
	case dispatch.EffectBootComplete:
		c.res.SysRdyNS = t
		c.phase = "running"
		c.event("sys_rdy", nil)
	case dispatch.EffectKill:
		if c.res.SchedExitNS < 0 {
			c.res.SchedExitNS = t
			c.schedExitStep = c.sess.Outcome().Step
			// The guest runs no further instruction from here: its
			// vCPUs stop first, the VM goes after.
			var freezeErr error
			if f, ok := c.m.(Freezer); ok {
				if freezeErr = f.Freeze(); freezeErr == nil {
					c.res.FrozenNS = c.clock()
				}
			}
			status := statusText(msg.Payload)
			c.halt(EndSchedExit, fmt.Sprintf("the guest reported its scheduler died (SCDX, status %s)", status))
			ev := map[string]any{"payload_len": len(msg.Payload), "status": status, "at_ns": t, "gone_ns": c.res.GoneNS}
			if c.res.FrozenNS >= 0 {
				ev["frozen_ns"] = c.res.FrozenNS
			}
			if freezeErr != nil {
				ev["freeze_error"] = freezeErr.Error()
			}
			c.event("sched_exit", ev)
		}
	case dispatch.EffectSnapshotQueued:
		reqs := c.sess.Outcome().SnapshotRequests
		c.snapshot(reqs[len(reqs)-1])
	case dispatch.EffectKernelOpQueued:
		ops := c.sess.Outcome().KernelOps
		c.event("kernel_op", map[string]any{"op": ops[len(ops)-1], "supported": false})
	case dispatch.EffectScenarioStart:
		c.wd.rearm(t)
	case dispatch.EffectWatchdogPause:
		c.wd.pause(t)
	case dispatch.EffectWatchdogResume:
		c.wd.resume(t)
	case dispatch.EffectBucket:
		switch msg.Tag {
		case wire.TestResult:
			c.res.TestResult = append([]byte(nil), msg.Payload...)
		case wire.Exit:
			if v, ok := status(msg.Payload); ok {
				c.res.GuestExit = &v
			}
		case wire.Crash:
			if c.res.Crash == nil {
				c.res.Crash = append([]byte(nil), msg.Payload...)
				c.event("crash", map[string]int{"len": len(msg.Payload)})
			}
		}
	}
}

func (c *coordinator) haltTimeout() {
	c.halt(EndTimeout, fmt.Sprintf("the run exceeded its %v timeout", c.run.Timeout))
}

func (c *coordinator) haltSignal() { c.halt(EndSignal, "the recorder was interrupted") }

// stopDue halts the run if the recorder was interrupted or the run's
// timeout has passed. The loop sees both only between deliveries; work
// done for one delivery that can take long (a burst of captures) asks
// here between its steps.
func (c *coordinator) stopDue() {
	switch {
	case c.ctx.Err() != nil:
		c.haltSignal()
	case c.run.Timeout > 0 && time.Since(c.start) >= c.run.Timeout:
		c.haltTimeout()
	}
}

func (c *coordinator) snapshotBudget() time.Duration {
	if c.run.SnapshotBudget > 0 {
		return c.run.SnapshotBudget
	}
	return DefaultSnapshotBudget
}

// snapshot answers an accepted SNRQ: a capture freezes the guest,
// records its registers in the trace and resumes it; a watch is refused
// (no backend implements watchpoints), and so is a capture once the run
// is stopping or its captures have spent Run.SnapshotBudget. Either way
// the guest gets an SNRP.
func (c *coordinator) snapshot(req dispatch.SnapshotRequest) {
	status, reason := wire.SnapshotOK, "captured"
	detail := map[string]any{"id": req.ID, "kind": req.Kind, "tag": req.Tag}
	c.stopDue()
	switch {
	case c.stop.reason != "":
		status, reason = wire.SnapshotError, "the run is stopping"
	case req.Kind == wire.SnapshotWatch:
		status, reason = wire.SnapshotError, "watchpoints are not supported by the "+c.run.Backend.Name()+" backend"
	case c.snapshotNS >= int64(c.snapshotBudget()):
		status, reason = wire.SnapshotError, fmt.Sprintf("the run's snapshot time budget of %v is spent", c.snapshotBudget())
	default:
		t0 := c.clock()
		if err := c.m.Pause(); err != nil {
			status, reason = wire.SnapshotError, "pause: "+err.Error()
			break
		}
		regs, err := c.m.Registers()
		rerr := c.resume()
		paused := c.clock() - t0
		detail["paused_ns"] = paused
		c.snapshotNS += paused
		c.wd.extend(paused)
		switch {
		case err != nil:
			status, reason = wire.SnapshotError, "registers: "+err.Error()
		case rerr != nil:
			status, reason = wire.SnapshotError, "resume: "+rerr.Error()
			// A guest left frozen would sit there until the watchdog:
			// end the run now, saying why.
			defer c.halt(EndGuestDied, "the guest could not be resumed after a snapshot: "+rerr.Error())
		default:
			detail["registers"] = regs
		}
	}
	detail["status"], detail["reason"] = status, reason
	c.event("snapshot", detail)
	rep := wire.NewSnapshotReply(req.ID, status, reason)
	p, _ := rep.AppendBinary(nil)
	frame := wire.AppendFrame(nil, wire.SnapshotReply, p)
	if err := c.trace.WriteData(capture.RX, capture.BulkPort, c.clock(), frame); err != nil {
		c.halt(EndTraceErr, "cannot write the trace: "+err.Error())
	}
	select {
	case c.rx <- frame:
		c.res.Snapshots++
	default:
		c.event("rx_dropped", map[string]any{"id": req.ID})
	}
}

// resumeTries is how many times a snapshot's resume is attempted before
// the run is stopped: on a loaded host one monitor command can time out.
const resumeTries = 3

// resume lets the guest run again after a snapshot, retrying a failed
// attempt.
func (c *coordinator) resume() error {
	var err error
	for i := range resumeTries {
		if err = c.m.Resume(); err == nil {
			return nil
		}
		c.event("resume_error", map[string]any{"try": i + 1, "error": err.Error()})
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%d tries: %w", resumeTries, err)
}

// writeRX sends frames to the guest's RX side, off the dispatch loop so
// a guest that never reads cannot stall it.
func (c *coordinator) writeRX() {
	defer c.rxWG.Done()
	port := c.m.Bulk()
	for f := range c.rx {
		if _, err := port.Write(f); err != nil {
			for range c.rx { // the guest is gone; drain
			}
			return
		}
	}
}

// halt stops the guest for reason, once. The guest is stopped first and
// the stop written to the trace after: writing an event closes a zstd
// frame, which is time the guest would otherwise go on running.
func (c *coordinator) halt(reason, detail string) {
	if c.stop.reason != "" {
		return
	}
	c.stop.reason, c.stop.detail = reason, detail
	c.phase = "stopping"
	stopErr := c.m.Stop()
	// Stop returns once the guest is gone.
	if c.res.GoneNS == 0 {
		c.res.GoneNS = c.clock()
	}
	c.event("stop", map[string]string{"reason": reason, "detail": detail})
	if stopErr != nil {
		c.event("stop_error", map[string]string{"error": stopErr.Error()})
	}
	c.progress()
}

// finish writes the END record.
func (c *coordinator) finish(exit Exit, werr error) {
	c.res.Outcome = c.sess.Finish()
	c.res.Stats = c.sess.Stats()
	c.res.Reason, c.res.Detail = c.stop.reason, c.stop.detail
	if c.res.Reason == "" {
		switch exit.Reason {
		case ExitPoweroff:
			c.res.Reason, c.res.Detail = EndPoweroff, "the guest powered off"
		default:
			c.res.Reason = EndGuestDied
			c.res.Detail = fmt.Sprintf("the guest ended without powering off (%s, status %d)", exit.Reason, exit.Code)
			if werr != nil {
				c.res.Detail += ": " + werr.Error()
			}
		}
	}
	switch c.res.Reason {
	case EndPoweroff, EndSchedExit:
		c.res.ExitStatus = 0
	default:
		c.res.ExitStatus = 1
	}
	if c.res.Crash != nil {
		c.res.ExitStatus = 1
	}
	// The scenario's own verdict: a run is a success only when the agent
	// says it did what its scenario expects.
	if c.res.ExitStatus == 0 && c.res.GuestExit != nil && *c.res.GuestExit != 0 {
		c.res.ExitStatus = 1
		c.res.Detail += fmt.Sprintf("; the agent reported exit status %d (EXIT)", *c.res.GuestExit)
	}
	if c.res.ExitStatus == 0 && testFailed(c.res.TestResult) {
		c.res.ExitStatus = 1
		c.res.Detail += "; the scenario's TEST result says it failed (\"pass\": false)"
	}
	if c.res.ExitStatus == 0 && c.run.ExpectPass && !testPassed(c.res.TestResult) {
		c.res.ExitStatus = 1
		c.res.Detail += "; the scenario never reported a passing TEST"
	}
	if c.res.ExitStatus == 0 && c.run.MinStep > 0 && c.res.Reason == EndSchedExit && c.schedExitStep < c.run.MinStep {
		c.res.ExitStatus = 1
		c.res.Detail += fmt.Sprintf("; the SCDX came at step %d, before step %d where the scenario ends its scheduler", c.schedExitStep, c.run.MinStep)
	}
	// Invariant 11: a run whose guest never reported boot complete is
	// not a success, however it ended; the detail says so.
	if c.res.SysRdyNS < 0 {
		c.res.ExitStatus = 1
		reason, why := consoleWhy(c.run.Config.ConsoleLog)
		if reason != "" && (c.res.Reason == EndPoweroff || c.res.Reason == EndGuestDied) {
			c.res.Reason = reason
		}
		switch {
		case reason == EndNoBulkPort:
			c.res.Detail = "the agent found no bulk port (" + why + "): the kernel lacks the virtio console or virtio-pci, or their modules; give a kernel that builds them in, or its package or module tree (--kernel linux-image-*.deb, --kernel DIR, --modules DIR)"
		case why != "":
			c.res.Detail += "; the guest never sent an accepted SYS_RDY; the console says: " + why
		default:
			c.res.Detail += "; the guest never sent an accepted SYS_RDY, so the agent never ran its scenario (the console log shows how far the boot got)"
		}
	}
	ev := map[string]any{"reason": exit.Reason, "code": exit.Code}
	if exit.Detail != "" {
		ev["detail"] = exit.Detail
	}
	if exit.ConsoleDropped > 0 {
		ev["console_dropped"] = exit.ConsoleDropped
	}
	c.event("vm_exit", ev)
	if u, err := SelfUsage(); err == nil {
		c.res.Usage = u
		c.event("recorder", u)
	}
	out, err := json.Marshal(c.res.Outcome)
	if err != nil {
		out = nil
	}
	c.res.EndNS = c.clock()
	c.phase = "ended"
	c.progress()
	_ = c.trace.WriteEnd(capture.End{TimeNS: c.res.EndNS, ExitStatus: c.res.ExitStatus, Reason: c.res.Reason, Outcome: out})
}

// event writes an EVENT record at the current run clock.
func (c *coordinator) event(name string, detail any) {
	var b json.RawMessage
	if detail != nil {
		var err error
		if b, err = json.Marshal(detail); err != nil {
			b = nil
		}
	}
	_ = c.trace.WriteEvent(c.clock(), name, b)
}

func (c *coordinator) progress() {
	if c.run.Progress == nil {
		return
	}
	p := Progress{Phase: c.phase, SysRdyNS: c.res.SysRdyNS, Snapshots: c.res.Snapshots, NowNS: c.clock()}
	if c.sess != nil {
		st := c.sess.Stats()
		p.Frames, p.Bytes = st.Frames, st.Bytes
		rj := c.sess.Outcome().Rejected
		p.Rejected = rj.CRC + rj.Pad + rj.UnknownTag + rj.ForgedTag + rj.Shape + rj.OneshotRepeat + rj.Overflow + rj.OutOfOrder
	}
	c.run.Progress(p)
}

// testFailed reports whether a TEST payload is a JSON object whose
// "pass" is false; anything else (no TEST, no "pass", not JSON) is no
// verdict.
func testFailed(test []byte) bool {
	return testVerdict(test) == "fail"
}

// testPassed reports whether a TEST payload says "pass": true.
func testPassed(test []byte) bool { return testVerdict(test) == "pass" }

// testVerdict reads a TEST payload's "pass": "pass", "fail" or "".
func testVerdict(test []byte) string {
	var v struct {
		Pass *bool `json:"pass"`
	}
	switch {
	case len(test) == 0 || json.Unmarshal(test, &v) != nil || v.Pass == nil:
		return ""
	case *v.Pass:
		return "pass"
	}
	return "fail"
}

// status decodes an i32 status payload (EXIT, SCDX).
func status(p []byte) (int32, bool) {
	if len(p) != 4 {
		return 0, false
	}
	return int32(uint32(p[0]) | uint32(p[1])<<8 | uint32(p[2])<<16 | uint32(p[3])<<24), true
}

func statusText(p []byte) string {
	if v, ok := status(p); ok {
		return fmt.Sprint(v)
	}
	return fmt.Sprintf("unknown: %d-byte payload", len(p))
}

// liveWatchdog is the run watchdog on the run clock. The effects of
// SCST, SCPP and SCRR move it; the loop asks when it is due.
type liveWatchdog struct {
	period    int64
	deadline  int64 // run clock at which it fires, while armed and running
	remaining int64 // time left, while paused
	armed     bool
	paused    bool
}

// rearm restarts the full period (SCST). A paused watchdog stays paused
// with the full period left.
func (w *liveWatchdog) rearm(now int64) {
	if !w.armed {
		return
	}
	if w.paused {
		w.remaining = w.period
		return
	}
	w.deadline = now + w.period
}

// pause stops the countdown (SCPP).
func (w *liveWatchdog) pause(now int64) {
	if !w.armed || w.paused {
		return
	}
	w.paused = true
	w.remaining = max(w.deadline-now, 0)
}

// resume continues the countdown (SCRR).
func (w *liveWatchdog) resume(now int64) {
	if !w.armed || !w.paused {
		return
	}
	w.paused = false
	w.deadline = now + w.remaining
}

// extend moves a running deadline by d (time the host held the guest
// frozen does not count).
func (w *liveWatchdog) extend(d int64) {
	if w.armed && !w.paused {
		w.deadline += d
	}
}

// due reports whether the watchdog is counting down and how long until
// it fires (zero or less: it has fired).
func (w *liveWatchdog) due(now int64) (time.Duration, bool) {
	if !w.armed || w.paused {
		return 0, false
	}
	return time.Duration(w.deadline - now), true
}
