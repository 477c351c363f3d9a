package repo

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo/object"
)

// fakeTrees is a tree loader over a map, so that walks can meet what
// verified ids make impossible in a repository: trees that contain
// themselves.
type fakeTrees map[BlobID]*Tree

func (f fakeTrees) load(ctx context.Context, id BlobID) (*Tree, error) {
	t, ok := f[id]
	if !ok {
		return nil, fmt.Errorf("tree %s is not there", id.Short())
	}
	return t, nil
}

func dirNode(name string, id BlobID) Node {
	return Node{Name: []byte(name), Type: TypeDir, Subtree: id}
}

func fileNode(name string, chunks ...BlobID) Node {
	n := Node{Name: []byte(name), Type: TypeFile}
	for _, c := range chunks {
		n.Chunks = append(n.Chunks, Chunk{ID: c, Length: 1})
	}
	return n
}

func walkAll(t *testing.T, trees fakeTrees, roots ...BlobID) (reached []Reached) {
	t.Helper()
	var snaps []*Snapshot
	for i, root := range roots {
		snaps = append(snaps, &Snapshot{ID: ObjectID{byte(i + 1)}, Tree: root})
	}
	err := walkTrees(context.Background(), trees.load, snaps, func(x Reached) error {
		reached = append(reached, x)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return reached
}

// TestWalkOnce: trees and data blobs shared by directories and snapshots
// are reported once each, where they were first reached: a tree, then its
// files' blobs, then its subdirectories.
func TestWalkOnce(t *testing.T) {
	shared, root1, root2 := BlobID{1}, BlobID{2}, BlobID{3}
	trees := fakeTrees{
		shared: {Nodes: []Node{fileNode("f", BlobID{10}, BlobID{11}, BlobID{10})}},
		root1:  {Nodes: []Node{dirNode("a", shared), dirNode("b", shared), fileNode("g", BlobID{11})}},
		root2:  {Nodes: []Node{dirNode("c", shared), fileNode("h", BlobID{12})}},
	}
	var got []string
	for _, x := range walkAll(t, trees, root1, root2) {
		if x.Err != nil {
			t.Errorf("%s: %v", x.Path, x.Err)
		}
		got = append(got, fmt.Sprintf("%s %x %s", x.Type, x.ID[0], x.Path))
	}
	want := []string{
		"tree 2 snapshot 01000000",
		"data b snapshot 01000000/g",
		"tree 1 snapshot 01000000/a",
		"data a snapshot 01000000/a/f",
		"tree 3 snapshot 02000000",
		"data c snapshot 02000000/h",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("reached:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestWalkLoops: a tree that contains itself, directly or through
// another, is reported as a loop and the walk ends; so does a chain
// deeper than MaxTreeDepth, which is how a loop of any length ends too.
func TestWalkLoops(t *testing.T) {
	self, a, b := BlobID{1}, BlobID{2}, BlobID{3}
	chain := fakeTrees{}
	for i := range MaxTreeDepth + 5 {
		chain[BlobID{0, byte(i), byte(i >> 8)}] = &Tree{Nodes: []Node{dirNode("d", BlobID{0, byte(i + 1), byte((i + 1) >> 8)})}}
	}
	for _, c := range []struct {
		name  string
		trees fakeTrees
		root  BlobID
		want  string
		path  string
	}{
		{"itself", fakeTrees{self: {Nodes: []Node{dirNode("me", self)}}}, self, "contains itself", "snapshot 01000000/me"},
		{"cycle", fakeTrees{a: {Nodes: []Node{dirNode("to-b", b)}}, b: {Nodes: []Node{dirNode("to-a", a)}}}, a, "contains itself", "snapshot 01000000/to-b/to-a"},
		{"deep", chain, BlobID{}, "nests deeper than 512", "snapshot 01000000" + strings.Repeat("/d", MaxTreeDepth+1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			var errs []Reached
			for _, x := range walkAll(t, c.trees, c.root) {
				if x.Err != nil {
					errs = append(errs, x)
				}
			}
			if len(errs) != 1 {
				t.Fatalf("%d errors, want 1: %v", len(errs), errs)
			}
			x := errs[0]
			if !errors.Is(x.Err, ErrTreeLoop) || !errors.Is(x.Err, object.ErrCorrupt) || !strings.Contains(x.Err.Error(), c.want) || x.Path != c.path {
				t.Errorf("error at %q: %v; want %q at %q", x.Path, x.Err, c.want, c.path)
			}
		})
	}
}

// TestWalkStops: an error from visit ends the walk and is returned.
func TestWalkStops(t *testing.T) {
	root := BlobID{1}
	trees := fakeTrees{root: {Nodes: []Node{fileNode("a", BlobID{2}), fileNode("b", BlobID{3})}}}
	stop := errors.New("stop")
	n := 0
	err := walkTrees(context.Background(), trees.load, []*Snapshot{{Tree: root}}, func(x Reached) error {
		n++
		if x.Type == BlobData {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Errorf("walk returned %v after %d visits, want stop after 2", err, n)
	}
}

// loopRepository is a repository whose snapshot's root tree contains
// itself. Verified ids keep such a tree out of the store, so it is put in
// the tree cache, where LoadTree finds it.
func loopRepository(t *testing.T) (*Repository, *Snapshot) {
	t.Helper()
	ctx := context.Background()
	r := internalRepo(t)
	res, err := r.TakeSnapshot(ctx, []string{t.TempDir()}, SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	root := res.Snapshot.Tree
	r.trees.add(root, &Tree{Nodes: []Node{dirNode("again", root)}}, 100)
	return r, res.Snapshot
}

func TestRestoreLoop(t *testing.T) {
	r, s := loopRepository(t)
	_, err := r.Restore(context.Background(), s, filepath.Join(t.TempDir(), "r"), RestoreOptions{})
	if !errors.Is(err, ErrTreeLoop) || !errors.Is(err, object.ErrCorrupt) || !strings.Contains(err.Error(), "/again: tree "+s.Tree.Short()+" contains itself") {
		t.Fatalf("restoring a tree that contains itself: %v", err)
	}
}

func TestCheckLoop(t *testing.T) {
	r, s := loopRepository(t)
	res, err := r.Check(context.Background(), CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := "snapshot " + s.ShortID() + "/again: tree " + s.Tree.Short() + " contains itself"
	if len(res.Problems) != 1 || !strings.Contains(res.Problems[0], want) {
		t.Errorf("check's problems: %q, want one with %q", res.Problems, want)
	}
}
