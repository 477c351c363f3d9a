package repo_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// TestRestoreTotals: the pre-scan's totals are what the restore then
// writes, for the whole snapshot and for parts that --include selects
// (a directory, a pattern inside one, one file, a hard link counted once).
func TestRestoreTotals(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, mem.New())
	src := t.TempDir()
	for p, n := range map[string]int{"a/one.txt": 100, "a/two.txt": 2000, "a/deep/x.bin": 30000, "b/y.txt": 7, "b/z.dat": 900, "top": 5} {
		os.MkdirAll(filepath.Join(src, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(src, p), []byte(strings.Repeat("x", n)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Link(filepath.Join(src, "a/two.txt"), filepath.Join(src, "b/two.link"))
	res, err := r.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, inc := range [][]string{nil, {"a"}, {"a/*.txt"}, {"b/z.dat"}, {"a/two.txt", "b/*"}, {"nothing"}} {
		files, bytes, err := r.RestoreTotals(ctx, res.Snapshot, inc)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.Restore(ctx, res.Snapshot, filepath.Join(t.TempDir(), "out"), repo.RestoreOptions{Include: inc})
		if err != nil {
			t.Fatal(err)
		}
		if files != got.Files || bytes != got.Bytes {
			t.Errorf("include %q: totals %d files, %d bytes; restore wrote %d files, %d bytes", inc, files, bytes, got.Files, got.Bytes)
		}
		if len(inc) == 1 && inc[0] == "a" && files != 3 {
			t.Errorf("include a: %d files, want 3", files)
		}
	}
}
