package fs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
	"github.com/snapcrypt/snapcrypt/rotation"
)

// needFUSE skips the test where FUSE cannot be used, but fails it in CI.
func needFUSE(t testing.TB) {
	t.Helper()
	var missing string
	if _, err := os.Stat("/dev/fuse"); err != nil {
		missing = "/dev/fuse"
	} else if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			missing = "fusermount3"
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing; FUSE tests must run in CI", missing)
	}
	t.Skipf("%s is missing", missing)
}

// fixture is a repository in memory with a source tree to snapshot and,
// once mounted, its mount.
type fixture struct {
	t   *testing.T
	ctx context.Context
	st  *mem.Store
	key *keys.Material
	r   *repo.Repository // the writer
	src string

	mr   *repo.Repository // the mount's own handle (a fresh cache)
	mopt repo.Options     // what mount opens mr with
	mnt  string
	srv  *Server
	logs *logLines
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	needFUSE(t)
	k := make([]byte, 32)
	rand.Read(k)
	m, err := keys.NewRawKey(k)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st := mem.New()
	r, err := repo.Init(ctx, st, m)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, ctx: ctx, st: st, key: m, r: r, src: t.TempDir(), logs: &logLines{}}
}

func (f *fixture) write(rel string, data []byte) {
	f.t.Helper()
	p := filepath.Join(f.src, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) snapshot(name string, tags ...string) *repo.Snapshot {
	f.t.Helper()
	res, err := f.r.TakeSnapshot(f.ctx, []string{f.src}, repo.SnapshotOptions{Name: name, Tags: tags})
	if err != nil {
		f.t.Fatal(err)
	}
	return res.Snapshot
}

func (f *fixture) mount(opts Options) {
	f.t.Helper()
	mr, err := repo.Open(f.ctx, f.st, f.mopt, f.key)
	if err != nil {
		f.t.Fatal(err)
	}
	f.mr = mr
	f.mnt = f.t.TempDir()
	if opts.Logf == nil {
		opts.Logf = f.logs.logf
	}
	if opts.Refresh == 0 {
		opts.Refresh = 200 * time.Millisecond
	}
	srv, err := Mount(f.ctx, mr, f.mnt, opts)
	if err != nil {
		f.t.Fatal(err)
	}
	f.srv = srv
	f.t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			f.t.Errorf("unmount: %v", err)
			srv.UnmountLazy()
		}
		if isMounted(f.mnt) {
			f.t.Errorf("%s is still mounted", f.mnt)
		}
	})
}

func (f *fixture) path(rel ...string) string {
	return filepath.Join(append([]string{f.mnt}, rel...)...)
}

func (f *fixture) status() Status {
	f.t.Helper()
	b, err := os.ReadFile(f.path(".ctl", "status"))
	if err != nil {
		f.t.Fatal(err)
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		f.t.Fatalf("status: %v\n%s", err, b)
	}
	return s
}

