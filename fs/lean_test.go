package fs

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// TestLeanListing: a walk that only lists gets its first quietFirst
// listings whole and the next ones lean (no node for a file, none made);
// a LOOKUP of a file left out makes listings whole again, for twice as
// many quiet listings; a walk that asks about files between listings
// always gets them whole.
func TestLeanListing(t *testing.T) {
	const dirs, per = 8, 50
	r := snapshotTree(t, dirs, per)
	r.dir("snapshots", "s", "big")
	ds := make([]uint64, dirs)
	for d := range dirs {
		ds[d] = r.dir("snapshots", "s", "big", fmt.Sprintf("d%03d", d))
	}
	buf := make([]byte, 8<<10) // several READDIRPLUS per listing
	lists := func(which ...int) []int {
		var got []int
		for _, d := range which {
			got = append(got, len(r.list(ds[d], buf, nil)))
		}
		return got
	}
	nodes := r.m.nodes.len()
	if got, want := lists(0, 1, 2, 3), []int{per, per, 0, 0}; !slices.Equal(got, want) {
		t.Fatalf("a walk that only lists got %v nodes per listing, want %v", got, want)
	}
	if n, want := r.m.nodes.len(), nodes+2*per; n != want {
		t.Errorf("the node table holds %d nodes after two whole and two lean listings, want %d", n, want)
	}
	if !r.m.list.lean.Load() || r.m.list.listedLean.Load() != 2 {
		t.Errorf("lean %v, %d lean listings; want true, 2", r.m.list.lean.Load(), r.m.list.listedLean.Load())
	}
	// The big/ directory has no files: its listing gives every
	// directory its node, lean or not.
	if got := len(r.list(r.ids["snapshots/s/big"], buf, nil)); got != dirs {
		t.Errorf("listing big/ gave %d nodes, want %d", got, dirs)
	}
	// A LOOKUP in a directory that was listed whole is no miss.
	r.lookup("snapshots/s/big/d000", fileName(7))
	if !r.m.list.lean.Load() || r.m.list.misses.Load() != 0 {
		t.Fatalf("after a LOOKUP in a whole listing: lean %v, %d misses; want true, 0", r.m.list.lean.Load(), r.m.list.misses.Load())
	}

	// A stat of a file a lean listing left out: a miss.
	r.lookup("snapshots/s/big/d002", fileName(7))
	if r.m.list.lean.Load() || r.m.list.misses.Load() != 1 {
		t.Fatalf("after a LOOKUP in a lean listing: lean %v, %d misses; want false, 1", r.m.list.lean.Load(), r.m.list.misses.Load())
	}
	if got, want := lists(4, 5, 6, 7, 0), []int{per, per, per, per, 0}; !slices.Equal(got, want) {
		t.Fatalf("after a miss, a walk that only lists got %v nodes per listing, want %v", got, want)
	}
	if n := r.m.list.misses.Load(); n != 1 {
		t.Errorf("%d misses, want 1", n)
	}

	// A walk that stats a file between listings gets them whole.
	r.lookup("snapshots/s/big/d000", fileName(1)) // a second miss: 8 quiet listings from now on
	for i := range 3 * dirs {
		r.m.list.touch()
		if got := len(r.list(ds[i%dirs], buf, nil)); got != per {
			t.Fatalf("listing %d, after a file was asked about: %d nodes, want %d", i, got, per)
		}
	}
	if n := r.m.list.misses.Load(); n != 2 {
		t.Errorf("%d misses, want 2", n)
	}
}

