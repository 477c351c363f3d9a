package integration

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// makeTree writes a source tree with what a mount must reproduce: nested
// directories, empty files and directories, a multi-chunk file, symlinks
// (relative, absolute, dangling), hard links, unusual modes, owners (as
// root), nanosecond and pre-1970 times, and names that are not UTF-8 or
// hold spaces and newlines. seed makes it reproducible.
func makeTree(t testing.TB, dir string, seed uint64) {
	t.Helper()
	rnd := rand.New(rand.NewPCG(seed, 42))
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	file := func(rel string, data []byte, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, rel)
		check(os.MkdirAll(filepath.Dir(p), 0o755))
		check(os.WriteFile(p, data, 0o600))
		check(os.Chmod(p, mode))
	}
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		return b
	}
	check(os.MkdirAll(dir, 0o755))
	file("README.txt", []byte("a tree to snapshot\n"), 0o644)
	for d := range 3 {
		for s := range 3 {
			for i := range 15 {
				file(fmt.Sprintf("docs/part%d/sec%d/f%02d.txt", d, s, i), random(rnd.IntN(20000)), 0o644)
			}
		}
	}
	file("bin/big.bin", random(6<<20+777), 0o755) // several chunks
	file("bin/text.txt", bytes.Repeat([]byte("compressible line of text\n"), 80000), 0o644)
	file("empty", nil, 0o644)
	check(os.MkdirAll(filepath.Join(dir, "empty-dir"), 0o755))
	file("modes/secret", []byte("secret"), 0o600)
	file("modes/setuid", []byte("#!/bin/sh\n"), 0o4755)
	file("modes/setgid", []byte("#!/bin/sh\n"), 0o2750)
	file("modes/none", []byte("none"), 0o000)
	check(os.MkdirAll(filepath.Join(dir, "modes/sticky"), 0o755))
	check(os.Chmod(filepath.Join(dir, "modes/sticky"), 0o1777))
	check(os.MkdirAll(filepath.Join(dir, "modes/private"), 0o700))
	file("modes/private/inside", []byte("x"), 0o644)
	check(os.Symlink("docs/part0/sec0/f00.txt", filepath.Join(dir, "link-rel")))
	check(os.Symlink("/etc/hostname", filepath.Join(dir, "link-abs")))
	check(os.Symlink("nowhere/at/all", filepath.Join(dir, "link-dangling")))
	check(os.Symlink("..", filepath.Join(dir, "docs/link-up")))
	check(os.MkdirAll(filepath.Join(dir, "hard"), 0o755))
	check(os.Link(filepath.Join(dir, "bin/big.bin"), filepath.Join(dir, "hard/big-link")))
	file("hard/three", []byte("three links"), 0o644)
	check(os.Link(filepath.Join(dir, "hard/three"), filepath.Join(dir, "hard/three-b")))
	check(os.Link(filepath.Join(dir, "hard/three"), filepath.Join(dir, "docs/three-c")))
	for _, name := range []string{"with space", "new\nline", "ü-utf8-é", "\xff\xfe-latin1-\xe9", "-dash", "*star?", string(bytes.Repeat([]byte("n"), 255))} {
		file(filepath.Join("names", name), []byte(name), 0o644)
	}
	check(os.MkdirAll(filepath.Join(dir, "names", "dir-\xc3\x28-bad"), 0o755))
	file(filepath.Join("names", "dir-\xc3\x28-bad", "inside"), []byte("in a badly named dir"), 0o644)
	if os.Geteuid() == 0 {
		check(os.Lchown(filepath.Join(dir, "modes/secret"), 1234, 5678))
		check(os.Lchown(filepath.Join(dir, "modes/private"), 4321, 8765))
		check(os.Lchown(filepath.Join(dir, "link-rel"), 1234, 5678))
	}
	// Times last, deepest first, so that making entries does not change
	// them again.
	var paths []string
	check(filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		paths = append(paths, p)
		return err
	}))
	sort.Sort(sort.Reverse(sort.StringSlice(paths)))
	for i, p := range paths {
		if p == dir {
			continue
		}
		var ts time.Time
		switch i % 4 {
		case 0:
			ts = time.Unix(1_600_000_000+rnd.Int64N(1e8), rnd.Int64N(1e9))
		case 1:
			ts = time.Unix(-rnd.Int64N(1e9), rnd.Int64N(1e9)) // before 1970
		case 2:
			ts = time.Unix(4_102_444_800+rnd.Int64N(1e8), rnd.Int64N(1e9)) // after 2100
		default:
			ts = time.Unix(1_700_000_000, 0)
		}
		tv := []unix.Timespec{unix.NsecToTimespec(ts.UnixNano()), unix.NsecToTimespec(ts.UnixNano())}
		check(unix.UtimesNanoAt(unix.AT_FDCWD, p, tv, unix.AT_SYMLINK_NOFOLLOW))
	}
}

