package repo_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
)

// smallTree is a repository in a local store holding a snapshot of dirs
// directories of per files of 1.5 KiB each, and the files' chunks in the
// order a walk of the snapshot meets them (name order).
type smallTree struct {
	st    *local.Store
	r     *repo.Repository
	files [][]repo.Chunk
	want  [][]byte // the files' contents
	bytes int64    // of all the files
}

func newSmallTree(t testing.TB, dirs, per int, opts repo.Options) *smallTree {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	for d := range dirs {
		p := filepath.Join(src, fmt.Sprintf("d%03d", d))
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range per {
			writeRandom(t, filepath.Join(p, fmt.Sprintf("f%04d", i)), 1536)
		}
	}
	st, err := local.Init(filepath.Join(dir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	key := testKey(t)
	w, err := repo.Init(ctx, st, key)
	if err != nil {
		t.Fatal(err)
	}
	res, err := w.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, st, opts, key)
	if err != nil {
		t.Fatal(err)
	}
	s := &smallTree{st: st, r: r}
	root, err := r.LoadTree(ctx, res.Snapshot.Tree)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range root.Nodes {
		sub, err := r.LoadTree(ctx, d.Subtree)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range sub.Nodes {
			b, err := os.ReadFile(filepath.Join(src, string(d.Name), string(f.Name)))
			if err != nil {
				t.Fatal(err)
			}
			s.files = append(s.files, f.Chunks)
			s.want = append(s.want, b)
			s.bytes += int64(f.Size)
		}
	}
	return s
}

// read reads files [from, to) of the walk whole, as the mount does when a
// small file is opened (fs's storeSmall), and checks their contents.
func (s *smallTree) read(t testing.TB, from, to int) {
	t.Helper()
	if err := s.check(from, to, 1); err != nil {
		t.Fatal(err)
	}
}

// check reads every step-th file of [from, to) (backwards for a negative
// step, from to-1) and compares it with the source.
func (s *smallTree) check(from, to, step int) error {
	p := make([]byte, 1536)
	i := from
	if step < 0 {
		i = to - 1
	}
	for ; i >= from && i < to; i += step {
		n, err := s.r.ReadChunksAt(context.Background(), s.files[i], p, 0, 0)
		if err != nil || !bytes.Equal(p[:n], s.want[i]) {
			return fmt.Errorf("file %d of the walk: read %d bytes, %v, or other bytes", i, n, err)
		}
	}
	return nil
}

// TestSmallFilesWalkSegments: a walk over small files packed end to end
// decrypts each segment of their packs once, and the segment cache's
// figures say so: a miss is a segment decrypted, a hit a segment copied
// from the cache (they used to count every look into either part of the
// cache, about one "miss" per file for such a walk).
func TestSmallFilesWalkSegments(t *testing.T) {
	s := newSmallTree(t, 4, 500, repo.Options{})
	before := s.r.CacheStats()["segments"]
	s.read(t, 0, len(s.files))
	st := s.r.CacheStats()["segments"]
	misses, hits := st.Misses-before.Misses, st.Hits-before.Hits
	// The files' bytes span this many segments, one more per pack they
	// are in (each pack's first file starts a segment).
	segs := (s.bytes + object.SegmentSize - 1) / object.SegmentSize
	packs := int64(len(s.r.Index().Packs()))
	t.Logf("%d files of %d bytes in %d segments: %d segments decrypted, %d hits", len(s.files), s.bytes, segs, misses, hits)
	if misses < uint64(segs) || misses > uint64(segs+packs) {
		t.Errorf("the walk counted %d segment misses; its files span %d segments (in %d packs): each should be decrypted once", misses, segs, packs)
	}
	// Each file's read finds its segment or segments in the cache
	// except the first read of a segment.
	if hits+misses < uint64(len(s.files)) {
		t.Errorf("%d hits and %d misses for %d file reads", hits, misses, len(s.files))
	}
}

// TestSmallFilesWalkReusesBuffers: once the segment cache is full, a walk
// over small files reuses the buffers of the segments the cache drops
// rather than allocate 64 KiB for each segment it decrypts (garbage that
// makes a mount holding the nodes of a large walk collect more often).
func TestSmallFilesWalkReusesBuffers(t *testing.T) {
	// A cache of 2 MiB: 1.125 MiB of it (18 segments) for segments a
	// small read leaves; the walk spans 70.
	s := newSmallTree(t, 6, 500, repo.Options{CacheBytes: 2 << 20})
	half := len(s.files) / 2
	s.read(t, 0, half) // fills the cache
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	s.read(t, half, len(s.files))
	runtime.ReadMemStats(&m1)
	// The segments the second half spans, all decrypted by it (the
	// cache holds fewer than the first half spans).
	decrypted := uint64(len(s.files)-half) * 1536 / object.SegmentSize
	per := (m1.TotalAlloc - m0.TotalAlloc) / decrypted
	t.Logf("%d segments decrypted, %d bytes allocated per segment", decrypted, per)
	if per >= object.SegmentSize/4 {
		t.Errorf("the walk allocated %d bytes per segment decrypted: the buffers of dropped segments are not reused", per)
	}
}

// TestSmallFilesConcurrentWalks: walks over the same small files at once,
// forwards, backwards and by strides, with a cache far smaller than the
// files, so that segments are dropped and their buffers reused all the
// time: every file reads right. (A read copying from a buffer that is
// being reused is a narrow interleaving this test does not hit reliably;
// it guards the mix as a whole, as TestReadMixedSizes does for edges.)
func TestSmallFilesConcurrentWalks(t *testing.T) {
	s := newSmallTree(t, 4, 500, repo.Options{CacheBytes: 1 << 20})
	var wg sync.WaitGroup
	for _, step := range []int{1, -1, 7, -3, 1, 40} {
		wg.Go(func() {
			if err := s.check(0, len(s.files), step); err != nil {
				t.Errorf("walk by %d: %v", step, err)
			}
		})
	}
	wg.Wait()
}
