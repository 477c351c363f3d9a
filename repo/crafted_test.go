package repo_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/repotest"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// craftedRepo returns a repository holding one snapshot whose root tree
// build makes with the crafter, opened afresh as a reader would.
func craftedRepo(t *testing.T, build func(c *repotest.Crafter) repo.BlobID) (*repo.Repository, *repo.Snapshot) {
	t.Helper()
	ctx := context.Background()
	st := mem.New()
	key := testKey(t)
	w, err := repo.Init(ctx, st, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := repotest.New(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.Snapshot(ctx, "crafted", build(c))
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, st, repo.Options{}, key)
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.LoadSnapshot(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return r, s
}

// TestDeepTrees: trees nested MaxTreeDepth levels restore and check
// clean; one level more is refused by both, naming where.
func TestDeepTrees(t *testing.T) {
	ctx := context.Background()
	deepest := "/d" + strings.Repeat("/d", repo.MaxTreeDepth)
	for _, depth := range []int{repo.MaxTreeDepth, repo.MaxTreeDepth + 1} {
		r, s := craftedRepo(t, func(c *repotest.Crafter) repo.BlobID { return c.Chain(depth) })
		_, rerr := r.Restore(ctx, s, filepath.Join(t.TempDir(), "r"), repo.RestoreOptions{})
		res, err := r.Check(ctx, repo.CheckOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if depth == repo.MaxTreeDepth {
			if rerr != nil || len(res.Problems) != 0 {
				t.Errorf("depth %d: restore: %v; check: %q", depth, rerr, res.Problems)
			}
			continue
		}
		if !errors.Is(rerr, repo.ErrTreeLoop) || !errors.Is(rerr, object.ErrCorrupt) || !strings.Contains(rerr.Error(), "restore "+deepest+": tree") {
			t.Errorf("depth %d: restore: %v", depth, rerr)
		}
		want := "snapshot " + s.ShortID() + deepest + ": tree"
		if len(res.Problems) != 1 || !strings.Contains(res.Problems[0], want) || !strings.Contains(res.Problems[0], "nests deeper than 512") {
			t.Errorf("depth %d: check's problems: %q, want one with %q", depth, res.Problems, want)
		}
	}
}

// TestForgedLoop: a tree blob stored under an id of the attacker's choice,
// holding itself as a subdirectory, is corruption: the content does not
// match the id, and nothing walks it.
func TestForgedLoop(t *testing.T) {
	ctx := context.Background()
	self := repo.BlobID{0xab}
	r, s := craftedRepo(t, func(c *repotest.Crafter) repo.BlobID {
		c.TreeAs(self, &repo.Tree{Nodes: []repo.Node{repotest.Dir("me", self)}})
		return self
	})
	_, err := r.Restore(ctx, s, filepath.Join(t.TempDir(), "r"), repo.RestoreOptions{})
	if !errors.Is(err, object.ErrCorrupt) || !strings.Contains(err.Error(), "does not match its id") {
		t.Errorf("restore: %v", err)
	}
	res, err := r.Check(ctx, repo.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 1 || !strings.Contains(res.Problems[0], "does not match its id") {
		t.Errorf("check's problems: %q", res.Problems)
	}
}
