package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/snapcrypt/snapcrypt/repo/store"
)

func bulkStore(t *testing.T, names ...string) *Store {
	t.Helper()
	s, err := Init(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := s.Create(context.Background(), n, []byte(n)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func listed(t *testing.T, s *Store, prefix string) []string {
	t.Helper()
	var out []string
	if err := s.List(context.Background(), prefix, func(i store.Info) error { out = append(out, i.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestListNames(t *testing.T) {
	ctx := context.Background()
	names := []string{"deks/g1/aa", "deks/g1/ab", "deks/g1/b", "deks/g1/packs/x-1", "deks/g2/aa", "deks/g10/c", "keyring/1", "data/00/p"}
	s := bulkStore(t, names...)
	// A temporary file of a writer is not listed.
	os.WriteFile(filepath.Join(s.root, "deks/g1/.tmp-123"), []byte("x"), 0o600)
	for _, prefix := range []string{"", "deks/", "deks/g1/", "deks/g1/a", "deks/g1", "deks/g1/packs/", "deks/g3/", "nothing", "keyring/1"} {
		var got []string
		if err := s.ListNames(ctx, prefix, func(n string) error { got = append(got, n); return nil }); err != nil {
			t.Fatalf("%q: %v", prefix, err)
		}
		slices.Sort(got)
		if want := listed(t, s, prefix); !slices.Equal(got, want) {
			t.Errorf("ListNames(%q) = %v, List gives %v", prefix, got, want)
		}
	}
	stop := errors.New("stop")
	n := 0
	err := s.ListNames(ctx, "deks/", func(string) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("fn's error: %v after %d calls", err, n)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.ListNames(cctx, "deks/", func(string) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v", err)
	}
}

func trashDirs(t *testing.T, s *Store) []string {
	t.Helper()
	es, err := os.ReadDir(s.root)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if strings.HasPrefix(e.Name(), trashPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestDeletePrefix(t *testing.T) {
	ctx := context.Background()
	s := bulkStore(t, "deks/g1/aa", "deks/g1/packs/x-1", "deks/g2/bb", "deks/g10/cc")
	if err := s.DeletePrefix(ctx, "deks/g1/"); err != nil {
		t.Fatal(err)
	}
	if got := listed(t, s, "deks/"); !slices.Equal(got, []string{"deks/g10/cc", "deks/g2/bb"}) {
		t.Fatalf("after DeletePrefix: %v", got)
	}
	if _, err := s.Get(ctx, "deks/g1/aa"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Get of a deleted object: %v", err)
	}
	if n := len(trashDirs(t, s)); n != 1 {
		t.Fatalf("%d trash directories before the purge, want 1", n)
	}
	// The prefix can be used again (its directory is made anew).
	if err := s.Create(ctx, "deks/g1/packs/y-1", []byte("y")); err != nil {
		t.Fatal(err)
	}
	// A missing prefix is fine; a bad one is not.
	if err := s.DeletePrefix(ctx, "deks/none/"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"deks/g2", "", "/", "../x/", "deks/.x/", "deks//"} {
		if err := s.DeletePrefix(ctx, bad); !errors.Is(err, store.ErrInvalidName) {
			t.Errorf("DeletePrefix(%q): %v", bad, err)
		}
	}
	// Another Store (a later process) purges what this one left.
	s2, err := Open(s.root)
	if err != nil {
		t.Fatal(err)
	}
	// Enough files for several batches, in a nested directory.
	for i := range purgeBatch*2 + 10 {
		if err := s2.Create(ctx, fmt.Sprintf("deks/g2/x/%04d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s2.DeletePrefix(ctx, "deks/g2/"); err != nil {
		t.Fatal(err)
	}
	var paced int
	if err := s2.PurgeTrash(ctx, func(d time.Duration) {
		if d <= 0 {
			t.Errorf("pace called with %v", d)
		}
		paced++
	}); err != nil {
		t.Fatal(err)
	}
	if paced < 3 {
		t.Fatalf("pace called %d times for %d files", paced, purgeBatch*2+12)
	}
	if n := len(trashDirs(t, s)); n != 0 {
		t.Fatalf("%d trash directories after the purge", n)
	}
	if got := listed(t, s, ""); !slices.Equal(got, []string{"deks/g1/packs/y-1", "deks/g10/cc"}) {
		t.Fatalf("after the purge: %v", got)
	}
}

// TestGetKeepsAtime: reading an object leaves its access time alone (with
// relatime, a read after a modification would otherwise write the inode).
func TestGetKeepsAtime(t *testing.T) {
	ctx := context.Background()
	s := bulkStore(t, "deks/g/aa")
	p := filepath.Join(s.root, "deks/g/aa")
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(p, old, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "deks/g/aa"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRange(ctx, "deks/g/aa", 0, 2); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if got := time.Unix(st.Atim.Unix()); !got.Equal(old) {
		t.Fatalf("atime %v after reads, want %v", got, old)
	}
}

func TestReadSmall(t *testing.T) {
	ctx := context.Background()
	s := bulkStore(t, "deks/g/aa", "deks/g/empty-not")
	if err := s.Put(ctx, "deks/g/big", make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if b, err := s.ReadSmall(ctx, "deks/g/aa", 77); err != nil || string(b) != "deks/g/aa" {
		t.Fatalf("ReadSmall = %q, %v", b, err)
	}
	if b, err := s.ReadSmall(ctx, "deks/g/big", 100); err != nil || len(b) != 100 {
		t.Fatalf("ReadSmall of exactly max bytes = %d, %v", len(b), err)
	}
	if _, err := s.ReadSmall(ctx, "deks/g/big", 99); !errors.Is(err, store.ErrTooLarge) || !strings.Contains(err.Error(), "deks/g/big") {
		t.Fatalf("ReadSmall of a longer object: %v", err)
	}
	for _, name := range []string{"deks/g/none", "deks/g", "deks/none/x"} {
		if _, err := s.ReadSmall(ctx, name, 77); !errors.Is(err, store.ErrNotExist) {
			t.Errorf("ReadSmall(%q): %v", name, err)
		}
	}
	if _, err := s.ReadSmall(ctx, "../x", 77); !errors.Is(err, store.ErrInvalidName) {
		t.Errorf("ReadSmall of a bad name: %v", err)
	}
}

// TestReadSmallOneRead: a file shorter than the limit takes one read(2);
// the short read is its end.
func TestReadSmallOneRead(t *testing.T) {
	ctx := context.Background()
	s := bulkStore(t, "deks/g/aa")
	reads := 0
	readFD = func(fd int, p []byte) (int, error) {
		reads++
		return syscall.Read(fd, p)
	}
	t.Cleanup(func() { readFD = syscall.Read })
	if b, err := s.ReadSmall(ctx, "deks/g/aa", 77); err != nil || string(b) != "deks/g/aa" {
		t.Fatalf("ReadSmall = %q, %v", b, err)
	}
	if reads != 1 {
		t.Fatalf("ReadSmall of a 9-byte file made %d reads, want 1", reads)
	}
}

// TestPrefetch: Prefetch has the kernel read the files into its page
// cache (a file whose pages were dropped is resident afterwards), and
// skips names it cannot open.
func TestPrefetch(t *testing.T) {
	ctx := context.Background()
	s := bulkStore(t)
	var st unix.Statfs_t
	if err := unix.Statfs(s.root, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.TMPFS_MAGIC {
		t.Skip("the temporary directory is on tmpfs, whose pages cannot be dropped")
	}
	const n = 8
	var names []string
	for i := range n {
		name := fmt.Sprintf("deks/g/%02d", i)
		if err := s.Put(ctx, name, make([]byte, 64<<10)); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	residentOf := func(name string, size int) int {
		f, err := os.Open(s.path(name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Munmap(m)
		vec := make([]byte, size/os.Getpagesize())
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			t.Fatal(e)
		}
		pages := 0
		for _, v := range vec {
			pages += int(v & 1)
		}
		return pages
	}
	resident := func(name string) int { return residentOf(name, 64<<10) }
	// A large file: Prefetch reads no further than max.
	if err := s.Put(ctx, "deks/g/large", make([]byte, 4<<20)); err != nil {
		t.Fatal(err)
	}
	names = append(names, "deks/g/large")
	for _, name := range names {
		f, err := os.Open(s.path(name))
		if err != nil {
			t.Fatal(err)
		}
		f.Sync()
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		f.Close()
		if p := resident(name); p != 0 {
			t.Skipf("%s keeps %d pages in the page cache after POSIX_FADV_DONTNEED", name, p)
		}
	}
	s.Prefetch(ctx, append([]string{"deks/g/none", "../x", "deks/g"}, names...), 64<<10)
	deadline := time.Now().Add(10 * time.Second)
	for _, name := range names[:n] {
		for resident(name) < 16 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of 16 pages in the page cache after Prefetch", name, resident(name))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for residentOf("deks/g/large", 4<<20) < 16 {
		if time.Now().After(deadline) {
			t.Fatalf("a file of 4 MiB: %d pages in the page cache after a Prefetch of 64 KiB", residentOf("deks/g/large", 4<<20))
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // for reads beyond max, were any asked for
	if p := residentOf("deks/g/large", 4<<20); p > 256 {
		t.Errorf("a file of 4 MiB: %d pages in the page cache after a Prefetch of 64 KiB, want at most 256", p)
	}
}

// TestReadSmallFIFO: a FIFO where an object belongs (anyone who can write
// to the store can put one there) makes ReadSmall, Prefetch, Get and
// GetRange return at once, not wait for a writer.
func TestReadSmallFIFO(t *testing.T) {
	ctx := context.Background()
	s := bulkStore(t, "deks/g/aa")
	if err := syscall.Mkfifo(s.path("deks/g/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		s.Prefetch(ctx, []string{"deks/g/fifo", "deks/g/aa"}, 77)
		b, err := s.ReadSmall(ctx, "deks/g/fifo", 77)
		if err == nil && len(b) != 0 {
			done <- fmt.Errorf("ReadSmall read %d bytes from a FIFO with no writer", len(b))
			return
		}
		if _, err := s.Get(ctx, "deks/g/fifo"); !errors.Is(err, store.ErrNotExist) {
			done <- fmt.Errorf("Get of a FIFO: %v, want ErrNotExist", err)
			return
		}
		if _, err := s.GetRange(ctx, "deks/g/fifo", 0, 10); !errors.Is(err, store.ErrNotExist) {
			done <- fmt.Errorf("GetRange of a FIFO: %v, want ErrNotExist", err)
			return
		}
		for _, direct := range []bool{false, true} {
			buf := make([]byte, 10+store.DirectSlack)
			if _, err := s.ReadRange(ctx, "deks/g/fifo", 0, 10, buf, direct); !errors.Is(err, store.ErrNotExist) {
				done <- fmt.Errorf("ReadRange (direct %v) of a FIFO: %v, want ErrNotExist", direct, err)
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadSmall or Prefetch of a FIFO still waits after 5 s")
	}
}
