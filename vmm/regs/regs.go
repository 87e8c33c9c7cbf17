// Package regs is the one schema of the vCPU registers a snapshot EVENT
// records (docs/trace-format.md §2.3), whatever the backend: the
// general registers, RIP and RFLAGS, the segment registers with their
// hidden parts, the descriptor tables and the control registers, each
// under one name and with a hex-string value. Both backends write it
// (vmm/qemu from the monitor's "info registers", vmm/kvm from
// KVM_GET_REGS and KVM_GET_SREGS); Parse reads it, and reads the two
// shapes the backends wrote before it existed, so traces recorded then
// still read.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it belongs to a sink: answering an accepted SNRQ, the
// coordinator pauses the guest and puts these registers in the trace.
package regs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Schema names the current layout; it is the value of the "schema"
// member of what Marshal writes.
const Schema = "ktstr-registers/1"

// General returns the general registers, RIP and RFLAGS, in kvm_regs
// order.
func General() []string {
	return []string{
		"RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RSP", "RBP",
		"R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15",
		"RIP", "RFLAGS",
	}
}

// Segments returns the segment registers; each has four names: SEG (the
// selector), SEG_BASE, SEG_LIMIT (the limit in bytes, granularity
// applied) and SEG_ATTRS (SegmentAttrs).
func Segments() []string { return []string{"CS", "DS", "ES", "FS", "GS", "SS", "LDT", "TR"} }

// Tables returns the descriptor tables; each has TABLE_BASE and
// TABLE_LIMIT.
func Tables() []string { return []string{"GDT", "IDT"} }

// Control returns the control registers, and EFER.
func Control() []string { return []string{"CR0", "CR2", "CR3", "CR4", "EFER"} }

// Names returns every register name of the schema, in its documented
// order: General, then the four names of each of Segments, the two of
// each of Tables, then Control. A writer writes all of them for every
// vCPU.
func Names() []string {
	out := General()
	for _, s := range Segments() {
		out = append(out, s, s+"_BASE", s+"_LIMIT", s+"_ATTRS")
	}
	for _, t := range Tables() {
		out = append(out, t+"_BASE", t+"_LIMIT")
	}
	return append(out, Control()...)
}

// known reports whether name is in the schema.
func known(name string) bool { return slices.Contains(Names(), name) }

// SegmentAttrs packs a segment's attributes the way the high word of
// its descriptor holds them (and QEMU's "info registers" prints them):
// type in bits 8–11, S 12, DPL 13–14, P 15, AVL 20, L 21, D/B 22, G 23.
// An unusable segment is not present.
func SegmentAttrs(typ, s, dpl, present, avl, l, db, g, unusable uint8) uint64 {
	p := uint64(present & 1)
	if unusable != 0 {
		p = 0
	}
	return uint64(typ&15)<<8 | uint64(s&1)<<12 | uint64(dpl&3)<<13 | p<<15 |
		uint64(avl&1)<<20 | uint64(l&1)<<21 | uint64(db&1)<<22 | uint64(g&1)<<23
}

// CPU is one vCPU's registers, by schema name.
type CPU struct {
	CPU  int
	Regs map[string]uint64
}

// Missing returns the schema names c lacks (registers an old trace did
// not record), in schema order.
func (c CPU) Missing() []string {
	var out []string
	for _, n := range Names() {
		if _, ok := c.Regs[n]; !ok {
			out = append(out, n)
		}
	}
	return out
}

// wireCPU is the JSON form of a CPU.
type wireCPU struct {
	CPU  int               `json:"cpu"`
	Regs map[string]string `json:"regs"`
}

// wireSnapshot is the JSON form Marshal writes.
type wireSnapshot struct {
	Schema string    `json:"schema"`
	CPUs   []wireCPU `json:"cpus"`
}

// Hex formats v as the schema writes values: "0x" and lower-case hex
// digits, without leading zeros.
func Hex(v uint64) string { return "0x" + strconv.FormatUint(v, 16) }

// Marshal writes cpus in the schema: {"schema":Schema,"cpus":[{"cpu":N,
// "regs":{NAME:"0x…",…}},…]}. It refuses a register name outside the
// schema, so every backend writes the same names.
func Marshal(cpus []CPU) (json.RawMessage, error) {
	out := wireSnapshot{Schema: Schema, CPUs: make([]wireCPU, 0, len(cpus))}
	for _, c := range cpus {
		w := wireCPU{CPU: c.CPU, Regs: make(map[string]string, len(c.Regs))}
		for _, n := range slices.Sorted(maps.Keys(c.Regs)) {
			if !known(n) {
				return nil, fmt.Errorf("registers: %q is not a register of schema %s", n, Schema)
			}
			w.Regs[n] = Hex(c.Regs[n])
		}
		out.CPUs = append(out.CPUs, w)
	}
	return json.Marshal(out)
}

// ErrShape reports registers JSON in none of the shapes Parse knows.
var ErrShape = errors.New("registers JSON of an unknown shape")

