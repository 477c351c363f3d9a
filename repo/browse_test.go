package repo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

func TestLookupBrowseWriteFile(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	writeFiles(t, src, map[string]string{"a/b/c.txt": "content of c", "top": "t", "name-\xff": "x"})
	r := newRepo(t, mem.New())
	res, err := r.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Snapshot
	for _, p := range []string{"a/b/c.txt", "/a/b/c.txt", "./a//b/../b/c.txt"} {
		n, err := r.Lookup(ctx, s, p)
		if err != nil {
			t.Fatalf("Lookup(%q): %v", p, err)
		}
		var buf bytes.Buffer
		if err := r.WriteFile(ctx, n, &buf); err != nil || buf.String() != "content of c" {
			t.Fatalf("WriteFile of %q: %q, %v", p, buf.String(), err)
		}
	}
	if n, err := r.Lookup(ctx, s, "/"); err != nil || n.Type != repo.TypeDir || n.Subtree != s.Tree {
		t.Fatalf("Lookup of the root: %+v, %v", n, err)
	}
	if _, err := r.Lookup(ctx, s, "a/nope"); !errors.Is(err, repo.ErrNoPath) {
		t.Fatalf("a missing path gave %v", err)
	}
	if _, err := r.Lookup(ctx, s, "top/x"); !errors.Is(err, repo.ErrNotDir) {
		t.Fatalf("a path below a file gave %v", err)
	}
	dir, _ := r.Lookup(ctx, s, "a")
	if err := r.WriteFile(ctx, dir, &bytes.Buffer{}); err == nil {
		t.Fatal("WriteFile of a directory worked")
	}
	var flat, deep []string
	collect := func(to *[]string) func(string, *repo.Node) error {
		return func(p string, n *repo.Node) error { *to = append(*to, p); return nil }
	}
	if err := r.Browse(ctx, s.Tree, "/", false, collect(&flat)); err != nil {
		t.Fatal(err)
	}
	if err := r.Browse(ctx, dir.Subtree, "/a", true, collect(&deep)); err != nil {
		t.Fatal(err)
	}
	if want := []string{"/a", "/name-\xff", "/top"}; !slices.Equal(flat, want) {
		t.Fatalf("Browse of the root: %q, want %q", flat, want)
	}
	if want := []string{"/a/b", "/a/b/c.txt"}; !slices.Equal(deep, want) {
		t.Fatalf("recursive Browse of /a: %q, want %q", deep, want)
	}
}

func TestDiff(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	writeFiles(t, src, map[string]string{
		"same/deep/x": "x", "mod.txt": "old", "meta.txt": "m", "gone/f": "g", "gone/g/h": "h",
		"type": "a file", "grow": "12",
	})
	if err := os.Symlink("t1", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	st := mem.New()
	key := testKey(t)
	r, err := repo.Init(ctx, st, key)
	if err != nil {
		t.Fatal(err)
	}
	res1, err := r.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, src, map[string]string{"mod.txt": "new!", "new/a": "a", "grow": "12345"})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Chmod(filepath.Join(src, "meta.txt"), 0o600))
	must(os.RemoveAll(filepath.Join(src, "gone")))
	must(os.Remove(filepath.Join(src, "type")))
	must(os.Mkdir(filepath.Join(src, "type"), 0o755))
	must(os.Remove(filepath.Join(src, "link")))
	must(os.Symlink("t2", filepath.Join(src, "link")))
	// Keep the root's and same/'s mtimes from telling: same/ is unchanged.
	res2, err := r.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{Time: time.Now().Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	// Drop every data pack and open the repository afresh: a diff reads
	// trees only.
	for _, p := range r.Index().Packs() {
		if p.Blobs[0].Type == repo.BlobData {
			must(st.Delete(ctx, "data/"+p.ID.String()[:2]+"/"+p.ID.String()))
		}
	}
	r2, err := repo.Open(ctx, st, repo.Options{}, key)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	err = r2.Diff(ctx, res1.Snapshot.RootNode(), res2.Snapshot.RootNode(), "/", func(c repo.Change) error {
		s := c.Kind.String() + " " + c.Path
		if c.Kind == repo.Modified && c.New.Type == repo.TypeFile {
			s += fmt.Sprintf(" %d->%d", c.Old.Size, c.New.Size)
		}
		got = append(got, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"removed /gone", "removed /gone/f", "removed /gone/g", "removed /gone/g/h",
		"modified /grow 2->5", "modified /link", "metadata /meta.txt", "modified /mod.txt 3->4",
		"added /new", "added /new/a", "removed /type", "added /type"}
	if !slices.Equal(got, want) {
		t.Fatalf("diff:\n%q\nwant\n%q", got, want)
	}
	// A snapshot against itself: nothing, and its trees are not even read
	// (here they are gone too).
	for _, p := range r.Index().Packs() {
		if p.Blobs[0].Type == repo.BlobTree {
			must(st.Delete(ctx, "data/"+p.ID.String()[:2]+"/"+p.ID.String()))
		}
	}
	r2, err = repo.Open(ctx, st, repo.Options{}, key)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := r2.Diff(ctx, res2.Snapshot.RootNode(), res2.Snapshot.RootNode(), "/", func(repo.Change) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("diff of a snapshot with itself: %d changes, %v", n, err)
	}
}
