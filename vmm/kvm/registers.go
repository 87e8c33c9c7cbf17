//go:build linux && amd64

package kvm

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ktstr/ktstr/vmm/kvm/kvmapi"
	"github.com/ktstr/ktstr/vmm/regs"
)

// Registers returns the registers of every vCPU in the one schema of
// package regs; the machine must be paused.
func (m *Machine) Registers() (json.RawMessage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ended || m.req.Load()&reqPause == 0 || m.parked < m.live {
		return nil, errors.New("native backend: registers: pause the guest first")
	}
	var cpus []regs.CPU
	for _, c := range m.vm.VCPUs() {
		r, err := c.Regs()
		if err != nil {
			return nil, fmt.Errorf("native backend: %w", err)
		}
		s, err := c.Sregs()
		if err != nil {
			return nil, fmt.Errorf("native backend: %w", err)
		}
		cpus = append(cpus, cpuRegisters(c.ID(), r, s))
	}
	return regs.Marshal(cpus)
}

// cpuRegisters names KVM's registers of one vCPU as the schema does.
func cpuRegisters(id int, r kvmapi.Regs, s kvmapi.Sregs) regs.CPU {
	c := regs.CPU{CPU: id, Regs: map[string]uint64{
		"RAX": r.RAX, "RBX": r.RBX, "RCX": r.RCX, "RDX": r.RDX,
		"RSI": r.RSI, "RDI": r.RDI, "RSP": r.RSP, "RBP": r.RBP,
		"R8": r.R8, "R9": r.R9, "R10": r.R10, "R11": r.R11,
		"R12": r.R12, "R13": r.R13, "R14": r.R14, "R15": r.R15,
		"RIP": r.RIP, "RFLAGS": r.RFLAGS,
		"CR0": s.CR0, "CR2": s.CR2, "CR3": s.CR3, "CR4": s.CR4, "EFER": s.EFER,
	}}
	for _, sg := range []struct {
		name string
		seg  kvmapi.Segment
	}{{"CS", s.CS}, {"DS", s.DS}, {"ES", s.ES}, {"FS", s.FS}, {"GS", s.GS}, {"SS", s.SS}, {"LDT", s.LDT}, {"TR", s.TR}} {
		g := sg.seg
		regs.PutSegment(c.Regs, sg.name, uint64(g.Selector), g.Base, uint64(g.Limit),
			regs.SegmentAttrs(g.Type, g.S, g.DPL, g.Present, g.AVL, g.L, g.DB, g.G, g.Unusable))
	}
	regs.PutTable(c.Regs, "GDT", s.GDT.Base, uint64(s.GDT.Limit))
	regs.PutTable(c.Regs, "IDT", s.IDT.Base, uint64(s.IDT.Limit))
	return c
}
