package repo_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store/faults"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
	"github.com/snapcrypt/snapcrypt/repo/store/retry"
)

// faultKey makes a key file and loads it, as the CLI does.
func faultKey(t *testing.T) *keys.Material {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := keys.GenerateKeyFile(p); err != nil {
		t.Fatal(err)
	}
	spec, err := keys.ParseSpec("file:" + p)
	if err != nil {
		t.Fatal(err)
	}
	m, err := spec.Load()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// faultTree writes a tree of several packs' worth of data: two large random
// files, many small ones, a symlink and an empty directory.
func faultTree(t *testing.T, root string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range []int{20 << 20, 9<<20 + 4321} {
		b := make([]byte, n)
		rand.Read(b)
		must(os.WriteFile(filepath.Join(root, fmt.Sprint("big", i)), b, 0o640))
	}
	for d := range 5 {
		dir := filepath.Join(root, "src", fmt.Sprint("d", d))
		must(os.MkdirAll(dir, 0o755))
		for f := range 40 {
			must(os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.go", f)), []byte(strings.Repeat(fmt.Sprintf("package d%d // %d\n", d, f), f+1)), 0o644))
		}
	}
	must(os.MkdirAll(filepath.Join(root, "empty"), 0o700))
	must(os.Symlink("big0", filepath.Join(root, "link")))
}

// treeSum describes every entry below root: type, mode bits, size and
// content hash or link target.
func treeSum(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%q %v", rel, fi.Mode())
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %d %x", len(b), sha256.Sum256(b))
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// faultRules injects, on every kind of call: transient errors at random,
// latency, dropped Create responses (the object is written, the caller sees
// an error), Creates failing before they happen, and listings that break
// off after one object.
func faultRules(fst *faults.Store) {
	fst.Add(faults.Rule{Ops: []faults.Op{faults.Create}, Every: 3, Dropped: true})
	fst.Add(faults.Rule{Ops: []faults.Op{faults.Create}, Every: 5})
	fst.Add(faults.Rule{Ops: []faults.Op{faults.List}, Every: 2, ListAfter: 1})
	fst.Add(faults.Rule{Ops: []faults.Op{faults.Get, faults.GetRange}, Every: 4, Dropped: true})
	fst.Add(faults.Rule{Probability: 0.1})
	fst.Add(faults.Rule{Latency: 2 * time.Millisecond})
}

// TestFaultsSnapshotRestore takes two snapshots and restores them through a
// retrying store over a store that injects faults, as a flaky S3 server
// would; everything must succeed and check clean, with and without the
// faults.
func TestFaultsSnapshotRestore(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	fst := faults.New(inner)
	faultRules(fst)
	var mu sync.Mutex
	retries := map[string]int{}
	st := retry.New(fst, retry.Options{
		Attempts: 12,
		Sleep:    func(ctx context.Context, _ time.Duration) error { return ctx.Err() }, // no real waiting
		OnRetry: func(op, name string, attempt int, err error) {
			mu.Lock()
			retries[op]++
			mu.Unlock()
		},
	})
	m := faultKey(t)

	r, err := repo.Init(ctx, st, m)
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	src := filepath.Join(t.TempDir(), "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	faultTree(t, src)
	want1 := treeSum(t, src)
	res1, err := r.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{Name: "one"})
	if err != nil {
		t.Fatalf("first snapshot: %v", err)
	}
	// A second process opens the repository (through the faults as well),
	// changes nothing but one file, and snapshots again.
	if err := os.WriteFile(filepath.Join(src, "src/d0/f00.go"), []byte("package d0 // changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	want2 := treeSum(t, src)
	r2, err := repo.Open(ctx, st, repo.Options{}, m)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	res2, err := r2.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{Name: "two"})
	if err != nil {
		t.Fatalf("second snapshot: %v", err)
	}
	if res2.Progress.ReadBytes >= 1<<20 {
		t.Errorf("second snapshot re-read %d bytes of unchanged files", res2.Progress.ReadBytes)
	}

	// Restore and check through the faults with a freshly opened repository.
	r3, err := repo.Open(ctx, st, repo.Options{}, m)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	for i, c := range []struct {
		ref  string
		want string
	}{{res1.Snapshot.ID.String(), want1}, {"two", want2}, {"latest", want2}} {
		s, err := r3.FindSnapshot(ctx, c.ref)
		if err != nil {
			t.Fatalf("find %s: %v", c.ref, err)
		}
		dst := filepath.Join(t.TempDir(), fmt.Sprint("restore", i))
		if _, err := r3.Restore(ctx, s, dst, repo.RestoreOptions{}); err != nil {
			t.Fatalf("restore %s: %v", c.ref, err)
		}
		if got := treeSum(t, dst); got != c.want {
			t.Fatalf("restore %s differs from the source\nsource:\n%s\nrestored:\n%s", c.ref, c.want, got)
		}
	}
	check := func(r *repo.Repository, how string) {
		t.Helper()
		res, err := r.Check(ctx, repo.CheckOptions{ReadData: true})
		if err != nil {
			t.Fatalf("check %s: %v", how, err)
		}
		if len(res.Problems) > 0 || res.Snapshots != 2 || res.Packs < 2 {
			t.Fatalf("check %s: %d snapshots, %d packs, problems: %q", how, res.Snapshots, res.Packs, res.Problems)
		}
	}
	check(r3, "through the faults")
	clean, err := repo.Open(ctx, inner, repo.Options{}, m)
	if err != nil {
		t.Fatalf("open without faults: %v", err)
	}
	check(clean, "without faults")

	mu.Lock()
	defer mu.Unlock()
	t.Logf("faults injected: %d; retries by method: %v; calls: create %d, get %d, get range %d, list %d",
		fst.Injected(), retries, fst.Calls(faults.Create), fst.Calls(faults.Get), fst.Calls(faults.GetRange), fst.Calls(faults.List))
	// The repository reads whole objects only through size-bounded ranged
	// reads (store.GetBounded), so these are the calls it makes.
	for _, op := range []string{"create", "get range", "list"} {
		if retries[op] == 0 {
			t.Errorf("no %s was retried: the faults did not reach it", op)
		}
	}
}

// TestFaultsWithoutRetry shows that the faults above break a snapshot when
// nothing retries, so the test above exercises the retry path.
func TestFaultsWithoutRetry(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	m := faultKey(t)
	if _, err := repo.Init(ctx, inner, m); err != nil {
		t.Fatal(err)
	}
	fst := faults.New(inner)
	faultRules(fst)
	src := t.TempDir()
	faultTree(t, src)
	var err error
	var r *repo.Repository
	if r, err = repo.Open(ctx, fst, repo.Options{}, m); err == nil {
		_, err = r.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{})
	}
	if err == nil {
		t.Fatal("open and snapshot succeeded on a faulty store without retries")
	}
	if !retry.Transient(err) && !strings.Contains(err.Error(), faults.ErrInjected.Error()) {
		t.Fatalf("failed, but not by an injected fault: %v", err)
	}
}
