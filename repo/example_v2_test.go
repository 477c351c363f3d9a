package repo_test

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
)

// The example repository under testdata/example-repo-v2 was generated once
// by `go test ./repo -run TestExampleRepositoryV2 -update-example-v2`
// (format version 2) and is committed. Like testdata/example-repo it must
// open, list and restore forever.
//
// It is protected by testdata/example.key and holds two snapshots:
// "first" (default compression, auto: a compressible text, an
// incompressible file, small files, a symlink, an empty file) and
// "second", taken with compression off after a change: compressed and
// stored blobs, version 2 and version 1 entry encodings side by side.
var updateExampleV2 = flag.Bool("update-example-v2", false, "regenerate testdata/example-repo-v2 (never for a released format)")

const exampleDirV2 = "testdata/example-repo-v2"

func exampleTreeV2(t *testing.T, root string, second bool) {
	t.Helper()
	w := func(p string, content []byte) {
		p = filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w("README", []byte("an example tree for snapcrypt's frozen repository, format version 2\n"))
	w("docs/notes.txt", compressibleText(200<<10, 2))
	noise := make([]byte, 200<<10)
	x := uint64(0x2545f4914f6cdd1d)
	for i := range noise {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		noise[i] = byte(x >> 24)
	}
	w("data/noise.bin", noise)
	w("empty", nil)
	os.Symlink("docs/notes.txt", filepath.Join(root, "notes"))
	if second {
		w("docs/added.txt", []byte(strings.Repeat("added with compression off\n", 3000)))
	}
}

func generateExampleV2(t *testing.T) {
	ctx := context.Background()
	os.RemoveAll(exampleDirV2)
	st, err := local.Init(exampleDirV2)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.InitWith(ctx, st, loadSpec(t, "file:testdata/example.key"), repo.InitOptions{Version: 2})
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	exampleTreeV2(t, src, false)
	if _, err := r.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{Name: "first", Host: "example"}); err != nil {
		t.Fatal(err)
	}
	exampleTreeV2(t, src, true)
	if _, err := r.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{Name: "second", Host: "example", Compression: repo.CompressionOff}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"first", "second"} {
		s, err := r.FindSnapshot(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(t.TempDir(), name)
		if _, err := r.Restore(ctx, s, dst, repo.RestoreOptions{}); err != nil {
			t.Fatal(err)
		}
		os.WriteFile("testdata/example-v2-"+name+".txt", []byte(listing(t, dst)), 0o644)
	}
	exec.Command("chmod", "-R", "u+rwX,go+rX", exampleDirV2).Run()
}

func TestExampleRepositoryV2(t *testing.T) {
	if *updateExampleV2 {
		generateExampleV2(t)
	}
	ctx := context.Background()
	st, err := local.Open(exampleDirV2)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, st, repo.Options{}, loadSpec(t, "file:testdata/example.key"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Config().Version != 2 || r.Compression() != repo.CompressionAuto {
		t.Fatalf("config %+v, compression %s", r.Config(), r.Compression())
	}
	// Both kinds of blob, in both entry encodings.
	var zstd, stored int
	v1Packs := 0
	for _, p := range r.Index().Packs() {
		z := false
		for _, pb := range p.Blobs {
			if pb.Zstd {
				zstd++
				z = true
			} else {
				stored++
			}
		}
		if !z {
			v1Packs++
		}
	}
	if zstd == 0 || stored == 0 || v1Packs == 0 {
		t.Fatalf("%d compressed blobs, %d stored, %d packs without a compressed blob", zstd, stored, v1Packs)
	}
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 2 || snaps[0].Name != "first" || snaps[1].Name != "second" || snaps[0].Added == nil || snaps[0].Added.Stored >= snaps[0].Added.Plain {
		t.Fatalf("snapshots: %+v", snaps)
	}
	for _, s := range snaps {
		want, err := os.ReadFile("testdata/example-v2-" + s.Name + ".txt")
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(t.TempDir(), s.Name)
		if _, err := r.Restore(ctx, s, dst, repo.RestoreOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := listing(t, dst); got != string(want) {
			t.Fatalf("snapshot %s restores differently:\n got:\n%s\nwant:\n%s", s.Name, got, want)
		}
	}
	res, err := r.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) > 0 {
		t.Fatalf("check: %v", res.Problems)
	}
}
