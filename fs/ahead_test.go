package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mountReadsAhead makes the mounts of test t read ahead themselves, as
// for an ordinary user who cannot set the kernel's readahead: the kernel
// then keeps sending OPEN.
func mountReadsAhead(t *testing.T) {
	t.Helper()
	kernelReadAhead = func(string, int64) bool { return false }
	t.Cleanup(func() { kernelReadAhead = setKernelReadAhead })
}

// TestStoreAhead: as root, after the first open the kernel opens files
// without OPEN; a walk that reads a directory's files in order (as tar
// does: open, read to the end, fstat, close) finds most of them in the
// kernel's cache, stored ahead of it, and sends a READ for few of them.
// A file larger than storeMax in the middle is read as usual; a small
// file whose object is corrupted still fails with EIO.
func TestStoreAhead(t *testing.T) {
	f := newFixture(t)
	const n = 60
	want := make([][]byte, n)
	for i := range want {
		switch i {
		case 30:
			want[i] = randBytes(storeMax + 1)
		default:
			want[i] = randBytes(100 + 97*i)
		}
		f.write(fmt.Sprintf("d/f%03d", i), want[i])
	}
	f.write("d/sub/x", []byte("below"))
	f.write("e/a", randBytes(300<<10))
	f.write("e/victim", randBytes(5<<10))
	f.write("e/c", randBytes(5<<10))
	s := f.snapshot("s")
	tree, err := f.r.LoadTree(f.ctx, s.Tree)
	if err != nil {
		t.Fatal(err)
	}
	e, err := f.r.LoadTree(f.ctx, tree.Find([]byte("e")).Subtree)
	if err != nil {
		t.Fatal(err)
	}
	corruptBlob(t, f.st, f.r, e.Find([]byte("victim")).Chunks[0].ID)
	f.mount(Options{})

	if _, err := os.ReadDir(f.path("snapshots", "s", "d")); err != nil {
		t.Fatal(err)
	}
	before := f.status().Kernel
	for i := range want {
		name := f.path("snapshots", "s", "d", fmt.Sprintf("f%03d", i))
		fd, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAll(fd)
		if err == nil {
			_, err = fd.Stat()
		}
		fd.Close()
		if err != nil || !bytes.Equal(got, want[i]) {
			t.Fatalf("f%03d: %d bytes, %v; want its %d bytes", i, len(got), err, len(want[i]))
		}
	}
	k := f.status().Kernel
	if !k.NoOpen || k.Opens > 1 {
		t.Errorf("after a walk: %+v, want no OPEN after the first", k)
	}
	if reads := k.Reads - before.Reads; reads > n/4 {
		t.Errorf("a walk of %d files sent %d READs, want at most %d", n, reads, n/4)
	}
	if k.StoredAhead < n/2 {
		t.Errorf("%d files stored ahead of a walk of %d", k.StoredAhead, n)
	}

	// A walk to a small file whose object is corrupted (and with it the
	// files packed beside it).
	os.ReadFile(f.path("snapshots", "s", "e", "a"))
	if _, err := os.ReadFile(f.path("snapshots", "s", "e", "victim")); !errors.Is(err, syscall.EIO) {
		t.Errorf("reading a file whose object is corrupted: %v, want EIO", err)
	}
}

// TestStoreAheadWasted: a reader that drops each file's pages before
// reading it (as the rotation bench's does) READs every file all the same;
// the windows stored ahead of it are wasted, and the mount stores ever
// fewer (walker.wasted), where it would otherwise store the whole
// directory once more.
func TestStoreAheadWasted(t *testing.T) {
	f := newFixture(t)
	const n = 80
	for i := range n {
		f.write(fmt.Sprintf("d/f%03d", i), randBytes(1000))
	}
	f.snapshot("s")
	f.mount(Options{})
	if _, err := os.ReadDir(f.path("snapshots", "s", "d")); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		fd, err := os.Open(f.path("snapshots", "s", "d", fmt.Sprintf("f%03d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Fadvise(int(fd.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			t.Fatal(err)
		}
		if _, err := readAll(fd); err != nil {
			t.Fatal(err)
		}
		fd.Close()
	}
	k := f.status().Kernel
	if k.Reads < n {
		t.Fatalf("%d READs for %d files whose pages were dropped", k.Reads, n)
	}
	if k.StoredAhead > n/3 {
		t.Errorf("%d files stored ahead of a reader that dropped them, want at most %d", k.StoredAhead, n/3)
	}
}

// readAll reads fd to its end in reads of 32 KiB, as tar does.
func readAll(fd *os.File) ([]byte, error) {
	var out []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := fd.Read(buf)
		out = append(out, buf[:n]...)
		if n == 0 || err != nil {
			if err != nil && err.Error() == "EOF" {
				err = nil
			}
			return out, err
		}
	}
}

