package repo

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// TestCheckCountsUnusedSpace: a pack that no index names (what an
// interrupted snapshot leaves) and the blobs of a forgotten snapshot are
// unused space: check counts them and lists no problem.
func TestCheckCountsUnusedSpace(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r, _ := newTestRepo(t, st)
	src := t.TempDir()
	big := make([]byte, 300<<10)
	rand.Read(big)
	if err := os.WriteFile(filepath.Join(src, "f"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := r.TakeSnapshot(ctx, []string{src}, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clean, err := r.Check(ctx, CheckOptions{})
	if err != nil || len(clean.Problems) != 0 {
		t.Fatalf("check: %v %q", err, clean.Problems)
	}
	if clean.UnindexedPacks != 0 || clean.UnindexedBytes != 0 || clean.UnreachableBlobs != 0 || clean.UnreachableBytes != 0 {
		t.Fatalf("a fresh repository has unused space: %+v", clean)
	}

	// An interrupted write: a pack under a name no index holds.
	var pack string
	for _, n := range storeNames(t, st) {
		if strings.HasPrefix(n, "data/") {
			pack = n
			break
		}
	}
	b, err := st.Get(ctx, pack)
	if err != nil {
		t.Fatal(err)
	}
	var stray ObjectID
	rand.Read(stray[:])
	if err := st.Create(ctx, packName(stray), b); err != nil {
		t.Fatal(err)
	}
	got, err := r.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || len(got.Problems) != 0 {
		t.Fatalf("check with an unindexed pack: %v %q", err, got.Problems)
	}
	if got.UnindexedPacks != 1 || got.UnindexedBytes != int64(len(b)) {
		t.Fatalf("unindexed: %d packs, %d bytes; want 1, %d", got.UnindexedPacks, got.UnindexedBytes, len(b))
	}
	u, err := r.Unindexed(ctx)
	if err != nil || u.Packs != 1 || u.Bytes != int64(len(b)) {
		t.Fatalf("Unindexed: %+v %v; want 1 pack, %d bytes", u, err, len(b))
	}

	// Forgotten: every blob of every indexed pack is unreachable.
	if err := r.ForgetSnapshot(ctx, res.Snapshot.ID); err != nil {
		t.Fatal(err)
	}
	var blobs int
	var bytes int64
	for _, p := range r.index.Packs() {
		for _, pb := range p.Blobs {
			blobs++
			bytes += int64(pb.Length)
		}
	}
	got, err = r.Check(ctx, CheckOptions{})
	if err != nil || len(got.Problems) != 0 {
		t.Fatalf("check after forget: %v %q", err, got.Problems)
	}
	if blobs < 2 || got.UnreachableBlobs != blobs || got.UnreachableBytes != bytes {
		t.Fatalf("unreachable: %d blobs, %d bytes; want %d, %d", got.UnreachableBlobs, got.UnreachableBytes, blobs, bytes)
	}
}
