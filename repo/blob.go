package repo

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"golang.org/x/crypto/blake2b"
)

// BlobID names a blob by its content: keyed BLAKE2b-256 over the blob type
// and plaintext, with the repository's content-id key, so equal content
// deduplicates while ids reveal nothing without the key.
type BlobID [32]byte

func (id BlobID) String() string { return hex.EncodeToString(id[:]) }

// Short is the first 8 hex characters, for messages.
func (id BlobID) Short() string { return hex.EncodeToString(id[:4]) }

// BlobType tells content chunks from directory trees.
type BlobType uint8

// Blob types as stored in packs and indexes.
const (
	BlobData BlobType = 1
	BlobTree BlobType = 2
)

func (t BlobType) String() string {
	switch t {
	case BlobData:
		return "data"
	case BlobTree:
		return "tree"
	}
	return fmt.Sprintf("blobtype(%d)", uint8(t))
}

// hasher computes blob ids.
type hasher struct{ key []byte }

func (h hasher) id(t BlobType, plaintext []byte) BlobID {
	d, err := blake2b.New256(h.key)
	if err != nil {
		panic(err) // key length is checked when the repository opens
	}
	d.Write([]byte{byte(t)})
	d.Write(plaintext)
	var id BlobID
	d.Sum(id[:0])
	return id
}

// ObjectID names a pack, index or snapshot object: 32 random bytes.
type ObjectID [32]byte

func (id ObjectID) String() string { return hex.EncodeToString(id[:]) }

// ParseObjectID parses 64 hex characters.
func ParseObjectID(s string) (ObjectID, error) {
	var id ObjectID
	if len(s) != 64 {
		return id, fmt.Errorf("object id %q: want 64 hex characters", s)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("object id %q: %w", s, err)
	}
	return id, nil
}

// Object names.
func packName(id ObjectID) string     { s := id.String(); return "data/" + s[:2] + "/" + s }
func indexName(id ObjectID) string    { return "index/" + id.String() }
func snapshotName(id ObjectID) string { return "snapshots/" + id.String() }

// PackBlob places one blob in a pack's plaintext.
type PackBlob struct {
	Type   BlobType
	ID     BlobID
	Offset uint64
	Length uint32 // bytes stored in the pack
	// Zstd says that the stored bytes are a zstd frame of Plain bytes of
	// plaintext (format version 2); Plain is 0 when it is false.
	Zstd  bool
	Plain uint32
}

// PlainLength is the length of the blob's plaintext.
func (pb PackBlob) PlainLength() uint32 {
	if pb.Zstd {
		return pb.Plain
	}
	return pb.Length
}

// Pack entry encodings: version 1 (45 bytes) knows stored blobs only;
// version 2 (50 bytes) adds the compression and the plaintext length. A
// trailer or index uses version 2 exactly when one of its blobs is
// compressed, so every list of blobs has one encoding.
const (
	packBlobSize   = 1 + 32 + 8 + 4
	packBlobSizeV2 = packBlobSize + 1 + 4
)

// Compression bytes of a version 2 pack entry.
const (
	compNone = 0
	compZstd = 1
)

var errPack = errors.New("malformed pack trailer")

// entryVersion is the pack entry encoding a list of blobs is written in.
func entryVersion(blobs []PackBlob) int {
	for _, pb := range blobs {
		if pb.Zstd {
			return 2
		}
	}
	return 1
}

func entrySize(version int) int {
	if version == 2 {
		return packBlobSizeV2
	}
	return packBlobSize
}

// appendPackTrailer appends the self-describing trailer that ends every
// pack's plaintext: the blob entries, their count (u32) and the magic.
func appendPackTrailer(b []byte, blobs []PackBlob) []byte {
	v := entryVersion(blobs)
	for _, pb := range blobs {
		b = appendPackBlob(b, pb, v)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(blobs)))
	if v == 2 {
		return append(b, packMagicV2...)
	}
	return append(b, packMagic...)
}

const (
	packMagic   = "SCPACK01"
	packMagicV2 = "SCPACK02"
)

func appendPackBlob(b []byte, pb PackBlob, version int) []byte {
	b = append(b, byte(pb.Type))
	b = append(b, pb.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, pb.Offset)
	b = binary.BigEndian.AppendUint32(b, pb.Length)
	if version == 2 {
		comp := byte(compNone)
		if pb.Zstd {
			comp = compZstd
		}
		b = append(b, comp)
		b = binary.BigEndian.AppendUint32(b, pb.PlainLength())
	}
	return b
}

// parsePackBlob decodes one entry of the given encoding version
// (entrySize(version) bytes).
func parsePackBlob(b []byte, version int) (PackBlob, error) {
	var pb PackBlob
	pb.Type = BlobType(b[0])
	if pb.Type != BlobData && pb.Type != BlobTree {
		return pb, fmt.Errorf("%w: unknown blob type %d", errPack, b[0])
	}
	copy(pb.ID[:], b[1:33])
	pb.Offset = binary.BigEndian.Uint64(b[33:41])
	pb.Length = binary.BigEndian.Uint32(b[41:45])
	if version != 2 {
		return pb, nil
	}
	plain := binary.BigEndian.Uint32(b[46:50])
	switch b[45] {
	case compNone:
		if plain != pb.Length {
			return pb, fmt.Errorf("%w: blob %s stored as it is has plaintext length %d, stored length %d", errPack, pb.ID.Short(), plain, pb.Length)
		}
	case compZstd:
		if plain == 0 || plain > blobLimit(pb.Type) {
			return pb, fmt.Errorf("%w: %s blob %s has plaintext length %d (at most %d)", errPack, pb.Type, pb.ID.Short(), plain, blobLimit(pb.Type))
		}
		pb.Zstd, pb.Plain = true, plain
	default:
		return pb, fmt.Errorf("%w: unknown compression %d", errPack, b[45])
	}
	return pb, nil
}

// ParsePackTrailer reads the blob list from the end of a pack's plaintext
// and checks that the blobs tile the pack's data area exactly.
func ParsePackTrailer(plain []byte) ([]PackBlob, error) {
	if len(plain) < 12 {
		return nil, fmt.Errorf("%w: no trailer", errPack)
	}
	var version int
	switch string(plain[len(plain)-8:]) {
	case packMagic:
		version = 1
	case packMagicV2:
		version = 2
	default:
		return nil, fmt.Errorf("%w: no trailer", errPack)
	}
	es := uint64(entrySize(version))
	n := uint64(binary.BigEndian.Uint32(plain[len(plain)-12:]))
	size := n * es
	if size > uint64(len(plain)-12) {
		return nil, fmt.Errorf("%w: %d entries do not fit", errPack, n)
	}
	start := uint64(len(plain)-12) - size
	blobs := make([]PackBlob, 0, n)
	var off uint64
	for p := start; p < start+size; p += es {
		pb, err := parsePackBlob(plain[p:p+es], version)
		if err != nil {
			return nil, err
		}
		if pb.Offset != off {
			return nil, fmt.Errorf("%w: blob %s at offset %d, want %d", errPack, pb.ID.Short(), pb.Offset, off)
		}
		off += uint64(pb.Length)
		blobs = append(blobs, pb)
	}
	if off != start {
		return nil, fmt.Errorf("%w: blobs cover %d bytes, data area is %d", errPack, off, start)
	}
	if version == 2 && entryVersion(blobs) != 2 {
		return nil, fmt.Errorf("%w: version 2 entries without a compressed blob", errPack)
	}
	return blobs, nil
}
