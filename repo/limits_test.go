package repo

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// internalRepo makes a repository in memory.
func internalRepo(t *testing.T) *Repository {
	t.Helper()
	k := make([]byte, 32)
	rand.Read(k)
	m, err := keys.NewRawKey(k)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Init(context.Background(), mem.New(), m)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestTreeCountAllocatesNothing: a tree blob that claims as many entries
// as it has bytes, and fails at the first, costs the decoder next to
// nothing; allocating by the count would cost some 200 bytes per entry.
func TestTreeCountAllocatesNothing(t *testing.T) {
	const n = 1 << 16
	b := binary.AppendUvarint([]byte{treeVersion}, n)
	b = append(b, make([]byte, n)...) // name length 0: the first entry is bad
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 10 {
		if _, err := UnmarshalTree(b); !errors.Is(err, errTree) {
			t.Fatalf("decoding: %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / 10; per > 16<<10 {
		t.Errorf("decoding a tree that fails at its first entry allocated %d bytes", per)
	}
}

// TestTreeIDVerified: a tree blob stored under an id that is not its
// content's is corrupted, however well it decodes.
func TestTreeIDVerified(t *testing.T) {
	ctx := context.Background()
	r := internalRepo(t)
	good := (&Tree{Nodes: []Node{{Name: []byte("f"), Type: TypeSymlink, Target: []byte("x")}}}).Marshal()
	var forged BlobID
	rand.Read(forged[:])
	w := newWriter(r, r.comp)
	if _, err := w.add(ctx, BlobTree, forged, good); err != nil {
		t.Fatal(err)
	}
	if err := w.flush(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := r.LoadTree(ctx, forged)
	if !errors.Is(err, object.ErrCorrupt) || !strings.Contains(err.Error(), "does not match its id") || !strings.Contains(err.Error(), forged.Short()) {
		t.Fatalf("loading a tree stored under a forged id: %v", err)
	}
	id := r.hash.id(BlobTree, good)
	if _, err := w.add(ctx, BlobTree, id, good); err != nil {
		t.Fatal(err)
	}
	if err := w.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if tr, err := r.LoadTree(ctx, id); err != nil || len(tr.Nodes) != 1 {
		t.Fatalf("loading the same tree under its own id: %v", err)
	}
}

// TestTreeSizeLimit: an index that gives a tree blob more than
// MaxTreeSize bytes is refused before anything is read or allocated.
func TestTreeSizeLimit(t *testing.T) {
	ctx := context.Background()
	r := internalRepo(t)
	var id BlobID
	rand.Read(id[:])
	h, _ := object.NewHeader(object.KindPack, [16]byte{})
	r.index.add([]IndexPack{{ID: ObjectID{1}, PlainSize: 1 << 30, Header: h.Marshal(),
		Blobs: []PackBlob{{Type: BlobTree, ID: id, Offset: 0, Length: MaxTreeSize + 1}}}})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := r.LoadTree(ctx, id)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, object.ErrCorrupt) || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("loading a tree of %d bytes: %v", MaxTreeSize+1, err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("refusing a tree of %d bytes allocated %d bytes", MaxTreeSize+1, n)
	}
}

// TestSnapshotSizeLimit: a manifest object larger than MaxSnapshotSize is
// refused, naming it, by the listing, by check, and by a load of it.
func TestSnapshotSizeLimit(t *testing.T) {
	ctx := context.Background()
	r := internalRepo(t)
	id := ObjectID{7}
	big := make([]byte, MaxSnapshotSize+1)
	if err := r.st.Create(ctx, snapshotName(id), big); err != nil {
		t.Fatal(err)
	}
	for what, err := range map[string]error{
		"Snapshots":    func() error { _, err := r.Snapshots(ctx); return err }(),
		"LoadSnapshot": func() error { _, err := r.LoadSnapshot(ctx, id); return err }(),
	} {
		if !errors.Is(err, object.ErrCorrupt) || !strings.Contains(err.Error(), snapshotName(id)) || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("%s with a manifest of %d bytes: %v", what, len(big), err)
		}
	}
	res, err := r.Check(ctx, CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 1 || !strings.Contains(res.Problems[0], snapshotName(id)) {
		t.Errorf("check's problems: %q", res.Problems)
	}
}

// TestConfigSizeLimit: a config object larger than MaxConfigSize is
// refused.
func TestConfigSizeLimit(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	if err := st.Create(ctx, "config", make([]byte, MaxConfigSize+1)); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadConfig(ctx, st); !errors.Is(err, object.ErrCorrupt) || !strings.Contains(err.Error(), "config") || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("reading a config of %d bytes: %v", MaxConfigSize+1, err)
	}
}

// TestIndexPart: index objects are cut before indexSplit bytes, with at
// least one pack each.
func TestIndexPart(t *testing.T) {
	h, _ := object.NewHeader(object.KindPack, [16]byte{})
	pack := func(blobs int) IndexPack {
		return IndexPack{PlainSize: 1 << 24, Header: h.Marshal(), Blobs: make([]PackBlob, blobs)}
	}
	const max = 10 << 10
	packs := []IndexPack{pack(100), pack(100), pack(100), pack(300), pack(10)}
	var got []int
	for rest := packs; len(rest) > 0; {
		k := indexPart(rest, max)
		if k < 1 {
			t.Fatalf("indexPart returned %d", k)
		}
		if b := MarshalIndex(rest[:k]); len(b) > max && k > 1 {
			t.Errorf("an index part of %d packs is %d bytes, more than %d", k, len(b), max)
		}
		got = append(got, k)
		rest = rest[k:]
	}
	if fmt.Sprint(got) != "[2 1 1 1]" { // the pack of 300 blobs is too large to share
		t.Errorf("parts: %v, want [2 1 1 1]", got)
	}
}

// TestSnapshotSkipsDeepDirectories: snapshot keeps directories down to
// MaxTreeDepth, skips deeper ones with a warning, and what it wrote
// restores.
func TestSnapshotSkipsDeepDirectories(t *testing.T) {
	ctx := context.Background()
	r := internalRepo(t)
	src := t.TempDir()
	p := src
	for range MaxTreeDepth + 2 {
		p = filepath.Join(p, "d")
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	var warnings []string
	res, err := r.TakeSnapshot(ctx, []string{src}, SnapshotOptions{Warn: func(s string) { warnings = append(warnings, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "nested deeper than 512") {
		t.Errorf("warnings: %q", warnings)
	}
	dst := filepath.Join(t.TempDir(), "r")
	if _, err := r.Restore(ctx, res.Snapshot, dst, RestoreOptions{}); err != nil {
		t.Fatalf("restoring what snapshot wrote: %v", err)
	}
	deepest := dst
	for range MaxTreeDepth {
		deepest = filepath.Join(deepest, "d")
	}
	if _, err := os.Stat(deepest); err != nil {
		t.Errorf("the directory at depth %d: %v", MaxTreeDepth, err)
	}
	if _, err := os.Stat(filepath.Join(deepest, "d")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the directory at depth %d: %v, want it skipped", MaxTreeDepth+1, err)
	}
}
