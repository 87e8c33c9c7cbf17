// Package vmm runs live recordings: it starts a guest through a Backend
// and taps the bulk port, sending every delivery both to the trace
// (capture) and to the dispatch core with live sinks.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it is the source of the bytes and the tap, and it backs the
// sinks with real actions: stopping the VM, answering snapshot requests,
// the run watchdog.
package vmm

import (
	"context"
	"encoding/json"
	"io"
)

// Config describes the guest a Backend boots.
type Config struct {
	Kernel     string // bzImage (or vmlinux where the backend supports it)
	Initrd     string // compressed newc initramfs holding the guest agent as /init
	Cmdline    string // kernel command line, scenario options included
	CPUs       int    // vCPUs
	MemMiB     int    // guest memory in MiB
	ConsoleLog string // file receiving the guest serial console; empty: discard
	MaxConsole int64  // most bytes of console output ConsoleLog keeps (ConsoleLog type); 0: DefaultMaxConsole
	WorkDir    string // directory for sockets and scratch files
}

// OpenConsoleLog creates the console log c asks for: a ConsoleLog on
// c.ConsoleLog within c.MaxConsole, or nil when c asks for none (the
// backend then discards the console).
func (c Config) OpenConsoleLog() (*ConsoleLog, error) {
	if c.ConsoleLog == "" {
		return nil, nil
	}
	limit := c.MaxConsole
	if limit == 0 {
		limit = DefaultMaxConsole
	}
	return CreateConsoleLog(c.ConsoleLog, limit)
}

// Backend starts guests. Implementations: vmm/qemu (a QEMU process) and
// vmm/kvm (our own VMM).
type Backend interface {
	// Name is the backend name recorded in trace metadata ("qemu", "native").
	Name() string
	// Start boots the guest described by cfg. The guest is running when
	// Start returns; ctx bounds only the start itself.
	Start(ctx context.Context, cfg Config) (Machine, error)
}

// Machine is a running guest.
type Machine interface {
	// Bulk is the bulk port (virtio-console port "ktstr-bulk"). Each Read
	// returns the next TX delivery from the guest exactly as the transport
	// delivered it, and io.EOF once the guest is gone; Write sends bytes to
	// the guest's RX side.
	Bulk() io.ReadWriter
	// Pause freezes every vCPU; Resume lets them run again.
	Pause() error
	Resume() error
	// Registers returns the vCPU registers as JSON; the guest must be paused.
	Registers() (json.RawMessage, error)
	// Stop ends the guest now. It is safe to call more than once and
	// after the guest has ended by itself.
	Stop() error
	// Wait blocks until the guest has ended and says how.
	Wait() (Exit, error)
	// Info describes the machine for trace metadata (for example "accel": "tcg").
	Info() map[string]string
}

// Freezer is a Machine that can stop every vCPU at once, faster than it
// can end the guest: on an accepted SCDX the coordinator freezes the
// guest first, so it runs no further instruction, then stops it.
type Freezer interface {
	Freeze() error
}

// ExitReason is how a guest ended, in the one vocabulary both backends
// use (QEMU's shutdown causes and KVM's exits map onto it).
type ExitReason string

// Ways a guest ends.
const (
	ExitPoweroff    ExitReason = "poweroff"     // the guest powered off (ACPI, reboot(POWER_OFF), i8042 on the native VMM)
	ExitStopped     ExitReason = "stopped"      // the host stopped it (Machine.Stop)
	ExitReset       ExitReason = "reset"        // the guest reset or rebooted (no-reboot turns it into an end)
	ExitPanic       ExitReason = "panic"        // the guest kernel panicked (pvpanic, QEMU's guest-panicked)
	ExitTripleFault ExitReason = "triple-fault" // the vCPU shut down (native VMM)
	ExitHalt        ExitReason = "halt"         // the only vCPU halted with interrupts off (native VMM)
	ExitTimeout     ExitReason = "timeout"      // the backend's own time bound ran out
	ExitCrash       ExitReason = "crash"        // the VMM failed or died; the error says how
	ExitOther       ExitReason = "exit"         // the VMM exited for a reason it did not say
)

// Exit says how a guest ended.
type Exit struct {
	Reason ExitReason // how the guest ended, as both backends name it
	Code   int        // process exit status where there is one, else 0
	// Detail, if not empty, is what the backend had to do to end the
	// guest beyond the usual, for example killing a VMM that hung after
	// the guest powered off.
	Detail string
	// ConsoleDropped is how many bytes of the guest's console output its
	// log dropped, past Config.MaxConsole (ConsoleLog.Dropped).
	ConsoleDropped int64
}

// GuestFillsHost reports whether a guest of guestCPUs vCPUs can occupy
// every core of a host of hostCPUs. A recorder beside such a guest
// should make room for it (Run.MakeRoom).
func GuestFillsHost(guestCPUs, hostCPUs int) bool {
	return hostCPUs <= guestCPUs
}
