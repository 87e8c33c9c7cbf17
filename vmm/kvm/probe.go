//go:build linux && amd64

package kvm

import (
	"time"

	"github.com/ktstr/ktstr/vmm/kvm/kvmapi"
)

// The KVM speed probe and the device node live in package kvmapi, shared
// with the QEMU backend's accel choice; these names keep the native
// backend's callers (ktstr record, kvmprobe) reading as before.

// ErrNoKVM reports that KVM cannot be used on this host (kvmapi.ErrNoKVM).
var ErrNoKVM = kvmapi.ErrNoKVM

// DefaultDevice is the KVM device node the backend and the probe open
// unless told otherwise.
const DefaultDevice = kvmapi.DefaultDevice

// NativeRate is the probe's one threshold (kvmapi.NativeRate, where the
// reason for its value is given).
const NativeRate = kvmapi.NativeRate

// ProbeResult says how fast KVM ran the probe loop (kvmapi.ProbeResult).
type ProbeResult = kvmapi.ProbeResult

// Probe runs the KVM speed probe on DefaultDevice (kvmapi.Probe).
func Probe(limit time.Duration) (ProbeResult, error) { return kvmapi.Probe(limit) }

// ProbeDevice runs the KVM speed probe on device (kvmapi.ProbeDevice).
func ProbeDevice(device string, limit time.Duration) (ProbeResult, error) {
	return kvmapi.ProbeDevice(device, limit)
}

// kvmAvailable reports whether DefaultDevice can be opened, for tests.
func kvmAvailable() error { return kvmapi.Available(DefaultDevice) }
