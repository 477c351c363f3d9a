package repo_test

import (
	"bytes"
	"crypto/rand"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo"
)

// allPacks returns a copy of every pack r's index knows.
func allPacks(r *repo.Repository) []repo.IndexPack {
	var packs []repo.IndexPack
	for _, p := range r.Index().Packs() {
		packs = append(packs, *p)
	}
	return packs
}

// TestIndexReplaceUnderReads swaps whole indexes into a repository while
// readers read a file through it: the index as loaded, and a compacted
// one (the same packs through one index object's encoding). No read ever
// finds a blob missing or reads wrong bytes. Run with -race.
func TestIndexReplaceUnderReads(t *testing.T) {
	f := newBigFile(t, 12<<20)
	r := f.r
	loaded := allPacks(r)
	compacted, err := repo.UnmarshalIndex(repo.MarshalIndex(loaded))
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			rnd := mrand.New(mrand.NewPCG(uint64(w), 7))
			p := make([]byte, []int{4096, 300001, 1 << 20, 65536}[w])
			for !stop.Load() {
				off := rnd.Int64N(f.size())
				n, err := f.readAt(r, p, off)
				if err != nil || !bytes.Equal(p[:n], f.want[off:off+int64(n)]) {
					t.Errorf("read of %d at %d while the index was swapped: %v, or wrong bytes", len(p), off, err)
					stop.Store(true)
					return
				}
				reads.Add(1)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	swaps := 0
	for ; !stop.Load() && (reads.Load() < 2000 || swaps < 2000) && time.Now().Before(deadline); swaps++ {
		if swaps%2 == 0 {
			r.Index().Replace(compacted, nil)
		} else {
			r.Index().Replace(loaded, nil)
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d swaps during %d reads", swaps, reads.Load())
	if reads.Load() == 0 || swaps == 0 {
		t.Fatalf("%d reads, %d swaps: nothing ran concurrently", reads.Load(), swaps)
	}
}

// TestIndexDrop: a dropped pack's blobs are no longer found, except those
// another pack also holds, which are found there; the other packs' blobs
// still read.
func TestIndexDrop(t *testing.T) {
	// 40 MiB: a pack is sealed once it holds PackSize (16 MiB) or more,
	// so 20 MiB of chunks could all go to one pack, leaving none to read
	// once it is dropped (a flake in CI); 40 MiB needs two data packs.
	f := newBigFile(t, 40<<20)
	r := f.r
	packs := allPacks(r)
	if len(packs) < 2 {
		t.Fatalf("the file lies in %d packs, want several", len(packs))
	}
	var first repo.IndexPack // the pack of the file's first chunk
	for _, p := range packs {
		for _, b := range p.Blobs {
			if b.ID == f.chunks[0].ID {
				first = p
			}
		}
	}
	// A twin of that pack under another id, which the store does not
	// hold, placed first: the index finds the first chunk there.
	twin := first
	rand.Read(twin.ID[:])
	r.Index().Replace(append([]repo.IndexPack{twin}, packs...), nil)
	p := make([]byte, f.chunks[0].Length)
	if _, err := r.ReadChunksAt(t.Context(), f.chunks[:1], p, 0, 0); err == nil {
		t.Fatal("the first chunk read from a pack the store does not hold")
	}

	r.Index().Drop(twin.ID)
	if n, err := r.ReadChunksAt(t.Context(), f.chunks[:1], p, 0, 0); err != nil || !bytes.Equal(p[:n], f.want[:len(p)]) {
		t.Fatalf("the first chunk after its twin pack was dropped: %v, or wrong bytes", err)
	}

	r.Index().Drop(first.ID)
	if r.Index().Has(repo.BlobData, f.chunks[0].ID) {
		t.Error("a blob of a dropped pack is still in the index")
	}
	if _, err := r.ReadChunksAt(t.Context(), f.chunks[:1], p, 0, 0); err == nil || !strings.Contains(err.Error(), "not in the index") {
		t.Errorf("reading a blob of a dropped pack: %v, want not in the index", err)
	}
	for _, pk := range r.Index().Packs() {
		if pk.ID == first.ID || pk.ID == twin.ID {
			t.Errorf("dropped pack %s is still listed", pk.ID)
		}
	}
	// The chunks of the other packs still read.
	var pos int64
	read := 0
	for i, c := range f.chunks {
		if r.Index().Has(repo.BlobData, c.ID) {
			q := make([]byte, c.Length)
			if n, err := r.ReadChunksAt(t.Context(), f.chunks[i:i+1], q, 0, 0); err != nil || !bytes.Equal(q[:n], f.want[pos:pos+int64(c.Length)]) {
				t.Fatalf("chunk %d of a pack not dropped: %v, or wrong bytes", i, err)
			}
			read++
		}
		pos += int64(c.Length)
	}
	if read == 0 {
		t.Error("no chunk left in the index to read")
	}
}
