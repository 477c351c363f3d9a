package repo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// IndexPack is one pack as an index records it: where it is, how large its
// plaintext is, the sealed header it starts with (so a ranged read needs no
// extra request), and its blobs.
type IndexPack struct {
	ID        ObjectID
	PlainSize uint64
	Header    []byte // the pack object's header, object.HeaderSize bytes
	Blobs     []PackBlob
}

// Index encodings: version 1 holds version 1 pack entries, version 2
// (written when a blob it lists is compressed) version 2 entries.
const (
	indexVersion   = 1
	indexVersionV2 = 2
)

// maxIndexPacks bounds what the decoder accepts.
const maxIndexPacks = 1 << 24

var errIndex = errors.New("malformed index")

// MarshalIndex encodes an index object's plaintext (docs/format.md).
func MarshalIndex(packs []IndexPack) []byte {
	v := indexVersion
	for _, p := range packs {
		if entryVersion(p.Blobs) == 2 {
			v = indexVersionV2
			break
		}
	}
	b := []byte{byte(v)}
	b = binary.AppendUvarint(b, uint64(len(packs)))
	for _, p := range packs {
		b = append(b, p.ID[:]...)
		b = binary.AppendUvarint(b, p.PlainSize)
		b = binary.AppendUvarint(b, uint64(len(p.Header)))
		b = append(b, p.Header...)
		b = binary.AppendUvarint(b, uint64(len(p.Blobs)))
		for _, pb := range p.Blobs {
			b = appendPackBlob(b, pb, v)
		}
	}
	return b
}

// UnmarshalIndex decodes an index object's plaintext. It checks that every
// blob lies inside its pack and rejects trailing bytes.
func UnmarshalIndex(b []byte) ([]IndexPack, error) {
	d := &decoder{b: b}
	v := int(d.byte())
	if v != indexVersion && v != indexVersionV2 {
		return nil, fmt.Errorf("%w: unknown version", errIndex)
	}
	es := uint64(entrySize(v))
	compressed := false
	n := d.uvarint()
	if n > maxIndexPacks || n > uint64(len(d.b))/33 {
		return nil, fmt.Errorf("%w: pack count %d", errIndex, n)
	}
	packs := make([]IndexPack, n)
	for i := range packs {
		p := &packs[i]
		copy(p.ID[:], d.bytes(32))
		p.PlainSize = d.uvarint()
		hl := d.uvarint()
		if hl > 256 {
			d.fail()
		}
		p.Header = d.bytes(hl)
		nb := d.uvarint()
		if nb > uint64(len(d.b))/es {
			return nil, fmt.Errorf("%w: blob count %d", errIndex, nb)
		}
		if d.err != nil {
			return nil, d.err
		}
		p.Blobs = make([]PackBlob, nb)
		for j := range p.Blobs {
			pb, err := parsePackBlob(d.bytes(es), v)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", errIndex, err)
			}
			compressed = compressed || pb.Zstd
			if pb.Offset+uint64(pb.Length) > p.PlainSize || pb.Offset+uint64(pb.Length) < pb.Offset {
				return nil, fmt.Errorf("%w: blob beyond the end of its pack", errIndex)
			}
			p.Blobs[j] = pb
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errIndex, len(d.b))
	}
	if v == indexVersionV2 && !compressed {
		return nil, fmt.Errorf("%w: version 2 without a compressed blob", errIndex)
	}
	return packs, nil
}

// blobLoc is where one blob lives: length bytes at offset of the pack's
// plaintext, a zstd frame of plain bytes of plaintext if zstd, else the
// plaintext itself (plain = length).
type blobLoc struct {
	pack   *IndexPack
	offset uint64
	length uint32
	plain  uint32
	zstd   bool
}

func locOf(p *IndexPack, pb PackBlob) blobLoc {
	return blobLoc{pack: p, offset: pb.Offset, length: pb.Length, plain: pb.PlainLength(), zstd: pb.Zstd}
}

type blobKey struct {
	t  BlobType
	id BlobID
}

