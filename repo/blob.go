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
	Length uint32
}

const packBlobSize = 1 + 32 + 8 + 4

var errPack = errors.New("malformed pack trailer")

// appendPackTrailer appends the self-describing trailer that ends every
// pack's plaintext: the blob entries, their count (u32) and the magic.
func appendPackTrailer(b []byte, blobs []PackBlob) []byte {
	for _, pb := range blobs {
		b = appendPackBlob(b, pb)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(blobs)))
	return append(b, packMagic...)
}

const packMagic = "SCPACK01"

func appendPackBlob(b []byte, pb PackBlob) []byte {
	b = append(b, byte(pb.Type))
	b = append(b, pb.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, pb.Offset)
	return binary.BigEndian.AppendUint32(b, pb.Length)
}

func parsePackBlob(b []byte) (PackBlob, error) {
	var pb PackBlob
	pb.Type = BlobType(b[0])
	if pb.Type != BlobData && pb.Type != BlobTree {
		return pb, fmt.Errorf("%w: unknown blob type %d", errPack, b[0])
	}
	copy(pb.ID[:], b[1:33])
	pb.Offset = binary.BigEndian.Uint64(b[33:41])
	pb.Length = binary.BigEndian.Uint32(b[41:45])
	return pb, nil
}

// ParsePackTrailer reads the blob list from the end of a pack's plaintext
// and checks that the blobs tile the pack's data area exactly.
func ParsePackTrailer(plain []byte) ([]PackBlob, error) {
	if len(plain) < 12 || string(plain[len(plain)-8:]) != packMagic {
		return nil, fmt.Errorf("%w: no trailer", errPack)
	}
	n := uint64(binary.BigEndian.Uint32(plain[len(plain)-12:]))
	size := n * packBlobSize
	if size > uint64(len(plain)-12) {
		return nil, fmt.Errorf("%w: %d entries do not fit", errPack, n)
	}
	start := uint64(len(plain)-12) - size
	blobs := make([]PackBlob, 0, n)
	var off uint64
	for p := start; p < start+size; p += packBlobSize {
		pb, err := parsePackBlob(plain[p : p+packBlobSize])
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
	return blobs, nil
}
