//go:build linux && amd64

// Command kvmprobe says whether KVM on this host runs guests natively,
// which the native backend needs to boot Linux: it runs the KVM speed
// probe that ktstr record consults for both backends (package kvmapi).
// Exit status 0: native; 3: KVM is missing or only emulates guest code
// (so `make native-smoke` cannot run here).
//
// It sits before the data flow (bytes → tap → Assembler → Dispatch →
// Sinks → Outcome): it decides whether a live native run can produce
// bytes at all.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/ktstr/ktstr/vmm/kvm/kvmapi"
)

func main() {
	res, err := kvmapi.Probe(kvmapi.ProbeLimit)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kvmprobe: %v\n", err)
		if errors.Is(err, kvmapi.ErrNoKVM) {
			os.Exit(3)
		}
		os.Exit(1)
	}
	if !res.Native() {
		fmt.Fprintf(os.Stderr, "kvmprobe: KVM here emulates guest code: %v, native needs %.0e per second; "+
			"a Linux guest cannot boot under the native backend on this host: run native-smoke on a host with "+
			"hardware virtualisation (bare metal, or a VM with nested VMX/SVM enabled)\n", res, kvmapi.NativeRate)
		os.Exit(3)
	}
	fmt.Printf("kvmprobe: KVM runs guest code natively: %v\n", res)
}
