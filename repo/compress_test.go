package repo_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// compressibleText returns n bytes of text made of words drawn by a
// seeded generator: it compresses, and no two chunks of it are alike.
func compressibleText(n int, seed uint64) []byte {
	words := []string{"func", "return", "err", "nil", "if", "for", "range", "struct", "int", "byte", "context", "snapcrypt", "repository", "{", "}", "\n\t", ":=", "==", "0x", "package"}
	rng := rand.New(rand.NewPCG(seed, 7))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(' ')
		fmt.Fprintf(&b, "%d", rng.IntN(100))
	}
	return b.Bytes()[:n]
}

type compressedFixture struct {
	r     *repo.Repository
	files map[string][]byte
	snap  *repo.Snapshot
}

// newCompressedFixture snapshots, in a new repository with the given
// options, a compressible text of several chunks, a random file of
// several chunks and a small text.
func newCompressedFixture(t *testing.T, io repo.InitOptions, so repo.SnapshotOptions) *compressedFixture {
	t.Helper()
	ctx := context.Background()
	r, err := repo.InitWith(ctx, mem.New(), testKey(t), io)
	if err != nil {
		t.Fatal(err)
	}
	rnd := make([]byte, 3<<20)
	rand.NewChaCha8([32]byte{1}).Read(rnd)
	files := map[string][]byte{
		"text.txt":  compressibleText(10<<20, 1), // > chunker.MaxSize: at least two chunks whatever the polynomial
		"rand.bin":  rnd,
		"small.txt": bytes.Repeat([]byte("small file "), 40),
	}
	src := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res, err := r.TakeSnapshot(ctx, []string{src}, so)
	if err != nil {
		t.Fatal(err)
	}
	return &compressedFixture{r: r, files: files, snap: res.Snapshot}
}

// blobs returns, for each of the fixture's files, how many of its chunks
// the index holds compressed, and how many chunks it has.
func (f *compressedFixture) blobs(t *testing.T) (zstd, all map[string]int) {
	t.Helper()
	tree, err := f.r.LoadTree(context.Background(), f.snap.Tree)
	if err != nil {
		t.Fatal(err)
	}
	comp := map[repo.BlobID]bool{}
	for _, p := range f.r.Index().Packs() {
		for _, pb := range p.Blobs {
			comp[pb.ID] = pb.Zstd
		}
	}
	zstd, all = map[string]int{}, map[string]int{}
	for name := range f.files {
		for _, c := range tree.Find([]byte(name)).Chunks {
			all[name]++
			if comp[c.ID] {
				zstd[name]++
			}
		}
	}
	return zstd, all
}

