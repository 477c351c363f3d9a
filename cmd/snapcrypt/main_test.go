package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "snapcrypt-cli-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "snapcrypt")
	os.Setenv("SNAPCRYPT_STATE_DIR", filepath.Join(dir, "state")) // host keyring records
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building snapcrypt: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// sc runs the binary with the given environment additions.
func sc(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "SNAPCRYPT_REPO=", "SNAPCRYPT_KEY=")
	cmd.Env = append(cmd.Env, env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, o.String(), e.String()}
}

func (r result) want(t *testing.T, code int, stderrHas string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	if stderrHas != "" && !strings.Contains(r.stderr, stderrHas) {
		t.Fatalf("stderr %q does not say %q", r.stderr, stderrHas)
	}
}

// fixture is a key, a repository and a source tree.
type fixture struct {
	dir, key, repo, src string
	env                 []string
}

const marker = "PLAINTEXT-MARKER-7f3a9c"

func newFixture(t *testing.T) *fixture {
	t.Helper()
	d := t.TempDir()
	f := &fixture{dir: d, key: filepath.Join(d, "key"), repo: filepath.Join(d, "repo"), src: filepath.Join(d, "src")}
	f.env = []string{"SNAPCRYPT_REPO=" + f.repo, "SNAPCRYPT_KEY=file:" + f.key}
	sc(t, nil, "keygen", f.key).want(t, 0, "")
	sc(t, f.env, "init").want(t, 0, "")
	makeTree(t, f.src)
	return f
}

// makeTree writes a tree with every kind of entry snapcrypt keeps.
func makeTree(t *testing.T, root string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "sub/deeper"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "emptydir"), 0o700))
	must(os.WriteFile(filepath.Join(root, "hello.txt"), []byte("hello "+marker+"\n"), 0o644))
	must(os.WriteFile(filepath.Join(root, "empty"), nil, 0o600))
	must(os.WriteFile(filepath.Join(root, "sub/exec.sh"), []byte("#!/bin/sh\necho "+marker+"\n"), 0o755))
	big := make([]byte, 3<<20+12345)
	rand.Read(big)
	copy(big[1000:], marker)
	must(os.WriteFile(filepath.Join(root, "sub/deeper/big.bin"), big, 0o640))
	must(os.WriteFile(filepath.Join(root, "name-\xff\xfe-not-utf8"), []byte(marker), 0o644))
	must(os.Symlink("hello.txt", filepath.Join(root, "link")))
	must(os.Symlink("/nonexistent/target", filepath.Join(root, "dangling")))
	must(os.Link(filepath.Join(root, "hello.txt"), filepath.Join(root, "sub/hardlink")))
	must(os.Chmod(filepath.Join(root, "sub/exec.sh"), 0o4755))
	must(unix.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	ts := []unix.Timespec{unix.NsecToTimespec(1700000000123456789), unix.NsecToTimespec(1600000000987654321)}
	must(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(root, "hello.txt"), ts, 0))
	must(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(root, "link"), ts, unix.AT_SYMLINK_NOFOLLOW))
	must(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(root, "sub/deeper"), ts, 0))
}

// describe lists every entry below root with its metadata, for comparing
// a restored tree with its source. Fifos are left out (not kept).
func describe(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	inodes := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFIFO {
			return nil // fifos are not kept
		}
		fmt.Fprintf(&b, "%q mode=%o uid=%d gid=%d nlink=%d mtime=%d.%09d", rel, st.Mode, st.Uid, st.Gid, st.Nlink, st.Mtim.Sec, st.Mtim.Nsec)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " size=%d sum=%x", len(data), hash(data))
			if first, ok := inodes[st.Ino]; ok {
				fmt.Fprintf(&b, " linked-to=%q", first)
			} else {
				inodes[st.Ino] = rel
			}
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			fmt.Fprintf(&b, " target=%q", target)
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func hash(b []byte) []byte {
	var h uint64 = 1469598103934665603
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return []byte(fmt.Sprint(h))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	f := newFixture(t)
	r := sc(t, f.env, "snapshot", "--name", "first", "--tag", "a", "--tag", "b", f.src)
	r.want(t, 0, "fifo files are not kept")
	id := lastLine(r.stdout)
	if len(id) != 64 {
		t.Fatalf("last line of stdout %q is not a snapshot id", id)
	}
	for i, ref := range []string{id, id[:10], "first", "latest"} {
		dst := filepath.Join(f.dir, fmt.Sprint("restore-", i))
		sc(t, f.env, "restore", ref, dst).want(t, 0, "")
		if got, want := describe(t, dst), describe(t, f.src); got != want {
			t.Fatalf("restored tree differs from the source\nsource:\n%s\nrestored:\n%s", want, got)
		}
	}
	// --include restores only the matching entries and their parents.
	dst := filepath.Join(f.dir, "partial")
	sc(t, f.env, "restore", "latest", dst, "--include", "sub/deeper").want(t, 0, "")
	if _, err := os.Stat(filepath.Join(dst, "sub/deeper/big.bin")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dst, "hello.txt")); err == nil {
		t.Fatal("--include restored hello.txt")
	}
	// Listing.
	r = sc(t, f.env, "snapshots", "--json")
	r.want(t, 0, "")
	var list []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 || list[0]["name"] != "first" {
		t.Fatalf("snapshots --json: %v %s", err, r.stdout)
	}
	sc(t, f.env, "check", "--read-data").want(t, 0, "")
}

