package kvmapi

import (
	"errors"
	"fmt"
	"time"
)

// ErrNoKVM reports that KVM cannot be used on this host.
var ErrNoKVM = errors.New("KVM is not available")

// DefaultDevice is the KVM device node opened unless told otherwise.
const DefaultDevice = "/dev/kvm"

// NativeRate is the one threshold of the KVM speed probe: the guest
// instructions per second above which KVM is taken to run guest code
// natively (hardware virtualisation) rather than in the kernel's
// instruction emulator.
//
// Why 10^8: under hardware virtualisation the probe loop (dec ecx; jnz)
// retires about one iteration a clock cycle, so even a 1 GHz core runs
// it at over 10^9 instructions a second, ten times the threshold: room for a
// busy host that preempts the probe for a few milliseconds. KVM's
// instruction emulator, all a host without VMX/SVM (or a VM without
// nested virtualisation) offers, ran it at 1.1 to 1.7 million a second
// on every machine this project has seen, some sixty times below. So
// neither lands near the line. At the threshold the loop's
// ProbeInstructions take DecisionLimit (20 ms): a probe that has not
// finished by then has already shown KVM is not native, which is as
// long as the QEMU backend's accel choice waits.
const NativeRate = 100e6

// probeIterations is the length of the probe loop: two instructions per
// iteration, about a millisecond natively.
const probeIterations = 1_000_000

// ProbeInstructions is the number of guest instructions the probe loop
// executes when it runs to its end (mov, then dec and jnz per iteration,
// then hlt is not counted).
const ProbeInstructions = 1 + 2*probeIterations

// DecisionLimit is the shortest probe limit that can still find KVM
// native: ProbeInstructions at NativeRate.
const DecisionLimit = time.Duration(ProbeInstructions / NativeRate * float64(time.Second))

// ProbeLimit is the limit for a probe whose rate is reported to people:
// long enough for the emulator to finish the loop (about 1.2 s at 1.65 M
// instructions/s), so the rate printed is of the whole loop.
const ProbeLimit = 2 * time.Second

// ProbeResult says how fast KVM ran the probe loop on this host.
type ProbeResult struct {
	Instructions uint64        // guest instructions executed
	Elapsed      time.Duration // wall time they took
	Finished     bool          // the loop ended within the limit
}

// Rate returns guest instructions per second.
func (r ProbeResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Instructions) / r.Elapsed.Seconds()
}

// Native reports whether KVM ran the whole loop at NativeRate or faster.
func (r ProbeResult) Native() bool { return r.Finished && r.Rate() >= NativeRate }

// String describes the result in one phrase.
func (r ProbeResult) String() string {
	return fmt.Sprintf("%d guest instructions in %v (%.3g per second)", r.Instructions, r.Elapsed.Round(time.Microsecond), r.Rate())
}

// Verdict says, in one line for people and trace metadata, what the
// probe found, with the threshold it was judged by.
func (r ProbeResult) Verdict() string {
	v := "native"
	if !r.Native() {
		v = "emulated, not native"
	}
	return fmt.Sprintf("KVM probe: %v: %s (native is at least %.0e per second)", r, v, NativeRate)
}

// Probe runs the probe loop on DefaultDevice, giving up after limit;
// see ProbeDevice.
func Probe(limit time.Duration) (ProbeResult, error) {
	return ProbeDevice(DefaultDevice, limit)
}