// Index is the in-memory map from blob to pack, merged from every index
// object. It is safe for concurrent use. It grows as index objects are
// merged (LoadIndexPartial) and packs written; Replace swaps in a whole new
// content (a compacted index) and Drop forgets packs, both at once for
// every reader: a lookup sees the index before or after, never a part.
// The IndexPacks a lookup returned stay valid after either (they are never
// changed), so a read in flight finishes with the pack it found.
type Index struct {
	mu     sync.RWMutex
	blobs  map[blobKey]blobLoc
	packs  map[ObjectID]*IndexPack
	loaded map[ObjectID]bool // index objects merged so far
	gen    uint64            // counts Replace and Drop: a merge begun before does not happen
	failed error             // why index objects could not be read, at the last load
}

func newIndex() *Index {
	return &Index{blobs: map[blobKey]blobLoc{}, packs: map[ObjectID]*IndexPack{}, loaded: map[ObjectID]bool{}}
}

func (x *Index) add(packs []IndexPack) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.addLocked(packs)
}

// addLocked merges packs; a pack already known is skipped, and a blob
// already known keeps its place. x.mu is held.
func (x *Index) addLocked(packs []IndexPack) {
	for i := range packs {
		p := &packs[i]
		if _, ok := x.packs[p.ID]; ok {
			continue
		}
		x.packs[p.ID] = p
		for _, pb := range p.Blobs {
			k := blobKey{pb.Type, pb.ID}
			if _, ok := x.blobs[k]; !ok {
				x.blobs[k] = locOf(p, pb)
			}
		}
	}
}

// merge adds the packs of index object id and records it as merged, unless
// the index was replaced or packs dropped since generation gen (when the
// object was read): the object may list what that removed. It tells
// whether it merged.
func (x *Index) merge(gen uint64, id ObjectID, packs []IndexPack) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.gen != gen {
		return false
	}
	x.addLocked(packs)
	x.loaded[id] = true
	return true
}

// vanished tells whether an index object merged before is not among
// listed.
func (x *Index) vanished(listed []ObjectID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if len(x.loaded) > len(listed) {
		return true
	}
	set := make(map[ObjectID]bool, len(listed))
	for _, id := range listed {
		set[id] = true
	}
	for id := range x.loaded {
		if !set[id] {
			return true
		}
	}
	return false
}

// markLoaded records index object id as merged (its packs were added as
// they were written).
func (x *Index) markLoaded(id ObjectID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.loaded[id] = true
}

// Replace makes packs the whole content of the index, and objects the
// index objects it holds (which later loads skip; objects not named are
// read again by the next LoadIndexPartial if they still exist): what a
// compaction that wrote one new index object for many old ones swaps in.
// A blob listed in several packs is found in the first of them. Reads in
// flight are not disturbed, and a load that was reading index objects
// meanwhile merges none of them.
func (x *Index) Replace(packs []IndexPack, objects []ObjectID) {
	n := newIndex()
	n.addLocked(packs)
	for _, id := range objects {
		n.loaded[id] = true
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.blobs, x.packs, x.loaded = n.blobs, n.packs, n.loaded
	x.gen++
}

// Drop forgets the given packs (a prune deleted them). A blob that another
// known pack also holds is found there from then on; the others are no
// longer in the index. As for Replace, a load reading index objects
// meanwhile merges none of them.
func (x *Index) Drop(packs ...ObjectID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.gen++
	lost := map[blobKey]bool{}
	for _, id := range packs {
		p, ok := x.packs[id]
		if !ok {
			continue
		}
		delete(x.packs, id)
		for _, pb := range p.Blobs {
			k := blobKey{pb.Type, pb.ID}
			if l, ok := x.blobs[k]; ok && l.pack == p {
				delete(x.blobs, k)
				lost[k] = true
			}
		}
	}
	if len(lost) == 0 {
		return
	}
	// Other copies of the lost blobs, in the order of no particular
	// pack: one pass over what is left.
	for _, p := range x.packs {
		for _, pb := range p.Blobs {
			k := blobKey{pb.Type, pb.ID}
			if lost[k] {
				x.blobs[k] = locOf(p, pb)
				delete(lost, k)
			}
		}
	}
}

func (x *Index) lookup(t BlobType, id BlobID) (blobLoc, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	l, ok := x.blobs[blobKey{t, id}]
	return l, ok
}

// Has reports whether the index knows the blob.
func (x *Index) Has(t BlobType, id BlobID) bool {
	_, ok := x.lookup(t, id)
	return ok
}

// knows reports whether the index names pack id.
func (x *Index) knows(id ObjectID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.packs[id]
	return ok
}

// Packs returns every pack the index knows.
func (x *Index) Packs() []*IndexPack {
	x.mu.RLock()
	defer x.mu.RUnlock()
	ps := make([]*IndexPack, 0, len(x.packs))
	for _, p := range x.packs {
		ps = append(ps, p)
	}
	return ps
}

// plainBytes returns the plaintext bytes of every pack the index knows.
func (x *Index) plainBytes() uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var n uint64
	for _, p := range x.packs {
		n += p.PlainSize
	}
	return n
}

