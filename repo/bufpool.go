package repo

import (
	"sync"
	"unsafe"
)

// bufPool is a free list of at most cap(c) buffers of size bytes: reads
// reuse them instead of allocating (and zeroing) a buffer each, and memory
// stays bounded by the reads in flight plus the list. A pool may draw its
// first buffers from an arena of memory outside the Go heap (see
// newDirectBufPool); the others come from the heap.
type bufPool struct {
	c    chan []byte
	size int

	mu    sync.Mutex
	arena []byte // not handed out yet; nil without an arena
	lo    uintptr
	hi    uintptr // the arena's addresses: [lo, hi)
}

func newBufPool(n, size int) *bufPool { return &bufPool{c: make(chan []byte, n), size: size} }

// newDirectBufPool is a pool of buffers for direct (O_DIRECT) reads: its
// first n buffers come from an arena backed by huge pages where the system
// has them (see hugeArena), so that a read of a megabyte reaches the disk
// as one request of a few physically contiguous pieces rather than one
// request per 4 KiB page. On a virtual disk that halves the cost of a
// read (docs/bench.md).
func newDirectBufPool(n, size int) *bufPool {
	b := newBufPool(n, size)
	b.arena = hugeArena(n * size)
	if len(b.arena) > 0 {
		b.lo = uintptr(unsafe.Pointer(unsafe.SliceData(b.arena)))
		b.hi = b.lo + uintptr(len(b.arena))
	}
	return b
}

// get returns a buffer of b.size bytes.
func (b *bufPool) get() []byte {
	select {
	case p := <-b.c:
		return p
	default:
	}
	b.mu.Lock()
	if len(b.arena) >= b.size {
		p := b.arena[:b.size:b.size]
		b.arena = b.arena[b.size:]
		b.mu.Unlock()
		return p
	}
	b.mu.Unlock()
	return make([]byte, b.size)
}

// put returns p to the list if it is one of its buffers (any length) and
// the list has room; other buffers are left to the garbage collector. A
// pool with an arena keeps only the arena's buffers, for which its list
// always has room: the buffers it made beyond them, while more reads than
// that were in flight, are not kept.
func (b *bufPool) put(p []byte) {
	if cap(p) != b.size {
		return
	}
	if b.hi != 0 {
		if at := uintptr(unsafe.Pointer(unsafe.SliceData(p))); at < b.lo || at >= b.hi {
			return
		}
	}
	select {
	case b.c <- p[:b.size]:
	default:
	}
}
