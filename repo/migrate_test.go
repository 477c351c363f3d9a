package repo_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store/faults"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// TestMigrate: a version 1 repository with a snapshot is upgraded; a
// migration that fails when it writes config (the crash point between
// its two writes, and a config write whose reply is lost after it
// happened) leaves a repository that opens and reads, as version 1 or 2,
// and running it again finishes it; the old snapshot restores, the next
// snapshot is compressed, and a second run changes nothing.
func TestMigrate(t *testing.T) {
	ctx := context.Background()
	for _, dropped := range []bool{false, true} {
		inner := mem.New()
		st := faults.New(inner)
		key := testKey(t)
		r, err := repo.InitWith(ctx, st, key, repo.InitOptions{Version: 1})
		if err != nil {
			t.Fatal(err)
		}
		src := t.TempDir()
		text := compressibleText(2<<20, 9)
		os.WriteFile(filepath.Join(src, "a.txt"), text, 0o644)
		old, err := r.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{})
		if err != nil {
			t.Fatal(err)
		}
		st.Add(faults.Rule{Ops: []faults.Op{faults.Put}, Prefix: "config", Times: 1, Dropped: dropped})
		if _, err := r.Migrate(ctx, repo.CompressionMax); err == nil {
			t.Fatal("migrate did not report the failed config write")
		}
		want := 1
		if dropped {
			want = 2
		}
		r2, err := repo.Open(ctx, inner, repo.Options{}, key)
		if err != nil || r2.Config().Version != want {
			t.Fatalf("dropped %v: after a failed migration: %v, version %d, want %d", dropped, err, r2.Config().Version, want)
		}
		restoreAndCompare(t, r2, old.Snapshot, "a.txt", text)

		changed, err := r.Migrate(ctx, repo.CompressionMax)
		if err != nil || changed == dropped {
			t.Fatalf("dropped %v: migrate again: %v, changed %v", dropped, err, changed)
		}
		cfg, _ := repo.ReadConfig(ctx, inner)
		set, err := repo.ReadSettings(ctx, inner)
		if cfg.Version != 2 || err != nil || set.Compression != "max" {
			t.Fatalf("after migration: config %+v, settings %+v, %v", cfg, set, err)
		}
		r3, err := repo.Open(ctx, inner, repo.Options{}, key)
		if err != nil || r3.Config().Version != 2 || r3.Compression() != repo.CompressionMax {
			t.Fatalf("reopened: %v %+v", err, r3)
		}
		restoreAndCompare(t, r3, old.Snapshot, "a.txt", text)
		os.WriteFile(filepath.Join(src, "b.txt"), compressibleText(1<<20, 10), 0o644)
		if _, err := r3.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{}); err != nil {
			t.Fatal(err)
		}
		z := 0
		for _, p := range r3.Index().Packs() {
			for _, pb := range p.Blobs {
				if pb.Zstd {
					z++
				}
			}
		}
		if z == 0 {
			t.Error("the snapshot after the migration compressed nothing")
		}
		if changed, err := r3.Migrate(ctx, 0); changed || err != nil {
			t.Errorf("migrating a version 2 repository: %v, %v", changed, err)
		}
	}
}

func restoreAndCompare(t *testing.T, r *repo.Repository, s *repo.Snapshot, name string, want []byte) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "out")
	if _, err := r.Restore(context.Background(), s, dst, repo.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dst, name)); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("restored %s: %v", name, err)
	}
}

// TestNewerFormatRefused: a config of a version newer than this code
// reads is refused with ErrNewerFormat, saying so.
func TestNewerFormatRefused(t *testing.T) {
	st := mem.New()
	st.Create(context.Background(), "config", []byte(`{"version":3,"id":"`+strings.Repeat("ab", 16)+`"}`+"\n"))
	_, err := repo.Open(context.Background(), st, repo.Options{}, testKey(t))
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("%v, want a newer format error", err)
	}
}
