package repo_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

func TestSnapshotReader(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, mem.New())
	data := make([]byte, 5<<20+17)
	rand.Read(data)
	res, err := r.SnapshotReader(ctx, bytes.NewReader(data), "db.sql", repo.SnapshotOptions{Name: "dump"})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Snapshot
	if len(s.Paths) != 1 || s.Paths[0] != "stdin:db.sql" || s.Files != 1 || s.Bytes != uint64(len(data)) {
		t.Fatalf("manifest: paths %q, %d files, %d bytes", s.Paths, s.Files, s.Bytes)
	}
	tree, err := r.LoadTree(ctx, s.Tree)
	if err != nil {
		t.Fatal(err)
	}
	if len(tree.Nodes) != 1 || string(tree.Nodes[0].Name) != "db.sql" || tree.Nodes[0].Mode != 0o644 {
		t.Fatalf("tree %+v", tree.Nodes)
	}
	var got []byte
	for _, c := range tree.Nodes[0].Chunks {
		b, err := r.ReadBlob(ctx, repo.BlobData, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b...)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes that differ from the %d read", len(got), len(data))
	}
}

func TestSnapshotReaderFailsMidway(t *testing.T) {
	ctx := context.Background()
	r := newRepo(t, mem.New())
	broken := errors.New("producer died")
	big := make([]byte, 9<<20) // several chunks go to packs before the failure
	rand.Read(big)
	rd := io.MultiReader(bytes.NewReader(big), iotest.ErrReader(broken))
	if _, err := r.SnapshotReader(ctx, rd, "db.sql", repo.SnapshotOptions{}); !errors.Is(err, broken) {
		t.Fatalf("a reader failing midway gave %v, want an error wrapping its own", err)
	}
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 0 {
		t.Fatalf("a failed read left %d snapshots", len(snaps))
	}
	// A context cancelled during the read stops a reader that never ends.
	cctx, cancel := context.WithCancel(ctx)
	endless := readerFunc(func(p []byte) (int, error) { cancel(); return len(p), nil })
	if _, err := r.SnapshotReader(cctx, endless, "a", repo.SnapshotOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	for _, name := range []string{"", ".", "..", "a/b", "nul\x00"} {
		if _, err := r.SnapshotReader(ctx, strings.NewReader("x"), name, repo.SnapshotOptions{}); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