// failure returns why index objects could not be read at the last load,
// for the errors of blobs they would have listed; nil if all were read.
func (x *Index) failure() error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.failed
}

// BlobBytes returns the plaintext length of every blob of every pack the
// index knows, and the bytes they take in the packs (less where blobs are
// compressed).
func (x *Index) BlobBytes() (plain, stored uint64) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, p := range x.packs {
		for _, pb := range p.Blobs {
			plain += uint64(pb.PlainLength())
			stored += uint64(pb.Length)
		}
	}
	return plain, stored
}

// PackedBytes returns the plaintext bytes of every pack the index knows.
func (r *Repository) PackedBytes() uint64 { return r.index.plainBytes() }

// LoadIndexPartial reads every index object not yet merged, each on its
// own, so that one that cannot be read does not stop the others: the
// failures are returned by object id (and tried again by the next call),
// and blobs missing because of them say so (see ReadBlob). err is for the
// listing itself. Objects read while the index was replaced or packs
// dropped (Index.Replace, Index.Drop) are not merged, nor counted as
// failures: the next call reads them again. It is cheap to call again:
// objects already merged are skipped.
func (r *Repository) LoadIndexPartial(ctx context.Context) (failed map[ObjectID]error, err error) {
	x := r.index
	x.mu.RLock()
	gen := x.gen
	x.mu.RUnlock()
	var names, listed []ObjectID
	err = r.st.List(ctx, "index/", func(fi store.Info) error {
		id, err := ParseObjectID(strings.TrimPrefix(fi.Name, "index/"))
		if err != nil {
			return nil
		}
		listed = append(listed, id)
		x.mu.RLock()
		done := x.loaded[id]
		x.mu.RUnlock()
		if !done {
			names = append(names, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing indexes: %w", err)
	}
	// Index objects merged before and no longer listed were compacted by
	// a prune (docs/prune.md, step 9): the packs they named may be
	// deleted next, so the whole index is read again and replaces this
	// one at once (reads in flight finish with the packs they found).
	rebuild := x.vanished(listed)
	if rebuild {
		names = listed
	}
	failed = map[ObjectID]error{}
	contents := make([][]IndexPack, len(names))
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(8)
	for i, id := range names {
		g.Go(func() error {
			packs, err := r.readIndex(ctx, id)
			if err != nil {
				mu.Lock()
				failed[id] = err
				mu.Unlock()
				return nil
			}
			if rebuild {
				contents[i] = packs
			} else {
				x.merge(gen, id, packs)
			}
			return nil
		})
	}
	g.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if rebuild {
		var all []IndexPack
		var read []ObjectID
		for i, id := range names {
			if _, bad := failed[id]; !bad {
				all = append(all, contents[i]...)
				read = append(read, id)
			}
		}
		x.Replace(all, read)
	}
	x.mu.Lock()
	x.failed = firstFailure(failed)
	x.mu.Unlock()
	return failed, nil
}

func (r *Repository) readIndex(ctx context.Context, id ObjectID) ([]IndexPack, error) {
	name := indexName(id)
	plain, err := r.openObject(ctx, name, object.KindIndex)
	if err != nil {
		return nil, err
	}
	packs, err := UnmarshalIndex(plain)
	if err != nil {
		return nil, fmt.Errorf("object %s is %w: %v", name, object.ErrCorrupt, err)
	}
	return packs, nil
}

// firstFailure returns the error of the lowest object id, or nil.
func firstFailure(failed map[ObjectID]error) error {
	var first *ObjectID
	for id := range failed {
		if first == nil || bytes.Compare(id[:], first[:]) < 0 {
			first = &id
		}
	}
	if first == nil {
		return nil
	}
	if len(failed) > 1 {
		return fmt.Errorf("%w (and %d more objects)", failed[*first], len(failed)-1)
	}
	return failed[*first]
}
