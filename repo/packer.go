package repo

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/snapcrypt/snapcrypt/repo/object"
)

// PackSize is the plaintext size at which a pack is sealed and written.
const PackSize = 16 << 20

// dekBound is how many plaintext bytes one DEK seals before a writer asks
// for a new one.
const dekBound = 64 << 30

// writer turns blobs into packs and packs into index entries. It seals
// under a DEK that it asks the keychain for on first use and renews after
// dekBound bytes. Packs are sealed and written in the background, at most
// two at a time.
type writer struct {
	r *Repository

	mu      sync.Mutex
	dekID   [16]byte
	dek     []byte
	sealed  int64
	pending map[blobKey]bool
	packs   []IndexPack
	stored  int64 // bytes written to the store
	err     error
	wg      sync.WaitGroup
	sem     chan struct{}
	open    map[BlobType]*openPack
	// packSize is the plaintext size at which an open pack is sealed
	// (PackSize; tests make it small).
	packSize int
	// comp is how new blobs are stored (always off in a version 1
	// repository).
	comp Compression
	// added and addedStored count the plaintext of the blobs this
	// writer queued and the bytes they take in the packs written.
	added, addedStored int64
}

type openPack struct {
	buf   []byte
	blobs []PackBlob
}

func newWriter(r *Repository, comp Compression) *writer {
	if r.cfg.Version < 2 {
		comp = CompressionOff
	}
	return &writer{r: r, pending: map[blobKey]bool{}, sem: make(chan struct{}, 2), open: map[BlobType]*openPack{}, packSize: PackSize, comp: comp}
}

// key returns the DEK to seal the next object with.
func (w *writer) key(ctx context.Context, n int) ([16]byte, []byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dek == nil || w.sealed+int64(n) > dekBound {
		id, dek, err := w.r.keys.NewDEK(ctx)
		if err != nil {
			return id, nil, fmt.Errorf("new data key: %w", err)
		}
		w.dekID, w.dek, w.sealed = id, dek, 0
	}
	w.sealed += int64(n)
	return w.dekID, w.dek, nil
}

// has reports whether the blob is stored or queued already.
func (w *writer) has(t BlobType, id BlobID) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.known(blobKey{t, id})
}

// known reports whether the blob is queued in a pack of this writer or
// stored; w.mu must be held. Pending is asked first: a pack's writer adds
// its blobs to the index before it takes w.mu to drop them from pending,
// so a blob that is no longer pending is in the index by then. (Asking the
// index first, outside w.mu, misses a blob whose pack is indexed and
// un-pended between the two questions, and stores it a second time.)
func (w *writer) known(k blobKey) bool {
	return w.pending[k] || w.r.index.Has(k.t, k.id)
}

// add queues a blob unless it is known; it reports whether it was new.
// However callers interleave, one blob is queued once per writer: the check
// and the claim (the pending entry) happen under one hold of w.mu.
func (w *writer) add(ctx context.Context, t BlobType, id BlobID, data []byte) (bool, error) {
	return w.addBlob(ctx, PackBlob{Type: t, ID: id, Length: uint32(len(data))}, data)
}

// addCompressed is add for a blob already stored compressed elsewhere
// (prune's repack): z is its zstd frame, of plain bytes of plaintext, and
// goes into the pack as it is.
func (w *writer) addCompressed(ctx context.Context, t BlobType, id BlobID, z []byte, plain uint32) (bool, error) {
	return w.addBlob(ctx, PackBlob{Type: t, ID: id, Length: uint32(len(z)), Zstd: true, Plain: plain}, z)
}

func (w *writer) addBlob(ctx context.Context, pb PackBlob, data []byte) (bool, error) {
	t, id := pb.Type, pb.ID
	if w.r.index.Has(t, id) {
		return false, nil // the common case of a known blob, without w.mu
	}
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return false, err
	}
	k := blobKey{t, id}
	if w.known(k) {
		w.mu.Unlock()
		return false, nil
	}
	w.pending[k] = true
	op := w.open[t]
	if op == nil {
		op = &openPack{buf: make([]byte, 0, w.packSize+w.packSize/4)}
		w.open[t] = op
	}
	pb.Offset = uint64(len(op.buf))
	op.blobs = append(op.blobs, pb)
	op.buf = append(op.buf, data...)
	w.added += int64(pb.PlainLength())
	full := len(op.buf) >= w.packSize || len(op.blobs) >= maxPackBlobs
	if full {
		delete(w.open, t)
	}
	w.mu.Unlock()
	if full {
		return true, w.seal(ctx, op)
	}
	return true, nil
}

