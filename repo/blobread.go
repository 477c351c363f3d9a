package repo

// Reading blobs: the index says where each is, the read engine (engine.go)
// reads and decrypts it.

import (
	"context"
	"fmt"

	"github.com/snapcrypt/snapcrypt/repo/object"
)

// ReadBlob returns a whole blob's plaintext.
func (r *Repository) ReadBlob(ctx context.Context, t BlobType, id BlobID) ([]byte, error) {
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
		b, err := r.eng.inflatedBlob(ctx, id, loc)
		if err != nil {
			return 0, err
		}
		return copy(p, b[off:]), nil
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
func (r *Repository) ReadChunksAt(ctx context.Context, chunks []Chunk, p []byte, off, ahead int64) (int, error) {
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
			b, err := r.eng.inflatedBlob(ctx, chunks[i].ID, loc)
			if err != nil {
				return n, err
			}
			n += copy(p[n:], b[off:])
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

// missingBlob is the error for a blob the index does not know.
func (r *Repository) missingBlob(t BlobType, id BlobID) error {
	if ierr := r.index.failure(); ierr != nil {
		return fmt.Errorf("%s blob %s is not in the index; an index object could not be read: %w", t, id.Short(), ierr)
	}
	return fmt.Errorf("%s blob %s is not in the index", t, id.Short())
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
