package repo

import (
	"context"
	"errors"
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

// LoadTree reads and decodes a tree blob; trees are cached. Concurrent
// calls for one tree that is not cached read and decode it once (the
// lookups of a large directory arrive together: each would otherwise
// decrypt the whole tree). A call whose context is done gets its error;
// the others, if the load they waited for failed only because its caller's
// context ended, load again.
func (r *Repository) LoadTree(ctx context.Context, id BlobID) (*Tree, error) {
	for {
		if t, ok := r.trees.get(id); ok {
			return t, nil
		}
		ch := r.treeLoads.DoChan(string(id[:]), func() (any, error) {
			t, _, err := r.readTree(ctx, id) // size-checked, id-verified, decoded
			if err != nil {
				return nil, err
			}
			r.trees.add(id, t, treeCost(t))
			return t, nil
		})
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case res := <-ch:
			if res.Err != nil && (errors.Is(res.Err, context.Canceled) || errors.Is(res.Err, context.DeadlineExceeded)) && ctx.Err() == nil {
				continue // another caller's context ended: load again
			}
			if res.Err != nil {
				return nil, res.Err
			}
			return res.Val.(*Tree), nil
		}
	}
}
