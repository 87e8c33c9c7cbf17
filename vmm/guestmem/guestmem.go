// Package guestmem is the guest physical memory of the native KVM
// backend: host memory regions mapped at guest physical addresses, with
// every access bounds-checked.
//
// In the data flow (bytes → tap → Assembler → Dispatch → Sinks →
// Outcome) it sits under the tap: the virtio device model reads the
// guest's descriptor tables and buffers through it, so a guest-supplied
// address or length can never make the host read or write outside the
// memory it gave the guest. Tests back it with a plain byte slice.
package guestmem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"unsafe"
)

// ErrOutOfRange reports an access that is not wholly inside one region
// of guest memory.
var ErrOutOfRange = errors.New("guest memory access out of range")

// Region is one contiguous piece of guest physical memory.
type Region struct {
	GPA  uint64 // guest physical address of Data[0]
	Data []byte // host memory backing the region
}

// End returns the guest physical address just past the region.
func (r Region) End() uint64 { return r.GPA + uint64(len(r.Data)) }

// Memory is guest physical memory made of non-overlapping regions. Its
// methods are safe for concurrent use; the bytes themselves are shared
// with the running guest, so callers copy out what they must not see
// change.
type Memory struct {
	regions []Region // sorted by GPA
}

// New returns guest memory made of regions. Regions must be non-empty
// and must not overlap or wrap around the address space.
func New(regions ...Region) (*Memory, error) {
	rs := append([]Region(nil), regions...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].GPA < rs[j].GPA })
	for i, r := range rs {
		if len(r.Data) == 0 {
			return nil, fmt.Errorf("guest memory region at %#x is empty", r.GPA)
		}
		if r.End() < r.GPA {
			return nil, fmt.Errorf("guest memory region at %#x (%d bytes) wraps around the address space", r.GPA, len(r.Data))
		}
		if i > 0 && rs[i-1].End() > r.GPA {
			return nil, fmt.Errorf("guest memory regions at %#x and %#x overlap", rs[i-1].GPA, r.GPA)
		}
	}
	return &Memory{regions: rs}, nil
}

// Regions returns the regions, sorted by guest physical address. The
// caller must not modify the returned slice.
func (m *Memory) Regions() []Region { return m.regions }

// Size returns the total number of bytes of guest memory.
func (m *Memory) Size() uint64 {
	var n uint64
	for _, r := range m.regions {
		n += uint64(len(r.Data))
	}
	return n
}

// Slice returns the n bytes of guest memory at gpa. It fails with
// ErrOutOfRange unless all n bytes lie inside a single region. The
// result aliases guest memory.
func (m *Memory) Slice(gpa, n uint64) ([]byte, error) {
	for _, r := range m.regions {
		if gpa < r.GPA {
			break
		}
		size := uint64(len(r.Data))
		off := gpa - r.GPA
		if off >= size && !(off == size && n == 0) {
			continue
		}
		if n > size-off {
			break
		}
		return r.Data[off : off+n : off+n], nil
	}
	return nil, fmt.Errorf("%d bytes at guest address %#x: %w", n, gpa, ErrOutOfRange)
}

// Read copies len(b) bytes of guest memory at gpa into b.
func (m *Memory) Read(gpa uint64, b []byte) error {
	s, err := m.Slice(gpa, uint64(len(b)))
	if err != nil {
		return err
	}
	copy(b, s)
	return nil
}

// Write copies b into guest memory at gpa.
func (m *Memory) Write(gpa uint64, b []byte) error {
	s, err := m.Slice(gpa, uint64(len(b)))
	if err != nil {
		return err
	}
	copy(s, b)
	return nil
}

// Uint16 reads a little-endian u16 at gpa.
func (m *Memory) Uint16(gpa uint64) (uint16, error) {
	s, err := m.Slice(gpa, 2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(s), nil
}

// Uint32 reads a little-endian u32 at gpa.
func (m *Memory) Uint32(gpa uint64) (uint32, error) {
	s, err := m.Slice(gpa, 4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(s), nil
}

// Uint64 reads a little-endian u64 at gpa.
func (m *Memory) Uint64(gpa uint64) (uint64, error) {
	s, err := m.Slice(gpa, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(s), nil
}

// PutUint16 writes a little-endian u16 at gpa.
func (m *Memory) PutUint16(gpa uint64, v uint16) error {
	s, err := m.Slice(gpa, 2)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint16(s, v)
	return nil
}

// PutUint32 writes a little-endian u32 at gpa.
func (m *Memory) PutUint32(gpa uint64, v uint32) error {
	s, err := m.Slice(gpa, 4)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(s, v)
	return nil
}

// PutUint64 writes a little-endian u64 at gpa.
func (m *Memory) PutUint64(gpa uint64, v uint64) error {
	s, err := m.Slice(gpa, 8)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(s, v)
	return nil
}

// word returns a pointer to the aligned u32 at gpa.
func (m *Memory) word(gpa uint64) (*uint32, error) {
	if gpa%4 != 0 {
		return nil, fmt.Errorf("atomic access at guest address %#x is not 4-byte aligned: %w", gpa, ErrOutOfRange)
	}
	s, err := m.Slice(gpa, 4)
	if err != nil {
		return nil, err
	}
	if uintptr(unsafe.Pointer(&s[0]))%4 != 0 {
		return nil, fmt.Errorf("host backing of guest address %#x is not 4-byte aligned: %w", gpa, ErrOutOfRange)
	}
	return (*uint32)(unsafe.Pointer(&s[0])), nil
}

// LoadUint32 atomically reads the 4-byte aligned u32 at gpa. Shared ring
// indices are read this way so that the load is ordered with the
// guest's stores (x86 is little-endian, so the value is the LE value).
func (m *Memory) LoadUint32(gpa uint64) (uint32, error) {
	p, err := m.word(gpa)
	if err != nil {
		return 0, err
	}
	return atomic.LoadUint32(p), nil
}

// StoreUint32 atomically writes the 4-byte aligned u32 at gpa, after
// every earlier store of this goroutine is visible.
func (m *Memory) StoreUint32(gpa uint64, v uint32) error {
	p, err := m.word(gpa)
	if err != nil {
		return err
	}
	atomic.StoreUint32(p, v)
	return nil
}
