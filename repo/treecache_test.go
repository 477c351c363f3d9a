package repo

import "testing"

// TestTreeCacheKeepsNewest: the tree cache keeps the tree added last
// however large (the lookups of a large directory decode it once), and
// gives it up for the next one; within the bound it holds several.
func TestTreeCacheKeepsNewest(t *testing.T) {
	small := &Tree{Nodes: make([]Node, 1)}
	large := &Tree{Nodes: make([]Node, 100)}
	c := newTreeCache(3 * treeCost(small))
	a, b, big := BlobID{1}, BlobID{2}, BlobID{3}
	c.add(a, small, treeCost(small))
	c.add(b, small, treeCost(small))
	if _, ok := c.get(a); !ok {
		t.Error("a small tree within the bound was evicted")
	}
	c.add(big, large, treeCost(large))
	if got, ok := c.get(big); !ok || got != large {
		t.Fatal("the tree added last, larger than the bound, is not kept")
	}
	if st := c.stats(); st.Entries != 1 {
		t.Errorf("%d trees kept beside one larger than the bound, want none", st.Entries-1)
	}
	c.add(a, small, treeCost(small))
	if _, ok := c.get(big); ok {
		t.Error("the large tree is kept beyond the bound after another was added")
	}
	if _, ok := c.get(a); !ok {
		t.Error("the tree added last is not kept")
	}
}
