package fs

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// These tests and benchmarks drive the node layer through go-fuse's bridge
// (gofs.NewNodeFS) as the kernel would, LOOKUP, READDIRPLUS and FORGET,
// without a kernel: what the daemon holds per entry is then all that
// changes between two measures.

// maxEntryBytes bounds the live heap the mount holds for each further
// file the kernel has looked up and keeps (measured 197 bytes: a node of
// the node table, 144, its name and its place in the table's map). With
// go-fuse's fs package it was 530, of which go-fuse's own share (its
// Inode, its node tables, the parent's child tables and the name) was
// about 420 whatever the node type: bareFloor measures that.
const maxEntryBytes = 220

// heapAfterGC returns the live heap.
func heapAfterGC() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// rawMount is a mount's node tree behind go-fuse's bridge, with no kernel.
type rawMount struct {
	t   testing.TB
	fs  fuse.RawFileSystem
	m   *mount
	ids map[string]uint64 // node ids of looked-up paths
}

// snapshotTree snapshots a tree of dirs directories of per files (of one
// byte: one chunk each) into a fresh repository in memory and returns it
// behind go-fuse's bridge. The files are big/dNNN/file-NNNNNN.txt.
func snapshotTree(t testing.TB, dirs, per int) *rawMount {
	t.Helper()
	ctx := context.Background()
	k := make([]byte, 32)
	rand.Read(k)
	key, err := keys.NewRawKey(k)
	if err != nil {
		t.Fatal(err)
	}
	st := mem.New()
	w, err := repo.Init(ctx, st, key)
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	for d := range dirs {
		dir := filepath.Join(src, "big", fmt.Sprintf("d%03d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range per {
			if err := os.WriteFile(filepath.Join(dir, fileName(i)), []byte{byte(i)}, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := w.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{Name: "s"}); err != nil {
		t.Fatal(err)
	}
	// Small caches (the repository's tree cache is a quarter of
	// CacheBytes), as in a walk of a tree larger than they are: the trees
	// looked up in are not kept, so what the nodes hold of them counts.
	r, err := repo.Open(ctx, st, repo.Options{CacheBytes: 1 << 20}, key)
	if err != nil {
		t.Fatal(err)
	}
	m := newMount(r, t.TempDir(), Options{Logf: t.Logf, Refresh: defaultRefresh, ReadAhead: defaultReadAhead})
	t.Cleanup(m.cancel)
	if err := m.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	root := m.rootDir()
	raw := newRawFS(m, root, m.fuseOptions())
	return &rawMount{t: t, fs: raw, m: m, ids: map[string]uint64{"": fuse.FUSE_ROOT_ID}}
}

func fileName(i int) string { return fmt.Sprintf("file-%06d.txt", i) }

func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// lookup looks name up in the directory dir (a path looked up before) as
// the kernel's LOOKUP does, and returns the node id.
func (r *rawMount) lookup(dir, name string) uint64 {
	r.t.Helper()
	var out fuse.EntryOut
	if st := r.fs.Lookup(nil, &fuse.InHeader{NodeId: r.ids[dir]}, name, &out); st != fuse.OK {
		r.t.Fatalf("lookup %s in %q: %v", name, dir, st)
	}
	return out.NodeId
}

// dir looks up the directories of path one by one and returns its node id.
func (r *rawMount) dir(path ...string) uint64 {
	r.t.Helper()
	p := ""
	for _, name := range path {
		id := r.lookup(p, name)
		p = filepath.Join(p, name)
		r.ids[p] = id
	}
	return r.ids[p]
}

// readdirplus lists the directory with node id dir as the kernel's
// READDIRPLUS does, into buffers of len(buf), for a walk that has just
// stat'ed a file (so the listing is whole: fs/lean.go), and returns the
// node ids of its entries (each looked up once more).
func (r *rawMount) readdirplus(dir uint64, buf []byte, ids []uint64) []uint64 {
	r.t.Helper()
	r.m.list.touch()
	return r.list(dir, buf, ids)
}

// list lists the directory with node id dir as the kernel's READDIRPLUS
// does, into buffers of len(buf), and returns the node ids it gives.
func (r *rawMount) list(dir uint64, buf []byte, ids []uint64) []uint64 {
	r.t.Helper()
	var open fuse.OpenOut
	if st := r.fs.OpenDir(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: dir}}, &open); st != fuse.OK {
		r.t.Fatalf("opendir: %v", st)
	}
	var off uint64
	for {
		l := fuse.NewDirEntryList(buf, off)
		in := &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: dir}, Fh: open.Fh, Offset: off, Size: uint32(len(buf))}
		if st := r.fs.ReadDirPlus(nil, in, l); st != fuse.OK {
			r.t.Fatalf("readdirplus: %v", st)
		}
		n := len(ids)
		ids = parseDirentPlus(l, ids)
		if len(ids) == n {
			break
		}
		off = l.Offset
	}
	r.fs.ReleaseDir(&fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: dir}, Fh: open.Fh})
	return ids
}

