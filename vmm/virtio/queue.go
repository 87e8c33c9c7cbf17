package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ktstr/ktstr/vmm/guestmem"
)

// Split-virtqueue descriptor flags.
const (
	DescFNext     = 1 // the chain continues at Next
	DescFWrite    = 2 // the buffer is device-writable
	DescFIndirect = 4 // the buffer holds a table of descriptors
)

// Ring flags.
const (
	AvailFNoInterrupt = 1 // the driver asks not to be interrupted
	UsedFNoNotify     = 1 // the device asks not to be notified
)

// LegacyAlign is the alignment of the used ring in the legacy virtio-pci
// queue layout, and the page size of the queue PFN register.
const LegacyAlign = 4096

// MaxQueueSize is the largest queue size the device model offers; the
// spec allows 32768.
const MaxQueueSize = 32768

// MaxChainBytes bounds the bytes a single descriptor chain may describe
// in each direction. It is above the largest frame a guest can send
// (wire.MaxPayload plus header) and above the largest write the Linux
// virtio console driver makes (32 KiB).
const MaxChainBytes = 4 << 20

// ErrBadChain reports a descriptor chain that breaks the virtio rules or
// points outside guest memory. ErrBadRing reports ring indices that
// cannot be right. Both are guest errors: the device stops using the
// queue until the driver resets it.
var (
	ErrBadChain = errors.New("bad virtqueue descriptor chain")
	ErrBadRing  = errors.New("bad virtqueue ring")
)

const descSize = 16

// LegacyLayoutSize returns the bytes of guest memory a queue of size
// entries occupies in the legacy layout: descriptor table, available
// ring, padding to LegacyAlign, used ring.
func LegacyLayoutSize(size uint16) uint64 {
	n := uint64(size)
	return usedOffset(size) + 6 + 8*n
}

func usedOffset(size uint16) uint64 {
	n := uint64(size)
	return (descSize*n + 6 + 2*n + LegacyAlign - 1) &^ (LegacyAlign - 1)
}

// Alignment of the parts of a split virtqueue (virtio 1.2 §2.7).
const (
	DescAlign  = 16
	AvailAlign = 2
	UsedAlign  = 4
)

// Queue is the device side of one split virtqueue. Its transport places
// it in guest memory, as the driver asks and after checking the
// placement: in the legacy layout at one page frame (SetPFN), or with
// its size and the three parts at addresses of their own (Place). The
// device then takes chains from it and returns them; every value read
// from the rings is checked before use. A Queue is not safe for
// concurrent use: its transport places it only while the device is not
// active, and the device serialises its own use.
type Queue struct {
	mem   *guestmem.Memory
	max   uint16 // most entries; a power of two
	size  uint16 // entries; a power of two no larger than max
	ready bool
	pfn   uint32 // legacy placement, 0 if none
	desc  uint64
	avail uint64
	used  uint64

	nextAvail uint16 // next available-ring slot to consume
	nextUsed  uint16 // next used-ring slot to fill
}

// NewQueue returns a queue of at most max entries over guest memory
// mem. max must be a power of two no larger than MaxQueueSize; the
// queue starts with max entries, unplaced.
func NewQueue(mem *guestmem.Memory, max uint16) (*Queue, error) {
	if !validSize(max, MaxQueueSize) {
		return nil, fmt.Errorf("virtqueue size %d is not a power of two in 1..%d", max, MaxQueueSize)
	}
	return &Queue{mem: mem, max: max, size: max}, nil
}

func validSize(n uint16, max uint32) bool {
	return n != 0 && n&(n-1) == 0 && uint32(n) <= max
}

// Size returns the number of entries.
func (q *Queue) Size() uint16 { return q.size }

// MaxSize returns the most entries the queue may have.
func (q *Queue) MaxSize() uint16 { return q.max }

// PFN returns the page frame number of a legacy placement, 0 if none.
func (q *Queue) PFN() uint32 { return q.pfn }

// Ready reports whether the driver has placed the queue in memory.
func (q *Queue) Ready() bool { return q.ready }

// Reset forgets the queue's placement and indices and gives it its
// maximum size again.
func (q *Queue) Reset() {
	q.ready, q.pfn, q.desc, q.avail, q.used = false, 0, 0, 0, 0
	q.size = q.max
	q.nextAvail, q.nextUsed = 0, 0
}

