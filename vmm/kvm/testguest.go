//go:build linux && amd64

package kvm

import (
	"context"
	"fmt"
	"os/exec"
)

// TestGuestSource is the freestanding test guest's C source, relative to
// the module root: it finds the console behind the virtio-mmio window
// its command line announces (TransportMMIO) or else on PCI
// (TransportPCI), brings up port 1 as a minimal driver of that
// transport, writes SRDY, STIM and SCDX frames and halts.
const TestGuestSource = "vmm/kvm/testdata/guest/guest.c"

// TestGuestEnv names the environment variable that gives the path of a
// test guest built beforehand (by BuildTestGuest, on another host): the
// tests that boot it use that file instead of compiling one, so they run
// where gcc is absent, e.g. on a lent machine with native KVM.
const TestGuestEnv = "KTSTR_TEST_GUEST"

// BuildTestGuest compiles the freestanding test guest from src (see
// TestGuestSource) into an ELF at out that the native backend enters in
// long mode at 1 MiB. It needs gcc; the guest uses no SSE/AVX, so it
// runs even where KVM only emulates guest instructions.
func BuildTestGuest(ctx context.Context, src, out string) error {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return fmt.Errorf("building the test guest: %w; apt-get install gcc", err)
	}
	args := []string{
		"-m64", "-O2", "-ffreestanding", "-fno-pic", "-no-pie", "-mgeneral-regs-only",
		"-mno-sse", "-mno-red-zone", "-fno-stack-protector", "-nostdlib", "-static",
		"-Wl,-Ttext-segment=0x100000", "-Wl,--build-id=none",
		"-o", out, src,
	}
	if b, err := exec.CommandContext(ctx, gcc, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("building the test guest: gcc: %w: %s", err, b)
	}
	return nil
}
