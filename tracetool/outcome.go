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

// outcomeField is one top-level field of the outcome JSON: whether two
// outcomes differ in it (cheap, for the minimizer's every try), and how
// the difference reads (for a report).
type outcomeField struct {
	name    string
	differs func(a, b *dispatch.Outcome) bool
	diff    func(a, b *dispatch.Outcome) FieldDiff
}

// scalarField is a field compared and shown by its value.
func scalarField[T comparable](name string, get func(*dispatch.Outcome) T) outcomeField {
	return outcomeField{name,
		func(a, b *dispatch.Outcome) bool { return get(a) != get(b) },
		func(a, b *dispatch.Outcome) FieldDiff {
			return FieldDiff{Field: name, A: jsonText(get(a)), B: jsonText(get(b))}
		}}
}

// listField is a list compared entry by entry and shown by its length
// and first differing entry.
func listField[T comparable](name string, get func(*dispatch.Outcome) []T) outcomeField {
	return outcomeField{name,
		func(a, b *dispatch.Outcome) bool { return !slices.Equal(get(a), get(b)) },
		func(a, b *dispatch.Outcome) FieldDiff { return listDiff(name, get(a), get(b)) }}
}

// outcomeFields lists the top-level fields of the outcome JSON, in order.
func outcomeFields() []outcomeField {
	return []outcomeField{
		scalarField("killed", func(o *dispatch.Outcome) bool { return o.Killed }),
		scalarField("kill_signals", func(o *dispatch.Outcome) uint64 { return o.KillSignals }),
		scalarField("sys_rdy", func(o *dispatch.Outcome) bool { return o.SysRdy }),
		listField("snapshot_requests", func(o *dispatch.Outcome) []dispatch.SnapshotRequest { return o.SnapshotRequests }),
		listField("kernel_ops", func(o *dispatch.Outcome) []dispatch.KernelOp { return o.KernelOps }),
		{"kaslr",
			func(a, b *dispatch.Outcome) bool {
				return (a.KASLR == nil) != (b.KASLR == nil) || a.KASLR != nil && *a.KASLR != *b.KASLR
			},
			func(a, b *dispatch.Outcome) FieldDiff {
				return FieldDiff{Field: "kaslr", A: jsonText(a.KASLR), B: jsonText(b.KASLR)}
			}},
		scalarField("step", func(o *dispatch.Outcome) uint16 { return o.Step }),
		scalarField("watchdog_pauses", func(o *dispatch.Outcome) uint64 { return o.WatchdogPauses }),
		scalarField("watchdog_pause_ns", func(o *dispatch.Outcome) int64 { return o.WatchdogPauseNS }),
		listField("verdicts", func(o *dispatch.Outcome) []dispatch.Verdict { return o.Verdicts }),
		scalarField("verdicts_dropped", func(o *dispatch.Outcome) uint64 { return o.VerdictsDropped }),
		scalarField("verdicts_dropped_sha256", func(o *dispatch.Outcome) string { return o.VerdictsDroppedSHA256.String() }),
		scalarField("rejected", func(o *dispatch.Outcome) dispatch.Rejected { return o.Rejected }),
	}
}

// DiffOutcomes lists the top-level outcome fields in which a and b
// differ, in the order of the outcome JSON; nil when they are equal.
func DiffOutcomes(a, b *dispatch.Outcome) []FieldDiff {
	var d []FieldDiff
	for _, f := range outcomeFields() {
		if f.differs(a, b) {
			d = append(d, f.diff(a, b))
		}
	}
	return d
}

// listDiff shows two differing lists by length and first differing entry.
func listDiff[T comparable](name string, a, b []T) FieldDiff {
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
	return FieldDiff{Field: name, A: side(a), B: side(b)}
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

// differingOutcomeFields returns the fields in which a and b differ,
// without rendering their values.
func differingOutcomeFields(a, b *dispatch.Outcome) []outcomeField {
	var d []outcomeField
	for _, f := range outcomeFields() {
		if f.differs(a, b) {
			d = append(d, f)
		}
	}
	return d
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
