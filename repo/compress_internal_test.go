package repo

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/internal/vectortest"

	"github.com/klauspost/compress/zstd"

	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// TestCompressBlobDecision: text is compressed and decompresses to itself;
// random bytes, tiny blobs and compression off are stored as they are.
func TestCompressBlobDecision(t *testing.T) {
	text := []byte(strings.Repeat("func main() { fmt.Println(\"hello, world\") }\n", 5000))
	for _, c := range []Compression{CompressionAuto, CompressionMax} {
		z := compressBlob(c, text)
		if z == nil || len(z) > len(text)/4 {
			t.Fatalf("%s: text compressed to %d of %d bytes", c, len(z), len(text))
		}
		got, err := decompressBlob(nil, z, uint32(len(text)))
		if err != nil || !bytes.Equal(got, text) {
			t.Fatalf("%s: round trip: %v", c, err)
		}
	}
	rnd := make([]byte, 1<<20)
	seededRandom(rnd)
	for name, b := range map[string][]byte{"random": rnd, "tiny": []byte("abcabcabcabc")} {
		if z := compressBlob(CompressionAuto, b); z != nil {
			t.Errorf("%s: compressed to %d of %d bytes, want stored as it is", name, len(z), len(b))
		}
	}
	if z := compressBlob(CompressionOff, text); z != nil {
		t.Error("compression off compressed")
	}
}

// seededRandom fills b with incompressible bytes (a xorshift generator:
// the same every run).
func seededRandom(b []byte) {
	x := uint64(0x9e3779b97f4a7c15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x >> 32)
	}
}

// TestDecompressBlobBounds: a frame that decodes to more than the
// plaintext length recorded, or to less, is refused, and refusing a
// decompression bomb (100 MiB of zeros in a few bytes, recorded as 1000)
// allocates next to nothing, with or without a content size in the frame.
func TestDecompressBlobBounds(t *testing.T) {
	zeros := make([]byte, 100<<20)
	withSize := encoders()[zstd.SpeedFastest].EncodeAll(zeros, nil)
	var noSize bytes.Buffer
	w, err := zstd.NewWriter(&noSize)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(zeros)
	w.Close()
	zeros = nil
	for name, z := range map[string][]byte{"content size": withSize, "no content size": noSize.Bytes()} {
		if _, err := decompressBlob(nil, z, 100<<20-1); err == nil {
			t.Errorf("%s: decoded to more than recorded", name)
		}
		if _, err := decompressBlob(nil, z[:len(z)-3], 1000); err == nil {
			t.Errorf("%s: truncated frame accepted", name)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if _, err := decompressBlob(nil, z, 1000); err == nil {
			t.Errorf("%s: a bomb decoded", name)
		}
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
			t.Errorf("%s: refusing a bomb allocated %d bytes", name, n)
		}
	}
	small := encoders()[zstd.SpeedFastest].EncodeAll([]byte("hello hello hello"), nil)
	if _, err := decompressBlob(nil, small, 18); err == nil {
		t.Error("decoded to fewer bytes than recorded, accepted")
	}
}

// FuzzDecompressBlob: whatever the bytes and the recorded length,
// decompression fails or gives exactly that many bytes.
func FuzzDecompressBlob(f *testing.F) {
	f.Add(encoders()[zstd.SpeedDefault].EncodeAll([]byte(strings.Repeat("snapcrypt ", 100)), nil), uint32(1000))
	f.Add(encoders()[zstd.SpeedFastest].EncodeAll(make([]byte, 1<<20), nil), uint32(100))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd}, uint32(1))
	f.Fuzz(func(t *testing.T, z []byte, plain uint32) {
		plain %= MaxChunkSize + 1
		b, err := decompressBlob(nil, z, plain)
		if err == nil && uint32(len(b)) != plain {
			t.Fatalf("%d bytes, recorded %d", len(b), plain)
		}
	})
}

// TestZstdVectors: the compressed blobs of testdata/zstd-vectors.txt
// (name, plaintext, stored bytes, all hex; written with -update by this
// code's encoder) decompress to their plaintext. Only decoding is checked:
// an encoder may compress differently and stay in the format.
func TestZstdVectors(t *testing.T) {
	const path = "testdata/zstd-vectors.txt"
	if vectortest.Update() {
		var b strings.Builder
		for _, v := range []struct {
			name  string
			plain []byte
		}{
			{"text", []byte(strings.Repeat("snapcrypt compresses this line. ", 40))},
			{"zeros", make([]byte, 4096)},
		} {
			z := compressBlob(CompressionAuto, v.plain)
			if z == nil {
				t.Fatalf("%s does not compress", v.name)
			}
			fmt.Fprintf(&b, "%s %x %x\n", v.name, v.plain, z)
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d vectors, want 2", len(lines))
	}
	for _, line := range lines {
		f := strings.Fields(line)
		plain, err1 := hex.DecodeString(f[1])
		z, err2 := hex.DecodeString(f[2])
		if len(f) != 3 || err1 != nil || err2 != nil {
			t.Fatalf("bad vector line %q", line)
		}
		got, err := decompressBlob(nil, z, uint32(len(plain)))
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("%s: %v", f[0], err)
		}
		if _, err := decompressBlob(nil, z, uint32(len(plain))+1); err == nil {
			t.Errorf("%s: decoded with a wrong plaintext length", f[0])
		}
	}
}

