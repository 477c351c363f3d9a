package repo

// The read engine: the plaintext of packs, from their ciphertext in the
// store, through one cache of decrypted segments. It knows packs (an
// IndexPack says where a pack is, how long it is and how it is sealed), not
// blobs: the Repository looks blobs up in its index and asks the engine for
// the bytes (blobread.go). How the ciphertext is read is ciphertext.go's
// (one path for every read) and window.go's (read windows, for object
// storage); reading ahead of a sequential reader is prefetch.go's.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// engine reads and decrypts pack plaintext. It is safe for concurrent use.
type engine struct {
	st  store.Reader
	dek func(ctx context.Context, id [16]byte) ([]byte, error) // unwraps a data key

	segs    *lru[segKey, []byte]           // decrypted 64 KiB pack segments
	edges   *lru[segKey, []byte]           // the same, left over by reads of several segments
	ciphers *lru[ObjectID, *object.Cipher] // per-pack ciphers
	ctBufs  *bufPool                       // ciphertext buffers of reads
	segBufs *bufPool                       // plaintext buffers of cached segments

	// plains holds decompressed data blobs (compressed.go); plainLoads
	// makes concurrent reads of one decompress it once.
	plains     *plainRing
	plainLoads singleflight.Group

	wins *windows    // ciphertext of read windows; nil without (Options.ReadWindow)
	pf   *prefetcher // reads ahead of sequential readers of small requests
	walk packWalk    // where a walk of small compressed files is (packAhead)

	flightMu sync.Mutex
	flights  map[segKey]chan struct{} // edges being read now (see readPack)

	errMu sync.Mutex
	errs  []string // recent read errors, for status
	nErrs uint64

	// Counted here rather than by the two caches, which a read may ask
	// both (segmentStats): segments served from the cache, segments
	// decrypted.
	hits, opened atomic.Uint64
	inflated     atomic.Uint64 // compressed blobs decompressed
}

type segKey struct {
	pack ObjectID
	seg  int64
}

// newEngine returns an engine over st whose segment cache holds segBytes
// (of which edgeBytes(segBytes) for edges); readWindow is
// Options.ReadWindow.
func newEngine(st store.Reader, dek func(context.Context, [16]byte) ([]byte, error), segBytes, readWindow int64) *engine {
	e := &engine{
		st: st, dek: dek,
		segs:    newLRU[segKey, []byte](segBytes - edgeBytes(segBytes)),
		edges:   newLRU[segKey, []byte](edgeBytes(segBytes)),
		ciphers: newLRU[ObjectID, *object.Cipher](4096),
		ctBufs:  ciphertextBufs(),
		segBufs: newBufPool(64, object.SegmentSize),
		plains:  newPlainRing(inflatedBytes(segBytes)),
		flights: map[segKey]chan struct{}{},
	}
	// The buffers of the segments the caches let go of are reused: a walk
	// over small files decrypts a segment for every 40 or so of them,
	// and 64 KiB of garbage each makes the collector scan the mount's
	// nodes (all the walk has looked up) that much more often. Segments
	// are read from the caches only under their locks (copyCached), or
	// taken out of them, so a dropped one is no one's.
	e.segs.drop = e.segBufs.put
	e.edges.drop = e.segBufs.put
	if readWindow >= object.SegmentSize {
		e.wins = newWindows(readWindow, windowMax)
	}
	e.pf = newPrefetcher(e)
	return e
}

// edgeBytes is the part of the segment cache that holds the segments that
// reads of several segments cover in part (see readPack): enough for the
// reads a sequential reader has in flight, at most a quarter.
func edgeBytes(segBytes int64) int64 {
	return min(segBytes/4, 4<<20)
}

func (e *engine) packCipher(ctx context.Context, p *IndexPack) (*object.Cipher, error) {
	if c, ok := e.ciphers.get(p.ID); ok {
		return c, nil
	}
	name := packName(p.ID)
	h, err := object.ParseHeader(p.Header)
	if err != nil {
		return nil, fmt.Errorf("index entry of %s is %w", name, object.ErrCorrupt)
	}
	dek, err := e.dek(ctx, h.DEKID)
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", name, err)
	}
	c, err := object.NewCipher(dek, h, name)
	if err != nil {
		return nil, err
	}
	e.ciphers.add(p.ID, c, 1)
	return c, nil
}

