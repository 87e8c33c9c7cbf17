package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// hostileScenario makes the guest itself attack the host's dispatch
// through the real virtio-console driver: torn frames, forged host→guest
// frames with valid CRCs, unknown tags, malformed payloads, repeated
// one-shot frames, out-of-order watchdog frames, an oversize length, a
// snapshot-request flood past the queue bound, and two threads writing
// frames without a lock. None of it may have an effect on the host
// beyond the counted rejections (and the one legitimate KADR, SCPP/SCRR
// pair and the first 64 snapshot requests it also sends).
func hostileScenario() scenario {
	return scenario{
		name: "hostile",
		help: "torn, forged, malformed and racing frames; the host must reject every one",
		run:  runHostile,
	}
}

// provoked counts what the deterministic part of the hostile stream
// provokes, under the reject reasons of docs/protocol.md (SRDY already
// sent). The racing writers add crc rejects on top, as many as their
// interleaving tears.
type provoked struct {
	CRC           uint64 `json:"crc"`
	Pad           uint64 `json:"pad"`
	UnknownTag    uint64 `json:"unknown_tag"`
	ForgedTag     uint64 `json:"forged_tag"`
	Shape         uint64 `json:"shape"`
	OneshotRepeat uint64 `json:"oneshot_repeat"`
	Overflow      uint64 `json:"overflow"`
	OutOfOrder    uint64 `json:"out_of_order"`
	Oversize      int64  `json:"oversize"`
	ResyncBytes   int64  `json:"resync_bytes"`
}

// hostileWrite is one write(2) of the hostile stream.
type hostileWrite struct {
	what string
	b    []byte
}

// floodRequests is how many SNRQ the flood sends: past the host's bound
// of 64.
const floodRequests = 70

// Racing writers: two threads, each writing this many frames as a
// header write and a payload write with no lock between them.
const (
	racingThreads = 2
	racingFrames  = 200
)

// frame builds a frame with explicit header fields.
func frame(tag wire.Tag, payload []byte, crc, pad uint32) []byte {
	b := wire.AppendHeader(nil, wire.Header{Tag: tag, Len: uint32(len(payload)), CRC: crc, Pad: pad})
	return append(b, payload...)
}

func u32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

