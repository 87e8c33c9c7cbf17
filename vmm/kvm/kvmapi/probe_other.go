//go:build !(linux && amd64)

package kvmapi

import (
	"fmt"
	"runtime"
	"time"
)

// ProbeDevice fails with ErrNoKVM: the native VMM and its probe need
// Linux on amd64.
func ProbeDevice(device string, limit time.Duration) (ProbeResult, error) {
	return ProbeResult{}, fmt.Errorf("%w: %s/%s has no KVM for ktstr (use Linux on amd64)", ErrNoKVM, runtime.GOOS, runtime.GOARCH)
}
