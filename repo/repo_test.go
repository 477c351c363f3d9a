package repo_test

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

func testKey(t testing.TB) *keys.Material {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := keys.GenerateKeyFile(p); err != nil {
		t.Fatal(err)
	}
	spec, err := keys.ParseSpec("file:" + p)
	if err != nil {
		t.Fatal(err)
	}
	m, err := spec.Load()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newRepo(t testing.TB, st store.Store) *repo.Repository {
	t.Helper()
	r, err := repo.Init(context.Background(), st, testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func writeRandom(t testing.TB, p string, n int) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReadBlobAtRanges reads a file's chunks at many offsets through the
// segment cache and compares with the source bytes.
func TestReadBlobAtRanges(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, mem.New())
	want := make([]byte, 24<<20+777) // several chunks, whatever the boundaries
	rand.Read(want)
	var start int64
	for _, c := range snapshotFile(t, r, want) {
		for _, rg := range [][2]int64{{0, 1}, {0, 4096}, {65535, 2}, {100000, 300000}, {int64(c.Length) - 1, 10}, {0, int64(c.Length)}, {int64(c.Length), 5}} {
			for _, ahead := range []int64{0, 1 << 20} {
				p := make([]byte, rg[1])
				got, err := r.ReadBlobAt(ctx, repo.BlobData, c.ID, p, rg[0], ahead)
				if err != nil {
					t.Fatal(err)
				}
				end := rg[0] + rg[1]
				if end > int64(c.Length) {
					end = int64(c.Length)
				}
				exp := []byte{}
				if rg[0] < end {
					exp = want[start+rg[0] : start+end]
				}
				if string(p[:got]) != string(exp) {
					t.Fatalf("chunk at %d, range %v ahead %d: wrong bytes (%d read)", start, rg, ahead, got)
				}
			}
		}
		start += int64(c.Length)
	}
}

func BenchmarkSnapshot(b *testing.B) {
	ctx := context.Background()
	src := b.TempDir()
	writeRandom(b, filepath.Join(src, "big"), 256<<20)
	b.SetBytes(256 << 20)
	for i := 0; i < b.N; i++ {
		r := newRepo(b, mem.New())
		if _, err := r.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
