package qemu

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/ktstr/ktstr/vmm/regs"
)

// Registers returns every vCPU's registers in the one schema of package
// regs, read from the monitor's "info registers -a".
func (m *machine) Registers() (json.RawMessage, error) {
	out, err := m.command("human-monitor-command", map[string]string{"command-line": "info registers -a"})
	if err != nil {
		return nil, err
	}
	var text string
	if err := json.Unmarshal(out, &text); err != nil {
		return nil, fmt.Errorf("qemu: info registers: %w", err)
	}
	return regs.Marshal(parseRegisters(text))
}

// parseRegisters reads "info registers" text (QEMU's x86 CPU dump): a
// "CPU#N" line starts each vCPU (single-CPU output has none), then
// NAME=hex fields. A segment line gives selector, base, limit and
// attributes ("CS =0010 0000000000000000 ffffffff 00a09b00 DPL=0 …"),
// GDT and IDT base and limit; RFL is RFLAGS, and a vCPU outside long
// mode prints EAX…, EIP and EFL for the same registers. Only the
// schema's names are kept.
func parseRegisters(text string) []regs.CPU {
	cpus := []regs.CPU{}
	for _, line := range strings.Split(text, "\n") {
		if n, ok := strings.CutPrefix(strings.TrimSpace(line), "CPU#"); ok {
			id, _ := strconv.Atoi(strings.Fields(n + " ")[0])
			cpus = append(cpus, regs.CPU{CPU: id, Regs: map[string]uint64{}})
			continue
		}
		for _, f := range registerFields(line) {
			if len(cpus) == 0 {
				cpus = append(cpus, regs.CPU{Regs: map[string]uint64{}})
			}
			putRegister(cpus[len(cpus)-1].Regs, f.name, f.values)
		}
	}
	return cpus
}

// field is one NAME=value… of a dump line.
type field struct {
	name   string
	values []uint64
}

// registerFields splits a dump line into its NAME=hex fields, each with
// the hex words that follow it ("CS =0010 0 ffffffff 00a09b00" has four).
// A word that is not hex (a flags picture such as [---Z-P-], CS64) ends
// a field's values.
func registerFields(line string) []field {
	var out []field
	words := strings.Fields(strings.ReplaceAll(strings.ReplaceAll(line, "  =", "="), " =", "="))
	open := false
	for _, w := range words {
		name, val, isPair := strings.Cut(w, "=")
		switch {
		case isPair && name != "":
			out = append(out, field{name: name})
			open = true
			if val == "" {
				continue
			}
		case !open:
			continue
		default:
			val = w
		}
		v, err := strconv.ParseUint(val, 16, 64)
		if err != nil {
			open = false
			continue
		}
		f := &out[len(out)-1]
		f.values = append(f.values, v)
	}
	return out
}

// putRegister stores one field under the schema's names; a field the
// schema has no name for is dropped.
func putRegister(r map[string]uint64, name string, v []uint64) {
	if len(v) == 0 {
		return
	}
	alias := map[string]string{
		"RFL": "RFLAGS", "EFL": "RFLAGS", "EIP": "RIP",
		"EAX": "RAX", "EBX": "RBX", "ECX": "RCX", "EDX": "RDX",
		"ESI": "RSI", "EDI": "RDI", "ESP": "RSP", "EBP": "RBP",
	}
	if a, ok := alias[name]; ok {
		name = a
	}
	for _, s := range regs.Segments() {
		if name == s {
			if len(v) >= 4 {
				regs.PutSegment(r, s, v[0], v[1], v[2], v[3])
			}
			return
		}
	}
	for _, t := range regs.Tables() {
		if name == t {
			if len(v) >= 2 {
				regs.PutTable(r, t, v[0], v[1])
			}
			return
		}
	}
	for _, n := range regs.Names() {
		if name == n {
			r[name] = v[0]
			return
		}
	}
}
