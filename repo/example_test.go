package repo_test

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
	"github.com/snapcrypt/snapcrypt/rotation"
)

// The example repository under testdata/example-repo was generated once by
// `go test ./repo -run TestExampleRepository -update-example` (format
// version 1) and is committed. It must open, list and restore forever: a
// change that breaks this test breaks every user's repository.
//
// It holds two snapshots ("first", then "second" after a change) and one
// finished key rotation: generation one (the key file example.key) is
// retired, generation two (the passphrase in example.pass, Argon2id) is
// current.
var updateExample = flag.Bool("update-example", false, "regenerate testdata/example-repo (never for a released format)")

const exampleDir = "testdata/example-repo"

func exampleTree(t *testing.T, root string, second bool) {
	t.Helper()
	w := func(p, content string, mode os.FileMode) {
		p = filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	w("README", "an example tree for snapcrypt's frozen repository\n", 0o644)
	w("docs/notes.txt", strings.Repeat("line of notes\n", 5000), 0o600)
	w("bin/run.sh", "#!/bin/sh\necho run\n", 0o755)
	w("empty", "", 0o644)
	w("name-\xff-not-utf8", "bytes\n", 0o644)
	os.MkdirAll(filepath.Join(root, "emptydir"), 0o755)
	os.Symlink("docs/notes.txt", filepath.Join(root, "notes"))
	os.Link(filepath.Join(root, "README"), filepath.Join(root, "docs/README.link"))
	if second {
		w("docs/notes.txt", strings.Repeat("line of notes, changed\n", 5000), 0o600)
		w("added.txt", "added for the second snapshot\n", 0o644)
	}
}

// listing describes a restored tree: path, type, mode, size, sha256, target.
func listing(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
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
		fmt.Fprintf(&b, "%q %v", rel, fi.Mode())
		switch {
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %d %x", len(data), sha256.Sum256(data))
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			fmt.Fprintf(&b, " -> %q", target)
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func loadSpec(t *testing.T, spec string) *keys.Material {
	t.Helper()
	s, err := keys.ParseSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func generateExample(t *testing.T) {
	ctx := context.Background()
	os.RemoveAll(exampleDir)
	os.MkdirAll("testdata", 0o755)
	if err := keys.GenerateKeyFile("testdata/example.key"); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	os.WriteFile("testdata/example.pass", []byte("correct horse battery staple\n"), 0o600)
	st, err := local.Init(exampleDir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(ctx, st, loadSpec(t, "file:testdata/example.key"))
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	exampleTree(t, src, false)
	if _, err := r.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{Name: "first", Host: "example", Tags: []string{"frozen"}}); err != nil {
		t.Fatal(err)
	}
	rot := rotation.New(r.Keys(), rotation.Options{Host: "example"})
	if _, err := rot.Start(ctx, loadSpec(t, "passfile:testdata/example.pass")); err != nil {
		t.Fatal(err)
	}
	if err := rot.Run(ctx, nil); err != nil {
		t.Fatal(err)
	}
	exampleTree(t, src, true)
	if _, err := r.TakeSnapshot(ctx, []string{src}, repo.SnapshotOptions{Name: "second", Host: "example"}); err != nil {
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
		os.WriteFile("testdata/example-"+name+".txt", []byte(listing(t, dst)), 0o644)
	}
	// Objects are read-only files; make the tree committable as is.
	exec.Command("chmod", "-R", "u+rwX,go+rX", exampleDir).Run()
}

func TestExampleRepository(t *testing.T) {
	if *updateExample {
		generateExample(t)
	}
	ctx := context.Background()
	st, err := local.Open(exampleDir)
	if err != nil {
		t.Fatal(err)
	}
	// The retired key no longer opens it.
	if _, err := repo.Open(ctx, st, repo.Options{}, loadSpec(t, "file:testdata/example.key")); err == nil {
		t.Fatal("the retired key opened the example repository")
	}
	r, err := repo.Open(ctx, st, repo.Options{}, loadSpec(t, "passfile:testdata/example.pass"))
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 2 || snaps[0].Name != "first" || snaps[1].Name != "second" || snaps[0].Host != "example" {
		t.Fatalf("snapshots: %+v", snaps)
	}
	for _, s := range snaps {
		want, err := os.ReadFile("testdata/example-" + s.Name + ".txt")
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
