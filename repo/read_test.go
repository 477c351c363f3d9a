package repo_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/object"
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
	want := make([]byte, size)
	rand.Read(want)
	return &bigFile{dir: dir, key: key, st: st, r: r, want: want, chunks: snapshotFile(t, r, want)}
}

// snapshotFile snapshots a file holding data into r and returns its
// chunks, which must be several.
func snapshotFile(t testing.TB, r *repo.Repository, data []byte) []repo.Chunk {
	t.Helper()
	ctx := context.Background()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), data, 0o644); err != nil {
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
	return n.Chunks
}

// readAt reads the file at off through r as the mount does: one
// ReadChunksAt for the chunks the read covers.
func (f *bigFile) readAt(r *repo.Repository, p []byte, off int64) (int, error) {
	var start int64
	for i, c := range f.chunks {
		end := start + int64(c.Length)
		if off < end {
			return r.ReadChunksAt(context.Background(), f.chunks[i:], p[:min(int64(len(p)), f.size()-off)], off-start, 0)
		}
		start = end
	}
	return 0, nil
}

// readBlobsAt reads the file at off through r chunk by chunk, with
// ReadBlobAt.
func (f *bigFile) readBlobsAt(r *repo.Repository, p []byte, off int64) (int, error) {
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

func (f *bigFile) size() int64 { return int64(len(f.want)) }

// firstPack returns the path of the pack that holds the file's first
// chunk at its offset 0. It holds the file's first megabytes, so its
// offsets are file offsets.
func (f *bigFile) firstPack(t *testing.T) string {
	t.Helper()
	for _, pk := range f.r.Index().Packs() {
		for _, b := range pk.Blobs {
			if b.ID == f.chunks[0].ID && b.Offset == 0 {
				s := pk.ID.String()
				return filepath.Join(f.dir, "repo", "data", s[:2], s)
			}
		}
	}
	t.Fatal("no pack holds the start of the file at its start")
	return ""
}

// TestReadBlobAtLocal reads a file of several chunks as a sequential reader
// through the mount does (requests of 1 MiB, several in flight, out of
// order) and as random readers do, from a fresh repository each time (also
// with read windows), and checks every byte.
func TestReadBlobAtLocal(t *testing.T) {
	ctx := context.Background()
	f := newBigFile(t, 40<<20+12345)
	for i, req := range []int{1 << 20, 128 << 10, 4096, 300001, -(1 << 20), -4096, 1 << 20, 300001} {
		readAt := f.readAt
		if req < 0 { // the same, chunk by chunk with ReadBlobAt
			req, readAt = -req, f.readBlobsAt
		}
		var opts repo.Options
		if i >= 6 { // the same, with read windows
			opts.ReadWindow = 4 << 20
		}
		r, err := repo.Open(ctx, f.st, opts, f.key)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := range 8 {
			wg.Go(func() {
				p := make([]byte, req)
				for off := int64(w * req); off < int64(len(f.want)); off += int64(8 * req) {
					n, err := readAt(r, p, off)
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
// fail with object.ErrCorrupt, small and large ones, and the rest still read.
func TestReadBlobAtLocalCorrupt(t *testing.T) {
	ctx := context.Background()
	f := newBigFile(t, 20<<20)
	hit := f.firstPack(t)
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
			case errors.Is(err, object.ErrCorrupt):
				bad++
			case err != nil:
				t.Fatalf("read at %d: %v", off, err)
			case !bytes.Equal(p[:n], f.want[off:off+int64(n)]):
				t.Fatalf("read at %d: wrong bytes", off)
			}
		}
		if want := max(1, 64<<10/req); bad != want {
			t.Errorf("reads of %d bytes: %d failed with object.ErrCorrupt, want %d", req, bad, want)
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

// countingStore counts the ranged reads of a local store.
type countingStore struct {
	*local.Store
	mu     sync.Mutex
	ranges int
}

func (s *countingStore) ReadRange(ctx context.Context, name string, off, length int64, buf []byte, direct bool) ([]byte, error) {
	s.mu.Lock()
	s.ranges++
	s.mu.Unlock()
	return s.Store.ReadRange(ctx, name, off, length, buf, direct)
}

func (s *countingStore) GetRange(ctx context.Context, name string, off, length int64) ([]byte, error) {
	s.mu.Lock()
	s.ranges++
	s.mu.Unlock()
	return s.Store.GetRange(ctx, name, off, length)
}

// TestReadChunksAt: a read across the boundary of two chunks packed end to
// end is one ranged read of the pack; a read across packs is one per pack;
// and a chunk the index does not have, or has with another length, fails
// naming its blob.
func TestReadChunksAt(t *testing.T) {
	ctx := context.Background()
	f := newBigFile(t, 40<<20)
	locs := map[repo.BlobID][2]uint64{} // pack number, offset
	for i, pk := range f.r.Index().Packs() {
		for _, b := range pk.Blobs {
			locs[b.ID] = [2]uint64{uint64(i), b.Offset}
		}
	}
	// Chunk k and k+1 lie end to end in one pack; chunk m is the last of
	// its pack.
	k, m := -1, -1
	var startK, startM int64
	var pos int64
	for i := 0; i+1 < len(f.chunks); i++ {
		a, b := locs[f.chunks[i].ID], locs[f.chunks[i+1].ID]
		if a[0] == b[0] && a[1]+uint64(f.chunks[i].Length) == b[1] && k < 0 {
			k, startK = i, pos
		}
		if a[0] != b[0] && m < 0 {
			m, startM = i, pos
		}
		pos += int64(f.chunks[i].Length)
	}
	if k < 0 || m < 0 {
		t.Fatalf("want chunks end to end in a pack and a chunk ending a pack; got k=%d m=%d", k, m)
	}
	for _, tc := range []struct {
		name   string
		i      int
		off    int64 // in the file
		ranges int
	}{
		{"within a pack", k, startK + int64(f.chunks[k].Length) - 300<<10, 1},
		{"across packs", m, startM + int64(f.chunks[m].Length) - 300<<10, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := &countingStore{Store: f.st}
			r, err := repo.Open(ctx, cs, repo.Options{}, f.key)
			if err != nil {
				t.Fatal(err)
			}
			var start int64
			for _, c := range f.chunks[:tc.i] {
				start += int64(c.Length)
			}
			cs.ranges = 0
			p := make([]byte, 1<<20)
			n, err := r.ReadChunksAt(ctx, f.chunks[tc.i:], p, tc.off-start, 0)
			if err != nil || n != len(p) {
				t.Fatalf("read %d bytes, %v", n, err)
			}
			if !bytes.Equal(p, f.want[tc.off:tc.off+int64(len(p))]) {
				t.Fatal("wrong bytes")
			}
			if cs.ranges != tc.ranges {
				t.Errorf("%d ranged reads, want %d", cs.ranges, tc.ranges)
			}
		})
	}

	p := make([]byte, 4096)
	long := []repo.Chunk{{ID: f.chunks[0].ID, Length: f.chunks[0].Length + 1}}
	var missing repo.BlobID
	missing[0] = 0x5a
	for _, tc := range []struct {
		name   string
		chunks []repo.Chunk
		off    int64
		want   string
	}{
		{"length differs", long, 0, f.chunks[0].ID.Short()},
		{"not in the index", []repo.Chunk{{ID: missing, Length: 10}}, 0, "not in the index"},
		{"offset past the chunk", f.chunks[:1], int64(f.chunks[0].Length), "past the end of data blob " + f.chunks[0].ID.Short()},
	} {
		n, err := f.r.ReadChunksAt(ctx, tc.chunks, p, tc.off, 0)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: read %d bytes, error %v; want one containing %q", tc.name, n, err, tc.want)
		}
	}
	if _, err := f.r.ReadChunksAt(ctx, long, p, 0, 0); !errors.Is(err, object.ErrCorrupt) {
		t.Errorf("length differs: %v, want object.ErrCorrupt", err)
	}
}

// gatedStore records the ciphertext ranges read from a local store, and
// holds the first ranged read until gate is closed; that read then fails
// if fail is set.
type gatedStore struct {
	*local.Store
	started chan struct{} // closed when the first read is held
	gate    chan struct{}
	fail    bool // the held read fails
	panics  bool // the held read panics
	passing bool // reads go through, unrecorded and unheld

	mu     sync.Mutex
	ranges [][2]int64
}

func (s *gatedStore) ReadRange(ctx context.Context, name string, off, length int64, buf []byte, direct bool) ([]byte, error) {
	s.mu.Lock()
	if s.passing {
		s.mu.Unlock()
		return s.Store.ReadRange(ctx, name, off, length, buf, direct)
	}
	s.ranges = append(s.ranges, [2]int64{off, off + length})
	first := len(s.ranges) == 1
	s.mu.Unlock()
	if first {
		close(s.started)
		<-s.gate
		if s.fail {
			return nil, errors.New("held read failed")
		}
		if s.panics {
			panic("held read panics")
		}
	}
	return s.Store.ReadRange(ctx, name, off, length, buf, direct)
}

// open opens f's repository through s and forgets the reads of the
// opening, so that the next ranged read is the first (the one held).
func (s *gatedStore) open(t *testing.T, f *bigFile, opts repo.Options) *repo.Repository {
	t.Helper()
	r, err := repo.Open(context.Background(), s, opts, f.key)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.ranges = nil
	s.mu.Unlock()
	return r
}

func (s *gatedStore) reads() [][2]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][2]int64(nil), s.ranges...)
}

// TestSharedEdge: two adjacent 1 MiB reads share a segment that each
// covers in part. While the first read holds it (its ranged read is slow),
// the second reads only the rest and takes the shared segment from the
// first: no byte of ciphertext is read twice. When the first read fails,
// the second reads the segment itself and still returns the right bytes.
func TestSharedEdge(t *testing.T) {
	f := newBigFile(t, 8<<20)
	// The first pack holds the file's first megabytes from its offset 0
	// (see TestReadBlobAtLocalCorrupt), so these are pack offsets too.
	const a = 1<<20 + 1000 // not on a segment boundary
	const b = a + 1<<20
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("first read fails=%v", fail), func(t *testing.T) {
			gs := &gatedStore{Store: f.st, started: make(chan struct{}), gate: make(chan struct{}), fail: fail}
			r := gs.open(t, f, repo.Options{})
			pa, pb := make([]byte, 1<<20), make([]byte, 1<<20)
			errA := make(chan error, 1)
			go func() {
				_, err := f.readAt(r, pa, a)
				errA <- err
			}()
			<-gs.started
			doneB := make(chan error, 1)
			go func() {
				_, err := f.readAt(r, pb, b)
				doneB <- err
			}()
			// B reads its own segments, then waits for A's.
			for deadline := time.Now().Add(10 * time.Second); len(gs.reads()) < 2; {
				if time.Now().After(deadline) {
					t.Fatal("the second read made no ranged read")
				}
				time.Sleep(time.Millisecond)
			}
			select {
			case err := <-doneB:
				t.Fatalf("the second read returned (%v) before the first, which holds the shared segment", err)
			case <-time.After(50 * time.Millisecond):
			}
			close(gs.gate)
			if err := <-doneB; err != nil || !bytes.Equal(pb, f.want[b:b+1<<20]) {
				t.Fatalf("second read: %v, or wrong bytes", err)
			}
			err := <-errA
			if fail != (err != nil) {
				t.Fatalf("first read: %v", err)
			}
			if !fail && !bytes.Equal(pa, f.want[a:a+1<<20]) {
				t.Fatal("first read: wrong bytes")
			}
			reads := gs.reads()
			if !fail {
				if len(reads) != 2 {
					t.Fatalf("ranged reads %v, want 2", reads)
				}
				if x, y := reads[0], reads[1]; x[0] < y[1] && y[0] < x[1] {
					t.Errorf("ranged reads %v and %v overlap: the shared segment was read twice", x, y)
				}
			} else if len(reads) != 3 {
				t.Errorf("ranged reads %v, want 3 (the second read fetching the shared segment itself)", reads)
			}
		})
	}
}

