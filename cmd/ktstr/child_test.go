package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// childRun is how one ktstr process ran.
type childRun struct {
	code           int
	stdout, stderr string
	rss            int64 // peak RSS in bytes
}

// childOpts configures runChild.
type childOpts struct {
	stdout    string   // file to open as the child's stdout; "" captures it
	stderr    string   // file to open as the child's stderr; "" captures it
	discard   bool     // stdout to /dev/null (for outputs too big to hold)
	env       []string // added to the environment
	fileLimit int64    // RLIMIT_FSIZE for the child; 0: none
}

// runChild runs ktstr args as its own process (the test binary, through
// TestKtstrChild, which calls the same run as main) and returns its exit
// status, output and peak RSS.
func runChild(t *testing.T, o childOpts, args ...string) childRun {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKtstrChild$")
	cmd.Env = append(os.Environ(), "KTSTR_CHILD_ARGS="+strings.Join(args, "\x1f"))
	cmd.Env = append(cmd.Env, o.env...)
	if o.fileLimit > 0 {
		cmd.Env = append(cmd.Env, "KTSTR_CHILD_FSIZE="+strconv.FormatInt(o.fileLimit, 10))
	}
	hwm := measureHWM(t, cmd)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	switch {
	case o.stdout != "":
		f, err := os.OpenFile(o.stdout, os.O_WRONLY, 0)
		require.NoError(t, err)
		defer f.Close()
		cmd.Stdout = f
	case o.discard:
		f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		require.NoError(t, err)
		defer f.Close()
		cmd.Stdout = f
	}
	if o.stderr != "" {
		f, err := os.OpenFile(o.stderr, os.O_WRONLY, 0)
		require.NoError(t, err)
		defer f.Close()
		cmd.Stderr = f
	}
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return childRun{code: code, stdout: stdout.String(), stderr: stderr.String(),
		rss: hwm()}
}

// assertOneLineError checks what every refusal promises: one line on
// stderr, and nothing that looks like a crash.
func assertOneLineError(t *testing.T, stderr string) {
	t.Helper()
	assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line on stderr: %q", stderr)
	assert.True(t, strings.HasSuffix(stderr, "\n"), "the line is complete: %q", stderr)
	assertNoCrash(t, stderr)
}

// assertNoCrash checks that output holds no panic and no stack trace.
func assertNoCrash(t *testing.T, s string) {
	t.Helper()
	assert.NotContains(t, s, "panic", "no panic")
	assert.NotContains(t, s, "goroutine", "no stack trace")
}

// mknodDevices makes character device nodes with the numbers of
// /dev/null, /dev/zero and /dev/full in dir (never touching /dev) and
// reports whether mknod was permitted.
func mknodDevices(t *testing.T, dir string) bool {
	t.Helper()
	for name, dev := range map[string]uint64{"null": unix.Mkdev(1, 3), "zero": unix.Mkdev(1, 5), "full": unix.Mkdev(1, 7)} {
		if err := unix.Mknod(filepath.Join(dir, name), unix.S_IFCHR|0o666, int(dev)); err != nil {
			return false
		}
	}
	return true
}

// mkfifo makes a FIFO at path.
func mkfifo(path string) error { return unix.Mkfifo(path, 0o644) }

// elfImage returns a minimal 64-bit little-endian x86-64 ET_EXEC ELF
// image (a header and one PT_LOAD program header), which is all the
// agent check reads, with edit applied to it; nothing runs it.
func elfImage(edit func(b []byte)) []byte {
	b := make([]byte, 64+56+16)
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = 2, 1, 1 // ELFCLASS64, ELFDATA2LSB, EV_CURRENT
	le := binary.LittleEndian
	le.PutUint16(b[16:], 2)  // ET_EXEC
	le.PutUint16(b[18:], 62) // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], 0x401000) // entry
	le.PutUint64(b[32:], 64)       // phoff
	le.PutUint16(b[52:], 64)       // ehsize
	le.PutUint16(b[54:], 56)       // phentsize
	le.PutUint16(b[56:], 1)        // phnum
	le.PutUint32(b[64:], 1)        // PT_LOAD
	if edit != nil {
		edit(b)
	}
	return b
}

// elfWithDynamic returns elfImage with a second program header of type
// typ pointing at a dynamic section holding the given (tag, value)
// entries.
func elfWithDynamic(etype uint16, typ uint32, dyn ...uint64) []byte {
	b := make([]byte, 64+2*56)
	copy(b, elfImage(nil)[:64+56])
	le := binary.LittleEndian
	le.PutUint16(b[16:], etype)
	le.PutUint16(b[56:], 2)
	ph := b[64+56:]
	le.PutUint32(ph, typ)
	le.PutUint64(ph[8:], uint64(len(b)))      // offset
	le.PutUint64(ph[32:], uint64(len(dyn)*8)) // filesz
	for _, v := range dyn {
		b = le.AppendUint64(b, v)
	}
	return b
}

func TestStaticELF(t *testing.T) {
	tests := []struct {
		name string
		img  []byte
		want string // "" accepted
	}{
		{"static ET_EXEC (control)", elfImage(nil), ""},
		{"static-pie (control)", elfWithDynamic(3, ptDynamic, dtFlags1, df1PIE, dtNull, 0), ""},
		{"static ET_EXEC with a dynamic section and no libraries (control)", elfWithDynamic(2, ptDynamic, dtFlags1, 0, dtNull, 0), ""},
		{"shared library", elfWithDynamic(3, ptDynamic, dtFlags1, 0, dtNull, 0), "shared library"},
		{"ET_DYN without a dynamic section", elfImage(func(b []byte) { b[16] = 3 }), "shared library"},
		{"needs libraries", elfWithDynamic(2, ptDynamic, dtNeeded, 1, dtNull, 0), "needs shared libraries"},
		{"interpreter", elfWithDynamic(2, ptInterp), "program interpreter"},
		{"32-bit", elfImage(func(b []byte) { b[4] = 1 }), "32-bit"},
		{"big-endian", elfImage(func(b []byte) { b[5] = 2 }), "big-endian"},
		{"arm64", elfImage(func(b []byte) { b[18] = 183 }), "machine 183"},
		{"core file", elfImage(func(b []byte) { b[16] = 4 }), "type 4"},
		{"no program headers", elfImage(func(b []byte) { b[56] = 0 }), "program headers"},
		{"program headers past the end", elfImage(func(b []byte) { b[32] = 0xff; b[33] = 0xff }), "program headers"},
		{"odd phentsize", elfImage(func(b []byte) { b[54] = 32 }), "program headers"},
		{"dynamic section past the end", func() []byte {
			b := elfWithDynamic(3, ptDynamic, dtFlags1, df1PIE)
			binary.LittleEndian.PutUint64(b[64+56+32:], 1<<40)
			return b
		}(), "dynamic section"},
		{"too short", []byte("\x7fELF"), "too short"},
		{"text", []byte(strings.Repeat("root:x:0:0:root:/root:/bin/bash\n", 4)), "not an ELF file"},
		{"script", []byte("#!/bin/sh\necho hi\n" + strings.Repeat("#", 64)), "a script"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := staticELF(bytes.NewReader(tt.img), int64(len(tt.img)))
			if tt.want == "" {
				assert.Empty(t, got)
				return
			}
			assert.Contains(t, got, tt.want)
		})
	}
}
