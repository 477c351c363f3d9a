package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo"
)

func TestLs(t *testing.T) {
	f := newFixture(t)
	sc(t, f.env, "snapshot", "--name", "one", f.src).want(t, 0, "")
	r := sc(t, f.env, "ls", "one")
	r.want(t, 0, "")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	want := []string{"/dangling", "/empty", "/emptydir", "/hello.txt", "/link", "/name-\xff\xfe-not-utf8", "/sub"}
	if !slices.Equal(lines, want) {
		t.Fatalf("ls of the root:\n%q\nwant\n%q", lines, want)
	}
	r = sc(t, f.env, "ls", "--recursive", "latest", "sub")
	r.want(t, 0, "")
	lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
	want = []string{"/sub/deeper", "/sub/deeper/big.bin", "/sub/exec.sh", "/sub/hardlink"}
	if !slices.Equal(lines, want) {
		t.Fatalf("ls -R sub:\n%q\nwant\n%q", lines, want)
	}
	r = sc(t, f.env, "ls", "-l", "one", "/")
	r.want(t, 0, "")
	for _, s := range []string{"lrwxrwxrwx", "/link -> hello.txt", "drwx------", "/emptydir", "-rw-r--r--"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("ls -l does not show %q:\n%s", s, r.stdout)
		}
	}
	r = sc(t, f.env, "ls", "-l", "one", "sub/exec.sh")
	r.want(t, 0, "")
	execSize := fmt.Sprintf(" %d ", len("#!/bin/sh\necho "+marker+"\n"))
	if !strings.HasPrefix(r.stdout, "-rwxr-xr-x") || !strings.Contains(r.stdout, execSize) || !strings.HasSuffix(r.stdout, " /sub/exec.sh\n") {
		t.Errorf("ls -l of a file: %q", r.stdout)
	}

	// --json: one object a line; the name that is not UTF-8 keeps its bytes.
	r = sc(t, f.env, "ls", "--json", "-R", "one")
	r.want(t, 0, "")
	var entries []entryJSON
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	for dec.More() {
		var e entryJSON
		if err := dec.Decode(&e); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	if len(entries) != 11 || strings.Count(r.stdout, "\n") != 11 {
		t.Fatalf("ls --json -R printed %d entries on %d lines, want 11:\n%s", len(entries), strings.Count(r.stdout, "\n"), r.stdout)
	}
	byPath := map[string]entryJSON{}
	for _, e := range entries {
		p := e.Path
		if e.PathRaw != nil {
			p = string(e.PathRaw)
		}
		byPath[p] = e
	}
	if e := byPath["/sub/deeper/big.bin"]; e.Type != "file" || e.Size != 3<<20+12345 || e.Mode != 0o640 || e.Permissions != "-rw-r-----" {
		t.Errorf("ls --json big.bin: %+v", e)
	}
	if e := byPath["/link"]; e.Type != "symlink" || e.Target != "hello.txt" {
		t.Errorf("ls --json link: %+v", e)
	}
	if e, ok := byPath["/name-\xff\xfe-not-utf8"]; !ok || e.Path == string(e.PathRaw) {
		t.Errorf("ls --json of a name that is not UTF-8: %+v", e)
	}
	if e := byPath["/hello.txt"]; e.MTime.UnixNano() != 1600000000987654321 {
		t.Errorf("ls --json hello.txt mtime %v", e.MTime)
	}

	// Bad paths and snapshots.
	sc(t, f.env, "ls", "one", "/nope").want(t, 1, "/nope: no such path in the snapshot")
	sc(t, f.env, "ls", "one", "hello.txt/x").want(t, 1, "not a directory")
	sc(t, f.env, "ls", "nosuchsnap").want(t, 1, `no snapshot matches "nosuchsnap"`)
	sc(t, f.env, "ls").want(t, 2, "ls takes SNAPSHOT")
}

func TestDump(t *testing.T) {
	f := newFixture(t)
	sc(t, f.env, "snapshot", f.src).want(t, 0, "")
	for _, p := range []string{"hello.txt", "/sub/deeper/big.bin", "empty", "sub/hardlink"} {
		r := sc(t, f.env, "dump", "latest", p)
		r.want(t, 0, "")
		want, err := os.ReadFile(filepath.Join(f.src, p))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal([]byte(r.stdout), want) {
			t.Fatalf("dump %s: %d bytes that differ from the file's %d", p, len(r.stdout), len(want))
		}
	}
	r := sc(t, f.env, "dump", "latest", "sub")
	r.want(t, 1, "/sub is a directory")
	if r.stdout != "" {
		t.Fatalf("dump of a directory wrote %q", r.stdout)
	}
	sc(t, f.env, "dump", "latest", "link").want(t, 1, "/link is a symlink to hello.txt")
	sc(t, f.env, "dump", "latest", "missing").want(t, 1, "/missing: no such path in the snapshot")
	sc(t, f.env, "dump", "latest").want(t, 2, "dump takes SNAPSHOT and the PATH")
}

