package repo

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/faults"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// findFile returns the first file named name below tree id (depth first).
func findFile(t *testing.T, r *Repository, id BlobID, name string) *Node {
	t.Helper()
	tr, err := r.LoadTree(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for i := range tr.Nodes {
		n := &tr.Nodes[i]
		if n.Type == TypeFile && string(n.Name) == name {
			return n
		}
		if n.Type == TypeDir {
			if f := findFile(t, r, n.Subtree, name); f != nil {
				return f
			}
		}
	}
	return nil
}

// TestReadAfterRepackReloadsIndex: a reader (a mount) loaded the index and
// a file's tree before a prune repacked the pack that holds the file's
// data and deleted it; the reader's index still names that pack. A burst
// of reads of the file succeeds, with the right bytes, after one reload of
// the index (two at most: a reload that began before a read failed is not
// trusted), and counts no read error. A blob of the forgotten snapshot
// stays unreadable, with an error that names it and says why it may be
// gone.
func TestReadAfterRepackReloadsIndex(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	f := newPruneFixture(t, st, 2)
	fst := faults.New(st)
	reader := reopen(t, fst, f.m)
	kept, gone := f.snaps[1], f.snaps[0]
	shared := findFile(t, reader, kept.Tree, "shared")
	own := findFile(t, reader, gone.Tree, "own0")
	if shared == nil || own == nil {
		t.Fatal("files not found in the snapshots")
	}
	before, _ := reader.index.lookup(BlobData, shared.Chunks[0].ID)

	f.forget(0)
	o := testPrune()
	o.MaxUnused = 0
	res, err := f.r.Prune(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.RepackedPacks == 0 {
		t.Fatalf("the prune repacked nothing: %+v", res)
	}
	if _, err := st.Stat(ctx, packName(before.pack.ID)); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("the pack the reader knows the shared file in is still there (%v): the test tests nothing", err)
	}

	// The reloads are slow enough for the burst's reads to meet them.
	fst.Add(faults.Rule{Ops: []faults.Op{faults.List}, Prefix: "index/", Latency: 50 * time.Millisecond})
	lists := fst.Calls(faults.List)
	want := f.trees[kept.ID]["shared"]
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, shared.Size)
			n, err := reader.ReadChunksAt(ctx, shared.Chunks, p, 0, 0)
			if err == nil && (n != len(p) || !bytes.Equal(p, want)) {
				err = errors.New("other bytes")
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("read %d of the snapshot left: %v", i, err)
		}
	}
	if n := fst.Calls(faults.List) - lists; n < 1 || n > 2 {
		t.Errorf("16 reads reloaded the index %d times, want 1 or 2", n)
	}
	if n, recent := reader.ReadErrors(); n != 0 {
		t.Errorf("reads that succeeded count as read errors: %d %q", n, recent)
	}

	// The forgotten snapshot's own file.
	p := make([]byte, own.Size)
	_, err = reader.ReadChunksAt(ctx, own.Chunks, p, 0, 0)
	if err == nil || !strings.Contains(err.Error(), own.Chunks[0].ID.Short()) || !strings.Contains(err.Error(), "may have been forgotten") {
		t.Errorf("reading a blob of the forgotten snapshot: %v", err)
	}
	_, err = reader.ReadBlob(ctx, BlobData, own.Chunks[0].ID)
	if err == nil || !strings.Contains(err.Error(), "may have been forgotten") {
		t.Errorf("ReadBlob of a blob of the forgotten snapshot: %v", err)
	}
}

// TestReadTreeReloadsIndex: a reader whose index is older than a snapshot
// (taken by another process since it loaded the index) reads the
// snapshot's trees after one reload, rather than failing on a tree that
// is not in its index.
func TestReadTreeReloadsIndex(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	f := newPruneFixture(t, st, 1)
	reader := reopen(t, st, f.m)
	s := f.snapshot("later", randBytes(t, 1000))
	if reader.index.Has(BlobTree, s.Tree) {
		t.Fatal("the reader knows the new tree already: the test tests nothing")
	}
	if _, err := reader.LoadTree(ctx, s.Tree); err != nil {
		t.Fatalf("loading the root tree of a snapshot newer than the index: %v", err)
	}
	if findFile(t, reader, s.Tree, "later") == nil {
		t.Error("the new snapshot's file is not found")
	}
}
