package repo

import "sync"

// plainRing is the cache of decompressed data blobs (compressed.go). Blobs
// are decompressed into one buffer of max bytes, one after another,
// wrapping at its end, and each new one takes the place of the oldest
// (first in, first out). So the cache makes little garbage (a span's
// record per blob): a reader of
// compressed files would otherwise leave a buffer of a chunk (about a
// megabyte) to the collector for every chunk it reads, the larger part of
// what a mount allocates while it serves them, and each collection scans
// the whole live heap (the index, the nodes the kernel holds).
//
// A blob is written outside the lock, into a span reserved for it
// (reserve, then commit or abort); a span being written is never taken by
// a later one: a reservation that would take it fails, and its caller
// decompresses into a buffer of its own. Cached blobs are read only under
// the lock (use), since their bytes are overwritten once they are pushed
// out.
type plainRing struct {
	mu    sync.Mutex
	max   int64
	buf   []byte // made by the first reservation
	head  int    // where the next span starts
	spans []*ringSpan
	m     map[BlobID]*ringSpan // committed spans

	bytes  int64 // of committed spans
	hits   uint64
	misses uint64
}

// ringSpan is a blob's place in the ring: spans lie in the order they were
// reserved, the oldest first.
type ringSpan struct {
	id        BlobID
	off, n    int
	writing   bool // reserved, not yet committed or aborted
	committed bool
}

func newPlainRing(max int64) *plainRing {
	return &plainRing{max: max, m: map[BlobID]*ringSpan{}}
}

// reserve returns a span of n bytes for the blob id, pushing out the
// oldest blobs, and the buffer to write there (length 0, capacity n). It
// fails when n is 0 or more than the ring holds, or when a span still
// being written is among those to push out (on a wrap, these include the
// last lap's spans at the end of the buffer, which the new span does not
// overlap: a slow load there holds up the wrap until it ends).
func (r *plainRing) reserve(id BlobID, n int) (*ringSpan, []byte, bool) {
	if n <= 0 || int64(n) > r.max {
		return nil, nil, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.buf == nil {
		r.buf = make([]byte, r.max)
	}
	// The spans to push out are the oldest, at the front of the list:
	// on a wrap, the last lap's from head on; then those that start
	// before the new span ends.
	head := r.head
	k := 0
	if head+n > len(r.buf) {
		for k < len(r.spans) && r.spans[k].off >= head {
			k++
		}
		head = 0
	}
	for k < len(r.spans) && r.spans[k].off >= head && r.spans[k].off < head+n {
		k++
	}
	for _, s := range r.spans[:k] {
		if s.writing {
			return nil, nil, false
		}
	}
	for i, s := range r.spans[:k] {
		if s.committed && r.m[s.id] == s {
			delete(r.m, s.id)
			r.bytes -= int64(s.n)
		}
		r.spans[i] = nil
	}
	r.spans = r.spans[k:]
	s := &ringSpan{id: id, off: head, n: n, writing: true}
	r.spans = append(r.spans, s)
	r.head = head + n
	return s, r.buf[head:head:r.head], true
}

// commit makes the blob written into s readable.
func (r *plainRing) commit(s *ringSpan) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.writing, s.committed = false, true
	if old := r.m[s.id]; old != nil {
		r.bytes -= int64(old.n)
	}
	r.m[s.id] = s
	r.bytes += int64(s.n)
}

// abort gives s up (its blob failed): its place is taken in turn.
func (r *plainRing) abort(s *ringSpan) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s.writing = false
}

// use calls fn with the plaintext of id, holding the lock, and tells
// whether it is cached; it counts a hit or a miss.
func (r *plainRing) use(id BlobID, fn func([]byte)) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.m[id]
	if s == nil {
		r.misses++
		return false
	}
	r.hits++
	fn(r.buf[s.off : s.off+s.n])
	return true
}

// read is use without counting: for a caller that counted its lookup.
func (r *plainRing) read(id BlobID, fn func([]byte)) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.m[id]
	if s == nil {
		return false
	}
	fn(r.buf[s.off : s.off+s.n])
	return true
}

// contains tells whether id is cached, without counting.
func (r *plainRing) contains(id BlobID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[id] != nil
}

func (r *plainRing) stats() CacheStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return CacheStats{Entries: len(r.m), Bytes: r.bytes, Limit: r.max, Hits: r.hits, Misses: r.misses}
}
