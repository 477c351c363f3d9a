package repo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
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

const indexVersion = 1

// maxIndexPacks bounds what the decoder accepts.
const maxIndexPacks = 1 << 24

var errIndex = errors.New("malformed index")

// MarshalIndex encodes an index object's plaintext (docs/format.md).
func MarshalIndex(packs []IndexPack) []byte {
	b := []byte{indexVersion}
	b = binary.AppendUvarint(b, uint64(len(packs)))
	for _, p := range packs {
		b = append(b, p.ID[:]...)
		b = binary.AppendUvarint(b, p.PlainSize)
		b = binary.AppendUvarint(b, uint64(len(p.Header)))
		b = append(b, p.Header...)
		b = binary.AppendUvarint(b, uint64(len(p.Blobs)))
		for _, pb := range p.Blobs {
			b = appendPackBlob(b, pb)
		}
	}
	return b
}

// UnmarshalIndex decodes an index object's plaintext. It checks that every
// blob lies inside its pack and rejects trailing bytes.
func UnmarshalIndex(b []byte) ([]IndexPack, error) {
	d := &decoder{b: b}
	if d.byte() != indexVersion {
		return nil, fmt.Errorf("%w: unknown version", errIndex)
	}
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
		if nb > uint64(len(d.b))/packBlobSize {
			return nil, fmt.Errorf("%w: blob count %d", errIndex, nb)
		}
		if d.err != nil {
			return nil, d.err
		}
		p.Blobs = make([]PackBlob, nb)
		for j := range p.Blobs {
			pb, err := parsePackBlob(d.bytes(packBlobSize))
			if err != nil {
				return nil, fmt.Errorf("%w: %v", errIndex, err)
			}
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
	return packs, nil
}

// blobLoc is where one blob lives.
type blobLoc struct {
	pack   *IndexPack
	offset uint64
	length uint32
}

type blobKey struct {
	t  BlobType
	id BlobID
}

// Index is the in-memory map from blob to pack, merged from every index
// object. It is safe for concurrent use.
type Index struct {
	mu     sync.RWMutex
	blobs  map[blobKey]blobLoc
	packs  map[ObjectID]*IndexPack
	loaded map[ObjectID]bool // index objects merged so far
}

func newIndex() *Index {
	return &Index{blobs: map[blobKey]blobLoc{}, packs: map[ObjectID]*IndexPack{}, loaded: map[ObjectID]bool{}}
}

func (x *Index) add(packs []IndexPack) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := range packs {
		p := &packs[i]
		if _, ok := x.packs[p.ID]; ok {
			continue
		}
		x.packs[p.ID] = p
		for _, pb := range p.Blobs {
			k := blobKey{pb.Type, pb.ID}
			if _, ok := x.blobs[k]; !ok {
				x.blobs[k] = blobLoc{pack: p, offset: pb.Offset, length: pb.Length}
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

// Len returns the number of distinct blobs.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.blobs)
}