// readPack fills p from the pack's plaintext at off and returns how many
// bytes it read (fewer only where the pack ends). Segments in the cache are
// copied; each run of the others is read with one ranged read, and the
// segments of it that p covers whole are decrypted straight into p. A
// segment that p covers only in part is cached, since the read next to
// this one (the next request of a sequential reader, the next small file
// of the pack) wants the rest. A read of several segments takes such a
// partly covered segment out of the cache when it finds it there: that is
// the sequential reader's second and last use of it; such segments have a
// small cache of their own (edges), so that a sequential reader does not
// push everything else out of the segment cache. When the read next to it
// is fetching such a segment at the same time (the kernel sends the
// requests of a sequential reader in parallel), this read waits for it
// rather than read and decrypt it too (claimEdges). ahead asks to decrypt
// up to that many bytes after p into the cache as well.
func (e *engine) readPack(ctx context.Context, pk *IndexPack, p []byte, off, ahead int64) (int, error) {
	const seg = object.SegmentSize
	size := int64(pk.PlainSize)
	if off < 0 || off >= size || len(p) == 0 {
		return 0, nil
	}
	end := min(off+int64(len(p)), size)
	p = p[:end-off]
	first, last := off/seg, (end-1)/seg
	mine, theirs := e.claimEdges(pk, first, last, off, end)
	defer func() { e.releaseEdges(mine) }() // at once if a read fails
	run := int64(-1)                        // the first of the uncached segments before s
	for s := first; s <= last+1; s++ {
		hit := s <= last && e.copyCached(pk, s, p, off, last > first)
		if hit {
			delete(theirs, s) // nothing to wait for
		}
		later := s <= last && !hit && theirs[s] != nil
		if run >= 0 && (hit || later || s > last) {
			if err := e.openSegments(ctx, pk, run, s-1, p, off); err != nil {
				e.noteError(err)
				return 0, err
			}
			run = -1
		}
		if !hit && !later && s <= last && run < 0 {
			run = s
		}
	}
	// Then the edges another read was fetching: waited for only now, and
	// with this read's own edges released, so that two reads never wait
	// for each other.
	e.releaseEdges(mine)
	mine = nil
	for s, done := range theirs {
		select {
		case <-done:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		if e.copyCached(pk, s, p, off, true) {
			continue
		}
		// That read failed, or the edge left the cache: read it here.
		if err := e.openSegments(ctx, pk, s, s, p, off); err != nil {
			e.noteError(err)
			return 0, err
		}
	}
	if ahead > 0 && end < size {
		// Errors are left for the read that needs those bytes.
		_ = e.fetchAhead(ctx, pk, end, ahead)
	}
	return len(p), nil
}

// claimEdges sorts the segments that a read of [off, end) of the pack,
// segments first..last, covers only in part (its edges; a read of one
// segment has none): those no other read is fetching, which it claims
// (mine), and those another read is fetching now (theirs, with the
// channel closed when that read is done). Two adjacent requests of a
// sequential reader share an edge and are served in parallel: without
// this, both read and decrypt it, 1 segment in 16 more than needed.
func (e *engine) claimEdges(pk *IndexPack, first, last, off, end int64) (mine []segKey, theirs map[int64]chan struct{}) {
	const seg = object.SegmentSize
	if first == last {
		return nil, nil
	}
	var edges [2]int64
	n := 0
	if off > first*seg {
		edges[n] = first
		n++
	}
	if end < min((last+1)*seg, int64(pk.PlainSize)) {
		edges[n] = last
		n++
	}
	e.flightMu.Lock()
	defer e.flightMu.Unlock()
	for _, s := range edges[:n] {
		k := segKey{pk.ID, s}
		if done, ok := e.flights[k]; ok {
			if theirs == nil {
				theirs = map[int64]chan struct{}{}
			}
			theirs[s] = done
			continue
		}
		e.flights[k] = make(chan struct{})
		mine = append(mine, k)
	}
	return mine, theirs
}

// releaseEdges ends the claims of claimEdges: the edges are in the cache
// now, or the read failed.
func (e *engine) releaseEdges(mine []segKey) {
	if len(mine) == 0 {
		return
	}
	e.flightMu.Lock()
	defer e.flightMu.Unlock()
	for _, k := range mine {
		close(e.flights[k])
		delete(e.flights, k)
	}
}

// copyCached copies what p (the plaintext from off) shares with segment s
// from the cache, and tells whether the segment was there. A read of
// several segments (big) takes a segment it covers only in part out of the
// cache of such edges; a read within one segment only looks there.
func (e *engine) copyCached(pk *IndexPack, s int64, p []byte, off int64, big bool) bool {
	lo := s * object.SegmentSize
	hi := min(lo+object.SegmentSize, int64(pk.PlainSize))
	end := off + int64(len(p))
	k := segKey{pk.ID, s}
	a, b := max(lo, off), min(hi, end)
	copyFrom := func(data []byte) bool {
		if int64(len(data)) != hi-lo {
			return false
		}
		copy(p[a-off:b-off], data[a-lo:b-lo])
		return true
	}
	if big && (lo < off || hi > end) {
		if data, ok := e.edges.take(k); ok {
			ok = copyFrom(data)
			e.segBufs.put(data) // no one else holds it (see edges.use below)
			if ok {
				e.hits.Add(1)
				return true
			}
		}
	}
	// Copied under the cache's lock: a segment the cache drops goes back
	// to e.segBufs, to be overwritten.
	hit := false
	if e.segs.use(k, func(data []byte) { hit = copyFrom(data) }) || big {
		if hit {
			e.hits.Add(1)
		}
		return hit
	}
	// The small files after a larger one in a pack start in its last
	// segment. Copied under the cache's lock likewise: a read of several
	// segments may take the edge and reuse its buffer.
	e.edges.use(k, func(data []byte) { hit = copyFrom(data) })
	if hit {
		e.hits.Add(1)
	}
	return hit
}

// openSegments decrypts segments first..last of the pack, read with one
// ranged read or taken from read windows (sealedSource), into p (the
// plaintext from off): each segment that p holds
// whole goes straight into it; a segment that p holds in part is decrypted
// into a buffer of its own, copied, and cached.
func (e *engine) openSegments(ctx context.Context, pk *IndexPack, first, last int64, p []byte, off int64) error {
	const seg = object.SegmentSize
	name := packName(pk.ID)
	c, err := e.packCipher(ctx, pk)
	if err != nil {
		return err
	}
	size := int64(pk.PlainSize)
	sealedOf, release, err := e.sealedSource(ctx, pk, first, last, int64(len(p)) >= directMin)
	if err != nil {
		return err
	}
	defer release()
	end := off + int64(len(p))
	big := (end-1)/seg > off/seg // p spans several segments
	for s := first; s <= last; s++ {
		lo := s * seg
		hi := min(lo+seg, size)
		sealed := sealedOf(s)
		if sealed == nil {
			return fmt.Errorf("object %s is %w: it ends before segment %d does", name, object.ErrCorrupt, s)
		}
		e.opened.Add(1)
		if lo >= off && hi <= end {
			if _, err := c.OpenSegment(p[lo-off:lo-off], sealed, s, size); err != nil {
				return fmt.Errorf("object %s is %w", name, object.ErrCorrupt)
			}
			continue
		}
		// Cached segments go back to e.segBufs when a read takes
		// them out or the cache drops them, to be overwritten.
		d, err := c.OpenSegment(e.segBufs.get()[:0], sealed, s, size)
		if err != nil {
			return fmt.Errorf("object %s is %w", name, object.ErrCorrupt)
		}
		a, b := max(lo, off), min(hi, end)
		copy(p[a-off:b-off], d[a-lo:b-lo])
		if big {
			e.edges.add(segKey{pk.ID, s}, d, int64(len(d))+object.TagSize)
		} else {
			e.segs.add(segKey{pk.ID, s}, d, int64(len(d))+object.TagSize)
		}
	}
	return nil
}

// fetchAhead decrypts into the cache the segments that hold [pos, pos+n)
// of the pack, from the first one not cached yet, with one ranged read up
// to the next segment that is cached.
func (e *engine) fetchAhead(ctx context.Context, pk *IndexPack, pos, n int64) error {
	const seg = object.SegmentSize
	size := int64(pk.PlainSize)
	end := min(pos+n, size)
	first := pos / seg
	for ; first*seg < end; first++ {
		if _, ok := e.segs.get(segKey{pk.ID, first}); !ok {
			break
		}
	}
	if first*seg >= end {
		return nil
	}
	for s := first + 1; s*seg < end; s++ {
		if _, ok := e.segs.get(segKey{pk.ID, s}); ok {
			end = s * seg
			break
		}
	}
	name := packName(pk.ID)
	c, err := e.packCipher(ctx, pk)
	if err != nil {
		return err
	}
	start := first * seg
	ctOff, ctLen, _ := object.CipherRange(start, end-start, size)
	// Through the page cache (as a small reader's neighbours are best
	// read), into a pooled buffer when the range fits one: the segments
	// are decrypted out of it into buffers of their own.
	var buf []byte
	if ctLen+ctSlack <= ctBufSize {
		buf = e.ctBufs.get()
		defer e.ctBufs.put(buf)
	}
	ct, err := e.readSealed(ctx, name, ctOff, ctLen, buf, false)
	if err != nil {
		return err
	}
	for s := first; s*seg < end; s++ {
		pos := (s - first) * object.SealedSegmentSize
		sealedEnd := pos + min(seg, size-s*seg) + object.TagSize
		if sealedEnd > int64(len(ct)) {
			return shortObject(name, sealedEnd-int64(len(ct)))
		}
		d, err := c.OpenSegment(e.segBufs.get()[:0], ct[pos:sealedEnd], s, size)
		if err != nil {
			return fmt.Errorf("object %s is %w", name, object.ErrCorrupt)
		}
		e.opened.Add(1)
		e.segs.add(segKey{pk.ID, s}, d, int64(len(d))+object.TagSize)
	}
	return nil
}

// noteError counts a read error for status. A pack that is gone is
// counted by the Repository only if the read still fails after it
// reloaded its index (blobread.go's retryStale): a reader whose index a
// prune made stale reads on after the reload.
func (e *engine) noteError(err error) {
	if errors.Is(err, store.ErrNotExist) && !errors.Is(err, errReloaded) {
		return
	}
	e.errMu.Lock()
	defer e.errMu.Unlock()
	e.nErrs++
	e.errs = append(e.errs, time.Now().UTC().Format(time.RFC3339)+" "+err.Error())
	if len(e.errs) > 16 {
		e.errs = e.errs[len(e.errs)-16:]
	}
}

// readErrors returns the count of read errors and the most recent ones.
func (e *engine) readErrors() (uint64, []string) {
	e.errMu.Lock()
	defer e.errMu.Unlock()
	return e.nErrs, append([]string(nil), e.errs...)
}

// segmentStats returns the figures of the segment cache, both parts of it
// together. A hit is a segment a read copied from the cache; a miss is a
// segment decrypted (for a read, or read ahead into the cache), whether
// or not it was then cached: the cost the cache is there to save. (The
// two parts' own counts would tell neither: a read that finds a segment
// in one part has looked in the other first.)
func (e *engine) segmentStats() CacheStats {
	segs, edges := e.segs.stats(), e.edges.stats()
	segs.Entries += edges.Entries
	segs.Bytes += edges.Bytes
	segs.Limit += edges.Limit
	segs.Hits = e.hits.Load()
	segs.Misses = e.opened.Load()
	return segs
}
