package repo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/store/faults"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

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

// TestLoadTreeOnce: concurrent LoadTrees of one uncached tree read its pack
// once, not once per caller (the lookups of a large directory arrive
// together).
func TestLoadTreeOnce(t *testing.T) {
	ctx := context.Background()
	mst := mem.New()
	w, m := newTestRepo(t, mst)
	src := t.TempDir()
	for i := range 50 {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%03d", i)), []byte{byte(i)}, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res, err := w.TakeSnapshot(ctx, []string{src}, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fst := faults.New(mst)
	fst.Add(faults.Rule{Latency: 50 * time.Millisecond}) // every call waits: loads overlap
	r, err := Open(ctx, fst, Options{}, m)
	if err != nil {
		t.Fatal(err)
	}
	reads := func() int { return fst.Calls(faults.Get) + fst.Calls(faults.GetRange) + fst.Calls(faults.ReadRange) }
	before := reads()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			if _, err := r.LoadTree(ctx, res.Snapshot.Tree); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := reads() - before; n > 2 {
		t.Errorf("16 concurrent loads of one tree made %d reads, want 1 (or 2: the pack's header)", n)
	}
}
