package fs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/repotest"
)

// craft adds a snapshot named name whose root tree build makes.
func (f *fixture) craft(name string, build func(c *repotest.Crafter) repo.BlobID) {
	f.t.Helper()
	c, err := repotest.New(f.ctx, f.r)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := c.Snapshot(f.ctx, name, build(c)); err != nil {
		f.t.Fatal(err)
	}
}

// find runs find(1) over dir, bounded by a minute, and returns its
// stderr; it must fail.
func find(t *testing.T, dir string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "find", dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("find %s did not end within a minute", dir)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("find %s: %v, want it to fail", dir, err)
	}
	return stderr.String()
}

// TestDeepTreesELOOP: in a snapshot whose trees nest deeper than
// repo.MaxTreeDepth, the directory one level too deep answers ELOOP, find
// ends, and the mount logs it once.
func TestDeepTreesELOOP(t *testing.T) {
	f := newFixture(t)
	f.craft("deep", func(c *repotest.Crafter) repo.BlobID { return c.Chain(repo.MaxTreeDepth + 3) })
	f.mount(Options{})
	stderr := find(t, f.path("snapshots", "deep"))
	if !strings.Contains(stderr, "Too many levels of symbolic links") {
		t.Errorf("find's errors: %s", stderr)
	}
	tooDeep := f.path(append([]string{"snapshots", "deep"}, strings.Split(strings.Repeat("d/", repo.MaxTreeDepth+1), "/")...)...)
	if _, err := os.Stat(tooDeep); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("stat of the directory at depth %d: %v, want ELOOP", repo.MaxTreeDepth+1, err)
	}
	if _, err := os.Stat(filepath.Dir(tooDeep)); err != nil {
		t.Errorf("stat of the directory at depth %d: %v", repo.MaxTreeDepth, err)
	}
	if lines := f.logs.matching("nests deeper than 512"); len(lines) != 1 {
		t.Errorf("log lines about the depth: %q", lines)
	}
}

// TestForgedLoopEIO: a tree stored under an id of the attacker's choice
// that holds itself is corruption: find ends at once with EIO, logged
// once.
func TestForgedLoopEIO(t *testing.T) {
	f := newFixture(t)
	self := repo.BlobID{0xab}
	f.craft("loop", func(c *repotest.Crafter) repo.BlobID {
		c.TreeAs(self, &repo.Tree{Nodes: []repo.Node{repotest.Dir("me", self)}})
		return c.Tree(&repo.Tree{Nodes: []repo.Node{repotest.Dir("loop", self)}})
	})
	f.mount(Options{})
	stderr := find(t, f.path("snapshots", "loop"))
	if !strings.Contains(stderr, "Input/output error") {
		t.Errorf("find's errors: %s", stderr)
	}
	if lines := f.logs.matching("does not match its id"); len(lines) != 1 {
		t.Errorf("log lines about the forged tree: %q", lines)
	}
}

// TestSubdirLoop: a directory whose tree is its own or an ancestor's
// cannot be entered; the error maps to ELOOP. (Verified tree ids keep such
// trees out of a repository, so this is checked on the nodes alone.)
func TestSubdirLoop(t *testing.T) {
	var logged []string
	m := &mount{ctx: context.Background(), logged: map[string]bool{},
		opts: Options{Logf: func(format string, args ...any) { logged = append(logged, format) }}}
	root := &node{name: "s", a: meta{typ: syscall.S_IFDIR}}
	root.one[0].ID = repo.BlobID{1}
	mid := &node{name: "mid", parent: root, depth: 1, a: meta{typ: syscall.S_IFDIR}}
	mid.one[0].ID = repo.BlobID{2}
	for _, c := range []struct {
		at   *node
		sub  repo.BlobID
		loop bool
	}{
		{root, repo.BlobID{1}, true},
		{mid, repo.BlobID{2}, true},
		{mid, repo.BlobID{1}, true},
		{mid, repo.BlobID{3}, false},
	} {
		err := subdirErr(c.at, &repo.Node{Name: []byte{'a' + c.sub[0]}, Type: repo.TypeDir, Subtree: c.sub})
		if got := err != nil; got != c.loop {
			t.Errorf("tree %x below %x: %v, want a loop: %v", c.sub[0], c.at.tree()[0], err, c.loop)
			continue
		}
		if err != nil {
			if !errors.Is(err, repo.ErrTreeLoop) || !strings.Contains(err.Error(), "contains itself") {
				t.Errorf("tree %x below %x: %v", c.sub[0], c.at.tree()[0], err)
			}
			if errno := m.fail(c.at, err); errno != syscall.ELOOP {
				t.Errorf("the loop's errno: %v, want ELOOP", errno)
			}
		}
	}
	if len(logged) != 2 {
		t.Errorf("%d log lines, want one per distinct loop (2)", len(logged))
	}
}
