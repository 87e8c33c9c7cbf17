//go:build linux && amd64

package kvmapi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ktstr/ktstr/vmm/boot"
)

// ProbeDevice runs a counting loop as a one-vCPU guest without an
// irqchip (so its final HLT returns to the VMM) on the KVM device node
// device and times it, giving up after limit (DecisionLimit suffices to
// decide; ProbeLimit measures the emulator's whole run). It fails with
// ErrNoKVM where KVM is unusable.
func ProbeDevice(device string, limit time.Duration) (ProbeResult, error) {
	v, err := NewVM(device, 2)
	if err != nil {
		return ProbeResult{}, err
	}
	defer v.Close()
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
	base, err := v.SupportedCPUID()
	if err != nil {
		return ProbeResult{}, err
	}
	c, err := v.NewVCPU(0)
	if err != nil {
		return ProbeResult{}, err
	}
	if err := c.Setup(base, &st, false); err != nil {
		return ProbeResult{}, err
	}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c.BindThread()
	var expired atomic.Bool
	timer := time.AfterFunc(limit, func() {
		expired.Store(true)
		c.Kick()
	})
	start := time.Now()
	var res ProbeResult
	for {
		err := c.Run()
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
		reason := c.ExitReason()
		if reason == ExitHLT {
			res.Finished = true
			break
		}
		if reason != ExitIntr {
			timer.Stop()
			return res, fmt.Errorf("probe: unexpected exit %s", ExitName(reason))
		}
	}
	timer.Stop()
	r, err := c.Regs()
	if err != nil {
		return res, fmt.Errorf("probe: %w", err)
	}
	left := uint64(uint32(r.RCX))
	if res.Finished {
		left = 0
	}
	res.Instructions = 1 + 2*(probeIterations-left)
	return res, nil
}
