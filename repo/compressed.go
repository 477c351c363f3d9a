package repo

// Reading compressed blobs. A zstd frame cannot be entered at a plaintext
// offset, so a read of any part of a compressed data blob decompresses
// the whole blob (a chunk: at most 8 MiB, about 1 MiB on average) once,
// into a cache of decompressed blobs that the reads after it (the rest of
// a sequential reader's requests, which the kernel sends in parallel, or
// a random reader's neighbours) copy from. Concurrent reads of one blob
// decompress it once. Only the blob that holds the bytes asked for is
// decompressed (and, for a sequential reader, those the prefetcher reads
// ahead); blobs stored as they are never pass through here.

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/snapcrypt/snapcrypt/repo/object"
)

// inflatedMin is the smallest cache of decompressed blobs: two of the
// largest chunks, so that a reader of a file of large chunks keeps the
// one it reads while the next one is read ahead.
const inflatedMin = 2 * MaxChunkSize

// inflatedBytes is the bound of the cache of decompressed blobs of an
// engine whose segment cache holds segBytes.
func inflatedBytes(segBytes int64) int64 { return max(segBytes/2, inflatedMin) }

// storedBufs holds buffers for the stored bytes of compressed blobs, while
// they are decompressed (inflateTo), up to storedBufMax bytes.
var storedBufs = sync.Pool{New: func() any { return new([]byte) }}

const storedBufMax = 1 << 20

// readStored reads the stored bytes of the blob at loc into buf if it has
// room, else into a new buffer.
func (e *engine) readStored(ctx context.Context, loc blobLoc, buf []byte) ([]byte, error) {
	if uint32(cap(buf)) < loc.length {
		buf = make([]byte, loc.length)
	}
	buf = buf[:loc.length]
	n, err := e.readPack(ctx, loc.pack, buf, int64(loc.offset), 0)
	if err != nil {
		return nil, err
	}
	if n != len(buf) {
		return nil, fmt.Errorf("pack %s is %w: it ends %d bytes before a blob does", packName(loc.pack.ID), object.ErrCorrupt, len(buf)-n)
	}
	return buf, nil
}

// inflate reads and decompresses the compressed blob at loc, named (t, id)
// for errors, into a new buffer that the caller keeps.
func (e *engine) inflate(ctx context.Context, t BlobType, id BlobID, loc blobLoc) ([]byte, error) {
	return e.inflateTo(ctx, t, id, loc, nil)
}

// inflateTo is inflate into dst if it has room for the plaintext. The
// stored bytes go through a pooled buffer.
func (e *engine) inflateTo(ctx context.Context, t BlobType, id BlobID, loc blobLoc, dst []byte) ([]byte, error) {
	bp := storedBufs.Get().(*[]byte)
	defer storedBufs.Put(bp)
	z, err := e.readStored(ctx, loc, *bp)
	if err != nil {
		return nil, err
	}
	if cap(z) <= storedBufMax {
		*bp = z[:0]
	}
	b, err := decompressBlob(dst, z, loc.plain)
	if err != nil {
		return nil, fmt.Errorf("%s blob %s in pack %s is %w: %v", t, id.Short(), packName(loc.pack.ID), object.ErrCorrupt, err)
	}
	e.inflated.Add(1)
	return b, nil
}

// inflateInto decompresses the compressed data blob id at loc into p,
// which holds its whole plaintext: the read of a whole small file, which
// needs no cache. A blob in the cache is copied from there.
func (e *engine) inflateInto(ctx context.Context, id BlobID, loc blobLoc, p []byte) error {
	e.packAhead(ctx, loc)
	if e.plains.use(id, func(b []byte) { copy(p, b) }) {
		return nil
	}
	b, err := e.inflateTo(ctx, BlobData, id, loc, p[:0:loc.plain])
	if err != nil {
		e.noteError(err)
		return err
	}
	if len(b) > 0 && &b[0] != &p[0] {
		copy(p, b) // not expected: the decoder decodes into p's capacity
	}
	return nil
}

// readInflated copies the plaintext of the compressed data blob id at loc
// from offset off into p, from the cache of decompressed blobs, where it
// decompresses the blob first if it is not there. The cache is read under
// its lock (plainRing.use): its bytes are overwritten once pushed out.
func (e *engine) readInflated(ctx context.Context, id BlobID, loc blobLoc, p []byte, off int64) (int, error) {
	n := 0
	cp := func(b []byte) { n = copy(p, b[off:]) }
	if e.plains.use(id, cp) {
		return n, nil
	}
	b, err := e.loadInflated(ctx, id, loc, true)
	if err != nil {
		return 0, err
	}
	if b != nil || !e.plains.read(id, cp) {
		if b == nil {
			// Pushed out already by later blobs (rare).
			if b, err = e.inflate(ctx, BlobData, id, loc); err != nil {
				e.noteError(err)
				return 0, err
			}
		}
		n = copy(p, b[off:])
	}
	return n, nil
}

