package repo

// Reading blobs: the index says where each is, the read engine (engine.go)
// reads and decrypts it.

import (
	"context"
	"errors"
	"fmt"

	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// ReadBlob returns a whole blob's plaintext. Like every read of blobs, it
// reloads the index once when the index it has no longer says where the
// blob is (see retryStale).
func (r *Repository) ReadBlob(ctx context.Context, t BlobType, id BlobID) ([]byte, error) {
	return retryStale(r, ctx, func() ([]byte, error) { return r.readBlob(ctx, t, id) })
}

func (r *Repository) readBlob(ctx context.Context, t BlobType, id BlobID) ([]byte, error) {
	loc, ok := r.index.lookup(t, id)
	if !ok {
		return nil, r.missingBlob(t, id)
	}
	if loc.zstd {
		return r.eng.inflate(ctx, t, id, loc)
	}
	return r.eng.readStored(ctx, loc, nil)
}

// ReadBlobAt fills p with the blob's plaintext from offset off and returns
// how many bytes it read (fewer only at the end of the blob). ahead asks to
// decrypt up to that many further bytes of the blob into the cache, for a
// sequential reader.
func (r *Repository) ReadBlobAt(ctx context.Context, t BlobType, id BlobID, p []byte, off, ahead int64) (int, error) {
	return retryStale(r, ctx, func() (int, error) { return r.readBlobAt(ctx, t, id, p, off, ahead) })
}

func (r *Repository) readBlobAt(ctx context.Context, t BlobType, id BlobID, p []byte, off, ahead int64) (int, error) {
	loc, ok := r.index.lookup(t, id)
	if !ok {
		return 0, r.missingBlob(t, id)
	}
	if off >= int64(loc.plain) {
		return 0, nil
	}
	if rest := int64(loc.plain) - off; int64(len(p)) > rest {
		p = p[:rest]
	}
	if loc.zstd {
		if t != BlobData {
			b, err := r.eng.inflate(ctx, t, id, loc)
			if err != nil {
				return 0, err
			}
			return copy(p, b[off:]), nil
		}
		return r.eng.readInflated(ctx, id, loc, p, off)
	}
	if max := int64(loc.length) - off - int64(len(p)); ahead > max {
		ahead = max
	}
	return r.eng.readPack(ctx, loc.pack, p, int64(loc.offset)+off, ahead)
}

// ReadChunksAt fills p with the content of a file made of chunks, from
// offset off in chunks[0], and returns how many bytes it read (fewer only
// where the chunks end). Chunks that lie next to each other in one pack
// (as a file's chunks do when one snapshot wrote them) are read together:
// one ranged read and one pass of decryption for the whole run, which
// matters because a 1 MiB read of a file spans two chunks on average. A
// chunk missing from the index, or whose blob's length differs from the
// chunk's Length, is an error naming the blob.
//
// ahead, when positive, says that a sequential reader reads p: the rest of
// the chunk p ends in, up to ahead bytes, is decrypted into the cache now,
// and the chunks after it in chunks (a caller that wants them read ahead
// passes them) that start within ahead bytes of p's end are decrypted into
// the cache in the background (prefetch.go), with ctx, which must outlive
// the call. A read that needs a chunk being read ahead waits for it.
//
// A read that finds the index stale (see retryStale) reloads it and reads
// again from the start: p may then hold bytes of the first attempt up to
// where it stopped, which the second overwrites with the same bytes.
func (r *Repository) ReadChunksAt(ctx context.Context, chunks []Chunk, p []byte, off, ahead int64) (int, error) {
	return retryStale(r, ctx, func() (int, error) { return r.readChunksAt(ctx, chunks, p, off, ahead) })
}

func (r *Repository) readChunksAt(ctx context.Context, chunks []Chunk, p []byte, off, ahead int64) (int, error) {
	if ahead > 0 {
		// Started first, to run beside this read. The chunk p ends in
		// (by the lengths the chunks claim; a chunk whose blob differs
		// fails the read below).
		end := -off
		for k, c := range chunks {
			end += int64(c.Length)
			if end >= int64(len(p)) {
				if rest := end - int64(len(p)); rest < ahead {
					r.readAhead(ctx, chunks[k+1:], ahead-rest)
				}
				break
			}
		}
	}
	n := 0
	for i := 0; i < len(chunks) && n < len(p); {
		loc, err := r.chunkLoc(chunks[i])
		if err != nil {
			return n, err
		}
		if off >= int64(loc.plain) {
			return n, fmt.Errorf("offset %d is past the end of data blob %s (%d bytes)", off, chunks[i].ID.Short(), loc.plain)
		}
		if loc.zstd && off == 0 && len(p)-n >= int(loc.plain) {
			// The whole chunk: straight into p (compressed.go).
			r.eng.pf.await(ctx, chunks[i:i+1])
			if err := r.eng.inflateInto(ctx, chunks[i].ID, loc, p[n:n+int(loc.plain)]); err != nil {
				return n, err
			}
			n += int(loc.plain)
			i++
			continue
		}
		if loc.zstd {
			// Part of the chunk: the whole chunk, decompressed once
			// for every read of it (compressed.go).
			r.eng.pf.await(ctx, chunks[i:i+1])
			m, err := r.eng.readInflated(ctx, chunks[i].ID, loc, p[n:], off)
			if err != nil {
				return n, err
			}
			n += m
			off = 0
			i++
			continue
		}
		// The run: chunks i..j-1, packed end to end in loc.pack.
		start := int64(loc.offset) + off
		end := int64(loc.offset) + int64(loc.length)
		j := i + 1
		for ; j < len(chunks) && end-start < int64(len(p)-n); j++ {
			next, err := r.chunkLoc(chunks[j])
			if err != nil || next.zstd || next.pack.ID != loc.pack.ID || int64(next.offset) != end {
				break // an error is reported when the loop gets there
			}
			end += int64(next.length)
		}
		want := min(end-start, int64(len(p)-n))
		r.eng.pf.await(ctx, chunks[i:j])
		got, err := r.eng.readPack(ctx, loc.pack, p[n:n+int(want)], start, min(ahead, end-start-want))
		if err != nil {
			return n, err
		}
		if int64(got) != want {
			return n, fmt.Errorf("pack %s is %w: it ends %d bytes before data blob %s does", packName(loc.pack.ID), object.ErrCorrupt, want-int64(got), chunks[j-1].ID.Short())
		}
		n += got
		off = 0
		i = j
	}
	return n, nil
}

// readAhead reads ahead, in the background, the chunks that start within
// ahead bytes from the start of chunks[0] (see prefetcher.start).
func (r *Repository) readAhead(ctx context.Context, chunks []Chunk, ahead int64) {
	if len(chunks) == 0 {
		return
	}
	var locs []blobLoc
	var pos int64
	for _, c := range chunks {
		if pos >= ahead {
			break
		}
		loc, err := r.chunkLoc(c)
		if err != nil {
			break // for the read that gets there to report
		}
		locs = append(locs, loc)
		pos += int64(loc.plain)
	}
	r.eng.pf.start(ctx, chunks[:len(locs)], locs, ahead)
}

// chunkLoc finds chunk c's blob and checks it is as long as the chunk.
func (r *Repository) chunkLoc(c Chunk) (blobLoc, error) {
	loc, ok := r.index.lookup(BlobData, c.ID)
	if !ok {
		return blobLoc{}, r.missingBlob(BlobData, c.ID)
	}
	if loc.plain != c.Length {
		return blobLoc{}, fmt.Errorf("data blob %s is %w: %d bytes in the index, %d in its tree entry", c.ID.Short(), object.ErrCorrupt, loc.plain, c.Length)
	}
	return loc, nil
}

// errNotIndexed is wrapped by the error of a blob the index does not know.
var errNotIndexed = errors.New("not in the index")

// missingBlob is the error for a blob the index does not know.
func (r *Repository) missingBlob(t BlobType, id BlobID) error {
	if ierr := r.index.failure(); ierr != nil {
		return fmt.Errorf("%s blob %s is %w; an index object could not be read: %w", t, id.Short(), errNotIndexed, ierr)
	}
	return fmt.Errorf("%s blob %s is %w", t, id.Short(), errNotIndexed)
}

// staleIndex tells whether a read failed because the index no longer says
// where a blob is: the blob is not in it, or a pack it names is gone. A
// reader loaded its index before a prune (docs/prune.md) compacted the
// index and deleted the packs it repacked (step 10); until it reloads the
// index, it looks blobs of the snapshots that remain up in those packs.
func staleIndex(err error) bool {
	return errors.Is(err, errNotIndexed) || errors.Is(err, store.ErrNotExist)
}

// retryStale runs read, and when it fails because the index is stale
// (staleIndex), reloads the index (refreshStaleIndex) and runs it once more. A
// read that still fails so (the blob is in no index object listed now, or
// its pack is gone although one names it) returns an error that says the
// snapshot may have been forgotten, and counts among the read errors.
// A read that succeeds the second time is no read error.
func retryStale[T any](r *Repository, ctx context.Context, read func() (T, error)) (T, error) {
	v, err := read()
	if err == nil || !staleIndex(err) {
		return v, err
	}
	if rerr := r.refreshStaleIndex(ctx); rerr != nil {
		return v, fmt.Errorf("%w (reloading the index: %v)", err, rerr)
	}
	v, err = read()
	if err == nil || !staleIndex(err) {
		return v, err
	}
	err = fmt.Errorf("%w (%w)", err, errReloaded)
	if errors.Is(err, store.ErrNotExist) {
		r.eng.noteError(err)
	}
	return v, err
}

// errReloaded is wrapped by the error of a read that found the index stale
// again after reloading it.
var errReloaded = errors.New("the index was reloaded; the snapshot may have been forgotten and pruned")

// refreshStaleIndex reloads the index (LoadIndexPartial: new index objects are
// merged, and the whole index is read again when index objects merged
// before have vanished) for the reads that found it stale. Reads that fail
// together reload it once: a read waits for a reload that started after
// it called, joining one that is running only if that one started after
// the call (one that started before may have listed the index objects
// before the prune replaced them). The reload is not canceled with ctx;
// the wait is.
func (r *Repository) refreshStaleIndex(ctx context.Context) error {
	seen := r.reloads.started.Load()
	for {
		ch := r.reloads.group.DoChan("", func() (any, error) {
			n := r.reloads.started.Add(1)
			_, err := r.LoadIndexPartial(context.WithoutCancel(ctx))
			return n, err
		})
		select {
		case <-ctx.Done():
			return ctx.Err()
		case res := <-ch:
			if res.Err != nil {
				return res.Err
			}
			if res.Val.(uint64) > seen {
				return nil
			}
		}
	}
}

// ReadErrors returns the count of read errors and the most recent ones.
func (r *Repository) ReadErrors() (uint64, []string) { return r.eng.readErrors() }

// CacheStats returns the figures of the segment, decompressed blob and
// tree caches (segments: both parts of the segment cache together).
func (r *Repository) CacheStats() map[string]CacheStats {
	return map[string]CacheStats{"segments": r.eng.segmentStats(), "decompressed": r.eng.plains.stats(), "trees": r.trees.stats()}
}

// packCipher returns the cipher of a pack, from the engine's cache (check
// reads packs around the engine, with the same ciphers).
func (r *Repository) packCipher(ctx context.Context, p *IndexPack) (*object.Cipher, error) {
	return r.eng.packCipher(ctx, p)
}
