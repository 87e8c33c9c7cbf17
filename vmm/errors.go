package vmm

import "fmt"

// EnvError reports that the host lacks something a live run needs (a
// QEMU binary, a kernel, a usable /dev/kvm). Fix is the command that
// provides it; the CLI maps EnvError to exit status 3.
type EnvError struct {
	Missing string // what is missing, e.g. "qemu-system-x86_64"
	Fix     string // the command that fixes it, e.g. "apt-get install -y qemu-system-x86"
	Err     error  // the underlying error, if any
}

func (e *EnvError) Error() string {
	return fmt.Sprintf("%s is missing; run: %s", e.Missing, e.Fix)
}

func (e *EnvError) Unwrap() error { return e.Err }