type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logLines) matching(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLayout(t *testing.T) {
	f := newFixture(t)
	f.write("a.txt", []byte("one"))
	s1 := f.snapshot("", "daily", "x/y")
	f.write("a.txt", []byte("two"))
	s2 := f.snapshot("named", "daily")
	f.mount(Options{})

	t1 := s1.Time.UTC().Format("2006-01-02T15:04:05Z")
	ents, err := os.ReadDir(f.path("snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{t1, "latest", "named"}; strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("snapshots/ = %v, want %v", names, want)
	}
	if got, _ := os.Readlink(f.path("snapshots", "latest")); got != "named" {
		t.Errorf("latest -> %q", got)
	}
	for _, c := range []struct{ path, want string }{
		{"snapshots/latest/a.txt", "two"},
		{"snapshots/" + t1 + "/a.txt", "one"},
		{"ids/" + s1.ShortID() + "/a.txt", "one"},
		{"ids/" + s2.ShortID() + "/a.txt", "two"},
		{"tags/daily/named/a.txt", "two"},
		{"tags/x_y/" + t1 + "/a.txt", "one"},
	} {
		b, err := os.ReadFile(f.path(c.path))
		if err != nil || string(b) != c.want {
			t.Errorf("%s: %q, %v; want %q", c.path, b, err, c.want)
		}
	}
	if got, _ := os.Readlink(f.path("ids", s1.ShortID())); got != "../snapshots/"+t1 {
		t.Errorf("ids link -> %q", got)
	}
	if got, _ := os.Readlink(f.path("tags", "daily", "named")); got != "../../snapshots/named" {
		t.Errorf("tag link -> %q", got)
	}
	st := f.status()
	if st.Version != StatusVersion || st.Repository != f.r.Config().ID || st.Snapshots != 2 || st.Latest != "named" {
		t.Errorf("status: %+v", st)
	}
	if len(st.Keys.Generations) != 1 || !st.Keys.Generations[0].Held || st.Keys.Generations[0].State != keys.StateCurrent || len(st.Keys.Missing) != 0 {
		t.Errorf("status keys: %+v", st.Keys)
	}
	if _, ok := st.Cache["segments"]; !ok {
		t.Errorf("status cache: %+v", st.Cache)
	}
	if st.Format != repo.FormatVersion || st.Compression != "auto" {
		t.Errorf("status: format %d, compression %q", st.Format, st.Compression)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(f.path("snapshots", "named"), &sfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Bsize != 4096 || sfs.Blocks == 0 || sfs.Files == 0 || sfs.Namelen != 255 {
		t.Errorf("statfs: %+v", sfs)
	}
}

func TestDuplicateNames(t *testing.T) {
	f := newFixture(t)
	f.write("a", []byte("1"))
	a := f.snapshot("same")
	f.write("a", []byte("2"))
	b := f.snapshot("same")
	f.write("a", []byte("3"))
	c := f.snapshot("latest")
	f.mount(Options{})
	for name, want := range map[string]string{
		"same":                      "1",
		"same-" + b.ShortID():       "2",
		"latest-" + c.ShortID():     "3",
		"../ids/" + a.ShortID():     "1",
		"../snapshots/latest":       "3",
		"../tags/../snapshots/same": "1",
	} {
		got, err := os.ReadFile(f.path("snapshots", name, "a"))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
}

func TestAttributes(t *testing.T) {
	f := newFixture(t)
	f.write("dir/file", randBytes(1000))
	f.write("dir/sub/deep", []byte("deep"))
	if err := os.Chmod(filepath.Join(f.src, "dir/file"), 0o4751); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(f.src, "dir/file"), 1234, 5678); err != nil && os.Geteuid() == 0 {
		t.Fatal(err)
	}
	mt := time.Date(1969, 7, 20, 20, 17, 40, 123456789, time.UTC) // before the epoch
	if err := os.Chtimes(filepath.Join(f.src, "dir/file"), mt, mt); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/deep", filepath.Join(f.src, "dir/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(f.src, "dir/file"), filepath.Join(f.src, "dir/sub/hard")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.src, "empty"), nil, 0); err != nil {
		t.Fatal(err)
	}
	f.snapshot("s")
	f.mount(Options{})

	root := f.path("snapshots", "s")
	err := filepath.Walk(f.src, func(p string, fi os.FileInfo, err error) error {
		if err != nil || p == f.src {
			return err
		}
		rel, _ := filepath.Rel(f.src, p)
		var want, got unix.Stat_t
		if err := unix.Lstat(p, &want); err != nil {
			return err
		}
		if err := unix.Lstat(filepath.Join(root, rel), &got); err != nil {
			return err
		}
		if got.Mode != want.Mode || got.Uid != want.Uid || got.Gid != want.Gid || got.Nlink != want.Nlink ||
			got.Mtim != want.Mtim || (want.Mode&unix.S_IFMT != unix.S_IFDIR && got.Size != want.Size) {
			t.Errorf("%s: mode %o uid %d gid %d nlink %d mtime %v size %d; want %o %d %d %d %v %d", rel,
				got.Mode, got.Uid, got.Gid, got.Nlink, got.Mtim, got.Size, want.Mode, want.Uid, want.Gid, want.Nlink, want.Mtim, want.Size)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(filepath.Join(root, "dir/link")); err != nil || target != "sub/deep" {
		t.Errorf("readlink: %q, %v", target, err)
	}

	// Hard links share an inode; inode numbers are stable and what
	// readdir says; no two entries share one otherwise.
	ino := func(rel string) uint64 {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, rel), &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	if ino("dir/file") != ino("dir/sub/hard") {
		t.Errorf("hard links have inodes %d and %d", ino("dir/file"), ino("dir/sub/hard"))
	}
	seen := map[uint64]string{}
	for _, rel := range []string{".", "dir", "dir/file", "dir/sub", "dir/sub/deep", "dir/link", "empty"} {
		i := ino(rel)
		if other, ok := seen[i]; ok {
			t.Errorf("%s and %s share inode %d", rel, other, i)
		}
		seen[i] = rel
		if ino(rel) != i {
			t.Errorf("%s: inode changed", rel)
		}
	}
	ents, err := os.ReadDir(filepath.Join(root, "dir"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		fi, _ := e.Info()
		if st := fi.Sys().(*syscall.Stat_t); st.Ino != ino("dir/"+e.Name()) {
			t.Errorf("%s: readdir inode %d, stat %d", e.Name(), st.Ino, ino("dir/"+e.Name()))
		}
	}
	// The snapshot root counts its subdirectories.
	var st unix.Stat_t
	if err := unix.Stat(root, &st); err != nil || st.Nlink != 3 {
		t.Errorf("root nlink %d, %v; want 3", st.Nlink, err)
	}
}

func TestRead(t *testing.T) {
	f := newFixture(t)
	big := randBytes(7<<20 + 12345) // several chunks
	f.write("big", big)
	f.write("small", []byte("small"))
	f.write("empty", nil)
	f.snapshot("s")
	var served atomic.Uint64
	f.mount(Options{Served: &served})

	got, err := os.ReadFile(f.path("snapshots", "s", "big"))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("sequential read: %d bytes, %v", len(got), err)
	}
	// Every byte came in a READ reply, once (the kernel may ask for some
	// past the end, answered short, or for a page again).
	if n := served.Load(); n < uint64(len(big)) || n > uint64(len(big))*5/4 {
		t.Errorf("READ replies of %d bytes for a file of %d read once", n, len(big))
	}
	if b, err := os.ReadFile(f.path("snapshots", "s", "empty")); err != nil || len(b) != 0 {
		t.Errorf("empty: %q, %v", b, err)
	}

	// Parallel random reads, on one descriptor and on several.
	shared, err := os.Open(f.path("snapshots", "s", "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fd := shared
			if g%2 == 1 {
				own, err := os.Open(f.path("snapshots", "s", "big"))
				if err != nil {
					errs <- err
					return
				}
				defer own.Close()
				fd = own
			}
			rnd := mrand.New(mrand.NewPCG(uint64(g), 1))
			buf := make([]byte, 300<<10)
			for range 50 {
				off := rnd.Int64N(int64(len(big)))
				n := 1 + rnd.IntN(len(buf))
				got, err := fd.ReadAt(buf[:n], off)
				want := big[off:min(off+int64(n), int64(len(big)))]
				if (err != nil && got == n) || !bytes.Equal(buf[:got], want) {
					errs <- fmt.Errorf("read %d at %d: %d bytes, %v", n, off, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// A read past the end reads nothing.
	if n, err := shared.ReadAt(make([]byte, 10), int64(len(big))+5); n != 0 {
		t.Errorf("read past the end: %d, %v", n, err)
	}
}

// TestReadAhead checks that a sequential reader is recognised and a random
// one is not.
func TestReadAhead(t *testing.T) {
	h := &fileHandle{}
	for i, c := range []struct {
		off, end int64
		seq      bool
	}{
		{0, 128 << 10, true},
		{128 << 10, 256 << 10, true},
		{512 << 10, 640 << 10, true}, // a little out of order
		{256 << 10, 384 << 10, true},
		{100 << 20, 100<<20 + 4096, false},
		{100<<20 + 4096, 100<<20 + 8192, true},
		{5 << 20, 5<<20 + 4096, false},
	} {
		if got := h.sequential(c.off, c.end); got != c.seq {
			t.Errorf("read %d [%d, %d): sequential %v, want %v", i, c.off, c.end, got, c.seq)
		}
	}
	if (&fileHandle{}).sequential(4096, 8192) {
		t.Error("a first read in the middle counts as sequential")
	}
}

// TestReadOnly: every call that would change the tree fails with EROFS
// (EACCES for writing .ctl/status), both while the kernel sends OPEN and
// once it opens files without asking (openless): an open for writing then
// succeeds, and the write fails.
func TestReadOnly(t *testing.T) {
	f := newFixture(t)
	f.write("d/file", []byte("content"))
	f.snapshot("s")
	f.mount(Options{})
	dir := f.path("snapshots", "s", "d")
	file := filepath.Join(dir, "file")
	// openWrite opens file with flags and, if that succeeds, writes.
	openWrite := func(flags int) func() error {
		return func() error {
			fd, err := os.OpenFile(file, flags, 0)
			if err != nil {
				return err
			}
			defer fd.Close()
			_, err = fd.Write([]byte("x"))
			return err
		}
	}
	calls := map[string]func() error{
		"create":      func() error { _, err := os.Create(filepath.Join(dir, "new")); return err },
		"open write":  openWrite(os.O_WRONLY),
		"open rdwr":   openWrite(os.O_RDWR),
		"open trunc":  openWrite(os.O_RDONLY | os.O_TRUNC),
		"open append": openWrite(os.O_WRONLY | os.O_APPEND),
		"mkdir":       func() error { return os.Mkdir(filepath.Join(dir, "x"), 0o755) },
		"unlink":      func() error { return os.Remove(file) },
		"rmdir":       func() error { return unix.Rmdir(dir) },
		"rename":      func() error { return os.Rename(file, filepath.Join(dir, "moved")) },
		"chmod":       func() error { return os.Chmod(file, 0o777) },
		"chown":       func() error { return os.Lchown(file, 1, 1) },
		"truncate":    func() error { return os.Truncate(file, 0) },
		"utimes":      func() error { return os.Chtimes(file, time.Now(), time.Now()) },
		"setxattr":    func() error { return unix.Setxattr(file, "user.x", []byte("1"), 0) },
		"removexattr": func() error { return unix.Removexattr(file, "user.x") },
		"link":        func() error { return os.Link(file, filepath.Join(dir, "hard")) },
		"symlink":     func() error { return os.Symlink("file", filepath.Join(dir, "sym")) },
		"mknod":       func() error { return unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644) },
		"access W_OK": func() error { return unix.Access(file, unix.W_OK) },
		"mkdir root":  func() error { return os.Mkdir(f.path("x"), 0o755) },
		"rm snapshot": func() error { return os.Remove(f.path("snapshots", "latest")) },
		"write status": func() error {
			return os.WriteFile(f.path(".ctl", "status"), []byte("x"), 0o644)
		},
	}
	check := func(mode string) {
		for _, name := range slices.Sorted(maps.Keys(calls)) {
			err := calls[name]()
			want := syscall.EROFS
			if name == "write status" {
				want = syscall.EACCES
			}
			if !errors.Is(err, want) {
				t.Errorf("%s, %s: %v, want %v", mode, name, err, want)
			}
		}
		if b, err := os.ReadFile(file); err != nil || string(b) != "content" {
			t.Errorf("%s, after the write attempts: %q, %v", mode, b, err)
		}
	}
	check("with OPEN")
	if !f.status().Kernel.NoOpen {
		t.Fatal("after reading a file as root, the kernel still sends OPEN")
	}
	check("without OPEN")
	if err := unix.Access(file, unix.R_OK); err != nil {
		t.Errorf("access R_OK: %v", err)
	}
}

// corruptBlob flips a byte of the pack segment that holds the middle of the
// given blob.
func corruptBlob(t *testing.T, st *mem.Store, r *repo.Repository, id repo.BlobID) {
	t.Helper()
	for _, p := range r.Index().Packs() {
		for _, b := range p.Blobs {
			if b.ID != id {
				continue
			}
			name := "data/" + p.ID.String()[:2] + "/" + p.ID.String()
			data, err := st.Get(context.Background(), name)
			if err != nil {
				t.Fatal(err)
			}
			seg := int64(b.Offset+uint64(b.Length)/2) / object.SegmentSize
			data[object.HeaderSize+seg*object.SealedSegmentSize+100] ^= 1
			if err := st.Put(context.Background(), name, data); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("blob %s is in no pack", id.Short())
}

func TestCorruptObject(t *testing.T) {
	f := newFixture(t)
	f.write("a-before", randBytes(300<<10))
	victim := randBytes(400 << 10)
	f.write("b-victim", victim)
	f.write("c-after", randBytes(300<<10))
	s := f.snapshot("s")
	tree, err := f.r.LoadTree(f.ctx, s.Tree)
	if err != nil {
		t.Fatal(err)
	}
	corruptBlob(t, f.st, f.r, tree.Find([]byte("b-victim")).Chunks[0].ID)
	f.mount(Options{})

	// Bytes of the file outside the corrupted segment still read, even
	// by a sequential reader whose readahead meets the corruption.
	fd, err := os.Open(f.path("snapshots", "s", "b-victim"))
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	head := make([]byte, 4096)
	if _, err := fd.ReadAt(head, 0); err != nil || !bytes.Equal(head, victim[:4096]) {
		t.Errorf("the intact start of the corrupted file: %v", err)
	}
	for i := range 3 { // EIO every time, logged once
		_, err := os.ReadFile(f.path("snapshots", "s", "b-victim"))
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("read %d of the corrupted file: %v, want EIO", i, err)
		}
	}
	for _, name := range []string{"a-before", "c-after"} {
		want, _ := os.ReadFile(filepath.Join(f.src, name))
		if got, err := os.ReadFile(f.path("snapshots", "s", name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s next to the corrupted object: %v", name, err)
		}
	}
	lines := f.logs.matching("corrupted or tampered with")
	if len(lines) != 1 || !strings.Contains(lines[0], "data/") || !strings.Contains(lines[0], "snapshots/s/b-victim") {
		t.Errorf("log lines about the corruption: %q", lines)
	}
	st := f.status()
	if st.ReadErrors.Count == 0 || len(st.ReadErrors.Recent) == 0 || st.EIO == 0 {
		t.Errorf("status does not count the error: %+v %+v", st.ReadErrors, st.EIO)
	}
}

// TestMissingKey: another process rotates to a key the mount does not hold
// and takes a snapshot. The mount shows it under an interim name that
// answers EIO, and status names the key generation it needs.
func TestMissingKey(t *testing.T) {
	f := newFixture(t)
	f.write("a", []byte("a"))
	f.snapshot("before")
	f.mount(Options{})

	newKey, err := keys.NewRawKey(randBytes(32))
	if err != nil {
		t.Fatal(err)
	}
	kc := f.r.Keys()
	rot := rotation.New(kc, rotation.Options{})
	if _, err := rot.Start(f.ctx, newKey); err != nil {
		t.Fatal(err)
	}
	defer rot.Close(f.ctx)
	newGen := kc.Keyring().Current
	f.write("b", []byte("b"))
	after := f.snapshot("after")

	bad := "unreadable-" + after.ShortID()
	eventually(t, 5*time.Second, "the new snapshot shows", func() bool {
		_, err := os.Lstat(f.path("snapshots", bad))
		return err == nil
	})
	if _, err := os.ReadDir(f.path("snapshots", bad)); !errors.Is(err, syscall.EIO) {
		t.Errorf("listing the unreadable snapshot: %v, want EIO", err)
	}
	if _, err := os.Stat(f.path("ids", after.ShortID(), "a")); !errors.Is(err, syscall.EIO) {
		t.Errorf("through ids/: %v, want EIO", err)
	}
	if b, err := os.ReadFile(f.path("snapshots", "before", "a")); err != nil || string(b) != "a" {
		t.Errorf("the readable snapshot: %q, %v", b, err)
	}
	st := f.status()
	if !slicesContain(st.Keys.Missing, newGen) {
		t.Errorf("status keys.missing %v lacks %s", st.Keys.Missing, newGen)
	}
	if len(st.Keys.Errors) == 0 || !strings.Contains(strings.Join(st.Keys.Errors, "\n"), newGen) {
		t.Errorf("status keys.errors %q do not name %s", st.Keys.Errors, newGen)
	}
	found, index := false, false
	for _, p := range st.Unreadable {
		found = found || p.Object == "snapshots/"+after.ID.String()
		index = index || strings.HasPrefix(p.Object, "index/") && strings.Contains(p.Error, newGen)
	}
	if !index {
		t.Errorf("status does not list the new index as unreadable: %+v", st.Unreadable)
	}
	if !found || st.Snapshots != 1 || st.EIO == 0 {
		t.Errorf("status: unreadable %+v, snapshots %d, eio %d", st.Unreadable, st.Snapshots, st.EIO)
	}
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestNewSnapshot: a snapshot taken by another process shows while mounted,
// and latest follows it.
func TestNewSnapshot(t *testing.T) {
	f := newFixture(t)
	f.write("a", []byte("1"))
	f.snapshot("one")
	f.mount(Options{Refresh: time.Second})

	other, err := repo.Open(f.ctx, f.st, repo.Options{}, f.key) // another process
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.Readlink(f.path("snapshots", "latest")); got != "one" {
		t.Fatalf("latest -> %q", got)
	}
	f.write("a", []byte("2"))
	if _, err := other.TakeSnapshot(f.ctx, []string{f.src}, repo.SnapshotOptions{Name: "two", Tags: []string{"new"}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, 5*time.Second, "snapshot two shows in a listing", func() bool {
		ents, _ := os.ReadDir(f.path("snapshots"))
		for _, e := range ents {
			if e.Name() == "two" {
				return true
			}
		}
		return false
	})
	t.Logf("the new snapshot showed after %v", time.Since(start))
	for path, want := range map[string]string{"snapshots/two/a": "2", "snapshots/latest/a": "2", "tags/new/two/a": "2", "snapshots/one/a": "1"} {
		if b, err := os.ReadFile(f.path(path)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", path, b, err, want)
		}
	}
}

// TestLookupRefreshes: a lookup of a name not (yet) there re-reads the
// list, so a snapshot is found before the timer would show it.
func TestLookupRefreshes(t *testing.T) {
	f := newFixture(t)
	f.write("a", []byte("1"))
	f.snapshot("one")
	f.mount(Options{Refresh: time.Hour})
	other, err := repo.Open(f.ctx, f.st, repo.Options{}, f.key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.TakeSnapshot(f.ctx, []string{f.src}, repo.SnapshotOptions{Name: "two"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a lookup finds snapshot two", func() bool {
		_, err := os.Stat(f.path("snapshots", "two", "a"))
		return err == nil
	})
}

func TestControl(t *testing.T) {
	f := newFixture(t)
	f.write("a", []byte("1"))
	f.snapshot("one")
	var mu sync.Mutex
	var got []string
	f.mount(Options{Controls: []Control{
		{Name: "echo", Write: func(ctx context.Context, line []byte) error {
			mu.Lock()
			defer mu.Unlock()
			switch string(line) {
			case "bad":
				return fmt.Errorf("echo: %w: bad request", os.ErrInvalid)
			case "busy":
				return fmt.Errorf("echo: %w", lease.ErrBusy)
			case "boom":
				panic("boom")
			}
			if c, ok := fuse.FromContext(ctx); !ok || c.Uid != uint32(os.Getuid()) {
				return errors.New("no caller in the context")
			}
			got = append(got, string(line))
			return nil
		}},
		{Name: "both", Read: func(context.Context) ([]byte, error) { return []byte("hello\n"), nil },
			Write: func(context.Context, []byte) error { return nil }},
		{Name: "crash", Read: func(context.Context) ([]byte, error) { panic("read crash") }},
	}})
	echo := f.path(".ctl", "echo")
	fi, err := os.Stat(echo)
	if err != nil || fi.Mode().Perm() != 0o200 {
		t.Fatalf("stat echo: %v, %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(f.path(".ctl", "status")); err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("stat status: %v, %v", fi.Mode(), err)
	}
	// A shell's "echo x > file": O_WRONLY|O_CREAT|O_TRUNC.
	if err := os.WriteFile(echo, []byte("first\nsecond\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(echo, []byte("no newline"), 0o644); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if strings.Join(got, "|") != "first|second|no newline" {
		t.Errorf("lines: %q", got)
	}
	mu.Unlock()
	for line, want := range map[string]syscall.Errno{"bad": syscall.EINVAL, "busy": syscall.EBUSY, "boom": syscall.EIO} {
		err := os.WriteFile(echo, []byte(line+"\n"), 0o644)
		if !errors.Is(err, want) {
			t.Errorf("write %q: %v, want %v", line, err, want)
		}
	}
	if _, err := os.ReadFile(echo); !errors.Is(err, syscall.EACCES) {
		t.Errorf("reading a write-only control: %v", err)
	}
	if b, err := os.ReadFile(f.path(".ctl", "both")); err != nil || string(b) != "hello\n" {
		t.Errorf("read both: %q, %v", b, err)
	}
	if _, err := os.ReadFile(f.path(".ctl", "crash")); !errors.Is(err, syscall.EIO) {
		t.Errorf("read crash: %v, want EIO", err)
	}
	if err := os.Chmod(echo, 0o777); !errors.Is(err, syscall.EROFS) {
		t.Errorf("chmod echo: %v", err)
	}
	// The mount survived the panics and counts them.
	if st := f.status(); st.Panics != 2 {
		t.Errorf("status panics %d, want 2", st.Panics)
	}
	if len(f.logs.matching("panic")) != 2 {
		t.Errorf("log: %q", f.logs.lines)
	}
	if _, err := Mount(f.ctx, f.mr, t.TempDir(), Options{Controls: []Control{{Name: "status", Read: func(context.Context) ([]byte, error) { return nil, nil }}}}); err == nil {
		t.Error("a second control named status was accepted")
	}
}

func TestMountpoint(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	for _, c := range []struct{ path, want string }{
		{filepath.Join(dir, "missing"), "does not exist"},
		{file, "is not a directory"},
		{dir, "is not empty"},
	} {
		_, err := Mount(f.ctx, f.r, c.path, Options{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("mount on %s: %v, want %q", c.path, err, c.want)
		}
	}
}

func TestUnmountFromOutside(t *testing.T) {
	f := newFixture(t)
	f.write("a", []byte("1"))
	f.snapshot("one")
	f.mount(Options{})
	if _, err := os.Stat(f.path("snapshots", "one", "a")); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("fusermount3", "-u", f.mnt).CombinedOutput()
	if err != nil {
		if err := unix.Unmount(f.mnt, 0); err != nil {
			t.Fatalf("fusermount3 -u: %v %s; umount: %v", err, out, err)
		}
	}
	select {
	case <-f.srv.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not stop after an external unmount")
	}
}

// TestLargeDirectory lists a directory of 100,000 entries: the listing
// does not read file contents, and memory stays bounded.
func TestLargeDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	const n = 100_000
	f := newFixture(t)
	big := filepath.Join(f.src, "big")
	os.Mkdir(big, 0o755)
	for i := range n {
		if err := os.WriteFile(filepath.Join(big, fmt.Sprintf("entry-%06d", i)), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := f.snapshot("s")
	root, err := f.r.LoadTree(f.ctx, s.Tree)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := f.r.LoadTree(f.ctx, root.Find([]byte("big")).Subtree)
	if err != nil {
		t.Fatal(err)
	}
	treeSegments := uint64(len(tree.Marshal()))/object.SegmentSize + 2
	f.mount(Options{})

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	missesBefore := f.mr.CacheStats()["segments"].Misses
	start := time.Now()
	dir, err := os.Open(f.path("snapshots", "s", "big"))
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for {
		ents, err := dir.ReadDir(4096) // with attributes, as ls -l
		for _, e := range ents {
			if _, err := e.Info(); err != nil {
				t.Fatal(err)
			}
		}
		count += len(ents)
		if err != nil {
			break
		}
	}
	dir.Close()
	if count != n {
		t.Fatalf("listed %d entries, want %d", count, n)
	}
	elapsed := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	misses := f.mr.CacheStats()["segments"].Misses - missesBefore
	grew := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("listing %d entries with attributes took %v: %d segment misses (tree: %d segments), heap grew %d MiB",
		n, elapsed.Round(time.Millisecond), misses, treeSegments, grew>>20)
	if misses > treeSegments {
		t.Errorf("listing read %d segments; the tree has %d: file contents were read", misses, treeSegments)
	}
	if grew > 200<<20 {
		t.Errorf("listing %d entries grew the heap by %d MiB", n, grew>>20)
	}
}

// cachedPages tells which of the first n pages of the file at path are in
// the kernel's page cache, without reading it (mmap and mincore).
func cachedPages(t *testing.T, fd *os.File, n int) []bool {
	t.Helper()
	m, err := unix.Mmap(int(fd.Fd()), 0, n*os.Getpagesize(), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, n)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	in := make([]bool, n)
	for i, v := range vec {
		in[i] = v&1 != 0
	}
	return in
}

// TestStoreSmall: while the kernel sends OPEN (here: the mount reads
// ahead itself, as for an ordinary user), opening a file of up to
// storeMax bytes puts its content
// in the kernel's cache before any read, so reading it sends no READ; a
// larger file is left to READ; a small file whose object is corrupted
// still opens, and its read fails with EIO.
func TestStoreSmall(t *testing.T) {
	mountReadsAhead(t)
	f := newFixture(t)
	files := map[string][]byte{
		"small":  randBytes(10<<10 + 7),
		"limit":  randBytes(storeMax),
		"larger": randBytes(storeMax + 1),
	}
	for name, data := range files {
		f.write(name, data)
	}
	f.snapshot("s")
	f.mount(Options{})

	for _, tc := range []struct {
		name   string
		stored bool
	}{{"small", true}, {"limit", true}, {"larger", false}} {
		fd, err := os.Open(f.path("snapshots", "s", tc.name))
		if err != nil {
			t.Fatal(err)
		}
		pages := (len(files[tc.name]) + os.Getpagesize() - 1) / os.Getpagesize()
		for i, in := range cachedPages(t, fd, pages) {
			if in != tc.stored {
				t.Errorf("%s: page %d of %d in the cache after open: %v, want %v", tc.name, i, pages, in, tc.stored)
				break
			}
		}
		got, err := io.ReadAll(fd)
		fd.Close()
		if err != nil || !bytes.Equal(got, files[tc.name]) {
			t.Errorf("%s: read %d bytes, %v; want its %d bytes", tc.name, len(got), err, len(files[tc.name]))
		}
	}

	// In a repository of its own, between larger files.
	f = newFixture(t)
	f.write("a", randBytes(300<<10))
	f.write("victim", randBytes(5<<10))
	f.write("c", randBytes(300<<10))
	s := f.snapshot("s")
	tree, err := f.r.LoadTree(f.ctx, s.Tree)
	if err != nil {
		t.Fatal(err)
	}
	corruptBlob(t, f.st, f.r, tree.Find([]byte("victim")).Chunks[0].ID)
	f.mount(Options{})
	fd, err := os.Open(f.path("snapshots", "s", "victim"))
	if err != nil {
		t.Fatalf("open of a small file whose object is corrupted: %v, want success", err)
	}
	defer fd.Close()
	if _, err := io.ReadAll(fd); !errors.Is(err, syscall.EIO) {
		t.Errorf("read of a small file whose object is corrupted: %v, want EIO", err)
	}
}
