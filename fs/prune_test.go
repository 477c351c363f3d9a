package fs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// TestReadsThroughPrune: another process forgets a snapshot and prunes,
// repacking the packs that hold the data and trees of the snapshot left,
// while a reader reads the snapshot left through the mount again and
// again (kernel caches dropped each round, a small segment cache). The
// mount does not refresh on its own during the test, so its index still
// names the deleted packs: every read, and a first read of files and a
// directory not read before, succeeds with the right bytes (the read
// path reloads the index), and status counts no error.
func TestReadsThroughPrune(t *testing.T) {
	f := newFixture(t)
	want := map[string][]byte{}
	for i := range 6 {
		rel := fmt.Sprintf("stay/f%d", i)
		want[rel] = randBytes(200<<10 + i)
		f.write(rel, want[rel])
	}
	late := map[string][]byte{"late/a": randBytes(300 << 10), "late/b": randBytes(5000)}
	for rel, b := range late {
		f.write(rel, b)
	}
	f.write("extra", randBytes(1<<20))
	one := f.snapshot("one")
	if err := os.Remove(filepath.Join(f.src, "extra")); err != nil {
		t.Fatal(err)
	}
	f.snapshot("keep")
	f.mopt = repo.Options{CacheBytes: 256 << 10}
	f.mount(Options{Refresh: time.Hour})

	var stop atomic.Bool
	var rounds atomic.Int64
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0) // as root
			for rel, b := range want {
				got, err := os.ReadFile(f.path("snapshots", "keep", rel))
				if err == nil && !bytes.Equal(got, b) {
					err = errors.New("other bytes")
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %v", rel, err))
					mu.Unlock()
				}
			}
			rounds.Add(1)
		}
	}()
	waitRounds := func(n int64, what string) {
		target := rounds.Load() + n
		eventually(t, 60*time.Second, what, func() bool { return rounds.Load() >= target })
	}
	waitRounds(1, "a first round of reads")

	known := f.mr.Index().Packs() // before the prune

	other, err := repo.Open(f.ctx, f.st, repo.Options{}, f.key) // another process
	if err != nil {
		t.Fatal(err)
	}
	if err := other.ForgetSnapshot(f.ctx, one.ID); err != nil {
		t.Fatal(err)
	}
	res, err := other.Prune(f.ctx, repo.PruneOptions{MaxUnused: 0, Skew: time.Millisecond, Poll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.RepackedPacks == 0 {
		t.Fatalf("the prune repacked nothing: %+v", res)
	}
	// The mount's own refresh does not run before the test ends: the
	// packs it knew and the prune deleted are what its reads find stale.
	stale := 0
	for _, p := range known {
		if _, err := f.st.Stat(f.ctx, "data/"+p.ID.String()[:2]+"/"+p.ID.String()); errors.Is(err, store.ErrNotExist) {
			stale++
		}
	}
	if stale == 0 {
		t.Fatal("the prune deleted no pack the mount knew: the test tests nothing")
	}
	waitRounds(2, "two rounds of reads after the prune")
	stop.Store(true)
	wg.Wait()
	for rel, b := range late {
		if got, err := os.ReadFile(f.path("snapshots", "keep", rel)); err != nil || !bytes.Equal(got, b) {
			t.Errorf("a first read of %s after the prune: %d bytes, %v", rel, len(got), err)
		}
	}
	for _, s := range failures {
		t.Errorf("a read during the prune failed: %s", s)
	}
	if st := f.status(); st.EIO != 0 || st.ReadErrors.Count != 0 {
		t.Errorf("status after the prune: %d EIO, read errors %+v", st.EIO, st.ReadErrors)
	}
	t.Logf("%d rounds of reads; the prune deleted %d packs the mount knew", rounds.Load(), stale)
}
