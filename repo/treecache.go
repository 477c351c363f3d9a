package repo

import (
	"context"
)

// newTreeCache returns the cache of decoded trees: the process's one
// (the mount looks trees up here too), bounded by max bytes as treeCost
// estimates them. It always keeps the tree loaded last, however large, so
// that the lookups in one large directory (a lookup per entry, as `ls -l`
// makes) decode its tree once.
func newTreeCache(max int64) *lru[BlobID, *Tree] {
	c := newLRU[BlobID, *Tree](max)
	c.keepNewest = true
	return c
}

// treeCost estimates the memory a decoded tree holds.
func treeCost(t *Tree) int64 {
	var n int64 = 64
	for i := range t.Nodes {
		nd := &t.Nodes[i]
		n += 200 + int64(len(nd.Name)+len(nd.Target)) + 40*int64(len(nd.Chunks))
	}
	return n
}

// LoadTree reads and decodes a tree blob; trees are cached.
func (r *Repository) LoadTree(ctx context.Context, id BlobID) (*Tree, error) {
	if t, ok := r.trees.get(id); ok {
		return t, nil
	}
	t, _, err := r.readTree(ctx, id) // size-checked, id-verified, decoded
	if err != nil {
		return nil, err
	}
	r.trees.add(id, t, treeCost(t))
	return t, nil
}
