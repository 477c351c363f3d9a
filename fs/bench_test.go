package fs

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
)

// BenchmarkRead reads a 256 MiB file through a fresh mount of a local
// repository (pack files in the page cache): the mount's own cost of
// sequential and random reads.
func BenchmarkRead(b *testing.B) {
	needFUSE(b)
	const size = 256 << 20
	ctx := context.Background()
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	os.Mkdir(src, 0o755)
	if err := os.WriteFile(filepath.Join(src, "big"), randBytes(size), 0o644); err != nil {
		b.Fatal(err)
	}
	key, _ := keys.NewRawKey(randBytes(32))
	st, err := local.Init(filepath.Join(dir, "repo"))
	if err != nil {
		b.Fatal(err)
	}
	w, err := repo.Init(ctx, st, key)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := w.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{Name: "s"}); err != nil {
		b.Fatal(err)
	}
	mountRead := func(b *testing.B, read func(f *os.File)) {
		for b.Loop() {
			b.StopTimer()
			r, err := repo.Open(ctx, st, repo.Options{}, key)
			if err != nil {
				b.Fatal(err)
			}
			mnt := b.TempDir()
			srv, err := Mount(ctx, r, mnt, Options{Logf: b.Logf})
			if err != nil {
				b.Fatal(err)
			}
			f, err := os.Open(filepath.Join(mnt, "snapshots", "s", "big"))
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			read(f)
			b.StopTimer()
			f.Close()
			if err := srv.Unmount(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	b.Run("sequential", func(b *testing.B) {
		b.SetBytes(size)
		mountRead(b, func(f *os.File) {
			if n, err := io.CopyBuffer(io.Discard, f, make([]byte, 128<<10)); err != nil || n != size {
				b.Fatal(n, err)
			}
		})
	})
	b.Run("random4k", func(b *testing.B) {
		const reads = 2000
		b.SetBytes(reads * 4096)
		mountRead(b, func(f *os.File) {
			buf := make([]byte, 4096)
			for i := range reads {
				off := int64(i) * 7919 * 4096 % (size - 4096)
				if _, err := f.ReadAt(buf, off); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
