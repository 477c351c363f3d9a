package repo_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// listTree returns every path in the tree id, directories with a trailing
// slash, in walk order.
func listTree(t *testing.T, r *repo.Repository, id repo.BlobID, prefix string) []string {
	t.Helper()
	tree, err := r.LoadTree(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range tree.Nodes {
		p := prefix + string(n.Name)
		if n.Type == repo.TypeDir {
			out = append(out, p+"/")
			out = append(out, listTree(t, r, n.Subtree, p+"/")...)
		} else {
			out = append(out, p)
		}
	}
	return out
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const cacheTag = "Signature: 8a477f597d28d172789f06886806bc55\n# a cache directory tag\n"

func TestSnapshotExclusions(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	writeFiles(t, src, map[string]string{
		"a.o": "x", "keep.o": "x", "main.go": "x", "build/out": "x", "src/build/out": "x",
		".cache/CACHEDIR.TAG": cacheTag, ".cache/blob": "x", ".cache/sub/blob": "x",
		"fake/CACHEDIR.TAG": "Signature: not the one\n", "fake/blob": "x",
		"proj/.nobackup": "", "proj/secret": "x", "proj/sub/more": "x",
		"big.bin": strings.Repeat("b", 2000), "small.bin": strings.Repeat("s", 1000),
		"Photos/IMG.JPG": "x", "Photos/notes.txt": "x",
		"name-\xff.tmp": "x", "name-\xff.txt": "x",
	})
	r := newRepo(t, mem.New())
	ex := repo.Exclusions{
		Patterns: []repo.Pattern{{Pattern: "*.o"}, {Pattern: "!keep.o"}, {Pattern: "/build/"},
			{Pattern: "*.jpg", IgnoreCase: true}, {Pattern: "*.tmp"}},
		Caches: true, IfPresent: []string{".nobackup"}, LargerThan: 1000,
	}
	res, err := r.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{Exclude: ex})
	if err != nil {
		t.Fatal(err)
	}
	// The pre-scan counts what the snapshot took.
	if files, bytes, err := repo.Totals(ctx, []string{src}, ex); err != nil || files != res.Snapshot.Files || bytes != res.Snapshot.Bytes {
		t.Errorf("Totals: %d files, %d bytes, %v; the snapshot took %d files, %d bytes", files, bytes, err, res.Snapshot.Files, res.Snapshot.Bytes)
	}
	got := listTree(t, r, res.Snapshot.Tree, "")
	want := []string{".cache/", ".cache/CACHEDIR.TAG", "Photos/", "Photos/notes.txt", "fake/", "fake/CACHEDIR.TAG",
		"fake/blob", "keep.o", "main.go", "name-\xff.txt", "proj/", "proj/.nobackup", "small.bin",
		"src/", "src/build/", "src/build/out"}
	if !slices.Equal(got, want) {
		t.Fatalf("snapshot holds\n%q\nwant\n%q", got, want)
	}
	// a.o, build, .cache/blob, .cache/sub, proj/secret, proj/sub, big.bin,
	// IMG.JPG, name-\xff.tmp
	if res.Progress.Excluded != 9 {
		t.Errorf("%d entries counted as excluded, want 9", res.Progress.Excluded)
	}
	// The manifest records the exclusions, and they survive a reopen.
	s, err := repo.UnmarshalSnapshot(mustMarshal(t, res.Snapshot))
	if err != nil {
		t.Fatal(err)
	}
	if s.Exclude == nil || len(s.Exclude.Patterns) != 5 || !s.Exclude.Patterns[3].IgnoreCase || !s.Exclude.Caches ||
		s.Exclude.LargerThan != 1000 || s.Exclude.IfPresent[0] != ".nobackup" {
		t.Fatalf("manifest records exclusions %+v", s.Exclude)
	}
	// Without exclusions, nothing is recorded and everything is kept.
	res, err = r.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Snapshot.Exclude != nil {
		t.Fatalf("a snapshot without exclusions records %+v", res.Snapshot.Exclude)
	}
	if n := len(listTree(t, r, res.Snapshot.Tree, "")); n != 28 {
		t.Fatalf("a snapshot without exclusions holds %d entries, want 28", n)
	}
}

func mustMarshal(t *testing.T, s *repo.Snapshot) []byte {
	t.Helper()
	b, err := repo.MarshalSnapshot(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Patterns of a snapshot of several paths match below the base names.
func TestSnapshotExclusionsSeveralPaths(t *testing.T) {
	ctx := context.Background()
	d := t.TempDir()
	writeFiles(t, d, map[string]string{"one/x.log": "x", "one/y": "x", "two/x.log": "x", "two/y": "x"})
	r := newRepo(t, mem.New())
	res, err := r.TakeSnapshot(ctx, []string{filepath.Join(d, "one"), filepath.Join(d, "two")},
		repo.SnapshotOptions{Exclude: repo.Exclusions{Patterns: []repo.Pattern{{Pattern: "/one/*.log"}, {Pattern: "/two/y"}}}})
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{filepath.Join(d, "one"), filepath.Join(d, "two")}
	ex := repo.Exclusions{Patterns: []repo.Pattern{{Pattern: "/one/*.log"}, {Pattern: "/two/y"}}}
	if files, _, err := repo.Totals(ctx, paths, ex); err != nil || files != 2 {
		t.Errorf("Totals of two paths: %d files, %v; want 2", files, err)
	}
	got := listTree(t, r, res.Snapshot.Tree, "")
	if want := []string{"one/", "one/y", "two/", "two/x.log"}; !slices.Equal(got, want) {
		t.Fatalf("snapshot holds %q, want %q", got, want)
	}
}

func TestSnapshotBadExclusions(t *testing.T) {
	r := newRepo(t, mem.New())
	for _, ex := range []repo.Exclusions{{Patterns: []repo.Pattern{{Pattern: "a[b"}}}, {IfPresent: []string{"a/b"}}} {
		if _, err := r.TakeSnapshot(context.Background(), []string{t.TempDir()}, repo.SnapshotOptions{Exclude: ex}); err == nil {
			t.Errorf("exclusions %+v accepted", ex)
		}
	}
}

// --one-file-system keeps a mount point as an empty directory. It mounts a
// tmpfs, so it needs root (CAP_SYS_ADMIN).
func TestSnapshotOneFileSystem(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	writeFiles(t, src, map[string]string{"here": "x", "mnt/.keep": ""})
	mnt := filepath.Join(src, "mnt")
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	writeFiles(t, mnt, map[string]string{"there": "x", "deep/er": "x"})
	r := newRepo(t, mem.New())
	for _, c := range []struct {
		one  bool
		want []string
	}{
		{false, []string{"here", "mnt/", "mnt/deep/", "mnt/deep/er", "mnt/there"}},
		{true, []string{"here", "mnt/"}},
	} {
		res, err := r.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{Exclude: repo.Exclusions{OneFileSystem: c.one}})
		if err != nil {
			t.Fatal(err)
		}
		if files, _, err := repo.Totals(ctx, []string{src}, repo.Exclusions{OneFileSystem: c.one}); err != nil || files != res.Snapshot.Files {
			t.Errorf("one-file-system %v: Totals counts %d files (%v), the snapshot %d", c.one, files, err, res.Snapshot.Files)
		}
		if got := listTree(t, r, res.Snapshot.Tree, ""); !slices.Equal(got, c.want) {
			t.Errorf("one-file-system %v: snapshot holds %q, want %q", c.one, got, c.want)
		}
	}
}

// BenchmarkSnapshotFiles times a first snapshot of a tree of small files,
// with and without a home directory's exclusions, and reports ns/file: the
// figure the matcher's ns/path (package exclude) compares with.
func BenchmarkSnapshotFiles(b *testing.B) {
	ctx := context.Background()
	src := b.TempDir()
	const dirs, per = 40, 50
	for d := 0; d < dirs; d++ {
		dir := filepath.Join(src, "src", fmt.Sprintf("pkg%d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := 0; f < per; f++ {
			content := fmt.Sprintf("file %d of %d\n%s", f, d, strings.Repeat("x", 100+f*10))
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d.go", f)), []byte(content), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	ex := repo.Exclusions{Caches: true, Patterns: []repo.Pattern{{Pattern: "*.o"}, {Pattern: "node_modules/"},
		{Pattern: "/go/pkg/mod/"}, {Pattern: "**/build/**"}, {Pattern: "*.log"}, {Pattern: "!important.log"}}}
	for _, c := range []struct {
		name string
		ex   repo.Exclusions
	}{{"plain", repo.Exclusions{}}, {"excludes", ex}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				r := newRepo(b, mem.New())
				if _, err := r.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{Exclude: c.ex}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(dirs*per), "ns/file")
		})
	}
}
