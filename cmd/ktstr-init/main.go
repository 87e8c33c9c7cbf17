// Command ktstr-init is the guest agent: the /init of the initramfs a
// live run boots. It is built static (CGO_ENABLED=0).
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it is where the bytes come from: it writes TLV frames
// (package dispatch/wire) into the virtio-console port named
// "ktstr-bulk", which the host taps into the trace and dispatches live.
//
// As PID 1 it mounts proc, sys, dev and cgroup2, finds the bulk port by
// name (/sys/class/virtio-ports/*/name = ktstr-bulk, device
// /dev/vportNpM), sends SRDY, runs the scenario the kernel command line
// names, and powers the machine off. Options come from the kernel command
// line:
//
//	ktstr.scenario=NAME    steady (default), sched-exit, snapshot, hostile, crash
//	ktstr.duration=D       how long workers run (Go duration, default 2s)
//	ktstr.workers=N        spinning workers (default 4)
//	ktstr.scheduler=PATH   a scheduler binary inside the initramfs to supervise
//
// Payloads this agent sends (the host treats verdict payloads as opaque):
// SCEN, STIM, STEN and TEST carry JSON; STEP a u16 step number; EXIT and
// SCDX an i32 exit status (128+N for death by signal N); LIFE one byte
// (1 agent up, 2 scenario running, 3 scenario done, 4 powering off);
// SOUT/SERR the raw output of workers, SCLG that of the scheduler; CRSH
// the text of a Go panic in the agent with its stack.
//
// Run as any other PID, the binary serves the helper processes the agent
// starts: `worker` (a spinning worker) and `sched-standin` (a stand-in
// scheduler that exits with a chosen status after a delay); and
// `scenarios` lists the built-in scenarios for the host.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) > 1 {
		os.Exit(helper(os.Args[1], os.Args[2:]))
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "ktstr-init: this is the guest agent; it runs as /init (PID 1) of a ktstr initramfs")
		os.Exit(2)
	}
	runInit(builtinScenarios())
}
