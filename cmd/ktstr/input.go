package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/ktstr/ktstr/internal/outfile"
)

// maxUserExecutable bounds a user-named file ktstr reads whole or runs:
// --agent and --scheduler (docs/protocol.md §8). The agent is about
// 3 MiB, scx_simple under 2 MiB.
const maxUserExecutable = 256 << 20

// statInput checks that a user-named input exists and is a regular file
// (or, with pipeOK, a FIFO, as `<(zstdcat t.zst)` gives), so that a
// mistyped path, a directory or a device node is one clear line (exit 2)
// instead of a read that never ends or an error about the content.
// what names the input in the message ("trace", "--raw").
func statInput(path, what string, pipeOK bool) (fs.FileInfo, error) {
	if path == "" {
		return nil, usagef("%s: no file named", what)
	}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, usagef("%s %s: no such file; check the path", what, path)
	}
	if err != nil {
		return nil, usageErr(fmt.Errorf("%s %s: %w", what, path, unwrapPathErr(err)))
	}
	m := fi.Mode()
	if m.IsRegular() || pipeOK && m&fs.ModeNamedPipe != 0 {
		return fi, nil
	}
	hint := "name a regular file"
	switch {
	case what == "trace":
		hint = "name a trace file (the .zst that ktstr record or ktstr trace import writes)"
	case pipeOK:
		hint = "name a regular file or a pipe"
	}
	return nil, usagef("%s %s is %s, not a file; %s", what, path, outfile.Kind(m), hint)
}

// openInput opens a user-named input after statInput's check.
func openInput(path, what string, pipeOK bool) (*os.File, error) {
	if _, err := statInput(path, what, pipeOK); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, usageErr(fmt.Errorf("%s %s: %w", what, path, unwrapPathErr(err)))
	}
	return f, nil
}

// openTrace opens a trace file named on the command line.
func openTrace(path string) (*os.File, error) { return openInput(path, "trace", true) }

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ELF constants checkStaticELF reads (elf(5)).
const (
	elfClass64   = 2
	elfData2LSB  = 1
	elfTypeExec  = 2
	elfTypeDyn   = 3
	elfMachineX8 = 62 // EM_X86_64
	ptDynamic    = 2
	ptInterp     = 3
	dtNull       = 0
	dtNeeded     = 1
	dtFlags1     = 0x6ffffffb
	df1PIE       = 0x08000000
	elfHdrSize   = 64
	elfPhdrSize  = 56
	maxPhdrs     = 1024
	maxDynamic   = 1 << 20
)

// checkStaticELF checks, before anything reads the file whole or runs
// it, that path (given with flag, e.g. "--agent") is what the guest can
// run as a program: a regular, executable file of at most 256 MiB
// holding a 64-bit little-endian x86-64 ELF executable (ET_EXEC, or a
// static-pie ET_DYN) with no program interpreter and no shared library
// to load. It reads the ELF header, the program headers and the dynamic
// section, nothing else. Every refusal is a usage error (exit 2) saying
// what the file is and what to pass instead.
func checkStaticELF(flag, path, fix string) error {
	fi, err := statInput(path, flag, false)
	if err != nil {
		return err
	}
	if fi.Size() > maxUserExecutable {
		return usagef("%s %s is %d bytes, over the %d-byte bound for a guest program; %s", flag, path, fi.Size(), maxUserExecutable, fix)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return usagef("%s %s is not executable; run: chmod +x %s", flag, path, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return usageErr(fmt.Errorf("%s %s: %w", flag, path, unwrapPathErr(err)))
	}
	defer f.Close()
	if why := staticELF(f, fi.Size()); why != "" {
		return usagef("%s %s %s, not a static x86-64 executable; %s", flag, path, why, fix)
	}
	return nil
}

// staticELF returns "" when r (size bytes) is a static x86-64 ELF
// executable, and otherwise what it is instead, as "is …" or "has …".
func staticELF(r io.ReaderAt, size int64) string {
	var h [elfHdrSize]byte
	if size < elfHdrSize {
		return "is too short to be an ELF executable"
	}
	if _, err := r.ReadAt(h[:], 0); err != nil {
		return fmt.Sprintf("cannot be read (%v)", err)
	}
	le := binary.LittleEndian
	switch {
	case string(h[:4]) != "\x7fELF":
		if string(h[:2]) == "#!" {
			return "is a script"
		}
		return "is not an ELF file"
	case h[4] != elfClass64:
		return "is a 32-bit ELF file"
	case h[5] != elfData2LSB:
		return "is a big-endian ELF file"
	case le.Uint16(h[18:]) != elfMachineX8:
		return fmt.Sprintf("is an ELF file for machine %d, not x86-64", le.Uint16(h[18:]))
	}
	typ := le.Uint16(h[16:])
	if typ != elfTypeExec && typ != elfTypeDyn {
		return fmt.Sprintf("is an ELF file of type %d (an object or core file)", typ)
	}
	phoff, phentsize, phnum := le.Uint64(h[32:]), le.Uint16(h[54:]), le.Uint16(h[56:])
	if phnum == 0 || phnum > maxPhdrs || phentsize != elfPhdrSize || phoff > uint64(size) || uint64(size)-phoff < uint64(phnum)*elfPhdrSize {
		return "has no valid program headers"
	}
	ph := make([]byte, int(phnum)*elfPhdrSize)
	if _, err := r.ReadAt(ph, int64(phoff)); err != nil {
		return "has no valid program headers"
	}
	var dynOff, dynSize uint64
	hasDyn := false
	for i := 0; i < int(phnum); i++ {
		p := ph[i*elfPhdrSize:]
		switch le.Uint32(p) {
		case ptInterp:
			return "is dynamically linked (it names a program interpreter)"
		case ptDynamic:
			hasDyn, dynOff, dynSize = true, le.Uint64(p[8:]), le.Uint64(p[32:])
		}
	}
	pie := false
	if hasDyn {
		if dynSize > maxDynamic || dynOff > uint64(size) || uint64(size)-dynOff < dynSize {
			return "has a damaged dynamic section"
		}
		dyn := make([]byte, int(dynSize))
		if _, err := r.ReadAt(dyn, int64(dynOff)); err != nil {
			return "has a damaged dynamic section"
		}
		for i := 0; i+16 <= len(dyn); i += 16 {
			tag, val := le.Uint64(dyn[i:]), le.Uint64(dyn[i+8:])
			if tag == dtNull {
				break
			}
			switch tag {
			case dtNeeded:
				return "is dynamically linked (it needs shared libraries)"
			case dtFlags1:
				pie = val&df1PIE != 0
			}
		}
	}
	if typ == elfTypeDyn && !pie {
		return "is a shared library"
	}
	return ""
}