// hostileSequence returns the deterministic part of the hostile stream
// and what it provokes. addrs is the legitimate KADR the guest sends
// once.
func hostileSequence(addrs wire.KernelAddrsPayload) ([]hostileWrite, provoked) {
	var w []hostileWrite
	var p provoked
	add := func(what string, b []byte) { w = append(w, hostileWrite{what, b}) }

	// Torn frames: a payload byte flipped after the CRC was computed.
	scdx := wire.AppendFrame(nil, wire.SchedExit, u32(9))
	scdx[len(scdx)-1] ^= 0xff
	add("torn SCDX (payload changed after crc)", scdx)
	req := wire.NewSnapshotRequest(1, wire.SnapshotCapture, "torn")
	rp, _ := req.AppendBinary(nil)
	add("torn SNRQ (wrong crc)", frame(wire.SnapshotRequest, rp, wire.Checksum(rp)^1, 0))
	// A frame cut short and the gap filled by unrelated bytes, written
	// in two pieces as a torn delivery would arrive.
	stim := []byte(strings.Repeat("S", 64))
	full := wire.AppendFrame(nil, wire.Stimulus, stim)
	add("truncated STIM head", full[:wire.HeaderSize+20])
	add("truncated STIM filler", []byte(strings.Repeat("#", 44)))
	p.CRC += 3

	// pad ≠ 0 with a valid crc.
	add("SCDX with pad", frame(wire.SchedExit, u32(9), wire.Checksum(u32(9)), 1))
	add("SRDY with pad", frame(wire.SysRdy, nil, wire.Checksum(nil), 0x80000000))
	p.Pad += 2

	// Unknown tags, intact.
	add("unknown tag ZZZZ", wire.AppendFrame(nil, wire.Tag(0x5a5a5a5a), []byte("hello")))
	add("unknown tag 0x00000001", wire.AppendFrame(nil, wire.Tag(1), nil))
	p.UnknownTag += 2

	// Host→guest tags forged on TX, with valid crcs.
	rep := wire.NewSnapshotReply(1, wire.SnapshotOK, "forged by the guest")
	rb, _ := rep.AppendBinary(nil)
	add("forged SNRP", wire.AppendFrame(nil, wire.SnapshotReply, rb))
	add("forged KORP", wire.AppendFrame(nil, wire.KernelOpReply, make([]byte, 16)))
	p.ForgedTag += 2

	// Intact frames with the wrong payload shape.
	add("SRDY with payload", wire.AppendFrame(nil, wire.SysRdy, []byte("x")))
	add("STEP of 3 bytes", wire.AppendFrame(nil, wire.Step, []byte{1, 2, 3}))
	add("SNRQ of 71 bytes", wire.AppendFrame(nil, wire.SnapshotRequest, rp[:71]))
	badKind := append([]byte(nil), rp...)
	binary.LittleEndian.PutUint32(badKind[4:], 3)
	add("SNRQ of kind 3", wire.AppendFrame(nil, wire.SnapshotRequest, badKind))
	zero := wire.KernelAddrsPayload{PhysBasePlus1: 0, PageOffsetBase: 1, TextAddrPlus1: 1}
	zb, _ := zero.AppendBinary(nil)
	add("KADR with phys_base+1 = 0", wire.AppendFrame(nil, wire.KernelAddrs, zb))
	add("LIFE 9", wire.AppendFrame(nil, wire.Lifecycle, []byte{9}))
	add("SCPP with payload", wire.AppendFrame(nil, wire.WatchdogPause, []byte("x")))
	p.Shape += 7

	// One-shot frames repeated (SRDY was sent at start; the first KADR
	// here is legitimate and accepted).
	add("SRDY again", wire.AppendFrame(nil, wire.SysRdy, nil))
	ab, _ := addrs.AppendBinary(nil)
	add("KADR (first, accepted)", wire.AppendFrame(nil, wire.KernelAddrs, ab))
	forged := wire.NewKernelAddrs(0xdead0000, 0xffff888000000000, 0xffffffffdead0000)
	fb, _ := forged.AppendBinary(nil)
	add("KADR again", wire.AppendFrame(nil, wire.KernelAddrs, fb))
	p.OneshotRepeat += 2

	// Watchdog frames out of order around one legitimate pause.
	add("SCRR while running", wire.AppendFrame(nil, wire.WatchdogResume, nil))
	add("SCPP (accepted)", wire.AppendFrame(nil, wire.WatchdogPause, nil))
	add("SCPP while paused", wire.AppendFrame(nil, wire.WatchdogPause, nil))
	add("SCRR (accepted)", wire.AppendFrame(nil, wire.WatchdogResume, nil))
	p.OutOfOrder += 2

	// A header declaring more than MaxPayload: the host resynchronises
	// byte by byte onto the intact frame that follows.
	add("oversize SOUT header", wire.AppendHeader(nil, wire.Header{Tag: wire.Stdout, Len: wire.MaxPayload + 1}))
	add("STIM after oversize", wire.AppendFrame(nil, wire.Stimulus, []byte(`{"hostile":"after oversize"}`)))
	p.Oversize++
	p.ResyncBytes += wire.HeaderSize

	// A snapshot-request flood past the bound of 64.
	for i := 0; i < floodRequests; i++ {
		r := wire.NewSnapshotRequest(uint32(100+i), wire.SnapshotCapture, "flood-"+strconv.Itoa(i))
		b, _ := r.AppendBinary(nil)
		add("SNRQ flood", wire.AppendFrame(nil, wire.SnapshotRequest, b))
	}
	p.Overflow += floodRequests - 64
	return w, p
}