// parseDirentPlus appends the node ids of the entries in l but "." and
// ".." (which carry node id 0).
func parseDirentPlus(l *fuse.DirEntryList, ids []uint64) []uint64 {
	b := l.Bytes()
	const entryOut, dirent = 128, 24 // sizes of fuse_entry_out and fuse_dirent
	for len(b) >= entryOut+dirent {
		id := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
			uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
		nameLen := int(b[entryOut+16]) | int(b[entryOut+17])<<8 | int(b[entryOut+18])<<16 | int(b[entryOut+19])<<24
		if id != 0 {
			ids = append(ids, id)
		}
		b = b[min(len(b), (entryOut+dirent+nameLen+7)&^7):]
	}
	return ids
}

// forget forgets each node id once, as the kernel's FORGET.
func (r *rawMount) forget(ids []uint64) {
	for _, id := range ids {
		r.fs.Forget(id, 1)
	}
}

// perEntry looks up half the files of every directory, then the other
// half, and returns the growth of the live heap per entry between the
// two, and the node ids of all. The directories' trees are loaded before
// (by the first entry of each), so the slope holds what each entry costs.
func perEntry(t testing.TB, lookup func(dir string, i int) uint64, dirs, per int) (float64, []uint64) {
	var ids []uint64
	for d := range dirs {
		ids = append(ids, lookup(fmt.Sprintf("d%03d", d), 0))
	}
	half := func(from, to int) {
		for d := range dirs {
			for i := from; i < to; i++ {
				ids = append(ids, lookup(fmt.Sprintf("d%03d", d), i))
			}
		}
	}
	half(1, per/2)
	h1 := heapAfterGC()
	half(per/2, per)
	h2 := heapAfterGC()
	runtime.KeepAlive(lookup) // and the node tree it reaches
	return float64(h2-h1) / float64(dirs*(per-per/2)), ids
}

// bareDir is a directory whose files are go-fuse Inodes and nothing
// else: the floor of what go-fuse holds per entry. Names starting with
// "d" are bareDirs.
type bareDir struct{ gofs.Inode }

func (d *bareDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	ino := hashIno(u64(d.StableAttr().Ino), []byte(name))
	if name[0] == 'd' {
		return d.NewInode(ctx, &bareDir{}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino}), 0
	}
	return d.NewInode(ctx, &gofs.Inode{}, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: ino}), 0
}

// bareFloor is what go-fuse holds per entry looked up in directories of
// nodes that hold nothing, measured as perEntry does.
func bareFloor(t testing.TB, dirs, per int) float64 {
	raw := gofs.NewNodeFS(&bareDir{}, &gofs.Options{RootStableAttr: &gofs.StableAttr{Ino: fuse.FUSE_ROOT_ID}})
	r := &rawMount{t: t, fs: raw, ids: map[string]uint64{"": fuse.FUSE_ROOT_ID}}
	for d := range dirs {
		r.dir(fmt.Sprintf("d%03d", d))
	}
	bytes, _ := perEntry(t, func(dir string, i int) uint64 { return r.lookup(dir, fileName(i)) }, dirs, per)
	return bytes
}

// TestEntryMemory: each further entry the kernel has looked up and holds
// costs the mount at most maxEntryBytes of live heap (logged beside what
// a node of go-fuse's fs package would cost).
func TestEntryMemory(t *testing.T) {
	const dirs, per = 8, 2500
	r := snapshotTree(t, dirs, per)
	r.dir("snapshots", "s", "big")
	for d := range dirs {
		r.dir("snapshots", "s", "big", fmt.Sprintf("d%03d", d))
	}
	got, _ := perEntry(t, func(dir string, i int) uint64 {
		return r.lookup(filepath.Join("snapshots", "s", "big", dir), fileName(i))
	}, dirs, per)
	floor := bareFloor(t, dirs, per)
	t.Logf("live heap per further entry held: %.0f bytes; a bare node of go-fuse's fs package: %.0f", got, floor)
	if got > maxEntryBytes {
		t.Errorf("each further entry the kernel holds costs %.0f bytes of heap, want at most %d", got, maxEntryBytes)
	}
}

