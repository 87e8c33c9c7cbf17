package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Fixed payload sizes.
const (
	SnapshotRequestSize = 72  // SNRQ payload
	SnapshotReplySize   = 520 // SNRP payload
	KernelOpRequestSize = 24  // KORQ payload
	KernelAddrsSize     = 24  // KADR payload
	StepSize            = 2   // STEP payload
	LifecycleSize       = 1   // LIFE payload
	SnapshotTagMax      = 64  // bytes of the SNRQ tag field
	SnapshotReasonMax   = 512 // bytes of the SNRP reason field
)

// Snapshot kinds carried in SnapshotRequestPayload.Kind.
const (
	SnapshotCapture uint32 = 1 // freeze the guest and capture its state
	SnapshotWatch   uint32 = 2 // arm a watchpoint
)

// Snapshot reply statuses carried in SnapshotReplyPayload.Status.
const (
	SnapshotOK    uint32 = 1
	SnapshotError uint32 = 2
)

// Lifecycle event values carried in a LIFE payload.
const (
	LifecycleMin = 1
	LifecycleMax = 4
)

// ErrShape reports a payload whose size or content does not match its
// tag's fixed layout. Dispatch counts such frames under "shape".
var ErrShape = errors.New("payload has the wrong shape for its tag")

// SnapshotRequestPayload is the SNRQ payload.
type SnapshotRequestPayload struct {
	RequestID uint32
	Kind      uint32 // SnapshotCapture or SnapshotWatch
	Tag       [SnapshotTagMax]byte
}

// NewSnapshotRequest builds a request whose tag field holds tag, cut to
// SnapshotTagMax bytes and NUL-padded.
func NewSnapshotRequest(id, kind uint32, tag string) SnapshotRequestPayload {
	r := SnapshotRequestPayload{RequestID: id, Kind: kind}
	copy(r.Tag[:], tag)
	return r
}

// TagString returns the tag text before the first NUL.
func (r *SnapshotRequestPayload) TagString() string {
	if i := bytes.IndexByte(r.Tag[:], 0); i >= 0 {
		return string(r.Tag[:i])
	}
	return string(r.Tag[:])
}

// AppendBinary appends the 72-byte encoding of r to dst.
func (r *SnapshotRequestPayload) AppendBinary(dst []byte) ([]byte, error) {
	dst = binary.LittleEndian.AppendUint32(dst, r.RequestID)
	dst = binary.LittleEndian.AppendUint32(dst, r.Kind)
	return append(dst, r.Tag[:]...), nil
}

// DecodeSnapshotRequest decodes an SNRQ payload. It returns ErrShape
// unless p is exactly SnapshotRequestSize bytes, Kind is
// SnapshotCapture or SnapshotWatch, and the tag field is valid UTF-8 up
// to its first NUL with only NULs after it.
func DecodeSnapshotRequest(p []byte) (SnapshotRequestPayload, error) {
	var r SnapshotRequestPayload
	if len(p) != SnapshotRequestSize {
		return r, fmt.Errorf("SNRQ payload is %d bytes, want %d: %w", len(p), SnapshotRequestSize, ErrShape)
	}
	r.RequestID = binary.LittleEndian.Uint32(p[0:])
	r.Kind = binary.LittleEndian.Uint32(p[4:])
	copy(r.Tag[:], p[8:])
	if r.Kind != SnapshotCapture && r.Kind != SnapshotWatch {
		return r, fmt.Errorf("SNRQ kind %d is neither capture (1) nor watch (2): %w", r.Kind, ErrShape)
	}
	if !validNulTerminated(r.Tag[:]) {
		return r, fmt.Errorf("SNRQ tag is not UTF-8 text followed only by NULs: %w", ErrShape)
	}
	return r, nil
}

// validNulTerminated reports whether b is valid UTF-8 up to its first
// NUL and holds only NULs after it.
func validNulTerminated(b []byte) bool {
	n := bytes.IndexByte(b, 0)
	if n < 0 {
		n = len(b)
	}
	if !utf8.Valid(b[:n]) {
		return false
	}
	for _, c := range b[n:] {
		if c != 0 {
			return false
		}
	}
	return true
}

// SnapshotReplyPayload is the SNRP payload the host writes to the guest.
type SnapshotReplyPayload struct {
	RequestID uint32
	Status    uint32 // SnapshotOK or SnapshotError
	Reason    [SnapshotReasonMax]byte
}

// NewSnapshotReply builds a reply whose reason holds reason, cut to
// SnapshotReasonMax bytes and NUL-padded.
func NewSnapshotReply(id, status uint32, reason string) SnapshotReplyPayload {
	r := SnapshotReplyPayload{RequestID: id, Status: status}
	copy(r.Reason[:], reason)
	return r
}

// ReasonString returns the reason text before the first NUL.
func (r *SnapshotReplyPayload) ReasonString() string {
	if i := bytes.IndexByte(r.Reason[:], 0); i >= 0 {
		return string(r.Reason[:i])
	}
	return string(r.Reason[:])
}

// AppendBinary appends the 520-byte encoding of r to dst.
func (r *SnapshotReplyPayload) AppendBinary(dst []byte) ([]byte, error) {
	dst = binary.LittleEndian.AppendUint32(dst, r.RequestID)
	dst = binary.LittleEndian.AppendUint32(dst, r.Status)
	return append(dst, r.Reason[:]...), nil
}

