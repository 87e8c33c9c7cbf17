// Package kernel provides the guest kernels that live runs boot.
//
// It sits before the data flow (bytes → tap → Assembler → Dispatch →
// Sinks → Outcome): the kernel it provides boots the guest whose agent
// writes the bytes of the bulk port. Nothing here reads or judges those
// bytes.
//
// Build compiles a sched_ext kernel from Debian's linux-source package,
// together with the example schedulers of its tools/sched_ext, into the
// user's cache, and reuses a finished build whose inputs are unchanged.
package kernel