// TestControlWithoutOpen: once the kernel opens files without OPEN, the
// control files still work: status reads whole and fresh, a line written
// reaches the handler and its errno the writer, a write-only control
// reads nothing and a read-only one refuses writes.
func TestControlWithoutOpen(t *testing.T) {
	f := newFixture(t)
	f.write("a", []byte("1"))
	f.snapshot("one")
	var got [][]byte
	var mu sync.Mutex
	val := "v"
	f.mount(Options{Controls: []Control{
		{Name: "val", Read: func(context.Context) ([]byte, error) {
			mu.Lock()
			defer mu.Unlock()
			return []byte(val + "\n"), nil
		}, Write: func(ctx context.Context, line []byte) error {
			mu.Lock()
			defer mu.Unlock()
			val = string(line)
			return nil
		}},
		{Name: "echo", Write: func(ctx context.Context, line []byte) error {
			if string(line) == "bad" {
				return fmt.Errorf("echo: %w", os.ErrInvalid)
			}
			mu.Lock()
			defer mu.Unlock()
			got = append(got, line)
			return nil
		}},
	}})
	if b, err := os.ReadFile(f.path("snapshots", "one", "a")); err != nil || string(b) != "1" {
		t.Fatalf("read: %q, %v", b, err)
	}
	// As `ls -l .ctl; cat .ctl/status` does: READDIRPLUS, then a read
	// within the jiffy its attributes are trusted for.
	entries, err := os.ReadDir(f.path(".ctl"))
	if err != nil || len(entries) != 3 {
		t.Fatalf(".ctl: %d entries, %v", len(entries), err)
	}
	st := f.status()
	if !st.Kernel.NoOpen {
		t.Fatal("the kernel still sends OPEN")
	}
	if err := os.WriteFile(f.path(".ctl", "echo"), []byte("first\nsecond\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.path(".ctl", "echo"), []byte("bad\n"), 0o644); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("write bad: %v, want EINVAL", err)
	}
	mu.Lock()
	if len(got) != 2 || string(got[0]) != "first" || string(got[1]) != "second" {
		t.Errorf("lines: %q", got)
	}
	mu.Unlock()
	if b, err := os.ReadFile(f.path(".ctl", "echo")); err != nil || len(b) != 0 {
		t.Errorf("reading a write-only control: %q, %v; want nothing", b, err)
	}
	if err := os.WriteFile(f.path(".ctl", "status"), []byte("x"), 0o644); !errors.Is(err, syscall.EACCES) {
		t.Errorf("writing status: %v, want EACCES", err)
	}
	// Fresh: what a write changed reads at once.
	for i := range 20 {
		v := fmt.Sprintf("v%d", i)
		if err := os.WriteFile(f.path(".ctl", "val"), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(f.path(".ctl", "val")); err != nil || string(b) != v+"\n" {
			t.Fatalf("read after writing %s: %q, %v", v, b, err)
		}
	}
	for i := range 50 {
		if st := f.status(); st.Snapshots != 1 { // whole: it parses
			t.Fatalf("status %d: %d snapshots", i, st.Snapshots)
		}
	}
	f.snapshot("two")
	deadline := time.Now().Add(5 * time.Second)
	for f.status().Snapshots != 2 {
		if time.Now().After(deadline) {
			t.Fatal("status never showed the new snapshot")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestControlPolledPastMaxAge: a reader that reads a control file without
// pause gets a new content every ctlMaxAge, and each read returns one
// content whole, never the old one with the new one's tail (the content
// here grows by a byte with every new one). A CI run caught that splice
// in .ctl/status (TestS3HostsRotation); this test made it within 1.5 s
// every time before the fix.
func TestControlPolledPastMaxAge(t *testing.T) {
	if testing.Short() {
		t.Skip("polls for 3.5 s")
	}
	f := newFixture(t)
	f.write("a", []byte("1"))
	f.snapshot("one")
	var n atomic.Int64
	f.mount(Options{Controls: []Control{
		{Name: "grows", Read: func(context.Context) ([]byte, error) {
			return []byte(strings.Repeat("x", int(n.Add(1))) + "\n"), nil
		}},
	}})
	if b, err := os.ReadFile(f.path("snapshots", "one", "a")); err != nil || string(b) != "1" {
		t.Fatalf("read: %q, %v", b, err)
	}
	if !f.status().Kernel.NoOpen {
		t.Fatal("the kernel still sends OPEN")
	}
	var seen []string
	for end := time.Now().Add(3*ctlMaxAge + ctlMaxAge/2); time.Now().Before(end); {
		b, err := os.ReadFile(f.path(".ctl", "grows"))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 2 || strings.Trim(string(b[:len(b)-1]), "x") != "" || b[len(b)-1] != '\n' {
			t.Fatalf("read %q: not one content whole", b)
		}
		if len(seen) == 0 || seen[len(seen)-1] != string(b) {
			seen = append(seen, string(b))
		}
	}
	if len(seen) < 3 {
		t.Errorf("a reader polling for %v saw %d contents, want a new one every %v", 3*ctlMaxAge+ctlMaxAge/2, len(seen), ctlMaxAge)
	}
}

// TestAllowOtherKeepsOpen: with AllowOther, where other users reach the
// mount, the kernel keeps sending OPEN, so every open for writing of a
// snapshot file fails with EROFS (without OPEN it would succeed).
func TestAllowOtherKeepsOpen(t *testing.T) {
	f := newFixture(t)
	f.write("a", []byte("1"))
	f.snapshot("s")
	f.mount(Options{AllowOther: true})
	file := f.path("snapshots", "s", "a")
	if b, err := os.ReadFile(file); err != nil || string(b) != "1" {
		t.Fatalf("read: %q, %v", b, err)
	}
	if f.status().Kernel.NoOpen {
		t.Error("with AllowOther the kernel opens without OPEN")
	}
	if fd, err := os.OpenFile(file, os.O_RDWR, 0); !errors.Is(err, syscall.EROFS) {
		if err == nil {
			fd.Close()
		}
		t.Errorf("open for writing with AllowOther: %v, want EROFS", err)
	}
}

// TestMappedWriteDropped: without OPEN, root may map a snapshot file
// shared and writable; what it writes there is refused at writeback
// (EROFS), and the mount has the kernel drop the cached pages, so that
// the file reads as it was.
func TestMappedWriteDropped(t *testing.T) {
	f := newFixture(t)
	want := bytes.Repeat([]byte("snapshot"), 1024)
	f.write("a", want)
	f.snapshot("s")
	f.mount(Options{})
	file := f.path("snapshots", "s", "a")
	if b, err := os.ReadFile(file); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("read: %d bytes, %v", len(b), err)
	}
	if !f.status().Kernel.NoOpen {
		t.Fatal("as root, the kernel still sends OPEN after a read")
	}
	fd, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	m, err := unix.Mmap(int(fd.Fd()), 0, len(want), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	copy(m, "CHANGED!")
	if err := unix.Msync(m, unix.MS_SYNC); err == nil {
		t.Error("msync of a changed snapshot file succeeded")
	}
	unix.Munmap(m)
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(file)
		if err == nil && bytes.Equal(b, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a refused write through a mapping the file reads %q…, %v", b[:16], err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
