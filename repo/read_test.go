package repo_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
)

// bigFile is a repository in a local store (whose reads go around the page
// cache when large) holding one file of several chunks and packs.
type bigFile struct {
	dir    string
	key    *keys.Material
	st     *local.Store
	r      *repo.Repository
	want   []byte
	chunks []repo.Chunk
}

func newBigFile(t testing.TB, size int) *bigFile {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := local.Init(filepath.Join(dir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	key := testKey(t)
	r, err := repo.Init(ctx, st, key)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src")
	os.Mkdir(src, 0o755)
	want := make([]byte, size)
	rand.Read(want)
	if err := os.WriteFile(filepath.Join(src, "f"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := r.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tree, err := r.LoadTree(ctx, res.Snapshot.Tree)
	if err != nil {
		t.Fatal(err)
	}
	n := tree.Find([]byte("f"))
	if n == nil || len(n.Chunks) < 2 {
		t.Fatalf("want a file of several chunks, got %+v", n)
	}
	return &bigFile{dir: dir, key: key, st: st, r: r, want: want, chunks: n.Chunks}
}

// readAt reads the file at off through r, chunk by chunk, as the mount does.
func (f *bigFile) readAt(r *repo.Repository, p []byte, off int64) (int, error) {
	n := 0
	var start int64
	for _, c := range f.chunks {
		end := start + int64(c.Length)
		if pos := off + int64(n); n < len(p) && pos < end && pos >= start {
			want := int(min(int64(len(p)-n), end-pos))
			got, err := r.ReadBlobAt(context.Background(), repo.BlobData, c.ID, p[n:n+want], pos-start, 0)
			n += got
			if err != nil {
				return n, err
			}
		}
		start = end
	}
	return n, nil
}

// TestReadBlobAtLocal reads a file of several chunks as a sequential reader
// through the mount does (requests of 1 MiB, several in flight, out of
// order) and as random readers do, from a fresh repository each time, and
// checks every byte.
func TestReadBlobAtLocal(t *testing.T) {
	ctx := context.Background()
	f := newBigFile(t, 40<<20+12345)
	for _, req := range []int{1 << 20, 128 << 10, 4096, 300001} {
		r, err := repo.Open(ctx, f.st, repo.Options{}, f.key)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := range 8 {
			wg.Go(func() {
				p := make([]byte, req)
				for off := int64(w * req); off < int64(len(f.want)); off += int64(8 * req) {
					n, err := f.readAt(r, p, off)
					if err != nil {
						errs <- err
						return
					}
					if end := min(off+int64(req), int64(len(f.want))); !bytes.Equal(p[:n], f.want[off:end]) {
						errs <- errors.New("wrong bytes")
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("reads of %d bytes: %v", req, err)
		}
		st := r.CacheStats()["segments"]
		if st.Bytes > st.Limit {
			t.Errorf("reads of %d bytes: segment cache holds %d bytes, limit %d", req, st.Bytes, st.Limit)
		}
	}
}

// TestReadBlobAtLocalCorrupt flips a byte in a pack: reads that cover it
// fail with ErrCorrupt, small and large ones, and the rest still read.
func TestReadBlobAtLocalCorrupt(t *testing.T) {
	ctx := context.Background()
	f := newBigFile(t, 20<<20)
	// The pack that holds the first chunk at offset 0 holds the file's
	// first megabytes, so its offsets are file offsets.
	var hit string
	for _, pk := range f.r.Index().Packs() {
		for _, b := range pk.Blobs {
			if b.ID == f.chunks[0].ID && b.Offset == 0 {
				s := pk.ID.String()
				hit = filepath.Join(f.dir, "repo", "data", s[:2], s)
			}
		}
	}
	if hit == "" {
		t.Fatal("no pack holds the start of the file at its start")
	}
	b, err := os.ReadFile(hit)
	if err != nil {
		t.Fatal(err)
	}
	// Break segment 48, 3 MiB into the file.
	b[57+48*(64<<10+16)+100] ^= 1
	if err := os.WriteFile(hit, b, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, f.st, repo.Options{}, f.key)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []int{1 << 20, 4096} {
		bad := 0
		p := make([]byte, req)
		for off := int64(0); off < 6<<20; off += int64(req) {
			n, err := f.readAt(r, p, off)
			switch {
			case errors.Is(err, repo.ErrCorrupt):
				bad++
			case err != nil:
				t.Fatalf("read at %d: %v", off, err)
			case !bytes.Equal(p[:n], f.want[off:off+int64(n)]):
				t.Fatalf("read at %d: wrong bytes", off)
			}
		}
		if want := max(1, 64<<10/req); bad != want {
			t.Errorf("reads of %d bytes: %d failed with ErrCorrupt, want %d", req, bad, want)
		}
	}
}

// BenchmarkReadBlobAt reads a 64 MiB file from a local store in requests
// of 1 MiB, as a sequential reader through the mount does (the requests of
// the kernel's readahead, several in parallel), from a fresh repository
// (empty caches) each time: the repository's cost of a cold read.
func BenchmarkReadBlobAt(b *testing.B) {
	ctx := context.Background()
	f := newBigFile(b, 64<<20)
	const req, inFlight = 1 << 20, 8
	b.SetBytes(int64(len(f.want)))
	for b.Loop() {
		r, err := repo.Open(ctx, f.st, repo.Options{}, f.key)
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		for w := range inFlight {
			wg.Go(func() {
				p := make([]byte, req)
				for off := int64(w * req); off < int64(len(f.want)); off += inFlight * req {
					if _, err := f.readAt(r, p, off); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
}
