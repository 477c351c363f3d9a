// Package repotest builds repositories that snapcrypt itself never writes
// (trees nested deeper than repo.MaxTreeDepth, tree blobs stored under an
// id that is not their content's), as an attacker who can write to the
// storage and holds a data key could, for tests of how every reader treats
// them. It writes objects in the format of docs/format.md with nothing but
// the exported API.
package repotest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/crypto/blake2b"

	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/object"
)

// Crafter collects tree blobs and writes them, with a snapshot that names
// one of them as its root, into an open repository's store.
type Crafter struct {
	r     *repo.Repository
	idKey []byte
	blobs []repo.PackBlob
	data  []byte
}

// New returns a Crafter for r.
func New(ctx context.Context, r *repo.Repository) (*Crafter, error) {
	k, err := r.Keys().IDKey(ctx)
	if err != nil {
		return nil, err
	}
	return &Crafter{r: r, idKey: k}, nil
}

// ID is the id snapcrypt gives a tree blob of plaintext b.
func (c *Crafter) ID(b []byte) repo.BlobID {
	h, err := blake2b.New256(c.idKey)
	if err != nil {
		panic(err)
	}
	h.Write([]byte{byte(repo.BlobTree)})
	h.Write(b)
	var id repo.BlobID
	h.Sum(id[:0])
	return id
}

// Tree adds t as a tree blob under its content's id and returns the id.
func (c *Crafter) Tree(t *repo.Tree) repo.BlobID {
	b := t.Marshal()
	id := c.ID(b)
	c.add(id, b)
	return id
}

// TreeAs adds t as a tree blob under the given id, whatever its content.
func (c *Crafter) TreeAs(id repo.BlobID, t *repo.Tree) {
	c.add(id, t.Marshal())
}

func (c *Crafter) add(id repo.BlobID, b []byte) {
	c.blobs = append(c.blobs, repo.PackBlob{Type: repo.BlobTree, ID: id, Offset: uint64(len(c.data)), Length: uint32(len(b))})
	c.data = append(c.data, b...)
}

// Dir is a directory entry named name for tree id.
func Dir(name string, id repo.BlobID) repo.Node {
	return repo.Node{Name: []byte(name), Type: repo.TypeDir, Mode: 0o755, Links: 2, Subtree: id}
}

// Chain adds depth+1 trees, each holding only a directory "d" of the next,
// the last one empty, and returns the first: a tree whose deepest tree is
// at depth levels below it.
func (c *Crafter) Chain(depth int) repo.BlobID {
	id := c.Tree(&repo.Tree{})
	for range depth {
		id = c.Tree(&repo.Tree{Nodes: []repo.Node{Dir("d", id)}})
	}
	return id
}

// Snapshot writes the trees added so far as one pack with its index, then
// a snapshot named name whose root tree is root, and returns its id.
func (c *Crafter) Snapshot(ctx context.Context, name string, root repo.BlobID) (repo.ObjectID, error) {
	dekID, dek, err := c.r.Keys().NewDEK(ctx)
	if err != nil {
		return repo.ObjectID{}, err
	}
	plain := append([]byte(nil), c.data...)
	for _, b := range c.blobs {
		plain = append(plain, byte(b.Type))
		plain = append(plain, b.ID[:]...)
		plain = binary.BigEndian.AppendUint64(plain, b.Offset)
		plain = binary.BigEndian.AppendUint32(plain, b.Length)
	}
	plain = binary.BigEndian.AppendUint32(plain, uint32(len(c.blobs)))
	plain = append(plain, "SCPACK01"...)
	packID := randomID()
	ps := packID.String()
	h, err := c.seal(ctx, "data/"+ps[:2]+"/"+ps, object.KindPack, dekID, dek, plain)
	if err != nil {
		return repo.ObjectID{}, err
	}
	idx := repo.MarshalIndex([]repo.IndexPack{{ID: packID, PlainSize: uint64(len(plain)), Header: h.Marshal(), Blobs: c.blobs}})
	if _, err := c.seal(ctx, "index/"+randomID().String(), object.KindIndex, dekID, dek, idx); err != nil {
		return repo.ObjectID{}, err
	}
	snapID := randomID()
	m, err := repo.MarshalSnapshot(&repo.Snapshot{Version: 1, Time: time.Now().UTC(), Host: "crafted",
		Paths: []string{"/crafted"}, Name: name, Tree: root})
	if err != nil {
		return repo.ObjectID{}, err
	}
	if _, err := c.seal(ctx, "snapshots/"+snapID.String(), object.KindSnapshot, dekID, dek, m); err != nil {
		return repo.ObjectID{}, err
	}
	c.blobs, c.data = nil, nil
	return snapID, nil
}

func (c *Crafter) seal(ctx context.Context, name string, kind object.Kind, dekID [16]byte, dek, plain []byte) (object.Header, error) {
	h, err := object.NewHeader(kind, dekID)
	if err != nil {
		return h, err
	}
	ct, err := object.Seal(dek, h, name, plain)
	if err != nil {
		return h, err
	}
	if err := c.r.Store().Create(ctx, name, ct); err != nil {
		return h, fmt.Errorf("writing %s: %w", name, err)
	}
	return h, nil
}

func randomID() repo.ObjectID {
	var id repo.ObjectID
	rand.Read(id[:])
	return id
}
