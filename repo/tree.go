package repo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/snapcrypt/snapcrypt/repo/object"
)

// NodeType is the kind of a tree entry.
type NodeType uint8

// Node types as stored in trees.
const (
	TypeFile    NodeType = 1
	TypeDir     NodeType = 2
	TypeSymlink NodeType = 3
)

func (t NodeType) String() string {
	switch t {
	case TypeFile:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Chunk is one content-defined chunk of a file: the blob holding it and its
// plaintext length.
type Chunk struct {
	ID     BlobID
	Length uint32
}

// Node is one entry of a directory tree.
type Node struct {
	Name   []byte // one path component, any bytes but "/" and NUL
	Type   NodeType
	Mode   uint32 // permission and set-id/sticky bits (st_mode & 07777)
	UID    uint32
	GID    uint32
	MTime  int64 // nanoseconds since the epoch
	CTime  int64 // nanoseconds since the epoch; used to detect changes
	Inode  uint64
	Dev    uint64
	Links  uint32 // link count; >1 for hard-linked regular files
	Size   uint64 // file size in bytes; 0 for directories
	Target []byte // symlink target
	// Subtree is the tree blob of a directory.
	Subtree BlobID
	// Chunks are the content chunks of a regular file, in order.
	Chunks []Chunk
}

// Tree is one directory's entries, sorted by name bytes.
type Tree struct {
	Nodes []Node
}

// Find returns the entry named name, or nil.
func (t *Tree) Find(name []byte) *Node {
	i := sort.Search(len(t.Nodes), func(i int) bool { return bytes.Compare(t.Nodes[i].Name, name) >= 0 })
	if i < len(t.Nodes) && bytes.Equal(t.Nodes[i].Name, name) {
		return &t.Nodes[i]
	}
	return nil
}

const treeVersion = 1

// maxTreeEntries bounds the entry count a decoder accepts.
const maxTreeEntries = 1 << 24

// Marshal encodes the tree in the format of docs/format.md. Nodes must be
// sorted by name and names unique.
func (t *Tree) Marshal() []byte {
	var b []byte
	b = append(b, treeVersion)
	b = binary.AppendUvarint(b, uint64(len(t.Nodes)))
	for i := range t.Nodes {
		n := &t.Nodes[i]
		b = binary.AppendUvarint(b, uint64(len(n.Name)))
		b = append(b, n.Name...)
		b = append(b, byte(n.Type))
		b = binary.AppendUvarint(b, uint64(n.Mode))
		b = binary.AppendUvarint(b, uint64(n.UID))
		b = binary.AppendUvarint(b, uint64(n.GID))
		b = binary.AppendVarint(b, n.MTime)
		b = binary.AppendVarint(b, n.CTime)
		b = binary.AppendUvarint(b, n.Inode)
		b = binary.AppendUvarint(b, n.Dev)
		b = binary.AppendUvarint(b, uint64(n.Links))
		switch n.Type {
		case TypeFile:
			b = binary.AppendUvarint(b, n.Size)
			b = binary.AppendUvarint(b, uint64(len(n.Chunks)))
			for _, c := range n.Chunks {
				b = append(b, c.ID[:]...)
				b = binary.AppendUvarint(b, uint64(c.Length))
			}
		case TypeDir:
			b = append(b, n.Subtree[:]...)
		case TypeSymlink:
			b = binary.AppendUvarint(b, uint64(len(n.Target)))
			b = append(b, n.Target...)
		}
	}
	return b
}

var errTree = errors.New("malformed tree")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errTree
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) u32() uint32 {
	v := d.uvarint()
	if v > 1<<32-1 {
		d.fail()
		return 0
	}
	return uint32(v)
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	v := d.bytes(1)
	if v == nil {
		return 0
	}
	return v[0]
}

// UnmarshalTree decodes a tree blob. It checks the structure (version,
// lengths, types, sorted unique names, sizes that match the chunks) and
// rejects trailing bytes. The returned tree may share memory with b.
func UnmarshalTree(b []byte) (*Tree, error) {
	d := &decoder{b: b}
	if d.byte() != treeVersion {
		return nil, fmt.Errorf("%w: unknown version", errTree)
	}
	count := d.uvarint()
	if count > maxTreeEntries || count > uint64(len(d.b)) {
		return nil, fmt.Errorf("%w: entry count %d", errTree, count)
	}
	// The slices grow as entries parse: a count alone, however large,
	// allocates nothing.
	t := &Tree{}
	for i := 0; uint64(i) < count; i++ {
		t.Nodes = append(t.Nodes, Node{})
		n := &t.Nodes[i]
		n.Name = d.bytes(d.uvarint())
		if d.err == nil && (len(n.Name) == 0 || bytes.IndexByte(n.Name, '/') >= 0 || bytes.IndexByte(n.Name, 0) >= 0 ||
			bytes.Equal(n.Name, []byte(".")) || bytes.Equal(n.Name, []byte(".."))) {
			return nil, fmt.Errorf("%w: bad entry name", errTree)
		}
		if i > 0 && d.err == nil && bytes.Compare(t.Nodes[i-1].Name, n.Name) >= 0 {
			return nil, fmt.Errorf("%w: entries not sorted", errTree)
		}
		n.Type = NodeType(d.byte())
		n.Mode = d.u32()
		if n.Mode > 07777 {
			d.fail()
		}
		n.UID = d.u32()
		n.GID = d.u32()
		n.MTime = d.varint()
		n.CTime = d.varint()
		n.Inode = d.uvarint()
		n.Dev = d.uvarint()
		n.Links = d.u32()
		switch n.Type {
		case TypeFile:
			n.Size = d.uvarint()
			nc := d.uvarint()
			if nc > uint64(len(d.b))/33 {
				d.fail()
				break
			}
			var sum uint64
			for j := uint64(0); j < nc && d.err == nil; j++ {
				var c Chunk
				copy(c.ID[:], d.bytes(32))
				c.Length = d.u32()
				sum += uint64(c.Length)
				n.Chunks = append(n.Chunks, c)
			}
			if d.err == nil && sum != n.Size {
				return nil, fmt.Errorf("%w: file size %d does not match its chunks (%d)", errTree, n.Size, sum)
			}
		case TypeDir:
			copy(n.Subtree[:], d.bytes(32))
		case TypeSymlink:
			n.Target = d.bytes(d.uvarint())
		default:
			d.fail()
		}
		if d.err != nil {
			return nil, d.err
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errTree, len(d.b))
	}
	return t, nil
}

// readTree reads tree blob id, checks that its plaintext hashes to id with
// the repository's content-id key (as the writer computed it) and decodes
// it. It returns the tree and the blob's size. A blob larger than
// MaxTreeSize is refused before it is read; a blob whose content does not
// match its id, or that does not parse, is object.ErrCorrupt. A tree the
// index does not know makes it reload the index once (retryStale).
func (r *Repository) readTree(ctx context.Context, id BlobID) (*Tree, int64, error) {
	loc, err := retryStale(r, ctx, func() (blobLoc, error) {
		l, ok := r.index.lookup(BlobTree, id)
		if !ok {
			return l, r.missingBlob(BlobTree, id)
		}
		return l, nil
	})
	if err != nil {
		return nil, 0, err
	}
	if loc.length > MaxTreeSize || loc.plain > MaxTreeSize {
		return nil, 0, fmt.Errorf("tree %s is %w: %d bytes, more than the %d a tree may hold", id.Short(), object.ErrCorrupt, max(loc.length, loc.plain), MaxTreeSize)
	}
	b, err := r.ReadBlob(ctx, BlobTree, id)
	if err != nil {
		return nil, 0, err
	}
	if r.hash.id(BlobTree, b) != id {
		return nil, 0, fmt.Errorf("tree %s is %w: its content does not match its id", id.Short(), object.ErrCorrupt)
	}
	t, err := UnmarshalTree(b)
	if err != nil {
		return nil, 0, fmt.Errorf("tree %s is %w: %v", id.Short(), object.ErrCorrupt, err)
	}
	return t, int64(len(b)), nil
}
