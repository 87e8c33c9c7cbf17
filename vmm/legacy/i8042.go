package legacy

// The i8042 keyboard controller's command port, and the command that
// pulses the CPU reset line (how Linux's reboot=kbd, its default
// fallback, restarts a PC).
const (
	I8042CommandPort = 0x64
	I8042Ports       = 1
	i8042PulseReset  = 0xfe
)

// I8042 is as much of the keyboard controller as a guest without a
// keyboard needs: writing command 0xfe resets the machine. It reads as
// absent (all ones), so Linux finds no controller and no keyboard; the
// data port, 0x60, is not decoded at all.
type I8042 struct {
	reset func()
}

// NewI8042 returns the controller; reset, called on the pulse-reset
// command, ends the machine with a reset.
func NewI8042(reset func()) *I8042 { return &I8042{reset: reset} }

// Read answers a read of the command/status port: all ones, as with no
// controller.
func (k *I8042) Read(off uint64, p []byte) {
	for i := range p {
		p[i] = 0xff
	}
}

// Write handles a command: 0xfe resets the machine, everything else is
// ignored.
func (k *I8042) Write(off uint64, p []byte) {
	if off == 0 && len(p) > 0 && p[0] == i8042PulseReset && k.reset != nil {
		k.reset()
	}
}
