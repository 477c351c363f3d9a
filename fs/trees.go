package fs

import (
	"sync"

	"github.com/snapcrypt/snapcrypt/repo"
)

// treeCacheBytes bounds the trees the mount holds for lookups.
const treeCacheBytes = 16 << 20

// treeCache holds the directory trees used most recently, so that lookups
// in a large directory (which the repository's cache may not keep, for its
// size) do not decode it again each time. It always keeps the most recent
// tree, however large; the others up to the byte bound.
type treeCache struct {
	mu    sync.Mutex
	max   int64
	cost  int64
	order []treeCached // most recent last; few entries, so a slice does
}

type treeCached struct {
	id   repo.BlobID
	t    *repo.Tree
	cost int64
}

const treeCacheEntries = 64

func newTreeCache(max int64) *treeCache { return &treeCache{max: max} }

func (c *treeCache) get(id repo.BlobID) *repo.Tree {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.order) - 1; i >= 0; i-- {
		if c.order[i].id == id {
			e := c.order[i]
			if i != len(c.order)-1 {
				copy(c.order[i:], c.order[i+1:])
				c.order[len(c.order)-1] = e
			}
			return e.t
		}
	}
	return nil
}

func (c *treeCache) add(id repo.BlobID, t *repo.Tree) {
	cost := treeCost(t)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.order {
		if e.id == id {
			return
		}
	}
	c.order = append(c.order, treeCached{id, t, cost})
	c.cost += cost
	for len(c.order) > 1 && (c.cost > c.max || len(c.order) > treeCacheEntries) {
		c.cost -= c.order[0].cost
		c.order[0] = treeCached{}
		c.order = c.order[1:]
	}
}

// treeCost estimates the memory a decoded tree holds.
func treeCost(t *repo.Tree) int64 {
	var n int64 = 64
	for i := range t.Nodes {
		nd := &t.Nodes[i]
		n += 200 + int64(len(nd.Name)+len(nd.Target)) + 40*int64(len(nd.Chunks))
	}
	return n
}