// TestLeanWalk: through the kernel, a walk that lists and descends (find)
// gets lean listings and the mount holds no node for their files; stat
// and read of every file afterwards (du, tar) find what the source holds,
// and the first LOOKUP of a file left out is counted as a miss.
func TestLeanWalk(t *testing.T) {
	f := newFixture(t)
	const dirs, per = 8, 30
	for d := range dirs {
		for i := range per {
			f.write(fmt.Sprintf("w/d%d/f%03d", d, i), randBytes(1+(d*per+i)%3000))
		}
		f.write(fmt.Sprintf("w/d%d/sub/x", d), []byte("below"))
	}
	if err := os.Symlink("d0/f000", filepath.Join(f.src, "w", "link")); err != nil {
		t.Fatal(err)
	}
	f.snapshot("s")
	f.mount(Options{})
	root := f.path("snapshots", "s")

	// Names and types only: open, getdents, descend.
	var names []string
	var walk func(dir, rel string)
	walk = func(dir, rel string) {
		fd, err := os.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		ents, err := fd.ReadDir(-1)
		fd.Close()
		if err != nil {
			t.Fatalf("listing %s: %v", rel, err)
		}
		for _, e := range ents {
			names = append(names, fmt.Sprintf("%s %v", filepath.Join(rel, e.Name()), e.Type()))
			if e.IsDir() {
				walk(filepath.Join(dir, e.Name()), filepath.Join(rel, e.Name()))
			}
		}
	}
	walk(root, ".")
	var want []string
	filepath.WalkDir(f.src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if rel, _ := filepath.Rel(f.src, p); rel != "." {
			want = append(want, fmt.Sprintf("%s %v", filepath.Join(".", rel), e.Type()))
		}
		return nil
	})
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("the walk listed\n%v\nwant\n%v", names, want)
	}
	k := f.status().Kernel
	if !k.Lean || k.ListedLean < dirs/2 {
		t.Errorf("after a walk that only lists: %+v, want lean listings (at least %d)", k, dirs/2)
	}
	if n, files := f.srv.m.nodes.len(), dirs*(per+1); n > files/2 {
		t.Errorf("after a walk that only lists, the mount holds %d nodes (the tree has %d files)", n, files)
	}

	// In a lean listing a subdirectory keeps its node.
	dn := f.srv.m.nodes.get(inoOf(t, filepath.Join(root, "w", fmt.Sprintf("d%d", dirs-1))))
	if dn == nil || dn.flags.Load()&flagLean == 0 {
		t.Fatalf("w/d%d was not listed lean", dirs-1)
	}
	h, _, errno := f.srv.m.opendir(dn, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	l := fuse.NewDirEntryList(make([]byte, 64<<10), 0)
	if st := f.srv.m.readdir(h, 0, l, true); st != fuse.OK {
		t.Fatal(st)
	}
	ids := parseDirentPlus(l, nil)
	if sub := inoOf(t, filepath.Join(root, "w", fmt.Sprintf("d%d", dirs-1), "sub")); len(ids) != 1 || ids[0] != sub {
		t.Errorf("a lean listing of w/d%d gave nodes %x, want only sub/'s, %x", dirs-1, ids, sub)
	}
	for _, id := range ids {
		f.srv.m.nodes.forget(f.srv.m.nodes.get(id), 1) // the lookups that listing counted
	}

	// A stat of one file left out: a miss, and the kernel drops the lean
	// listings it keeps, so the next listing of another directory listed
	// lean asks the mount again and gets its files' nodes.
	last := filepath.Join(root, "w", fmt.Sprintf("d%d", dirs-1))
	if _, err := os.Lstat(filepath.Join(root, "w", fmt.Sprintf("d%d", dirs-2), "f001")); err != nil {
		t.Fatal(err)
	}
	if k := f.status().Kernel; k.Lean || k.LeanMisses != 1 {
		t.Errorf("after a stat of a file a lean listing left out: %+v, want 1 miss", k)
	}
	if dn.flags.Load()&flagLean != 0 {
		t.Errorf("w/d%d is still marked as listed lean after a miss", dirs-1)
	}
	before := f.srv.m.nodes.len()
	eventually(t, 5*time.Second, "the kernel listing "+last+" again, whole", func() bool {
		if _, err := os.ReadDir(last); err != nil {
			t.Fatal(err)
		}
		return f.srv.m.nodes.len()-before >= per
	})

	// Then stat and read every file, as du and tar would.
	err := filepath.Walk(root, func(p string, got os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		src, err := os.Lstat(filepath.Join(f.src, rel))
		if err != nil {
			return err
		}
		if got.Mode() != src.Mode() || !got.IsDir() && got.Size() != src.Size() {
			return fmt.Errorf("%s: %v %d bytes, want %v %d", rel, got.Mode(), got.Size(), src.Mode(), src.Size())
		}
		if got.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if w, _ := os.ReadFile(filepath.Join(f.src, rel)); !bytes.Equal(b, w) {
				return fmt.Errorf("%s: content differs", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(filepath.Join(root, "w", "link")); err != nil || target != "d0/f000" {
		t.Errorf("readlink: %q, %v", target, err)
	}
	k = f.status().Kernel
	if k.Lean || k.LeanMisses == 0 {
		t.Errorf("after a walk that stats: %+v, want a miss and whole listings", k)
	}
}

// inoOf is the inode number of path.
func inoOf(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}