// TestCompressedSnapshotReads: in a version 2 repository, the chunks of
// text are stored compressed (in less than half the space) and random
// ones as they are, decided chunk by chunk; every way of reading gives the
// plaintext back: reads at random offsets, a sequential reader that
// reads ahead, whole blobs, restore, and check --read-data.
func TestCompressedSnapshotReads(t *testing.T) {
	ctx := context.Background()
	f := newCompressedFixture(t, repo.InitOptions{}, repo.SnapshotOptions{})
	zstd, all := f.blobs(t)
	if zstd["text.txt"] != all["text.txt"] || all["text.txt"] < 2 || zstd["rand.bin"] != 0 || zstd["small.txt"] != 1 {
		t.Fatalf("compressed chunks %v of %v: want every text chunk, no random one", zstd, all)
	}
	var plain, stored uint64
	for _, p := range f.r.Index().Packs() {
		for _, pb := range p.Blobs {
			if pb.Zstd {
				plain += uint64(pb.PlainLength())
				stored += uint64(pb.Length)
			}
		}
	}
	if stored*2 > plain {
		t.Errorf("compressed blobs take %d bytes for %d of plaintext", stored, plain)
	}
	allPlain, allStored := f.r.Index().BlobBytes()
	if a := f.snap.Added; a == nil || a.Plain != int64(allPlain) || a.Stored != int64(allStored) || allStored >= allPlain {
		t.Errorf("manifest says added %+v, the index holds %d bytes of plaintext in %d", a, allPlain, allStored)
	}
	tree, err := f.r.LoadTree(ctx, f.snap.Tree)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for name, want := range f.files {
		chunks := tree.Find([]byte(name)).Chunks
		// Random reads: offset within the first chunk, any length.
		for range 60 {
			off := rng.Int64N(int64(chunks[0].Length))
			p := make([]byte, 1+rng.IntN(3<<20))
			n, err := f.r.ReadChunksAt(ctx, chunks, p, off, 0)
			if err != nil || !bytes.Equal(p[:n], want[off:min(int(off)+len(p), len(want))]) {
				t.Fatalf("%s: read of %d at %d: %d bytes, %v", name, len(p), off, n, err)
			}
		}
		// A sequential reader of 128 KiB requests reading ahead.
		var got []byte
		p := make([]byte, 128<<10)
		for off := 0; off < len(want); {
			i, start := 0, 0
			for start+int(chunks[i].Length) <= off {
				start += int(chunks[i].Length)
				i++
			}
			n, err := f.r.ReadChunksAt(ctx, chunks[i:], p[:min(len(p), len(want)-off)], int64(off-start), 3<<20)
			if err != nil || n == 0 {
				t.Fatalf("%s: sequential read at %d: %d, %v", name, off, n, err)
			}
			got = append(got, p[:n]...)
			off += n
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: the sequential reader read other bytes", name)
		}
		var whole []byte
		for _, c := range chunks {
			b, err := f.r.ReadBlob(ctx, repo.BlobData, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			whole = append(whole, b...)
		}
		if !bytes.Equal(whole, want) {
			t.Fatalf("%s: ReadBlob gave other bytes", name)
		}
	}
	dst := filepath.Join(t.TempDir(), "out")
	if _, err := f.r.Restore(ctx, f.snap, dst, repo.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range f.files {
		if got, err := os.ReadFile(filepath.Join(dst, name)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("restored %s: %v", name, err)
		}
	}
	res, err := f.r.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil || len(res.Problems) > 0 {
		t.Fatalf("check --read-data: %v %v", err, res.Problems)
	}
}

// TestCompressionSettings: init --compression off stores every blob as it
// is and snapshot --compression auto overrides it; a version 1
// repository never compresses and refuses to be asked to.
func TestCompressionSettings(t *testing.T) {
	f := newCompressedFixture(t, repo.InitOptions{Compression: repo.CompressionOff}, repo.SnapshotOptions{})
	if f.r.Compression() != repo.CompressionOff {
		t.Errorf("compression %s, want off", f.r.Compression())
	}
	if zstd, _ := f.blobs(t); len(zstd) != 0 {
		t.Errorf("compression off compressed %v", zstd)
	}
	f = newCompressedFixture(t, repo.InitOptions{Compression: repo.CompressionOff}, repo.SnapshotOptions{Compression: repo.CompressionAuto})
	if zstd, _ := f.blobs(t); zstd["text.txt"] == 0 {
		t.Errorf("snapshot --compression auto did not compress: %v", zstd)
	}
	f = newCompressedFixture(t, repo.InitOptions{Version: 1}, repo.SnapshotOptions{})
	if zstd, _ := f.blobs(t); len(zstd) != 0 || f.r.Config().Version != 1 || f.r.Compression() != repo.CompressionOff {
		t.Errorf("version 1: compressed %v, config %+v, compression %s", zstd, f.r.Config(), f.r.Compression())
	}
	if _, err := f.r.TakeSnapshot(context.Background(), []string{t.TempDir()}, repo.SnapshotOptions{Compression: repo.CompressionMax}); err == nil {
		t.Error("a version 1 repository took a compressed snapshot")
	}
}

// TestCompressedWholeChunkReads: reads that cover whole compressed chunks
// from their start (a small file read whole, a run of chunks) give the
// plaintext, with and without the chunk in the cache of decompressed
// blobs.
func TestCompressedWholeChunkReads(t *testing.T) {
	ctx := context.Background()
	f := newCompressedFixture(t, repo.InitOptions{}, repo.SnapshotOptions{})
	tree, err := f.r.LoadTree(ctx, f.snap.Tree)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"small.txt", "text.txt"} {
		want := f.files[name]
		chunks := tree.Find([]byte(name)).Chunks
		for range 2 { // the second time, partly from the cache
			p := make([]byte, len(want))
			if n, err := f.r.ReadChunksAt(ctx, chunks, p, 0, 0); err != nil || n != len(want) || !bytes.Equal(p, want) {
				t.Fatalf("%s read whole: %d, %v", name, n, err)
			}
			part := min(1000, len(want)-1)
			if n, err := f.r.ReadChunksAt(ctx, chunks, p[:part], 0, 0); err != nil || n != part || !bytes.Equal(p[:part], want[:part]) {
				t.Fatalf("%s read in part: %d, %v", name, n, err)
			}
		}
	}
}