// SetPFN places the queue, with its maximum size, at guest page frame
// pfn (the legacy virtio-pci QUEUE_PFN register); 0 resets it. The whole
// layout must lie inside one region of guest memory.
func (q *Queue) SetPFN(pfn uint32) error {
	q.Reset()
	if pfn == 0 {
		return nil
	}
	base := uint64(pfn) * LegacyAlign
	if _, err := q.mem.Slice(base, LegacyLayoutSize(q.size)); err != nil {
		return fmt.Errorf("queue of %d entries at page frame %#x: %w", q.size, pfn, errors.Join(ErrBadRing, err))
	}
	q.pfn = pfn
	q.place(base, base+descSize*uint64(q.size), base+usedOffset(q.size))
	return nil
}

// Place gives the queue size entries and its descriptor table,
// available ring and used ring at desc, avail and used (the virtio 1.x
// way, the virtio-mmio Queue* registers). size must be a power of two no
// larger than MaxSize; each part must be aligned as the spec requires
// (DescAlign, AvailAlign, UsedAlign) and lie inside one region of guest
// memory. On error the queue is left reset.
func (q *Queue) Place(size uint16, desc, avail, used uint64) error {
	q.Reset()
	if !validSize(size, uint32(q.max)) {
		return fmt.Errorf("queue size %d is not a power of two in 1..%d: %w", size, q.max, ErrBadRing)
	}
	n := uint64(size)
	for _, p := range []struct {
		name       string
		addr, size uint64
		align      uint64
	}{
		{"descriptor table", desc, descSize * n, DescAlign},
		{"available ring", avail, 6 + 2*n, AvailAlign},
		{"used ring", used, 6 + 8*n, UsedAlign},
	} {
		if p.addr%p.align != 0 {
			return fmt.Errorf("queue of %d entries: %s at %#x is not %d-byte aligned: %w", size, p.name, p.addr, p.align, ErrBadRing)
		}
		if _, err := q.mem.Slice(p.addr, p.size); err != nil {
			return fmt.Errorf("queue of %d entries: %s of %d bytes at %#x: %w", size, p.name, p.size, p.addr, errors.Join(ErrBadRing, err))
		}
	}
	q.size = size
	q.place(desc, avail, used)
	return nil
}

func (q *Queue) place(desc, avail, used uint64) {
	q.desc, q.avail, q.used = desc, avail, used
	q.ready = true
}

// load16 atomically reads the 2-byte aligned u16 at gpa, as half of the
// aligned word holding it (the available ring need only be 2-byte
// aligned).
func (q *Queue) load16(gpa uint64) (uint16, error) {
	w, err := q.mem.LoadUint32(gpa &^ 3)
	if err != nil {
		return 0, err
	}
	return uint16(w >> (8 * (gpa & 2))), nil
}

// availIdx returns the driver's available index.
func (q *Queue) availIdx() (uint16, error) { return q.load16(q.avail + 2) }

// Pending returns how many chains the driver has made available that the
// device has not consumed.
func (q *Queue) Pending() (uint16, error) {
	if !q.Ready() {
		return 0, nil
	}
	idx, err := q.availIdx()
	if err != nil {
		return 0, err
	}
	n := idx - q.nextAvail
	if n > q.size {
		return 0, fmt.Errorf("available index %d is %d ahead of the device's %d in a queue of %d: %w", idx, n, q.nextAvail, q.size, ErrBadRing)
	}
	return n, nil
}

// NeedsInterrupt reports whether the driver wants an interrupt when used
// buffers are returned (VRING_AVAIL_F_NO_INTERRUPT clear).
func (q *Queue) NeedsInterrupt() bool {
	flags, err := q.load16(q.avail)
	return err != nil || flags&AvailFNoInterrupt == 0
}

// Chain is one descriptor chain taken from the available ring. Out holds
// the device-readable buffers in order, In the device-writable ones; both
// alias guest memory, which the guest may change at any time.
type Chain struct {
	Head uint16   // index of the first descriptor, returned with Push
	Out  [][]byte // device-readable buffers (driver → device)
	In   [][]byte // device-writable buffers (device → driver)
}

// OutLen returns the total bytes of the readable buffers.
func (c *Chain) OutLen() int {
	n := 0
	for _, b := range c.Out {
		n += len(b)
	}
	return n
}

// InLen returns the total bytes of the writable buffers.
func (c *Chain) InLen() int {
	n := 0
	for _, b := range c.In {
		n += len(b)
	}
	return n
}