// DecodeSnapshotReply decodes an SNRP payload; it returns ErrShape
// unless p is exactly SnapshotReplySize bytes.
func DecodeSnapshotReply(p []byte) (SnapshotReplyPayload, error) {
	var r SnapshotReplyPayload
	if len(p) != SnapshotReplySize {
		return r, fmt.Errorf("SNRP payload is %d bytes, want %d: %w", len(p), SnapshotReplySize, ErrShape)
	}
	r.RequestID = binary.LittleEndian.Uint32(p[0:])
	r.Status = binary.LittleEndian.Uint32(p[4:])
	copy(r.Reason[:], p[8:])
	return r, nil
}

// KernelOpRequestPayload is the KORQ payload.
type KernelOpRequestPayload struct {
	RequestID uint32
	Op        uint32
	Arg       uint64
	Arg2      uint64
}

// AppendBinary appends the 24-byte encoding of r to dst.
func (r *KernelOpRequestPayload) AppendBinary(dst []byte) ([]byte, error) {
	dst = binary.LittleEndian.AppendUint32(dst, r.RequestID)
	dst = binary.LittleEndian.AppendUint32(dst, r.Op)
	dst = binary.LittleEndian.AppendUint64(dst, r.Arg)
	return binary.LittleEndian.AppendUint64(dst, r.Arg2), nil
}

// DecodeKernelOpRequest decodes a KORQ payload; it returns ErrShape
// unless p is exactly KernelOpRequestSize bytes.
func DecodeKernelOpRequest(p []byte) (KernelOpRequestPayload, error) {
	if len(p) != KernelOpRequestSize {
		return KernelOpRequestPayload{}, fmt.Errorf("KORQ payload is %d bytes, want %d: %w", len(p), KernelOpRequestSize, ErrShape)
	}
	return KernelOpRequestPayload{
		RequestID: binary.LittleEndian.Uint32(p[0:]),
		Op:        binary.LittleEndian.Uint32(p[4:]),
		Arg:       binary.LittleEndian.Uint64(p[8:]),
		Arg2:      binary.LittleEndian.Uint64(p[16:]),
	}, nil
}

// KernelAddrsPayload is the KADR payload. PhysBasePlus1 and
// TextAddrPlus1 carry their address plus one so that zero can mean
// "not known"; both must be non-zero.
type KernelAddrsPayload struct {
	PhysBasePlus1  uint64
	PageOffsetBase uint64
	TextAddrPlus1  uint64
}

// NewKernelAddrs encodes the three addresses, adding the +1 where the
// layout asks for it.
func NewKernelAddrs(physBase, pageOffsetBase, textAddr uint64) KernelAddrsPayload {
	return KernelAddrsPayload{PhysBasePlus1: physBase + 1, PageOffsetBase: pageOffsetBase, TextAddrPlus1: textAddr + 1}
}

// PhysBase returns the physical base address (without the +1).
func (k *KernelAddrsPayload) PhysBase() uint64 { return k.PhysBasePlus1 - 1 }

// TextAddr returns the kernel text address (without the +1).
func (k *KernelAddrsPayload) TextAddr() uint64 { return k.TextAddrPlus1 - 1 }

// AppendBinary appends the 24-byte encoding of k to dst.
func (k *KernelAddrsPayload) AppendBinary(dst []byte) ([]byte, error) {
	dst = binary.LittleEndian.AppendUint64(dst, k.PhysBasePlus1)
	dst = binary.LittleEndian.AppendUint64(dst, k.PageOffsetBase)
	return binary.LittleEndian.AppendUint64(dst, k.TextAddrPlus1), nil
}

// DecodeKernelAddrs decodes a KADR payload; it returns ErrShape unless p
// is exactly KernelAddrsSize bytes with both "+1" fields non-zero.
func DecodeKernelAddrs(p []byte) (KernelAddrsPayload, error) {
	if len(p) != KernelAddrsSize {
		return KernelAddrsPayload{}, fmt.Errorf("KADR payload is %d bytes, want %d: %w", len(p), KernelAddrsSize, ErrShape)
	}
	k := KernelAddrsPayload{
		PhysBasePlus1:  binary.LittleEndian.Uint64(p[0:]),
		PageOffsetBase: binary.LittleEndian.Uint64(p[8:]),
		TextAddrPlus1:  binary.LittleEndian.Uint64(p[16:]),
	}
	if k.PhysBasePlus1 == 0 || k.TextAddrPlus1 == 0 {
		return k, fmt.Errorf("KADR phys_base+1 and text_addr+1 must both be non-zero: %w", ErrShape)
	}
	return k, nil
}

// DecodeStep decodes a STEP payload; it returns ErrShape unless p is
// exactly StepSize bytes.
func DecodeStep(p []byte) (uint16, error) {
	if len(p) != StepSize {
		return 0, fmt.Errorf("STEP payload is %d bytes, want %d: %w", len(p), StepSize, ErrShape)
	}
	return binary.LittleEndian.Uint16(p), nil
}

// DecodeLifecycle decodes a LIFE payload; it returns ErrShape unless p
// is exactly one byte holding 1–4.
func DecodeLifecycle(p []byte) (uint8, error) {
	if len(p) != LifecycleSize || p[0] < LifecycleMin || p[0] > LifecycleMax {
		return 0, fmt.Errorf("LIFE payload must be one byte 1-4: %w", ErrShape)
	}
	return p[0], nil
}
