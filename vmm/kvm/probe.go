//go:build linux && amd64

package kvm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ktstr/ktstr/vmm/boot"
)

// NativeRate is the guest instruction rate above which KVM is taken to
// run guest code natively. Hardware virtualisation runs the probe loop
// at billions of instructions a second; KVM's instruction emulator, the
// only thing some nested hosts offer, at about a million.
const NativeRate = 100e6

// probeIterations is the length of the probe loop: two instructions per
// iteration, about a millisecond natively.
const probeIterations = 1_000_000

// ProbeResult says how fast KVM ran a tiny guest loop on this host.
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

// Native reports whether KVM ran the loop at hardware speed.
func (r ProbeResult) Native() bool { return r.Finished && r.Rate() >= NativeRate }

func (r ProbeResult) String() string {
	return fmt.Sprintf("%d guest instructions in %v (%.3g per second)", r.Instructions, r.Elapsed.Round(time.Microsecond), r.Rate())
}

// Probe runs a counting loop as a one-vCPU guest without an irqchip (so
// its final HLT returns to the VMM) on DefaultDevice and times it, giving
// up after limit. It fails with ErrNoKVM where KVM is unusable.
func Probe(limit time.Duration) (ProbeResult, error) {
	return ProbeDevice(DefaultDevice, limit)
}

// ProbeDevice is Probe on the KVM device node device.
func ProbeDevice(device string, limit time.Duration) (ProbeResult, error) {
	v, err := newVM(device, 2)
	if err != nil {
		return ProbeResult{}, err
	}
	defer v.close()
	// mov ecx, N; 1: dec ecx; jnz 1b; hlt
	code := []byte{0xb9, 0, 0, 0, 0, 0xff, 0xc9, 0x75, 0xfc, 0xf4}
	binary.LittleEndian.PutUint32(code[1:], probeIterations)
	if err := v.mem.Write(boot.HighMemStart, code); err != nil {
		return ProbeResult{}, err
	}
	st, err := boot.SetupLongMode(v.mem, boot.HighMemStart)
	if err != nil {
		return ProbeResult{}, err
	}
	base, err := v.supportedCPUID()
	if err != nil {
		return ProbeResult{}, err
	}
	c, err := v.newVCPU(0)
	if err != nil {
		return ProbeResult{}, err
	}
	if err := c.setup(base, &st, false); err != nil {
		return ProbeResult{}, err
	}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	var expired atomic.Bool
	timer := time.AfterFunc(limit, func() {
		expired.Store(true)
		atomic.StoreUint32((*uint32)(unsafe.Pointer(&c.run[0])), 1<<(8*runImmediateExit))
		unix.Tgkill(unix.Getpid(), tid, unix.SIGURG)
	})
	start := time.Now()
	var res ProbeResult
	for {
		_, err := ioctl(c.fd, kvmRun, 0)
		res.Elapsed = time.Since(start)
		if errors.Is(err, unix.EINTR) {
			if expired.Load() {
				break
			}
			continue
		}
		if err != nil {
			timer.Stop()
			return res, fmt.Errorf("probe: KVM_RUN: %w", err)
		}
		reason := binary.LittleEndian.Uint32(c.run[runExitReason:])
		if reason == exitHLT {
			res.Finished = true
			break
		}
		if reason != exitIntr {
			timer.Stop()
			return res, fmt.Errorf("probe: unexpected exit %s", exitName(reason))
		}
	}
	timer.Stop()
	var r Regs
	if err := ioctlPtr(c.fd, kvmGetRegs, unsafe.Pointer(&r)); err != nil {
		return res, fmt.Errorf("probe: KVM_GET_REGS: %w", err)
	}
	left := uint64(uint32(r.RCX))
	if res.Finished {
		left = 0
	}
	res.Instructions = 1 + 2*(probeIterations-left)
	return res, nil
}
