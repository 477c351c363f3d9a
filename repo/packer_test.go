package repo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// newTestRepo makes a repository in st under a new key file.
func newTestRepo(t testing.TB, st store.Store) (*Repository, *keys.Material) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := keys.GenerateKeyFile(p); err != nil {
		t.Fatal(err)
	}
	spec, err := keys.ParseSpec("file:" + p)
	if err != nil {
		t.Fatal(err)
	}
	m, err := spec.Load()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Init(context.Background(), st, m)
	if err != nil {
		t.Fatal(err)
	}
	return r, m
}

// TestWriterStoresEachBlobOnce has many workers queue the same blobs in
// different orders while small packs are sealed and indexed all the time:
// every blob must end up in exactly one pack, and add must call exactly one
// of the racing calls new.
func TestWriterStoresEachBlobOnce(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, mem.New())
	const blobs, workers = 300, 12
	w := newWriter(r, r.comp)
	w.packSize = 3000 // a pack every few blobs, so seals race with adds
	data := make([][]byte, blobs)
	ids := make([]BlobID, blobs)
	for i := range data {
		data[i] = []byte(fmt.Sprintf("blob %d %0900d", i, i))
		ids[i] = r.hash.id(BlobData, data[i])
	}
	var added atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			order := rand.Perm(blobs)
			for _, i := range order {
				isNew, err := w.add(ctx, BlobData, ids[i], data[i])
				if err != nil {
					errs <- err
					return
				}
				if isNew {
					added.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := w.flush(ctx); err != nil {
		t.Fatal(err)
	}
	stored := map[BlobID]int{}
	for _, pk := range r.index.Packs() {
		for _, b := range pk.Blobs {
			stored[b.ID]++
		}
	}
	for _, id := range ids {
		if stored[id] != 1 {
			t.Errorf("blob %s is stored %d times, want once", id, stored[id])
		}
	}
	if n := added.Load(); n != blobs {
		t.Errorf("add reported %d new blobs, want %d", n, blobs)
	}
}
