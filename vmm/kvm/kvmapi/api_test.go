//go:build linux && amd64

package kvmapi

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestInternalError: the exit's text names the suberror and RIP, and for
// an emulation failure the instruction bytes KVM supplied, and only
// when KVM says it supplied them.
func TestInternalError(t *testing.T) {
	exit := func(sub, ndata uint32, flags uint64, insn ...byte) []byte {
		u := make([]byte, 256)
		le := binary.LittleEndian
		le.PutUint32(u[0:], sub)
		le.PutUint32(u[4:], ndata)
		le.PutUint64(u[8:], flags)
		u[16] = byte(len(insn))
		copy(u[17:], insn)
		return u
	}
	xrstor := []byte{0x48, 0x0f, 0xae, 0x2f}
	for _, c := range []struct {
		name string
		u    []byte
		want string
	}{
		{"emulation failure with bytes", exit(1, 4, 1, xrstor...),
			"KVM emulation failure (an instruction the host's KVM cannot emulate), suberror 1 at RIP 0xffffffff8333041b, instruction bytes 48 0f ae 2f"},
		{"no bytes flag", exit(1, 4, 0, xrstor...),
			"KVM emulation failure (an instruction the host's KVM cannot emulate), suberror 1 at RIP 0xffffffff8333041b"},
		{"too little data", exit(1, 1, 1, xrstor...),
			"KVM emulation failure (an instruction the host's KVM cannot emulate), suberror 1 at RIP 0xffffffff8333041b"},
		{"no bytes", exit(1, 4, 1),
			"KVM emulation failure (an instruction the host's KVM cannot emulate), suberror 1 at RIP 0xffffffff8333041b"},
		{"other suberror", exit(3, 0, 0),
			"KVM internal error, suberror 3 at RIP 0xffffffff8333041b"},
	} {
		assert.Equal(t, c.want, InternalError(c.u, 0xffffffff8333041b), c.name)
	}
	// An instruction size past the 15 bytes x86 allows is not trusted.
	u := exit(1, 4, 1, xrstor...)
	u[16] = 16
	assert.NotContains(t, InternalError(u, 0), "instruction bytes")
}
