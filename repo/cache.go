package repo

import (
	"container/list"
	"sync"
)

// lru is a size-bounded least-recently-used cache safe for concurrent use.
// Each entry has a cost; the total cost never exceeds the bound (an entry
// larger than the bound is not kept), except in a cache that keeps its
// newest entry (keepNewest), which holds the entry added last however
// large it is, and the others within the bound. A cache with a drop
// function hands it each value it lets go of (evicted, replaced, or too
// large to keep; not one that take returns), under its lock: a value the
// cache held is then no longer used by anyone if every reader of it reads
// under the lock (use) or takes it.
type lru[K comparable, V any] struct {
	mu         sync.Mutex
	max        int64
	keepNewest bool
	drop       func(V)
	cost       int64
	ll         *list.List
	m          map[K]*list.Element
	hits       uint64
	misses     uint64
}

type lruEntry[K comparable, V any] struct {
	k    K
	v    V
	cost int64
}

func newLRU[K comparable, V any](max int64) *lru[K, V] {
	return &lru[K, V]{max: max, ll: list.New(), m: map[K]*list.Element{}}
}

func (c *lru[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.ll.MoveToFront(e)
		c.hits++
		return e.Value.(*lruEntry[K, V]).v, true
	}
	c.misses++
	var zero V
	return zero, false
}

// contains tells whether k is in the cache, without counting a hit or a
// miss or making k recent.
func (c *lru[K, V]) contains(k K) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.m[k]
	return ok
}

// use calls fn with the entry of k, holding the cache's lock, and tells
// whether there was one: fn may read a value that a take may hand to be
// overwritten as soon as fn returns.
func (c *lru[K, V]) use(k K, fn func(V)) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.ll.MoveToFront(e)
		c.hits++
		fn(e.Value.(*lruEntry[K, V]).v)
		return true
	}
	c.misses++
	return false
}

// take returns the entry of k and removes it from the cache. It counts a
// hit when it finds k and no miss otherwise: a miss is the business of the
// lookup that follows it.
func (c *lru[K, V]) take(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		ent := e.Value.(*lruEntry[K, V])
		c.ll.Remove(e)
		delete(c.m, k)
		c.cost -= ent.cost
		c.hits++
		return ent.v, true
	}
	var zero V
	return zero, false
}

func (c *lru[K, V]) add(k K, v V, cost int64) {
	if cost > c.max && !c.keepNewest {
		if c.drop != nil {
			c.drop(v)
		}
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		old := e.Value.(*lruEntry[K, V])
		if c.drop != nil {
			c.drop(old.v)
		}
		c.cost += cost - old.cost
		old.v, old.cost = v, cost
		c.ll.MoveToFront(e)
	} else {
		c.m[k] = c.ll.PushFront(&lruEntry[K, V]{k, v, cost})
		c.cost += cost
	}
	for c.cost > c.max && c.ll.Len() > 1 {
		e := c.ll.Back()
		ent := e.Value.(*lruEntry[K, V])
		c.ll.Remove(e)
		delete(c.m, ent.k)
		c.cost -= ent.cost
		if c.drop != nil {
			c.drop(ent.v)
		}
	}
}

// CacheStats are the figures of one cache.
type CacheStats struct {
	Entries int    `json:"entries"`
	Bytes   int64  `json:"bytes"`
	Limit   int64  `json:"limit"`
	Hits    uint64 `json:"hits"`
	Misses  uint64 `json:"misses"`
}

func (c *lru[K, V]) stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Entries: len(c.m), Bytes: c.cost, Limit: c.max, Hits: c.hits, Misses: c.misses}
}