// seal writes one pack in the background: compresses its blobs (by
// w.comp, each on its own: compressPack), seals it and indexes it. The
// compression runs there, beside the chunking and hashing of what comes
// next, rather than on the path every file waits for.
func (w *writer) seal(ctx context.Context, op *openPack) error {
	dekID, dek, err := w.key(ctx, len(op.buf)+len(op.blobs)*packBlobSizeV2+12)
	if err != nil {
		return err
	}
	w.sem <- struct{}{}
	w.wg.Add(1)
	go func() {
		defer func() { <-w.sem; w.wg.Done() }()
		op := w.compressPack(op)
		plain := appendPackTrailer(op.buf, op.blobs)
		var id ObjectID
		if _, err := rand.Read(id[:]); err != nil {
			w.fail(err)
			return
		}
		h, n, err := w.r.sealObject(ctx, packName(id), object.KindPack, dekID, dek, plain)
		if err != nil {
			w.fail(err)
			return
		}
		ip := IndexPack{ID: id, PlainSize: uint64(len(plain)), Header: h.Marshal(), Blobs: op.blobs}
		w.r.index.add([]IndexPack{ip})
		w.mu.Lock()
		w.packs = append(w.packs, ip)
		w.stored += n
		w.addedStored += int64(len(op.buf))
		for _, b := range op.blobs {
			delete(w.pending, blobKey{b.Type, b.ID})
		}
		w.mu.Unlock()
	}()
	return nil
}

// compressPack returns the pack op with its blobs stored as w.comp
// decides for each (compressBlob); op itself if w.comp is off or no blob
// compresses. Blob offsets and the data area follow the stored bytes.
func (w *writer) compressPack(op *openPack) *openPack {
	if w.comp == CompressionOff {
		return op
	}
	out := &openPack{blobs: make([]PackBlob, len(op.blobs))}
	var zs [][]byte
	size := 0
	for i, pb := range op.blobs {
		var z []byte
		if !pb.Zstd { // else compressed already (addCompressed): kept
			z = compressBlob(w.comp, op.buf[pb.Offset:pb.Offset+uint64(pb.Length)])
		}
		zs = append(zs, z)
		out.blobs[i] = pb
		if z != nil {
			out.blobs[i].Length, out.blobs[i].Zstd, out.blobs[i].Plain = uint32(len(z)), true, pb.Length
		}
		size += int(out.blobs[i].Length)
	}
	if size == len(op.buf) {
		return op
	}
	out.buf = make([]byte, 0, size+len(op.blobs)*packBlobSizeV2+12)
	for i, pb := range op.blobs {
		out.blobs[i].Offset = uint64(len(out.buf))
		if zs[i] != nil {
			out.buf = append(out.buf, zs[i]...)
		} else {
			out.buf = append(out.buf, op.buf[pb.Offset:pb.Offset+uint64(pb.Length)]...)
		}
	}
	return out
}

func (w *writer) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

// flush seals the open packs, waits for every write, and writes the index
// objects naming the packs this writer made: one, or more when its
// plaintext would pass indexSplit bytes.
func (w *writer) flush(ctx context.Context) error {
	w.mu.Lock()
	ops := w.open
	w.open = map[BlobType]*openPack{}
	w.mu.Unlock()
	for _, op := range ops {
		if err := w.seal(ctx, op); err != nil {
			return err
		}
	}
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if len(w.packs) == 0 {
		return nil
	}
	for len(w.packs) > 0 {
		k := indexPart(w.packs, indexSplit)
		if err := w.writeIndex(ctx, w.packs[:k]); err != nil {
			return err
		}
		w.packs = w.packs[k:]
	}
	w.packs = nil
	return nil
}

// indexPart returns how many of packs, from the first, one index object
// holds: as many as fit in max bytes of plaintext, and at least one.
func indexPart(packs []IndexPack, max int) int {
	size := 1 + binary.MaxVarintLen64
	for i, p := range packs {
		size += 32 + 3*binary.MaxVarintLen64 + len(p.Header) + len(p.Blobs)*packBlobSize
		if size > max && i > 0 {
			return i
		}
	}
	return len(packs)
}

// writeIndex writes one index object naming packs; w.mu is held.
func (w *writer) writeIndex(ctx context.Context, packs []IndexPack) error {
	plain := MarshalIndex(packs)
	if w.dek == nil {
		w.mu.Unlock()
		_, _, err := w.key(ctx, len(plain))
		w.mu.Lock()
		if err != nil {
			return err
		}
	}
	var id ObjectID
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	_, n, err := w.r.sealObject(ctx, indexName(id), object.KindIndex, w.dekID, w.dek, plain)
	if err != nil {
		return err
	}
	w.stored += n
	w.r.index.markLoaded(id)
	return nil
}