// TestReadWindow: with a read window, the parallel 1 MiB requests of a
// sequential reader are served from one ranged read per window, every
// byte right, and no more ciphertext read than the file's; a window that
// fails to read fails the reads that need it, and the next read tries
// again.
func TestReadWindow(t *testing.T) {
	f := newBigFile(t, 24<<20+5000)
	gs := &gatedStore{Store: f.st, started: make(chan struct{}), gate: make(chan struct{})}
	close(gs.gate) // nothing held
	r := gs.open(t, f, repo.Options{ReadWindow: 4 << 20})
	for base := int64(0); base < f.size(); base += 8 << 20 {
		var wg sync.WaitGroup
		for off := base; off < min(base+8<<20, f.size()); off += 1 << 20 {
			wg.Go(func() {
				p := make([]byte, min(1<<20, f.size()-off))
				n, err := f.readAt(r, p, off)
				if err != nil || !bytes.Equal(p[:n], f.want[off:off+int64(n)]) || n != len(p) {
					t.Errorf("read at %d: %d bytes, %v, or wrong bytes", off, n, err)
				}
			})
		}
		wg.Wait()
	}
	var read int64
	big := 0
	for _, rg := range gs.reads() {
		read += rg[1] - rg[0]
		if rg[1]-rg[0] > 2<<20 {
			big++
		}
	}
	// The file's chunks lie in two packs, and a window ends where its
	// pack does: a few ranged reads are short.
	if reads := len(gs.reads()); reads > 12 || big < 5 {
		t.Errorf("%d ranged reads (%d of a window), want at most 12, most of them windows of 4 MiB", reads, big)
	}
	if limit := f.size() + f.size()/8; read > limit {
		t.Errorf("read %d bytes of ciphertext for a file of %d", read, f.size())
	}

	// The first ranged read fails: so does the read, and the next one
	// reads the window again.
	gs = &gatedStore{Store: f.st, started: make(chan struct{}), gate: make(chan struct{}), fail: true}
	close(gs.gate)
	r = gs.open(t, f, repo.Options{ReadWindow: 4 << 20})
	p := make([]byte, 1<<20)
	const off = 5<<20 + 77
	if _, err := f.readAt(r, p, off); err == nil {
		t.Fatal("a read whose window failed to read succeeded")
	}
	if n, err := f.readAt(r, p, off); err != nil || !bytes.Equal(p[:n], f.want[off:off+int64(n)]) {
		t.Fatalf("the read after a failed window: %v, or wrong bytes", err)
	}
}

