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

// storedBufs holds buffers for the stored bytes of compressed blobs read
// whole into a caller's buffer (inflateInto), up to storedBufMax bytes.
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
// for errors.
func (e *engine) inflate(ctx context.Context, t BlobType, id BlobID, loc blobLoc) ([]byte, error) {
	z, err := e.readStored(ctx, loc, nil)
	if err != nil {
		return nil, err
	}
	b, err := decompressBlob(nil, z, loc.plain)
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
	if e.plains.use(id, func(b []byte) { copy(p, b) }) {
		return nil
	}
	var bp *[]byte
	var buf []byte
	if loc.length <= storedBufMax {
		bp = storedBufs.Get().(*[]byte)
		defer storedBufs.Put(bp)
		buf = *bp
	}
	z, err := e.readStored(ctx, loc, buf)
	if err != nil {
		return err
	}
	if bp != nil {
		*bp = z[:0]
	}
	b, err := decompressBlob(p[:0:loc.plain], z, loc.plain)
	if err != nil {
		err = fmt.Errorf("%s blob %s in pack %s is %w: %v", BlobData, id.Short(), packName(loc.pack.ID), object.ErrCorrupt, err)
		e.noteError(err)
		return err
	}
	if len(b) > 0 && &b[0] != &p[0] {
		copy(p, b) // not expected: the decoder decodes into p's capacity
	}
	e.inflated.Add(1)
	return nil
}

// inflatedBlob returns the plaintext of the compressed data blob id at
// loc, from the cache of decompressed blobs or decompressed into it. The
// slice is shared: callers only read it (the cache never reuses a buffer
// it drops).
func (e *engine) inflatedBlob(ctx context.Context, id BlobID, loc blobLoc) ([]byte, error) {
	if b, ok := e.plains.get(id); ok {
		return b, nil
	}
	v, err, _ := e.plainLoads.Do(string(id[:]), func() (any, error) {
		if b, ok := e.plains.get(id); ok {
			return b, nil
		}
		b, err := e.inflate(ctx, BlobData, id, loc)
		if err != nil {
			e.noteError(err)
			return nil, err
		}
		e.plains.add(id, b, int64(len(b)))
		return b, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}