func TestPlaintextNeverStored(t *testing.T) {
	f := newFixture(t)
	sc(t, f.env, "snapshot", f.src).want(t, 0, "")
	key, _ := os.ReadFile(f.key)
	err := filepath.WalkDir(f.repo, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, needle := range [][]byte{[]byte(marker), []byte("hello.txt"), []byte("big.bin"), bytes.TrimSpace(key)} {
			if bytes.Contains(b, needle) {
				t.Errorf("%s contains %q", p, needle)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t)
	sc(t, f.env, "snapshot", f.src).want(t, 0, "")
	d := t.TempDir()
	other := filepath.Join(d, "other.key")
	sc(t, nil, "keygen", other).want(t, 0, "")
	short := filepath.Join(d, "short.key")
	os.WriteFile(short, make([]byte, 31), 0o600)
	long := filepath.Join(d, "long.key")
	os.WriteFile(long, make([]byte, 33), 0o600)
	empty := filepath.Join(d, "empty.pass")
	os.WriteFile(empty, nil, 0o600)
	repoEnv := []string{"SNAPCRYPT_REPO=" + f.repo}

	cases := []struct {
		name string
		env  []string
		args []string
		code int
		says string
	}{
		{"wrong key", repoEnv, []string{"snapshots", "-k", "file:" + other}, exitKey, "no key matches"},
		{"no key", repoEnv, []string{"snapshots"}, exitKey, "no key given"},
		{"key file 31 bytes", repoEnv, []string{"snapshots", "-k", short}, exitKey, "31 bytes"},
		{"key file 33 bytes", repoEnv, []string{"snapshots", "-k", long}, exitKey, "33 bytes"},
		{"missing key file", repoEnv, []string{"snapshots", "-k", filepath.Join(d, "nope")}, exitKey, "nope"},
		{"empty passphrase file", repoEnv, []string{"snapshots", "-k", "passfile:" + empty}, exitKey, "empty"},
		{"missing repository", []string{"SNAPCRYPT_KEY=file:" + f.key}, []string{"snapshots", "-r", filepath.Join(d, "norepo")}, exitNoRepo, "does not exist"},
		{"not a repository", []string{"SNAPCRYPT_KEY=file:" + f.key}, []string{"snapshots", "-r", d}, exitNoRepo, "no snapcrypt repository"},
		{"no repository", nil, []string{"snapshots", "-k", f.key}, exitUsage, "no repository given"},
		{"unknown flag", f.env, []string{"snapshots", "--frobnicate"}, exitUsage, "unknown flag"},
		{"unknown command", f.env, []string{"frobnicate"}, exitUsage, "unknown command"},
		{"restore missing snapshot", f.env, []string{"restore", "nosuchsnapshot", filepath.Join(d, "r")}, exitFailure, "no snapshot matches"},
		{"init non-empty", f.env, []string{"init"}, exitFailure, "not empty"},
		{"keygen overwrite", nil, []string{"keygen", f.key}, exitFailure, "exists"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := sc(t, c.env, c.args...)
			r.want(t, c.code, c.says)
			key, _ := os.ReadFile(f.key)
			if bytes.Contains([]byte(r.stderr+r.stdout), bytes.TrimSpace(key)) {
				t.Fatal("output contains key material")
			}
		})
	}
}

// packs returns the pack objects of a repository.
func packs(t *testing.T, repo string) []string {
	ps, err := filepath.Glob(filepath.Join(repo, "data", "*", "*"))
	if err != nil || len(ps) == 0 {
		t.Fatalf("no packs in %s: %v", repo, err)
	}
	return ps
}

func TestCorruptedAndTruncatedObjects(t *testing.T) {
	for _, damage := range []string{"flip", "truncate"} {
		t.Run(damage, func(t *testing.T) {
			f := newFixture(t)
			sc(t, f.env, "snapshot", f.src).want(t, 0, "")
			sc(t, f.env, "check", "--read-data").want(t, 0, "")
			for _, p := range packs(t, f.repo) {
				b, _ := os.ReadFile(p)
				if damage == "flip" {
					b[len(b)/2] ^= 0x40
				} else {
					b = b[:len(b)-100]
				}
				os.Chmod(p, 0o600)
				if err := os.WriteFile(p, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			r := sc(t, f.env, "check", "--read-data")
			r.want(t, exitFailure, "problems found")
			if !strings.Contains(r.stdout, "corrupted or tampered with") || !strings.Contains(r.stdout, "data/") {
				t.Fatalf("check output does not name the damaged object: %s", r.stdout)
			}
			r = sc(t, f.env, "restore", "latest", filepath.Join(f.dir, "out"))
			r.want(t, exitDamaged, "corrupted or tampered with")
		})
	}
}

func TestIncrementalSnapshot(t *testing.T) {
	f := newFixture(t)
	sc(t, f.env, "snapshot", f.src).want(t, 0, "")
	before := countObjects(t, f.repo)
	r := sc(t, f.env, "snapshot", f.src)
	r.want(t, 0, "")
	if !strings.Contains(r.stderr, "read 0 B") {
		t.Fatalf("second snapshot re-read files: %s", r.stderr)
	}
	// One snapshot manifest and one DEK; no pack, no index (nothing new).
	if added := countObjects(t, f.repo) - before; added > 3 {
		t.Fatalf("unchanged re-snapshot added %d objects", added)
	}
	// A changed file is read again, the rest is not.
	os.WriteFile(filepath.Join(f.src, "hello.txt"), []byte("changed"), 0o644)
	r = sc(t, f.env, "snapshot", f.src)
	r.want(t, 0, "")
	if !strings.Contains(r.stderr, "read 7 B") {
		t.Fatalf("third snapshot should read only the changed file: %s", r.stderr)
	}
}

func countObjects(t *testing.T, root string) int {
	n := 0
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

func TestConcurrentSnapshots(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	ids := make([]string, 2)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := sc(t, f.env, "snapshot", "--name", fmt.Sprint("p", i), f.src)
			if r.code != 0 {
				t.Errorf("snapshot %d: exit %d: %s", i, r.code, r.stderr)
			}
			ids[i] = lastLine(r.stdout)
		}()
	}
	wg.Wait()
	for i, id := range ids {
		dst := filepath.Join(f.dir, fmt.Sprint("r", i))
		sc(t, f.env, "restore", id, dst).want(t, 0, "")
		if describe(t, dst) != describe(t, f.src) {
			t.Fatalf("snapshot %d does not restore the source", i)
		}
	}
	sc(t, f.env, "check", "--read-data").want(t, 0, "")
}

func TestKeygenMode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	sc(t, nil, "keygen", p).want(t, 0, "")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v", fi.Mode())
	}
}

// TestSnapshotRemovesStaleTemp: a snapshot removes the temporary files a
// killed writer left (older than staleAge) and says how many; a recent
// one, maybe a live writer's, stays.
func TestSnapshotRemovesStaleTemp(t *testing.T) {
	f := newFixture(t)
	sc(t, f.env, "snapshot", f.src).want(t, 0, "")
	old := time.Now().Add(-2 * staleAge)
	stale := []string{filepath.Join(f.repo, "data", ".tmp-killed1"), filepath.Join(f.repo, "snapshots", ".tmp-killed2")}
	fresh := filepath.Join(f.repo, "index", ".tmp-live")
	for _, p := range append(stale, fresh) {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range stale {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	r := sc(t, f.env, "snapshot", f.src)
	r.want(t, 0, "")
	if !strings.Contains(r.stderr, "removed 2 temporary files that killed writers left") {
		t.Errorf("snapshot's report: %q", r.stderr)
	}
	for _, p := range stale {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there: %v", p, err)
		}
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a recent temporary file was removed: %v", err)
	}
}