// loadInflated decompresses the compressed data blob id at loc into the
// cache of decompressed blobs, unless it is there. Concurrent loads of one
// blob decompress it once. When the cache has no room for it (its place
// is being written by other loads), a caller that needs the bytes gets
// them in a buffer of its own; one that does not (the read-ahead) gets
// nil and nothing is decompressed. Otherwise nil: the blob is cached.
func (e *engine) loadInflated(ctx context.Context, id BlobID, loc blobLoc, need bool) ([]byte, error) {
	v, err, _ := e.plainLoads.Do(string(id[:]), func() (any, error) {
		if e.plains.contains(id) {
			return []byte(nil), nil
		}
		s, dst, ok := e.plains.reserve(id, int(loc.plain))
		if !ok && !need {
			return []byte(nil), nil
		}
		// Given up unless committed, even on a panic (the prefetcher
		// recovers): a span left being written would stop every later
		// reservation that reaches it.
		committed := false
		defer func() {
			if ok && !committed {
				e.plains.abort(s)
			}
		}()
		b, err := e.inflateTo(ctx, BlobData, id, loc, dst)
		if err != nil {
			e.noteError(err)
			return nil, err
		}
		if !ok {
			return b, nil
		}
		if len(b) > 0 && &b[0] != &dst[:1][0] {
			copy(dst[:len(b)], b) // not expected: the decoder decodes into dst's capacity
		}
		e.plains.commit(s)
		committed = true
		return []byte(nil), nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

// A walk of a tree of small files (tar, cp -r, rsync, grep -r) reads each
// file whole, one after another, in directory order: the order a snapshot
// wrote them, end to end in its packs. Each read of a compressed one
// decompresses it on the reader's thread before the read returns, so the
// walk waits for every decompression in turn. packAhead sees such a walk
// (a whole compressed blob read close after the previous one in the same
// pack) and decompresses the blobs after it in the pack in the
// background, into the cache of decompressed blobs, where the walk's next
// reads find them; the other cores do the work. A read elsewhere (a random
// reader, another pack) starts nothing.
const (
	// packAheadGap: a read up to this many blobs after the previous one
	// in the same pack continues a walk (the snapshot's workers
	// interleave a directory's files a little); one before it does not.
	packAheadGap = 8
	// packAheadBlobs and packAheadBytes bound what one read starts
	// (besides the prefetcher's own bounds).
	packAheadBlobs = 16
	packAheadBytes = 1 << 20
)

// packWalk is where the last whole compressed blob read was.
type packWalk struct {
	mu   sync.Mutex
	pack *IndexPack
	at   int
}

// packAhead notes the whole read of the compressed blob at loc and, if it
// continues a walk through its pack, starts decompressing the compressed
// data blobs after it there (packAheadBlobs, packAheadBytes) that are
// neither cached nor being read ahead already.
func (e *engine) packAhead(ctx context.Context, loc blobLoc) {
	bs := loc.pack.Blobs
	k := sort.Search(len(bs), func(i int) bool { return bs[i].Offset >= loc.offset })
	if k == len(bs) || bs[k].Offset != loc.offset {
		return // not in offset order: no walk to follow
	}
	w := &e.walk
	w.mu.Lock()
	walking := w.pack == loc.pack && k > w.at && k <= w.at+packAheadGap
	w.pack, w.at = loc.pack, k
	w.mu.Unlock()
	if !walking {
		return
	}
	var chunkArr [packAheadBlobs]Chunk
	var locArr [packAheadBlobs]blobLoc
	chunks, locs := chunkArr[:0], locArr[:0]
	var total, pos int64
	seen, end := 0, true
	for i := k + 1; i < len(bs); i++ {
		if seen == packAheadBlobs || pos >= packAheadBytes {
			end = false
			break
		}
		pb := bs[i]
		if pb.Type != BlobData || !pb.Zstd {
			continue
		}
		seen++
		pos += int64(pb.Plain)
		if e.plains.contains(pb.ID) || e.pf.pending(pb.ID) {
			continue
		}
		chunks = append(chunks, Chunk{ID: pb.ID, Length: pb.Plain})
		locs = append(locs, locOf(loc.pack, pb))
		total += int64(pb.Plain)
	}
	// The window is topped up in batches (half of it at least, or what is
	// left of the pack): the workers then take one job after another
	// without being woken for each file of the walk.
	if len(locs) > 0 && (end || 2*len(locs) >= seen) {
		e.pf.start(ctx, chunks, locs, total)
	}
}
