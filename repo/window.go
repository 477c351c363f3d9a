package repo

import (
	"context"
	"errors"
	"sync"

	"github.com/snapcrypt/snapcrypt/repo/object"
)

// RemoteReadWindow is the Options.ReadWindow for a repository in object
// storage.
const RemoteReadWindow = 4 << 20

// windowMax is how many read windows a repository keeps: the kernel has
// up to two readahead windows of 8 MiB in flight for a sequential reader.
const windowMax = 6

// windows caches the ciphertext of windows: runs of window consecutive
// segments of a pack, aligned on multiples of window, each fetched with
// one ranged read (Options.ReadWindow). The parallel 1 MiB requests of a
// sequential reader fall in a few windows; the first to need a window
// fetches it and the others wait for that read, then each decrypts its
// own segments straight into its reply, as from a read of its own. At most
// max windows are kept; one evicted while in use is freed when its last
// reader is done, and while 2*max windows hold memory, reads fetch no new
// window (errWindowsFull): memory stays within 2*max window buffers.
type windows struct {
	window int64 // segments per window
	max    int
	bufs   *bufPool

	mu      sync.Mutex
	entries map[winKey]*winEntry
	lru     []winKey // oldest first
	live    int      // entries holding a buffer, cached or not
}

// errWindowsFull says that a read should not fetch a window now.
var errWindowsFull = errors.New("all read windows in use")

type winKey struct {
	pack ObjectID
	w    int64
}

// winEntry is one window: being fetched until done is closed, then its
// sealed segments (ct, in buf) or the error of the fetch.
type winEntry struct {
	done    chan struct{}
	ct, buf []byte
	err     error
	refs    int  // readers holding ct
	evicted bool // out of the cache: the last reader frees buf
}

// windowBufSize is the size of the buffer of a window of n segments.
func windowBufSize(n int64) int { return int(n*object.SealedSegmentSize) + ctSlack }

func newWindows(readWindow int64, max int) *windows {
	n := readWindow / object.SegmentSize
	return &windows{window: n, max: max, bufs: newBufPool(2, windowBufSize(n)),
		entries: map[winKey]*winEntry{}}
}

// Bytes bounds the memory of the windows: 2*max buffers in use and the
// pool's spares.
func (ws *windows) Bytes() int64 { return int64(2*ws.max+2) * int64(ws.bufs.size) }

// get returns window w of the pack, fetched with fetch if no one has or
// is fetching it, for the caller to release when done with its ct.
func (ws *windows) get(ctx context.Context, pk *IndexPack, w int64, fetch func(buf []byte) (ct []byte, err error)) (*winEntry, error) {
	k := winKey{pk.ID, w}
	ws.mu.Lock()
	e, ok := ws.entries[k]
	if ok {
		e.refs++
		ws.touch(k)
		ws.mu.Unlock()
		select {
		case <-e.done:
		case <-ctx.Done():
			ws.release(e)
			return nil, ctx.Err()
		}
		if e.err != nil {
			ws.release(e)
			return nil, e.err
		}
		return e, nil
	}
	if ws.live >= 2*ws.max {
		ws.mu.Unlock()
		return nil, errWindowsFull
	}
	e = &winEntry{done: make(chan struct{}), refs: 1}
	ws.entries[k] = e
	ws.lru = append(ws.lru, k)
	ws.live++
	ws.evict()
	ws.mu.Unlock()

	e.buf = ws.bufs.get()
	fetched := false
	defer func() {
		if !fetched { // fetch panicked: fail the waiters, then go on panicking
			e.err = errors.New("read window: the read panicked")
			ws.fail(k, e)
		}
	}()
	e.ct, e.err = fetch(e.buf)
	fetched = true
	if e.err != nil {
		err := e.err
		ws.fail(k, e)
		return nil, err
	}
	close(e.done)
	return e, nil
}

// fail ends a fetch of window k that failed (e.err is set): the window is
// not kept, so the next reader tries again; its waiters get e.err.
func (ws *windows) fail(k winKey, e *winEntry) {
	ws.mu.Lock()
	if ws.entries[k] == e {
		ws.remove(k)
	}
	ws.mu.Unlock()
	close(e.done)
	ws.release(e)
}

// release ends a reader's use of e.
func (ws *windows) release(e *winEntry) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	e.refs--
	if e.refs == 0 && e.evicted {
		ws.free(e)
	}
}

// free returns e's buffer. ws.mu is held.
func (ws *windows) free(e *winEntry) {
	if e.buf != nil {
		ws.bufs.put(e.buf)
		e.buf, e.ct = nil, nil
		ws.live--
	}
}

// touch moves k to the end of the LRU order. ws.mu is held.
func (ws *windows) touch(k winKey) {
	for i, x := range ws.lru {
		if x == k {
			copy(ws.lru[i:], ws.lru[i+1:])
			ws.lru[len(ws.lru)-1] = k
			return
		}
	}
}

// evict drops the oldest windows beyond max. ws.mu is held.
func (ws *windows) evict() {
	for len(ws.lru) > ws.max {
		ws.remove(ws.lru[0])
	}
}

// remove drops window k from the cache; its buffer is freed now, or by
// its last reader. ws.mu is held.
func (ws *windows) remove(k winKey) {
	e := ws.entries[k]
	delete(ws.entries, k)
	for i, x := range ws.lru {
		if x == k {
			ws.lru = append(ws.lru[:i], ws.lru[i+1:]...)
			break
		}
	}
	e.evicted = true
	if e.refs == 0 {
		ws.free(e)
	}
}

// WindowBytes bounds the memory the repository's read windows may hold
// (Options.ReadWindow); 0 without windows.
func (r *Repository) WindowBytes() int64 {
	if r.eng.wins == nil {
		return 0
	}
	return r.eng.wins.Bytes()
}
