package local

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRemoveStale: temporary files older than the age go, wherever they
// are; newer ones, objects, other dot files and the trash stay.
func TestRemoveStale(t *testing.T) {
	ctx := context.Background()
	s := bulkStore(t, "data/ab/obj", "deks/g1/k")
	old := time.Now().Add(-2 * time.Hour)
	files := map[string]bool{ // path: removed
		".tmp-1":              true,
		"data/ab/.tmp-2":      true,
		"deks/g1/.tmp-3":      true,
		"deks/g1/.tmp-new":    false, // a writer at work
		"data/ab/.other":      false,
		".trash-x/g0/.tmp-4":  false, // PurgeTrash's
		"data/ab/obj":         false,
		"deks/g1/k":           false,
		"snapshots/.tmp-5":    true,
		"snapshots/.tmp-6dir": false, // a directory, not a writer's file
	}
	for p := range files {
		full := filepath.Join(s.root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			t.Fatal(err)
		}
		if p == "snapshots/.tmp-6dir" {
			if err := os.Mkdir(full, 0o700); err != nil {
				t.Fatal(err)
			}
		} else if _, err := os.Stat(full); err != nil {
			if err := os.WriteFile(full, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if p != "deks/g1/.tmp-new" {
			if err := os.Chtimes(full, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	n, err := s.RemoveStale(ctx, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for p, removed := range files {
		_, err := os.Lstat(filepath.Join(s.root, p))
		if gone := os.IsNotExist(err); gone != removed {
			t.Errorf("%s: removed %v, want %v", p, gone, removed)
		}
		if removed {
			want++
		}
	}
	if n != want {
		t.Errorf("RemoveStale = %d, want %d", n, want)
	}
	if n, err := s.RemoveStale(ctx, time.Hour); n != 0 || err != nil {
		t.Errorf("second RemoveStale = %d, %v; want 0, nil", n, err)
	}
}