// TestInflateOnce: a sequential reader of a compressed file (128 KiB
// requests reading 3 MiB ahead, as through the mount) makes each chunk be
// decompressed exactly once, and the cache of decompressed blobs stays
// within its bound; reads of a chunk already decompressed decompress
// nothing.
func TestInflateOnce(t *testing.T) {
	ctx := context.Background()
	r, _ := newTestRepo(t, mem.New())
	tree, files := compressibleSnapshot(t, r, map[string]int{"f": 12 << 20})
	want := files["f"]
	chunks := tree.Find([]byte("f")).Chunks
	for _, c := range chunks {
		if loc, ok := r.index.lookup(BlobData, c.ID); !ok || !loc.zstd {
			t.Fatalf("chunk %s is not compressed", c.ID.Short())
		}
	}
	if len(chunks) < 4 {
		t.Fatalf("%d chunks, want several", len(chunks))
	}
	p := make([]byte, 128<<10)
	for off := 0; off < len(want); off += len(p) {
		i, start := 0, 0
		for start+int(chunks[i].Length) <= off {
			start += int(chunks[i].Length)
			i++
		}
		n, err := r.ReadChunksAt(ctx, chunks[i:], p[:min(len(p), len(want)-off)], int64(off-start), 3<<20)
		if err != nil || !bytes.Equal(p[:n], want[off:off+n]) {
			t.Fatalf("read at %d: %d, %v", off, n, err)
		}
		if st := r.eng.plains.stats(); st.Bytes > st.Limit {
			t.Fatalf("the cache of decompressed blobs holds %d bytes, its bound is %d", st.Bytes, st.Limit)
		}
	}
	waitPrefetch(t, r)
	if got := r.eng.inflated.Load(); got != uint64(len(chunks)) {
		t.Errorf("%d decompressions for %d chunks read in order", got, len(chunks))
	}
	last := chunks[len(chunks)-1]
	before := r.eng.inflated.Load()
	for off := int64(0); off < int64(last.Length); off += 4099 {
		if _, err := r.ReadChunksAt(ctx, chunks[len(chunks)-1:], p[:100], off, 0); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.eng.inflated.Load() - before; got != 0 {
		t.Errorf("reads in a decompressed chunk decompressed %d more", got)
	}
}

// waitPrefetch waits until no chunk is being read ahead.
func waitPrefetch(t *testing.T, r *Repository) {
	for i := 0; r.eng.pf.n.Load() > 0; i++ {
		if i > 1000 {
			t.Fatal("read-ahead did not finish")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPackAhead: a walk that reads small compressed files whole in the
// order they sit in their pack (as tar does through the mount) finds
// most of them decompressed ahead, every file reads right, and no blob is
// decompressed twice; reads in a scattered order start no read-ahead, and
// after the walk no worker of the prefetcher is left once it idles.
func TestPackAhead(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r, m := newTestRepo(t, st)
	src := t.TempDir()
	want := map[string][]byte{}
	for i := range 200 {
		name := fmt.Sprintf("f%03d", i)
		want[name] = []byte(strings.Repeat(fmt.Sprintf("file %d, line of a small compressible file\n", i), 40))
		if err := os.WriteFile(filepath.Join(src, name), want[name], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res, err := r.TakeSnapshot(ctx, []string{src}, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tree, err := r.LoadTree(ctx, res.Snapshot.Tree)
	if err != nil {
		t.Fatal(err)
	}
	type file struct {
		name  string
		c     Chunk
		order uint64 // offset in its pack
	}
	var files []file
	for name := range want {
		n := tree.Find([]byte(name))
		if n == nil || len(n.Chunks) != 1 {
			t.Fatalf("%s: %+v", name, n)
		}
		loc, ok := r.index.lookup(BlobData, n.Chunks[0].ID)
		if !ok || !loc.zstd {
			t.Fatalf("%s is not stored compressed", name)
		}
		files = append(files, file{name, n.Chunks[0], loc.offset})
	}
	read := func(f file) {
		t.Helper()
		p := make([]byte, f.c.Length)
		if n, err := r.ReadChunksAt(ctx, []Chunk{f.c}, p, 0, 0); err != nil || !bytes.Equal(p[:n], want[f.name]) {
			t.Fatalf("%s: %d bytes, %v", f.name, n, err)
		}
	}

	base := r.eng.inflated.Load() // the tree's
	// Scattered: every 7th file of the pack's order from the end, then
	// every 11th from the start (further apart than a walk's gap).
	sort.Slice(files, func(i, j int) bool { return files[i].order < files[j].order })
	n := uint64(0)
	for i := len(files) - 1; i >= 0; i -= 7 {
		read(files[i])
		n++
	}
	for i := 3; i < len(files); i += packAheadGap + 3 {
		read(files[i])
		n++
	}
	waitPrefetch(t, r)
	if got := r.eng.inflated.Load() - base; got != n {
		t.Errorf("scattered reads of %d files decompressed %d blobs: a read-ahead started", n, got)
	}

	// In pack order, as a walk.
	r2, err := Open(ctx, st, Options{}, m)
	if err != nil {
		t.Fatal(err)
	}
	r = r2
	hits := r.eng.plains.stats().Hits
	for _, f := range files {
		read(f)
	}
	waitPrefetch(t, r)
	if got := r.eng.plains.stats().Hits - hits; got < uint64(len(files))/2 {
		t.Errorf("a walk of %d files found %d decompressed ahead", len(files), got)
	}
	if got := r.eng.inflated.Load(); got != uint64(len(files)) {
		t.Errorf("a walk of %d files decompressed %d blobs", len(files), got)
	}
	for deadline := time.Now().Add(5 * time.Second); r.eng.pf.workers.Load() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d prefetch workers left after the walk", r.eng.pf.workers.Load())
		}
	}
}
