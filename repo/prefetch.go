package repo

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/object"
)

// prefetchMax bounds the chunks being read ahead at once, over every
// reader of the repository.
const prefetchMax = 8

// prefetcher reads ahead of a sequential reader whose requests are small
// (a mount whose kernel readahead could not be raised, as for an ordinary
// user, sends 128 KiB): it decrypts the chunks after the one being read
// into the segment cache in the background, each with one ranged read, so
// that the reader's next requests find them there. A read that needs a
// chunk being read ahead waits for it rather than read it too. (Large
// requests, as the kernel sends when its readahead is raised, need none of
// this: the kernel keeps enough of them in flight; see docs/bench.md.)
type prefetcher struct {
	e     *engine
	slots chan struct{} // one per chunk being read ahead

	// The reads ahead run on up to prefetchMax worker goroutines that
	// stay while there is work (prefetchIdle), rather than a goroutine
	// each: decompressing needs a deeper stack than a new goroutine has,
	// and growing one for every small blob of a walk cost 10% of the
	// mount's CPU.
	jobs    chan prefetchJob // capacity prefetchMax: never full (slots)
	workers atomic.Int32     // running
	idle    atomic.Int32     // of which waiting for a job

	n        atomic.Int32 // len(inflight), read without the lock
	mu       sync.Mutex
	inflight map[BlobID]chan struct{} // closed when the chunk is in the cache
}

// prefetchIdle is how long a worker with nothing to do stays.
const prefetchIdle = 200 * time.Millisecond

type prefetchJob struct {
	ctx  context.Context
	id   BlobID
	loc  blobLoc
	done chan struct{}
}

func newPrefetcher(e *engine) *prefetcher {
	return &prefetcher{e: e, slots: make(chan struct{}, prefetchMax), inflight: map[BlobID]chan struct{}{},
		jobs: make(chan prefetchJob, prefetchMax)}
}

// run queues j for a worker, and starts one if none is waiting.
func (pf *prefetcher) run(j prefetchJob) {
	pf.jobs <- j // never blocks: a job holds one of prefetchMax slots
	if pf.idle.Load() == 0 && pf.workers.Load() < prefetchMax {
		pf.workers.Add(1)
		go pf.work()
	}
}

// work runs queued jobs until none comes for prefetchIdle. A worker
// leaving counts itself out before it looks at the queue a last time, so
// a job queued meanwhile is either taken by it or starts a new worker.
func (pf *prefetcher) work() {
	t := time.NewTimer(prefetchIdle)
	defer t.Stop()
	for {
		pf.idle.Add(1)
		select {
		case j := <-pf.jobs:
			pf.idle.Add(-1)
			pf.fetch(j.ctx, j.id, j.loc, j.done)
			t.Reset(prefetchIdle)
		case <-t.C:
			pf.idle.Add(-1)
			pf.workers.Add(-1)
			select {
			case j := <-pf.jobs:
				pf.workers.Add(1)
				pf.fetch(j.ctx, j.id, j.loc, j.done)
				t.Reset(prefetchIdle)
			default:
				return
			}
		}
	}
}

// start reads ahead, in the background, the chunks of locs (chunks and
// their places, in file order) that start before ahead bytes, counted from
// the start of locs[0], and are not in the cache nor being read ahead
// already (compressed ones: as many as half the cache of decompressed
// blobs holds). It never waits: with prefetchMax chunks in flight it leaves the
// rest for a later read. The reads use ctx, which must outlive the call
// (the mount's context, not a request's); their errors are left for the
// read that needs the bytes.
func (pf *prefetcher) start(ctx context.Context, chunks []Chunk, locs []blobLoc, ahead int64) {
	var pos, inflating int64
	for i, loc := range locs {
		if pos >= ahead {
			return
		}
		pos += int64(loc.plain)
		if loc.zstd {
			// Compressed chunks are read ahead whole, into the cache of
			// decompressed blobs: no more than half of it at once, or
			// they would push each other out before they are read.
			if inflating += int64(loc.plain); inflating > pf.e.plains.max/2 {
				return
			}
		}
		id := chunks[i].ID
		if pf.cached(id, loc) {
			continue
		}
		pf.mu.Lock()
		if _, ok := pf.inflight[id]; ok {
			pf.mu.Unlock()
			continue
		}
		select {
		case pf.slots <- struct{}{}:
		default:
			pf.mu.Unlock()
			return
		}
		done := make(chan struct{})
		pf.inflight[id] = done
		pf.n.Add(1)
		pf.mu.Unlock()
		pf.run(prefetchJob{ctx, id, loc, done})
	}
}

// fetch decrypts the chunk at loc into the segment cache, or, if it is
// compressed, decompresses it into the cache of decompressed blobs.
func (pf *prefetcher) fetch(ctx context.Context, id BlobID, loc blobLoc, done chan struct{}) {
	defer func() {
		if v := recover(); v != nil {
			pf.e.noteError(fmt.Errorf("internal error (please report): reading ahead data blob %s panicked: %v", id.Short(), v))
		}
		pf.mu.Lock()
		delete(pf.inflight, id)
		pf.n.Add(-1)
		pf.mu.Unlock()
		close(done)
		<-pf.slots
	}()
	if loc.zstd {
		_, _ = pf.e.loadInflated(ctx, id, loc, false)
		return
	}
	_ = pf.e.fetchAhead(ctx, loc.pack, int64(loc.offset), int64(loc.length))
}

// cached tells whether the first and last segments of the blob at loc are
// in the segment cache, or a compressed blob in the cache of decompressed
// ones (without counting a hit or a miss).
func (pf *prefetcher) cached(id BlobID, loc blobLoc) bool {
	if loc.zstd {
		return pf.e.plains.contains(id)
	}
	const seg = object.SegmentSize
	first := int64(loc.offset) / seg
	last := (int64(loc.offset) + int64(loc.length) - 1) / seg
	return pf.e.segs.contains(segKey{loc.pack.ID, first}) && pf.e.segs.contains(segKey{loc.pack.ID, last})
}

// pending tells whether the chunk id is being read ahead now.
func (pf *prefetcher) pending(id BlobID) bool {
	if pf.n.Load() == 0 {
		return false
	}
	pf.mu.Lock()
	defer pf.mu.Unlock()
	_, ok := pf.inflight[id]
	return ok
}

// await waits until no chunk of chunks is being read ahead, or ctx ends.
func (pf *prefetcher) await(ctx context.Context, chunks []Chunk) {
	if pf.n.Load() == 0 {
		return
	}
	for _, c := range chunks {
		pf.mu.Lock()
		done := pf.inflight[c.ID]
		pf.mu.Unlock()
		if done == nil {
			continue
		}
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
	}
}