// TestForgetFreesEntries: entries the kernel forgets (FORGET) leave the
// node tree, and their memory is freed.
func TestForgetFreesEntries(t *testing.T) {
	const dirs, per = 4, 2500
	r := snapshotTree(t, dirs, per)
	r.dir("snapshots", "s", "big")
	for d := range dirs {
		r.dir("snapshots", "s", "big", fmt.Sprintf("d%03d", d))
	}
	var ids []uint64
	for d := range dirs { // the trees are loaded and cached by this
		ids = append(ids, r.lookup(filepath.Join("snapshots", "s", "big", fmt.Sprintf("d%03d", d)), fileName(0)))
	}
	before := heapAfterGC()
	for d := range dirs {
		dir := filepath.Join("snapshots", "s", "big", fmt.Sprintf("d%03d", d))
		for i := 1; i < per; i++ {
			ids = append(ids, r.lookup(dir, fileName(i)))
		}
	}
	// Through READDIRPLUS too, which looks every entry up once more.
	buf := make([]byte, 128<<10)
	for d := range dirs {
		ids = r.readdirplus(r.ids[filepath.Join("snapshots", "s", "big", fmt.Sprintf("d%03d", d))], buf, ids)
	}
	if len(ids) != 2*dirs*per {
		t.Fatalf("%d lookups, want %d", len(ids), 2*dirs*per)
	}
	held := heapAfterGC()
	// The table holds the snapshot's root, big/, its directories and
	// their files.
	if n, want := r.m.nodes.len(), 2+dirs+dirs*per; n != want {
		t.Fatalf("the node table holds %d nodes, want %d", n, want)
	}
	r.forget(ids)
	after := heapAfterGC()
	t.Logf("live heap: %d KiB before the lookups, %d KiB holding %d entries, %d KiB after FORGET", before>>10, held>>10, dirs*per, after>>10)
	if n, want := r.m.nodes.len(), 2+dirs; n != want {
		t.Errorf("the node table holds %d nodes after FORGET of every file, want %d (the directories)", n, want)
	}
	// What stays is the room in go-fuse's tables (Go maps do not
	// shrink), which the next lookups reuse: a second round of lookups
	// and FORGET ends where the first did.
	if kept := after - before; kept > (held-before)/4 {
		t.Errorf("FORGET of every entry left %d KiB of the %d KiB they took", kept>>10, (held-before)>>10)
	}
	for d := range dirs {
		dir := filepath.Join("snapshots", "s", "big", fmt.Sprintf("d%03d", d))
		ids = ids[:0]
		for i := range per {
			ids = append(ids, r.lookup(dir, fileName(i)))
		}
		r.forget(ids)
	}
	if again := heapAfterGC(); again > after+(held-before)/20 {
		t.Errorf("a second round of lookups and FORGET left %d KiB, the first %d KiB", (again-before)>>10, (after-before)>>10)
	}
	// A directory leaves once the kernel has forgotten it and
	// everything below it; big/ stays while d002 and d003 do.
	for _, dir := range []string{"snapshots/s/big/d000", "snapshots/s/big/d001", "snapshots/s/big"} {
		r.forget([]uint64{r.ids[dir]})
	}
	if n, want := r.m.nodes.len(), 2+dirs-2; n != want {
		t.Errorf("the node table holds %d nodes after FORGET of two directories, want %d", n, want)
	}
}

// BenchmarkListDir lists a directory of 500 files as the kernel does on a
// cold `ls -l` or `find`: OPENDIR, READDIRPLUS (each entry looked up),
// RELEASEDIR, and FORGET of every entry afterwards, so each round makes
// the nodes anew. Its allocations per op are the daemon's per listing.
func BenchmarkListDir(b *testing.B) {
	const per = 500
	r := snapshotTree(b, 1, per)
	dir := r.dir("snapshots", "s", "big", "d000")
	buf := make([]byte, 128<<10)
	ids := make([]uint64, 0, per)
	r.forget(r.readdirplus(dir, buf, ids)) // the tree loaded and cached
	b.ReportAllocs()
	for b.Loop() {
		ids = r.readdirplus(dir, buf, ids[:0])
		if len(ids) != per {
			b.Fatalf("listed %d entries, want %d", len(ids), per)
		}
		r.forget(ids)
	}
}