// TestCachedEdgeNoWait: a read that finds in the cache the edge another
// read has claimed does not wait for that read.
func TestCachedEdgeNoWait(t *testing.T) {
	ctx := context.Background()
	f := newBigFile(t, 8<<20)
	const b = 2<<20 + 1000 // the first pack's offsets are file offsets
	const a = b - 1<<20
	gs := &gatedStore{Store: f.st, started: make(chan struct{}), gate: make(chan struct{}), passing: true}
	r, err := repo.Open(ctx, gs, repo.Options{}, f.key)
	if err != nil {
		t.Fatal(err)
	}
	// Reads within one segment cache every segment B needs.
	p := make([]byte, 4096)
	for off := int64(b) &^ (64<<10 - 1); off < b+1<<20+64<<10; off += 64 << 10 {
		if _, err := f.readAt(r, p, off); err != nil {
			t.Fatal(err)
		}
	}
	gs.mu.Lock()
	gs.passing = false
	gs.mu.Unlock()
	defer close(gs.gate)
	go func() { f.readAt(r, make([]byte, 1<<20), a) }() // held, with the shared edge claimed
	<-gs.started
	done := make(chan error, 1)
	pb := make([]byte, 1<<20)
	go func() {
		_, err := f.readAt(r, pb, b)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil || !bytes.Equal(pb, f.want[b:b+1<<20]) {
			t.Fatalf("read from the cache: %v, or wrong bytes", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a read whose segments were all cached waited for the read that claimed its edge")
	}
}

// TestReadWindowSmall: with read windows, a small read (a small file, a
// tree, random access) across a window boundary reads its own segments,
// not two windows.
func TestReadWindowSmall(t *testing.T) {
	f := newBigFile(t, 12<<20)
	gs := &gatedStore{Store: f.st, started: make(chan struct{}), gate: make(chan struct{})}
	close(gs.gate)
	r := gs.open(t, f, repo.Options{ReadWindow: 4 << 20})
	const off = 4<<20 - 64<<10 // the first pack's offsets are file offsets
	p := make([]byte, 128<<10)
	if n, err := f.readAt(r, p, off); err != nil || !bytes.Equal(p[:n], f.want[off:off+len(p)]) {
		t.Fatalf("read: %v, or wrong bytes", err)
	}
	var read int64
	for _, rg := range gs.reads() {
		read += rg[1] - rg[0]
	}
	if read > 512<<10 {
		t.Errorf("a read of 128 KiB read %d bytes of ciphertext", read)
	}
}

// TestReadWindowPanic: a window read that panics fails the reads waiting
// for it (instead of leaving them waiting for good), and the next read
// fetches the window again.
func TestReadWindowPanic(t *testing.T) {
	f := newBigFile(t, 8<<20)
	gs := &gatedStore{Store: f.st, started: make(chan struct{}), gate: make(chan struct{}), panics: true}
	r := gs.open(t, f, repo.Options{ReadWindow: 4 << 20})
	const a, b = 1<<20 + 1000, 2<<20 + 1000 // in the same window
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		f.readAt(r, make([]byte, 1<<20), a)
	}()
	<-gs.started
	waiter := make(chan error, 1)
	go func() {
		_, err := f.readAt(r, make([]byte, 1<<20), b)
		waiter <- err
	}()
	time.Sleep(50 * time.Millisecond) // the waiter waits for the window
	close(gs.gate)
	if p := <-panicked; p == nil {
		t.Fatal("the held read did not panic")
	}
	select {
	case err := <-waiter:
		if err == nil {
			t.Log("the waiter read the window itself") // it came after the failure
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a read waiting for a window whose read panicked waits for good")
	}
	p := make([]byte, 1<<20)
	if _, err := f.readAt(r, p, b); err != nil || !bytes.Equal(p, f.want[b:b+1<<20]) {
		t.Fatalf("the read after the panic: %v, or wrong bytes", err)
	}
}

// TestReadWindowTruncated: a pack cut short inside a window fails the
// reads of the segments it lost, with object.ErrCorrupt, and not the reads of the
// window's segments before the cut.
func TestReadWindowTruncated(t *testing.T) {
	f := newBigFile(t, 12<<20)
	pack := f.firstPack(t)
	// Cut 6 MiB into the pack: inside the window of 4-8 MiB.
	if err := os.Truncate(pack, 57+96*(64<<10+16)); err != nil {
		t.Fatal(err)
	}
	gs := &gatedStore{Store: f.st, started: make(chan struct{}), gate: make(chan struct{})}
	close(gs.gate)
	r := gs.open(t, f, repo.Options{ReadWindow: 4 << 20})
	p := make([]byte, 1<<20)
	const before, after = 4<<20 + 5000, 6<<20 + 5000
	if n, err := f.readAt(r, p, before); err != nil || !bytes.Equal(p[:n], f.want[before:before+1<<20]) {
		t.Errorf("a read of the window before the cut: %v, or wrong bytes", err)
	}
	if _, err := f.readAt(r, p, after); !errors.Is(err, object.ErrCorrupt) {
		t.Errorf("a read past the cut: %v, want object.ErrCorrupt", err)
	}
}

// TestReadMixedSizes: readers of 1 MiB (which take edges out of the cache
// and reuse their buffers) and readers of 4 KiB (which copy from edges)
// at once over the same bytes: every byte right. The interleaving that
// made a small read copy from a reused edge (fixed with lru.use) is too
// narrow for this test to hit reliably; it guards the mix as a whole.
func TestReadMixedSizes(t *testing.T) {
	f := newBigFile(t, 16<<20)
	r, err := repo.Open(context.Background(), f.st, repo.Options{}, f.key)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 6 {
		req := int64(1 << 20)
		if w%2 == 1 {
			req = 4096
		}
		wg.Go(func() {
			p := make([]byte, req)
			for off := int64(w/2) * req; off+req <= f.size(); off += 3 * req {
				if req == 4096 && off%(64<<10) > 8192 {
					continue // near the segment edges, where the big reads cut
				}
				n, err := f.readAt(r, p, off)
				if err != nil || !bytes.Equal(p[:n], f.want[off:off+int64(n)]) {
					t.Errorf("read of %d at %d: %v, or wrong bytes", req, off, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
