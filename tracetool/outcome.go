package tracetool

import (
	"encoding/json"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/ktstr/ktstr/dispatch"
)

// FieldDiff is one field of the outcome JSON (docs/protocol.md §7) in
// which two outcomes differ, with each side's value as a short text:
// a scalar as JSON, a list as its length and its first differing entry.
type FieldDiff struct {
	Field string `json:"field"` // its name in the outcome JSON
	A     string `json:"a"`     // the first outcome's value
	B     string `json:"b"`     // the second outcome's value
}

// maxValueText bounds the text of one side of a FieldDiff.
const maxValueText = 240

// DiffOutcomes lists the top-level outcome fields in which a and b
// differ, in the order of the outcome JSON; nil when they are equal.
func DiffOutcomes(a, b *dispatch.Outcome) []FieldDiff {
	var d []FieldDiff
	scalar := func(name string, x, y any) {
		if x != y {
			d = append(d, FieldDiff{Field: name, A: jsonText(x), B: jsonText(y)})
		}
	}
	scalar("killed", a.Killed, b.Killed)
	scalar("kill_signals", a.KillSignals, b.KillSignals)
	scalar("sys_rdy", a.SysRdy, b.SysRdy)
	if fd, ok := listDiff("snapshot_requests", a.SnapshotRequests, b.SnapshotRequests); ok {
		d = append(d, fd)
	}
	if fd, ok := listDiff("kernel_ops", a.KernelOps, b.KernelOps); ok {
		d = append(d, fd)
	}
	if (a.KASLR == nil) != (b.KASLR == nil) || a.KASLR != nil && *a.KASLR != *b.KASLR {
		d = append(d, FieldDiff{Field: "kaslr", A: jsonText(a.KASLR), B: jsonText(b.KASLR)})
	}
	scalar("step", a.Step, b.Step)
	scalar("watchdog_pauses", a.WatchdogPauses, b.WatchdogPauses)
	scalar("watchdog_pause_ns", a.WatchdogPauseNS, b.WatchdogPauseNS)
	if fd, ok := listDiff("verdicts", a.Verdicts, b.Verdicts); ok {
		d = append(d, fd)
	}
	scalar("verdicts_dropped", a.VerdictsDropped, b.VerdictsDropped)
	scalar("verdicts_dropped_sha256", a.VerdictsDroppedSHA256.String(), b.VerdictsDroppedSHA256.String())
	if a.Rejected != b.Rejected {
		d = append(d, FieldDiff{Field: "rejected", A: jsonText(a.Rejected), B: jsonText(b.Rejected)})
	}
	return d
}

// listDiff compares two lists of comparable entries.
func listDiff[T comparable](name string, a, b []T) (FieldDiff, bool) {
	if slices.Equal(a, b) {
		return FieldDiff{}, false
	}
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	side := func(l []T) string {
		s := fmt.Sprintf("%d entries", len(l))
		if i < len(l) {
			s += fmt.Sprintf(", [%d] %s", i, jsonText(l[i]))
		} else {
			s += fmt.Sprintf(", none at [%d]", i)
		}
		return s
	}
	return FieldDiff{Field: name, A: side(a), B: side(b)}, true
}

// jsonText renders v as compact JSON, cut to maxValueText bytes.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > maxValueText {
		n := maxValueText
		for n > 0 && !utf8.RuneStart(b[n]) {
			n--
		}
		return string(b[:n]) + "…"
	}
	return string(b)
}

// outcomeFields names the top-level fields of the outcome JSON, in
// order.
func outcomeFields() []string {
	return []string{"killed", "kill_signals", "sys_rdy", "snapshot_requests", "kernel_ops", "kaslr", "step",
		"watchdog_pauses", "watchdog_pause_ns", "verdicts", "verdicts_dropped", "verdicts_dropped_sha256", "rejected"}
}

// fieldDiffers reports whether a and b differ in the named field.
func fieldDiffers(name string, a, b *dispatch.Outcome) bool {
	switch name {
	case "killed":
		return a.Killed != b.Killed
	case "kill_signals":
		return a.KillSignals != b.KillSignals
	case "sys_rdy":
		return a.SysRdy != b.SysRdy
	case "snapshot_requests":
		return !slices.Equal(a.SnapshotRequests, b.SnapshotRequests)
	case "kernel_ops":
		return !slices.Equal(a.KernelOps, b.KernelOps)
	case "kaslr":
		return (a.KASLR == nil) != (b.KASLR == nil) || a.KASLR != nil && *a.KASLR != *b.KASLR
	case "step":
		return a.Step != b.Step
	case "watchdog_pauses":
		return a.WatchdogPauses != b.WatchdogPauses
	case "watchdog_pause_ns":
		return a.WatchdogPauseNS != b.WatchdogPauseNS
	case "verdicts":
		return !slices.Equal(a.Verdicts, b.Verdicts)
	case "verdicts_dropped":
		return a.VerdictsDropped != b.VerdictsDropped
	case "verdicts_dropped_sha256":
		return a.VerdictsDroppedSHA256 != b.VerdictsDroppedSHA256
	default: // rejected
		return a.Rejected != b.Rejected
	}
}

// differingFields returns the names of the fields DiffOutcomes would
// list, without rendering their values.
func differingFields(a, b *dispatch.Outcome) []string {
	var f []string
	for _, name := range outcomeFields() {
		if fieldDiffers(name, a, b) {
			f = append(f, name)
		}
	}
	return f
}

// cloneOutcome returns a deep copy of o: one a Session does not share.
func cloneOutcome(o *dispatch.Outcome) dispatch.Outcome {
	c := *o
	c.SnapshotRequests = slices.Clone(o.SnapshotRequests)
	c.KernelOps = slices.Clone(o.KernelOps)
	c.Verdicts = slices.Clone(o.Verdicts)
	if o.KASLR != nil {
		k := *o.KASLR
		c.KASLR = &k
	}
	return c
}