// Parse reads a snapshot EVENT's "registers" member in any shape a
// recorder has written:
//
//   - the schema ({"schema":"ktstr-registers/1","cpus":[…]});
//   - QEMU's before it ({"cpus":[{"cpu":N,"regs":{NAME:"hex"}}]}, every
//     NAME=hex pair of "info registers": segments by selector only, RFL
//     for RFLAGS, GDT and IDT by base);
//   - the native VMM's before it ([{"cpu":N,"regs":{kvm_regs fields as
//     numbers},"sregs":{kvm_sregs fields}}]).
//
// Whatever the shape, the result holds schema names only; an old shape
// lacks some (CPU.Missing says which). A schema of another version is
// refused, naming it.
func Parse(raw json.RawMessage) ([]CPU, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '[' {
		return parseNative(raw)
	}
	var probe struct {
		Schema *string          `json:"schema"`
		CPUs   *json.RawMessage `json:"cpus"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrShape, err)
	}
	switch {
	case probe.Schema != nil && *probe.Schema != Schema:
		return nil, fmt.Errorf("registers of schema %q: this ktstr reads %s (and the older unversioned shapes); use a newer ktstr", *probe.Schema, Schema)
	case probe.Schema != nil:
		return parseWire(raw, func(name, v string) (string, uint64, bool, error) {
			if !strings.HasPrefix(v, "0x") {
				return "", 0, false, fmt.Errorf("register %s is %q, not 0x-prefixed hex", name, v)
			}
			n, err := strconv.ParseUint(v[2:], 16, 64)
			if err != nil {
				return "", 0, false, fmt.Errorf("register %s: %w", name, err)
			}
			return name, n, known(name), nil
		})
	case probe.CPUs != nil:
		return parseWire(raw, qemuOld)
	}
	return nil, fmt.Errorf("%w: neither a schema, nor QEMU's or the native VMM's older shape", ErrShape)
}

// parseWire reads {"cpus":[{"cpu":N,"regs":{NAME:VALUE}}]}, turning each
// pair into a schema name and value with conv (false: not kept).
func parseWire(raw json.RawMessage, conv func(name, v string) (string, uint64, bool, error)) ([]CPU, error) {
	var s struct {
		CPUs []wireCPU `json:"cpus"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrShape, err)
	}
	out := make([]CPU, 0, len(s.CPUs))
	for _, w := range s.CPUs {
		c := CPU{CPU: w.CPU, Regs: map[string]uint64{}}
		for name, v := range w.Regs {
			n, val, keep, err := conv(name, v)
			if err != nil {
				return nil, fmt.Errorf("vCPU %d: %w", w.CPU, err)
			}
			if keep {
				c.Regs[n] = val
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// qemuOld converts one NAME=hex pair of QEMU's older shape.
func qemuOld(name, v string) (string, uint64, bool, error) {
	switch name {
	case "RFL":
		name = "RFLAGS"
	case "GDT", "IDT":
		name += "_BASE"
	}
	if !known(name) {
		return "", 0, false, nil // FPU, SSE, debug registers, CPL, …: not in the schema
	}
	n, err := strconv.ParseUint(v, 16, 64)
	if err != nil {
		return "", 0, false, fmt.Errorf("register %s: %w", name, err)
	}
	return name, n, true, nil
}

// oldSegment and oldNative are the native VMM's older shape: struct
// kvm_segment and kvm_sregs as encoding/json wrote them.
type oldSegment struct {
	Base                                 uint64
	Limit                                uint32
	Selector                             uint16
	Type, Present, DPL, DB, S, L, G, AVL uint8
	Unusable                             uint8
}

type oldTable struct {
	Base  uint64
	Limit uint16
}

type oldNative struct {
	CPU   int               `json:"cpu"`
	Regs  map[string]uint64 `json:"regs"`
	Sregs struct {
		CS, DS, ES, FS, GS, SS, TR, LDT oldSegment
		GDT, IDT                        oldTable
		CR0, CR2, CR3, CR4, EFER        uint64
	} `json:"sregs"`
}

func parseNative(raw json.RawMessage) ([]CPU, error) {
	var in []oldNative
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrShape, err)
	}
	out := make([]CPU, 0, len(in))
	for _, o := range in {
		c := CPU{CPU: o.CPU, Regs: map[string]uint64{}}
		for _, n := range General() {
			if v, ok := o.Regs[n]; ok {
				c.Regs[n] = v
			}
		}
		s := &o.Sregs
		for name, seg := range map[string]oldSegment{"CS": s.CS, "DS": s.DS, "ES": s.ES, "FS": s.FS, "GS": s.GS, "SS": s.SS, "TR": s.TR, "LDT": s.LDT} {
			PutSegment(c.Regs, name, uint64(seg.Selector), seg.Base, uint64(seg.Limit),
				SegmentAttrs(seg.Type, seg.S, seg.DPL, seg.Present, seg.AVL, seg.L, seg.DB, seg.G, seg.Unusable))
		}
		PutTable(c.Regs, "GDT", s.GDT.Base, uint64(s.GDT.Limit))
		PutTable(c.Regs, "IDT", s.IDT.Base, uint64(s.IDT.Limit))
		c.Regs["CR0"], c.Regs["CR2"], c.Regs["CR3"], c.Regs["CR4"], c.Regs["EFER"] = s.CR0, s.CR2, s.CR3, s.CR4, s.EFER
		out = append(out, c)
	}
	return out, nil
}

// PutSegment sets the four names of segment register seg in regs.
func PutSegment(regs map[string]uint64, seg string, selector, base, limit, attrs uint64) {
	regs[seg], regs[seg+"_BASE"], regs[seg+"_LIMIT"], regs[seg+"_ATTRS"] = selector, base, limit, attrs
}

// PutTable sets the two names of descriptor table t in regs.
func PutTable(regs map[string]uint64, t string, base, limit uint64) {
	regs[t+"_BASE"], regs[t+"_LIMIT"] = base, limit
}