// AppendOut appends the bytes of the readable buffers to dst.
func (c *Chain) AppendOut(dst []byte) []byte {
	for _, b := range c.Out {
		dst = append(dst, b...)
	}
	return dst
}

// WriteIn copies p into the writable buffers in order and returns the
// number of bytes written, at most InLen.
func (c *Chain) WriteIn(p []byte) int {
	n := 0
	for _, b := range c.In {
		if n == len(p) {
			break
		}
		n += copy(b, p[n:])
	}
	return n
}

// Pop takes the next available chain. It reports false when the driver
// has made nothing new available. An error means the ring or the chain
// is malformed; the slot is consumed all the same and the caller should
// stop using the queue until the driver resets the device.
func (q *Queue) Pop() (Chain, bool, error) {
	n, err := q.Pending()
	if err != nil || n == 0 {
		return Chain{}, false, err
	}
	slot := q.avail + 4 + 2*uint64(q.nextAvail%q.size)
	head, err := q.mem.Uint16(slot)
	if err != nil {
		return Chain{}, false, errors.Join(ErrBadRing, err)
	}
	q.nextAvail++
	c, err := q.walk(head)
	if err != nil {
		return Chain{Head: head}, true, err
	}
	return c, true, nil
}

// walk follows the chain starting at descriptor head.
func (q *Queue) walk(head uint16) (Chain, error) {
	c := Chain{Head: head}
	idx := head
	var outBytes, inBytes uint64
	for count := 0; ; count++ {
		if idx >= q.size {
			return c, fmt.Errorf("descriptor index %d outside a queue of %d: %w", idx, q.size, ErrBadChain)
		}
		if count >= int(q.size) {
			return c, fmt.Errorf("chain from descriptor %d is longer than the queue (%d): a loop: %w", head, q.size, ErrBadChain)
		}
		d, err := q.mem.Slice(q.desc+descSize*uint64(idx), descSize)
		if err != nil {
			return c, errors.Join(ErrBadChain, err)
		}
		addr := binary.LittleEndian.Uint64(d[0:])
		length := uint64(binary.LittleEndian.Uint32(d[8:]))
		flags := binary.LittleEndian.Uint16(d[12:])
		next := binary.LittleEndian.Uint16(d[14:])
		if flags&DescFIndirect != 0 {
			return c, fmt.Errorf("descriptor %d is indirect, a feature the device does not offer: %w", idx, ErrBadChain)
		}
		var buf []byte
		if length > 0 {
			buf, err = q.mem.Slice(addr, length)
			if err != nil {
				return c, fmt.Errorf("descriptor %d: %w", idx, errors.Join(ErrBadChain, err))
			}
		}
		if flags&DescFWrite != 0 {
			inBytes += length
			if inBytes > MaxChainBytes {
				return c, fmt.Errorf("chain from descriptor %d has over %d writable bytes: %w", head, MaxChainBytes, ErrBadChain)
			}
			c.In = append(c.In, buf)
		} else {
			if len(c.In) > 0 {
				return c, fmt.Errorf("descriptor %d is readable after a writable one: %w", idx, ErrBadChain)
			}
			outBytes += length
			if outBytes > MaxChainBytes {
				return c, fmt.Errorf("chain from descriptor %d has over %d readable bytes: %w", head, MaxChainBytes, ErrBadChain)
			}
			c.Out = append(c.Out, buf)
		}
		if flags&DescFNext == 0 {
			return c, nil
		}
		idx = next
	}
}

// Push returns the chain with head index head to the driver, saying the
// device wrote written bytes into its writable buffers.
func (q *Queue) Push(head uint16, written uint32) error {
	if !q.Ready() {
		return fmt.Errorf("push to a queue the driver has not set up: %w", ErrBadRing)
	}
	if head >= q.size {
		return fmt.Errorf("used head %d outside a queue of %d: %w", head, q.size, ErrBadChain)
	}
	slot := q.used + 4 + 8*uint64(q.nextUsed%q.size)
	if err := q.mem.PutUint32(slot, uint32(head)); err != nil {
		return err
	}
	if err := q.mem.PutUint32(slot+4, written); err != nil {
		return err
	}
	q.nextUsed++
	// The index store is atomic, so it is ordered after the entry above.
	return q.mem.StoreUint32(q.used, uint32(q.nextUsed)<<16)
}
