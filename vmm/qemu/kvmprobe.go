package qemu

import (
	"time"

	"github.com/ktstr/ktstr/vmm/kvm/kvmapi"
)

// KVMProbe is what the KVM speed probe found, for the accel choice.
type KVMProbe struct {
	Native  bool          // KVM runs guest code at hardware speed
	Elapsed time.Duration // how long the probe loop ran
	Detail  string        // one line for humans and trace metadata
}

// ProbeKVM runs the KVM speed probe, the same one --backend native
// consults (kvmapi.Probe, with its one threshold, kvmapi.NativeRate),
// for at most kvmapi.DecisionLimit: as long as a host at the threshold
// needs, so a host whose KVM only emulates costs the QEMU backend 20 ms,
// not the emulator's whole run of the loop. Any failure (no /dev/kvm,
// an ioctl error, an unexpected exit) reports not native.
func ProbeKVM() KVMProbe {
	res, err := kvmapi.Probe(kvmapi.DecisionLimit)
	if err != nil {
		return KVMProbe{Detail: "KVM unusable: " + err.Error()}
	}
	return KVMProbe{Native: res.Native(), Elapsed: res.Elapsed, Detail: res.Verdict()}
}
