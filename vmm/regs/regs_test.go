package regs

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ktstr/ktstr/capture"
)

func TestNames(t *testing.T) {
	n := Names()
	assert.Len(t, n, 18+8*4+2*2+5)
	assert.Equal(t, []string{"RAX", "RBX"}, n[:2])
	assert.Contains(t, n, "RFLAGS")
	assert.Contains(t, n, "LDT_ATTRS")
	assert.Contains(t, n, "IDT_LIMIT")
	assert.Equal(t, "EFER", n[len(n)-1])
	seen := map[string]bool{}
	for _, x := range n {
		assert.False(t, seen[x], "%s twice", x)
		seen[x] = true
	}
}

func TestSegmentAttrs(t *testing.T) {
	// The boot GDT's 64-bit code segment, as the descriptor 0x00af9b00_0000ffff holds it.
	assert.Equal(t, uint64(0xa09b00), SegmentAttrs(11, 1, 0, 1, 0, 1, 0, 1, 0))
	assert.Equal(t, uint64(0xc09300), SegmentAttrs(3, 1, 0, 1, 0, 0, 1, 1, 0), "flat data")
	assert.Equal(t, uint64(0x8b00), SegmentAttrs(11, 0, 0, 1, 0, 0, 0, 0, 0), "busy TSS")
	assert.Equal(t, uint64(0x0200), SegmentAttrs(2, 0, 0, 1, 0, 0, 0, 0, 1), "an unusable segment is not present")
	assert.Equal(t, uint64(0x60f300), SegmentAttrs(3, 1, 3, 1, 0, 1, 1, 0, 0), "DPL 3")
}

func full(cpu int) CPU {
	c := CPU{CPU: cpu, Regs: map[string]uint64{}}
	for i, n := range Names() {
		c.Regs[n] = uint64(i) << 40
	}
	return c
}

func TestMarshalParse(t *testing.T) {
	in := []CPU{full(0), full(1)}
	raw, err := Marshal(in)
	require.NoError(t, err)
	var probe struct {
		Schema string `json:"schema"`
		CPUs   []struct {
			CPU  int               `json:"cpu"`
			Regs map[string]string `json:"regs"`
		} `json:"cpus"`
	}
	require.NoError(t, json.Unmarshal(raw, &probe))
	assert.Equal(t, Schema, probe.Schema)
	require.Len(t, probe.CPUs, 2)
	assert.Equal(t, "0x0", probe.CPUs[0].Regs["RAX"], "hex strings, no padding")
	assert.Equal(t, "0x10000000000", probe.CPUs[0].Regs["RBX"])
	assert.Len(t, probe.CPUs[1].Regs, len(Names()))

	out, err := Parse(raw)
	require.NoError(t, err)
	assert.Equal(t, in, out)
	assert.Empty(t, out[0].Missing())

	_, err = Marshal([]CPU{{Regs: map[string]uint64{"XMM0": 1}}})
	assert.ErrorContains(t, err, `"XMM0" is not a register of schema`)
}

func TestParseRefuses(t *testing.T) {
	tests := []struct {
		name, raw, want string
	}{
		{"a later schema", `{"schema":"ktstr-registers/2","cpus":[]}`, "use a newer ktstr"},
		{"a bare hex value in the schema", `{"schema":"ktstr-registers/1","cpus":[{"cpu":0,"regs":{"RAX":"ff"}}]}`, "not 0x-prefixed hex"},
		{"not hex", `{"schema":"ktstr-registers/1","cpus":[{"cpu":0,"regs":{"RAX":"0xzz"}}]}`, "RAX"},
		{"not hex, old QEMU shape", `{"cpus":[{"cpu":0,"regs":{"RIP":"zz"}}]}`, "RIP"},
		{"neither", `{"registers":1}`, "unknown shape"},
		{"not JSON", `regs`, "unknown shape"},
		{"an array of the wrong thing", `[1,2]`, "unknown shape"},
	}
	for _, tt := range tests {
		_, err := Parse(json.RawMessage(tt.raw))
		assert.ErrorContains(t, err, tt.want, tt.name)
	}
	// Positive control: unknown names of the schema's version are skipped.
	out, err := Parse(json.RawMessage(`{"schema":"ktstr-registers/1","cpus":[{"cpu":3,"regs":{"RIP":"0x10","CR8":"0x1"}}]}`))
	require.NoError(t, err)
	assert.Equal(t, []CPU{{CPU: 3, Regs: map[string]uint64{"RIP": 0x10}}}, out)
}