func TestDiff(t *testing.T) {
	f := newFixture(t)
	sc(t, f.env, "snapshot", "--name", "before", f.src).want(t, 0, "")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(f.src, "new.txt"), []byte("new"), 0o644))
	must(os.Remove(filepath.Join(f.src, "empty")))
	must(os.WriteFile(filepath.Join(f.src, "sub/exec.sh"), []byte("#!/bin/sh\necho changed\n"), 0o755))
	must(os.Chmod(filepath.Join(f.src, "sub/exec.sh"), 0o4755))
	must(os.Chmod(filepath.Join(f.src, "emptydir"), 0o755))
	must(os.MkdirAll(filepath.Join(f.src, "added/inner"), 0o755))
	sc(t, f.env, "snapshot", "--name", "after", f.src).want(t, 0, "")

	r := sc(t, f.env, "diff", "before", "after")
	r.want(t, 0, "")
	for _, s := range []string{"+    /new.txt\n", "-    /empty\n", "M    /sub/exec.sh  (39 B -> 23 B)\n", "U    /emptydir/\n",
		"+    /added/\n", "+    /added/inner/\n", "3 added (3 B), 1 removed (0 B), 1 modified, 1 metadata only\n"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("diff does not say %q:\n%s", s, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "hello.txt") || strings.Contains(r.stdout, "big.bin") {
		t.Errorf("diff lists unchanged files:\n%s", r.stdout)
	}

	r = sc(t, f.env, "diff", "--json", "before", "after", "/sub")
	r.want(t, 0, "")
	var d diffJSON
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("diff --json: %v\n%s", err, r.stdout)
	}
	if len(d.Changes) != 1 || d.Changes[0].Path != "/sub/exec.sh" || d.Changes[0].Change != "modified" ||
		d.Changes[0].Type != "file" || *d.Changes[0].OldSize != 39 || *d.Changes[0].NewSize != 23 || d.Summary.Modified != 1 {
		t.Fatalf("diff --json below /sub: %s", r.stdout)
	}
	// A path in one snapshot only is all added (or removed).
	r = sc(t, f.env, "diff", "--json", "before", "after", "added")
	r.want(t, 0, "")
	d = diffJSON{}
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || d.Summary.Added != 2 || d.Changes[0].Path != "/added" {
		t.Fatalf("diff --json of an added path: %v\n%s", err, r.stdout)
	}
	// The same snapshot twice: nothing, and an empty list in JSON.
	r = sc(t, f.env, "diff", "--json", "after", "after")
	r.want(t, 0, "")
	if !strings.Contains(r.stdout, `"changes": []`) {
		t.Fatalf("diff --json of a snapshot with itself: %s", r.stdout)
	}
	sc(t, f.env, "diff", "before", "after", "/nowhere").want(t, 1, "/nowhere is in neither snapshot")
	sc(t, f.env, "diff", "before", "nosuch").want(t, 1, `no snapshot matches "nosuch"`)
	sc(t, f.env, "diff", "before").want(t, 2, "diff takes two snapshots")
}

func TestPermString(t *testing.T) {
	for _, c := range []struct {
		typ  repo.NodeType
		mode uint32
		want string
	}{
		{repo.TypeFile, 0o644, "-rw-r--r--"}, {repo.TypeDir, 0o755, "drwxr-xr-x"}, {repo.TypeSymlink, 0o777, "lrwxrwxrwx"},
		{repo.TypeFile, 0o4755, "-rwsr-xr-x"}, {repo.TypeFile, 0o2644, "-rw-r-Sr--"}, {repo.TypeDir, 0o1777, "drwxrwxrwt"},
		{repo.TypeDir, 0o1776, "drwxrwxrwT"}, {repo.TypeFile, 0o4644, "-rwSr--r--"},
	} {
		if got := permString(&repo.Node{Type: c.typ, Mode: c.mode}); got != c.want {
			t.Errorf("permString(%v, %o) = %s, want %s", c.typ, c.mode, got, c.want)
		}
	}
}