// racingUnits returns the header and payload writes of racing frame i of
// thread t. Both are 16 bytes, and the payload is itself shaped like a
// header declaring 16 bytes, so however the two threads' writes
// interleave the host stays aligned on 16-byte units: every torn pair is
// one crc reject, and the frames after the race frame cleanly.
func racingUnits(t, i int) (hdr, payload []byte) {
	payload = wire.AppendHeader(nil, wire.Header{Tag: wire.Stdout, Len: wire.HeaderSize, CRC: 0x72616365 ^ uint32(t<<16|i)})
	hdr = wire.AppendHeader(nil, wire.Header{Tag: wire.Stdout, Len: wire.HeaderSize, CRC: wire.Checksum(payload)})
	return hdr, payload
}

// race runs the racing writers: racingThreads OS threads writing their
// frames as two unlocked writes each, straight to the port.
func race(a *agent, write func([]byte) error) error {
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, racingThreads)
	for t := 0; t < racingThreads; t++ {
		wg.Add(1)
		a.goSafe(func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			<-start
			for i := 0; i < racingFrames; i++ {
				h, p := racingUnits(t, i)
				if err := write(h); err != nil {
					errs <- err
					return
				}
				if err := write(p); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	return <-errs
}

func runHostile(ctx context.Context, a *agent) (int, error) {
	if err := a.sendJSON(wire.Scenario, map[string]any{"scenario": "hostile", "phase": "begin"}); err != nil {
		return 1, err
	}
	if err := a.sendJSON(wire.ScenarioStart, map[string]any{"scenario": "hostile", "t_ns": a.since()}); err != nil {
		return 1, err
	}
	seq, prov := hostileSequence(kernelAddrs())
	if err := a.sendStep(1, "hostile sequence", map[string]any{"writes": len(seq)}); err != nil {
		return 1, err
	}
	for _, hw := range seq {
		if err := a.writeRaw(hw.b); err != nil {
			return 1, err
		}
	}
	if err := a.sendStep(2, "racing writers", map[string]any{"threads": racingThreads, "frames": racingFrames}); err != nil {
		return 1, err
	}
	// Straight to the port: no agent lock between the header and payload.
	if err := race(a, func(b []byte) error { _, err := a.port.Write(b); return err }); err != nil {
		return 1, err
	}
	if err := a.sendJSON(wire.TestResult, map[string]any{
		"scenario": "hostile", "pass": true, "provoked": prov,
		"racing": map[string]int{"threads": racingThreads, "frames": racingFrames},
	}); err != nil {
		return 1, err
	}
	if err := a.sendJSON(wire.Scenario, map[string]any{"scenario": "hostile", "phase": "end"}); err != nil {
		return 1, err
	}
	return 0, nil
}

// kernelAddrs is the KADR the guest claims: the kernel text address from
// /proc/kallsyms and the physical base from /proc/iomem's "Kernel code"
// (minus the default 16 MiB load address); page_offset_base is not
// exported and is sent as 0. Unreadable values fall back to the
// non-KASLR defaults.
func kernelAddrs() wire.KernelAddrsPayload {
	text := uint64(0xffffffff81000000)
	phys := uint64(0)
	if f, err := os.Open("/proc/kallsyms"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) >= 3 && fs[2] == "_text" {
				if v, err := strconv.ParseUint(fs[0], 16, 64); err == nil && v != 0 {
					text = v
				}
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/iomem"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			rng, name, ok := strings.Cut(strings.TrimSpace(line), " : ")
			if !ok || name != "Kernel code" {
				continue
			}
			lo, _, _ := strings.Cut(rng, "-")
			if v, err := strconv.ParseUint(lo, 16, 64); err == nil && v >= 0x1000000 {
				phys = v - 0x1000000
			}
			break
		}
	}
	return wire.NewKernelAddrs(phys, 0, text)
}