// TestParseOldNative reads the native VMM's shape before the schema:
// kvm_regs and kvm_sregs marshalled as Go structs.
func TestParseOldNative(t *testing.T) {
	raw := `[{"cpu":0,
	  "regs":{"RAX":1,"RBX":2,"RCX":3,"RDX":4,"RSI":5,"RDI":6,"RSP":7,"RBP":8,"R8":9,"R9":10,"R10":11,"R11":12,"R12":13,"R13":14,"R14":15,"R15":16,"RIP":1048592,"RFLAGS":2},
	  "sregs":{
	    "CS":{"Base":0,"Limit":4294967295,"Selector":16,"Type":11,"Present":1,"DPL":0,"DB":0,"S":1,"L":1,"G":1,"AVL":0,"Unusable":0},
	    "DS":{"Base":0,"Limit":4294967295,"Selector":24,"Type":3,"Present":1,"DPL":0,"DB":1,"S":1,"L":0,"G":1,"AVL":0,"Unusable":0},
	    "ES":{"Selector":24},"FS":{"Selector":24},"GS":{"Selector":24},"SS":{"Selector":24},
	    "TR":{"Base":0,"Limit":103,"Selector":32,"Type":11,"Present":1},
	    "LDT":{"Type":2,"Present":1,"Unusable":1},
	    "GDT":{"Base":1280,"Limit":47},"IDT":{"Base":1312,"Limit":7},
	    "CR0":2147811379,"CR2":0,"CR3":36864,"CR4":32,"CR8":0,"EFER":1280,"APICBase":4276092928,"InterruptBitmap":[0,0,0,0]}}]`
	out, err := Parse(json.RawMessage(raw))
	require.NoError(t, err)
	require.Len(t, out, 1)
	c := out[0]
	assert.Empty(t, c.Missing(), "the old native shape had every register")
	for name, want := range map[string]uint64{
		"RAX": 1, "R15": 16, "RIP": 0x100010, "RFLAGS": 2,
		"CS": 0x10, "CS_LIMIT": 0xffffffff, "CS_ATTRS": 0xa09b00, "DS_ATTRS": 0xc09300,
		"TR": 0x20, "TR_LIMIT": 0x67, "TR_ATTRS": 0x8b00, "LDT_ATTRS": 0x200,
		"GDT_BASE": 0x500, "GDT_LIMIT": 0x2f, "IDT_BASE": 0x520,
		"CR0": 0x80050033, "CR3": 0x9000, "CR4": 0x20, "EFER": 0x500,
	} {
		assert.Equal(t, want, c.Regs[name], name)
	}
}

// TestCheckedInTraces reads the registers of every snapshot EVENT of
// the traces under corpus/real, recorded by QEMU before the schema.
func TestCheckedInTraces(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "..", "corpus", "real", "*.zst"))
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	snapshots := 0
	for _, p := range paths {
		f, err := os.Open(p)
		require.NoError(t, err)
		r, err := capture.NewReader(f)
		require.NoError(t, err, p)
		for {
			rec, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err, p)
			if rec.Kind != capture.KindEvent || rec.Name != "snapshot" {
				continue
			}
			var d struct {
				Registers json.RawMessage `json:"registers"`
			}
			require.NoError(t, json.Unmarshal(rec.Detail, &d))
			if d.Registers == nil {
				continue // a refused snapshot (a watch) has none
			}
			cpus, err := Parse(d.Registers)
			require.NoError(t, err, p)
			require.NotEmpty(t, cpus, p)
			for _, c := range cpus {
				for _, n := range []string{"RIP", "RFLAGS", "RSP", "CS", "CR3", "EFER", "GDT_BASE"} {
					assert.Contains(t, c.Regs, n, "%s vCPU %d", p, c.CPU)
				}
				assert.Contains(t, c.Missing(), "CS_BASE", "QEMU's older shape kept only selectors")
			}
			// The same registers written in the schema read back the same.
			raw, err := Marshal(cpus)
			require.NoError(t, err)
			again, err := Parse(raw)
			require.NoError(t, err)
			assert.Equal(t, cpus, again)
			snapshots++
		}
		f.Close()
	}
	assert.NotZero(t, snapshots, "corpus/real holds a snapshot trace with registers")
	t.Logf("%d snapshot EVENTs with registers read from %d traces", snapshots, len(paths))
}
