package wire

import "strconv"

// Tag is a message type: four ASCII characters packed big-endian into a
// u32 ("SCDX" = 0x53434458), sent little-endian on the wire.
type Tag uint32

// Tags of the gate table (docs/protocol.md). Values follow the original
// tool where the meaning is the same.
const (
	// Internal tags: they steer the host and never reach the verdict.
	SysRdy          Tag = 0x53524459 // SRDY: boot complete, empty payload, once
	SnapshotRequest Tag = 0x534E5251 // SNRQ: freeze and capture, 72-byte payload
	KernelOpRequest Tag = 0x4B4F5251 // KORQ: kernel operation, 24-byte payload
	KernelAddrs     Tag = 0x4B414452 // KADR: KASLR addresses, 24-byte payload, once
	WatchdogPause   Tag = 0x53435050 // SCPP: pause the run watchdog
	WatchdogResume  Tag = 0x53435252 // SCRR: resume the run watchdog
	Step            Tag = 0x53544550 // STEP: current scenario step, u16

	// Verdict tags: accepted frames are kept in the verdict bucket.
	SchedExit     Tag = 0x53434458 // SCDX: scheduler died; stops the run
	ScenarioStart Tag = 0x53435354 // SCST: scenario start; re-arms the watchdog
	Lifecycle     Tag = 0x4C494645 // LIFE: lifecycle event, one byte 1–4
	Scenario      Tag = 0x5343454E // SCEN: scenario description / end
	Stimulus      Tag = 0x5354494D // STIM: stimulus event
	StepEnd       Tag = 0x5354454E // STEN: step end
	Exit          Tag = 0x45584954 // EXIT: guest exit code
	TestResult    Tag = 0x54455354 // TEST: test result JSON
	Crash         Tag = 0x43525348 // CRSH: guest agent crash report
	Stdout        Tag = 0x534F5554 // SOUT: worker stdout
	Stderr        Tag = 0x53455252 // SERR: worker stderr
	SchedLog      Tag = 0x53434C47 // SCLG: scheduler log
	PerfMetrics   Tag = 0x504D4554 // PMET: performance metrics
	RawOutput     Tag = 0x5241574F // RAWO: raw output
	ProbeRaw      Tag = 0x50524157 // PRAW: raw probe data
	Dmesg         Tag = 0x444D5347 // DMSG: kernel log
	ExitContext   Tag = 0x45584358 // EXCX: exit context
	Probe         Tag = 0x50524F42 // PROB: probe result
	GuestProfile  Tag = 0x57505246 // WPRF: guest profile blob (as in ktstr 0.28)

	// Host→guest tags: the host writes them on the port's RX side. Seen
	// on TX they are forged.
	SnapshotReply Tag = 0x534E5250 // SNRP: reply to SNRQ, 520-byte payload
	KernelOpReply Tag = 0x4B4F5250 // KORP: reply to KORQ
)

// Class says how the host treats an intact frame of a tag.
type Class uint8

// Classes of tags.
const (
	Unknown     Class = iota // not in the gate table: rejected as unknown_tag
	Internal                 // steers the host, never bucketed
	Verdict                  // bucketed for the verdict
	HostToGuest              // only the host sends it: forged on TX
)

// String returns the class name.
func (c Class) String() string {
	switch c {
	case Internal:
		return "internal"
	case Verdict:
		return "verdict"
	case HostToGuest:
		return "host-to-guest"
	default:
		return "unknown"
	}
}

// Class returns the class of t.
func (t Tag) Class() Class {
	switch t {
	case SysRdy, SnapshotRequest, KernelOpRequest, KernelAddrs, WatchdogPause, WatchdogResume, Step:
		return Internal
	case SchedExit, ScenarioStart, Lifecycle, Scenario, Stimulus, StepEnd, Exit, TestResult,
		Crash, Stdout, Stderr, SchedLog, PerfMetrics, RawOutput, ProbeRaw, Dmesg, ExitContext, Probe,
		GuestProfile:
		return Verdict
	case SnapshotReply, KernelOpReply:
		return HostToGuest
	default:
		return Unknown
	}
}

// Listed reports whether t appears in the gate table, host→guest tags
// included.
func (t Tag) Listed() bool { return t.Class() != Unknown }

// Tags returns every tag of the gate table, in table order.
func Tags() []Tag {
	return []Tag{
		SysRdy, SchedExit, SnapshotRequest, KernelOpRequest, KernelAddrs, WatchdogPause,
		WatchdogResume, Step, ScenarioStart, Lifecycle,
		Scenario, Stimulus, StepEnd, Exit, TestResult, Crash, Stdout, Stderr, SchedLog,
		PerfMetrics, RawOutput, ProbeRaw, Dmesg, ExitContext, Probe, GuestProfile,
		SnapshotReply, KernelOpReply,
	}
}

// String returns the four characters of t, or 0xXXXXXXXX when any of
// them is not printable ASCII.
func (t Tag) String() string {
	b := [4]byte{byte(t >> 24), byte(t >> 16), byte(t >> 8), byte(t)}
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return "0x" + leftPad(strconv.FormatUint(uint64(t), 16), 8)
		}
	}
	return string(b[:])
}

func leftPad(s string, n int) string {
	for len(s) < n {
		s = "0" + s
	}
	return s
}

// ParseTag returns the tag spelled by four ASCII characters, or by a
// 0x-prefixed hex number as String prints unprintable tags.
func ParseTag(s string) (Tag, bool) {
	if len(s) == 4 {
		return Tag(uint32(s[0])<<24 | uint32(s[1])<<16 | uint32(s[2])<<8 | uint32(s[3])), true
	}
	if len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X") {
		v, err := strconv.ParseUint(s[2:], 16, 32)
		if err == nil {
			return Tag(v), true
		}
	}
	return 0, false
}

// NoBulkPortMarker starts the serial-console line the guest agent
// writes when it finds no bulk port (a kernel without the virtio
// console, or its modules not loaded): with no port there is no frame
// to say it in, so the host reads it from the console log.
const NoBulkPortMarker = "ktstr-init: no_bulk_port:"
