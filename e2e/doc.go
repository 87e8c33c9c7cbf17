// Package e2e records real runs: Debian's kernel under QEMU with the
// guest agent as /init, through the live coordinator, and replays each
// trace through the same Assembler and Dispatch. It covers the whole data
// flow (bytes → tap → Assembler → Dispatch → Sinks → Outcome) with the
// real virtio-console driver producing the bytes.
//
// The tests skip, with one line saying why, where QEMU or a kernel is
// absent (`apt-get install -y qemu-system-x86`, `ktstr kernel fetch`), and
// under -short. KTSTR_E2E_SAVE=DIR copies each trace into DIR (that is
// how corpus/real was made).
package e2e