var (
	sharedOnce sync.Once
	shared     struct {
		src  string
		repo *Repo
		id   string
	}
)

// sharedRepo is one repository, made once per run, holding one snapshot
// (named "tree") of makeTree's tree. Tests must not change either.
func sharedRepo(t testing.TB) (src string, r *Repo, id string) {
	t.Helper()
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp(suiteDir, "shared-")
		if err != nil {
			t.Fatal(err)
		}
		shared.src = filepath.Join(dir, "src")
		makeTree(t, shared.src, 1)
		key := filepath.Join(dir, "key")
		must(t, "", binary, "keygen", key)
		shared.repo = &Repo{Dir: filepath.Join(dir, "repo"), Key: "file:" + key}
		shared.repo.SC(t, "init")
		shared.id = shared.repo.Snapshot(t, "--name", "tree", "--tag", "test", shared.src)
	})
	if shared.repo == nil {
		t.Fatal("making the shared repository failed in an earlier test")
	}
	return shared.src, shared.repo, shared.id
}

// entry is what compareTrees checks of one path.
type entry struct {
	mode, uid, gid uint32
	nlink          uint64
	size           int64
	mtime          unix.Timespec
	target         string
	sum            [32]byte
	ino            uint64
}

func scan(t testing.TB, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		e := entry{mode: st.Mode, uid: st.Uid, gid: st.Gid, nlink: st.Nlink, mtime: st.Mtim, ino: st.Ino}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			e.size = st.Size
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("reading %s: %w", p, err)
			}
			h.Sum(e.sum[:0])
		case unix.S_IFLNK:
			e.target, err = os.Readlink(p)
			if err != nil {
				return err
			}
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compareTrees requires got to hold what want holds, below the roots:
// types, modes, owners, link counts, sizes, times, symlink targets,
// contents, and the same hard-link groups.
func compareTrees(t testing.TB, want, got string) {
	t.Helper()
	w, g := scan(t, want), scan(t, got)
	if len(w) != len(g) {
		t.Errorf("%s has %d entries, %s has %d", want, len(w), got, len(g))
	}
	linkW, linkG := map[uint64]string{}, map[uint64]string{}
	for rel, we := range w {
		ge, ok := g[rel]
		if !ok {
			t.Errorf("%q is missing", rel)
			continue
		}
		if we.mode != ge.mode || we.uid != ge.uid || we.gid != ge.gid || we.nlink != ge.nlink ||
			we.size != ge.size || we.mtime != ge.mtime || we.target != ge.target || we.sum != ge.sum {
			t.Errorf("%q differs:\nwant %+v\ngot  %+v", rel, we, ge)
		}
		if we.mode&unix.S_IFMT == unix.S_IFREG && we.nlink > 1 {
			// Paths that share an inode in one tree share one in
			// the other.
			if first, ok := linkW[we.ino]; ok {
				if g[first].ino != ge.ino {
					t.Errorf("%q and %q are hard links in %s but not in %s", first, rel, want, got)
				}
			} else {
				linkW[we.ino] = rel
				if other, ok := linkG[ge.ino]; ok {
					t.Errorf("%q and %q share an inode in %s only", other, rel, got)
				}
				linkG[ge.ino] = rel
			}
		}
	}
}
