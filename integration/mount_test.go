package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// topLevel lists the names directly in dir, sorted: the tools below get
// these rather than ".", because a snapshot keeps no attributes for its
// root directory (the mount shows the snapshot's time there).
func topLevel(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestMountTools(t *testing.T) {
	src, r, _ := sharedRepo(t)
	m := startMount(t, r)
	snap := m.Path("snapshots", "tree")

	t.Run("diff", func(t *testing.T) {
		if res := run(t, "", "diff", "-r", "--no-dereference", src, snap); res.Code != 0 {
			t.Errorf("diff -r: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
		}
	})
	t.Run("tar", func(t *testing.T) {
		args := append([]string{"--sort=name", "--numeric-owner", "-cf", "-"}, topLevel(t, src)...)
		want := must(t, src, "tar", args...)
		got := must(t, snap, "tar", args...)
		if want != got {
			t.Errorf("tar of the mount (%d bytes) differs from tar of the source (%d bytes)", len(got), len(want))
		}
	})
	t.Run("find", func(t *testing.T) {
		for _, args := range [][]string{{}, {"-type", "f"}, {"-type", "d"}, {"-type", "l"}, {"-links", "+1", "-type", "f"}} {
			want := run(t, src, "find", append([]string{"."}, args...)...)
			got := run(t, snap, "find", append([]string{"."}, args...)...)
			if got.Code != 0 || got.Stderr != "" {
				t.Errorf("find %v in the mount: exit %d: %s", args, got.Code, got.Stderr)
			}
			if wl, gl := strings.Count(want.Stdout, "\n"), strings.Count(got.Stdout, "\n"); wl != gl {
				t.Errorf("find %v: %d entries in the source, %d in the mount", args, wl, gl)
			}
		}
		// The whole mount, symlinks and all: no loops, no errors.
		if res := run(t, m.Dir, "find", "."); res.Code != 0 || res.Stderr != "" {
			t.Errorf("find over the whole mount: exit %d: %s", res.Code, res.Stderr)
		}
	})
	t.Run("sha256sum", func(t *testing.T) {
		list := func(dir string) []string {
			out := must(t, dir, "find", ".", "-type", "f", "-print0")
			files := strings.Split(strings.TrimSuffix(out, "\x00"), "\x00")
			sort.Strings(files)
			return files
		}
		files := list(src)
		if got := list(snap); strings.Join(got, "\x00") != strings.Join(files, "\x00") {
			t.Fatalf("file lists differ")
		}
		args := append([]string{"--"}, files...)
		if want, got := must(t, src, "sha256sum", args...), must(t, snap, "sha256sum", args...); want != got {
			t.Errorf("sha256sum differs:\n%s\n---\n%s", want, got)
		}
	})
	t.Run("rsync", func(t *testing.T) {
		needTool(t, "rsync")
		// From the mount to the source: nothing to do but the root
		// directory, whose attributes a snapshot does not keep.
		out := must(t, "", "rsync", "-a", "-H", "--dry-run", "--itemize-changes", snap+"/", src+"/")
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line != "" && !strings.HasSuffix(line, " ./") {
				t.Errorf("rsync would change: %q", line)
			}
		}
		out = must(t, "", "rsync", "-a", "-H", "--dry-run", "--itemize-changes", "--checksum", src+"/", snap+"/")
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line != "" && !strings.HasSuffix(line, " ./") {
				t.Errorf("rsync --checksum would change: %q", line)
			}
		}
	})
	t.Run("cp", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "copy")
		must(t, "", "cp", "-a", snap, out)
		compareTrees(t, src, out)
	})
	t.Run("attributes", func(t *testing.T) {
		compareTrees(t, src, snap)
	})
}

func TestMountLayout(t *testing.T) {
	_, r, id := sharedRepo(t)
	m := startMount(t, r)
	for link, want := range map[string]string{
		"snapshots/latest": "tree",
		"ids/" + id[:8]:    "../snapshots/tree",
		"tags/test/tree":   "../../snapshots/tree",
	} {
		if got, err := os.Readlink(m.Path(link)); err != nil || got != want {
			t.Errorf("%s -> %q, %v; want %q", link, got, err, want)
		}
	}
	if _, err := os.Stat(m.Path("ids", id[:8], "README.txt")); err != nil {
		t.Error(err)
	}
	b, err := os.ReadFile(m.Path(".ctl", "status"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Version    int    `json:"version"`
		Repository string `json:"repository"`
		Snapshots  int    `json:"snapshots"`
		Keys       struct {
			Generations []struct {
				ID    string `json:"id"`
				State string `json:"state"`
				Held  bool   `json:"held"`
			} `json:"generations"`
		} `json:"keys"`
		Cache      map[string]json.RawMessage `json:"cache"`
		ReadErrors struct {
			Count int `json:"count"`
		} `json:"read_errors"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("status: %v\n%s", err, b)
	}
	if st.Version != 1 || len(st.Repository) != 32 || st.Snapshots != 1 || len(st.Keys.Generations) != 1 ||
		st.Keys.Generations[0].State != "current" || !st.Keys.Generations[0].Held || st.Cache["segments"] == nil {
		t.Errorf("status:\n%s", b)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(m.Dir, &sfs); err != nil || sfs.Blocks == 0 || sfs.Bsize == 0 {
		t.Errorf("statfs: %+v, %v", sfs, err)
	}
	if res := run(t, "", "df", m.Dir); res.Code != 0 {
		t.Errorf("df: %s", res.Stderr)
	}
}

func TestMountRandomReads(t *testing.T) {
	src, r, _ := sharedRepo(t)
	m := startMount(t, r)
	want, err := os.ReadFile(filepath.Join(src, "bin/big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	file := m.Path("snapshots", "tree", "bin", "big.bin")
	rnd := rand.New(rand.NewPCG(7, 7))
	t.Run("dd", func(t *testing.T) {
		for range 20 {
			off := rnd.Int64N(int64(len(want)))
			n := 1 + rnd.Int64N(300_000)
			got := must(t, "", "dd", "if="+file, "iflag=skip_bytes,count_bytes", "skip="+strconv.FormatInt(off, 10),
				"count="+strconv.FormatInt(n, 10), "bs=65536", "status=none")
			if !bytes.Equal([]byte(got), want[off:min(off+n, int64(len(want)))]) {
				t.Fatalf("dd of %d bytes at %d differs", n, off)
			}
		}
	})
	t.Run("parallel", func(t *testing.T) {
		// Eight readers at once: four sha256sum processes and four
		// goroutines reading at random offsets of one descriptor.
		sum := sha256.Sum256(want)
		fd, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer fd.Close()
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i%2 == 0 {
					out, err := exec.Command("sha256sum", file).Output()
					if err != nil || !strings.HasPrefix(string(out), hex.EncodeToString(sum[:])) {
						errs <- fmt.Errorf("sha256sum: %q, %v", out, err)
					}
					return
				}
				rnd := rand.New(rand.NewPCG(uint64(i), 1))
				buf := make([]byte, 200_000)
				for range 40 {
					off := rnd.Int64N(int64(len(want)))
					n, err := fd.ReadAt(buf, off)
					if (err != nil && err != io.EOF) || !bytes.Equal(buf[:n], want[off:min(off+int64(len(buf)), int64(len(want)))]) {
						errs <- fmt.Errorf("pread at %d: %d bytes, %v", off, n, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
	t.Run("mmap", func(t *testing.T) {
		fd, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer fd.Close()
		data, err := unix.Mmap(int(fd.Fd()), 0, len(want), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Munmap(data)
		for range 200 { // random pages first, then everything
			off := rnd.IntN(len(want))
			if data[off] != want[off] {
				t.Fatalf("mmap byte at %d differs", off)
			}
		}
		if !bytes.Equal(data, want) {
			t.Fatal("mmap of the file differs")
		}
	})
}

func TestMountReadOnly(t *testing.T) {
	_, r, _ := sharedRepo(t)
	m := startMount(t, r)
	dir := m.Path("snapshots", "tree", "docs")
	file := m.Path("snapshots", "tree", "README.txt")
	calls := map[string]func() error{
		"create":      func() error { _, err := os.Create(filepath.Join(dir, "new")); return err },
		"open write":  func() error { _, err := os.OpenFile(file, os.O_WRONLY, 0); return err },
		"open rdwr":   func() error { _, err := os.OpenFile(file, os.O_RDWR, 0); return err },
		"mkdir":       func() error { return os.Mkdir(filepath.Join(dir, "x"), 0o755) },
		"unlink":      func() error { return os.Remove(file) },
		"rmdir":       func() error { return unix.Rmdir(m.Path("snapshots", "tree", "empty-dir")) },
		"rename":      func() error { return os.Rename(file, filepath.Join(dir, "moved")) },
		"chmod":       func() error { return os.Chmod(file, 0o777) },
		"chown":       func() error { return os.Lchown(file, 1, 1) },
		"truncate":    func() error { return os.Truncate(file, 0) },
		"utimes":      func() error { return os.Chtimes(file, time.Now(), time.Now()) },
		"setxattr":    func() error { return unix.Setxattr(file, "user.test", []byte("1"), 0) },
		"removexattr": func() error { return unix.Removexattr(file, "user.test") },
		"link":        func() error { return os.Link(file, filepath.Join(dir, "hard")) },
		"symlink":     func() error { return os.Symlink("x", filepath.Join(dir, "sym")) },
		"mkfifo":      func() error { return unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644) },
		"mkdir top":   func() error { return os.Mkdir(m.Path("new"), 0o755) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", name, err)
		}
	}
	for _, tool := range [][]string{
		{"touch", filepath.Join(dir, "new")},
		{"sh", "-c", "echo x >> " + file},
		{"mkdir", filepath.Join(dir, "x")},
		{"rm", "-f", file},
		{"mv", file, dir},
		{"chmod", "777", file},
		{"truncate", "-s", "0", file},
		{"ln", "-s", "x", filepath.Join(dir, "sym")},
	} {
		if res := run(t, "", tool[0], tool[1:]...); res.Code == 0 || !strings.Contains(res.Stderr, "Read-only file system") {
			t.Errorf("%v: exit %d, %q; want a read-only error", tool, res.Code, res.Stderr)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "a tree to snapshot\n" {
		t.Errorf("after the attempts: %q, %v", b, err)
	}
}

// TestMountCorruptPack: a corrupted pack gives EIO for the file in it, one
// log line naming it, a count in status; everything else still reads and
// the mount keeps running.
func TestMountCorruptPack(t *testing.T) {
	r := newRepo(t)
	src := t.TempDir()
	neighbour := bytes.Repeat([]byte("neighbour "), 100_000)
	os.WriteFile(filepath.Join(src, "neighbour"), neighbour, 0o644)
	r.Snapshot(t, "--name", "one", src)
	before := packs(t, r)
	victim := make([]byte, 3<<20)
	for i := range victim {
		victim[i] = byte(i * 7 / 5)
	}
	os.WriteFile(filepath.Join(src, "victim"), victim, 0o644)
	r.Snapshot(t, "--name", "two", src)
	// The largest new pack holds the victim's content.
	var pack string
	var size int64
	for p, sz := range packs(t, r) {
		if _, old := before[p]; !old && sz > size {
			pack, size = p, sz
		}
	}
	if pack == "" {
		t.Fatal("the second snapshot wrote no pack")
	}
	f, err := os.OpenFile(pack, os.O_RDWR, 0)
	if err != nil {
		os.Chmod(pack, 0o644)
		f, err = os.OpenFile(pack, os.O_RDWR, 0)
	}
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	f.ReadAt(b, size/2)
	b[0] ^= 0x20
	f.WriteAt(b, size/2)
	f.Close()

	m := startMount(t, r)
	for i := range 2 {
		res := run(t, "", "cat", m.Path("snapshots", "two", "victim"))
		if res.Code == 0 || !strings.Contains(res.Stderr, "Input/output error") {
			t.Errorf("cat %d of the corrupted file: exit %d, %q", i, res.Code, res.Stderr)
		}
	}
	for _, snap := range []string{"one", "two"} {
		if got, err := os.ReadFile(m.Path("snapshots", snap, "neighbour")); err != nil || !bytes.Equal(got, neighbour) {
			t.Errorf("%s/neighbour: %v", snap, err)
		}
	}
	name := strings.TrimPrefix(pack, r.Dir+"/")
	var lines []string
	for _, line := range strings.Split(m.Stderr(), "\n") {
		if strings.Contains(line, name) {
			lines = append(lines, line)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "corrupted or tampered with") {
		t.Errorf("want one log line naming %s; stderr:\n%s", name, m.Stderr())
	}
	st, err := os.ReadFile(m.Path(".ctl", "status"))
	if err != nil {
		t.Fatal(err)
	}
	var status struct {
		ReadErrors struct {
			Count  int      `json:"count"`
			Recent []string `json:"recent"`
		} `json:"read_errors"`
	}
	json.Unmarshal(st, &status)
	if status.ReadErrors.Count == 0 || !strings.Contains(strings.Join(status.ReadErrors.Recent, "\n"), name) {
		t.Errorf("status does not count the error:\n%s", st)
	}
	m.Stop(t) // still running, and stops cleanly
}

// packs lists the pack files of a local repository with their sizes.
func packs(t testing.TB, r *Repo) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	filepath.Walk(filepath.Join(r.Dir, "data"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			out[p] = fi.Size()
		}
		return nil
	})
	return out
}

func TestMountNewSnapshot(t *testing.T) {
	r := newRepo(t)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a"), []byte("1"), 0o644)
	r.Snapshot(t, "--name", "one", src)
	m := startMount(t, r)
	if got, _ := os.Readlink(m.Path("snapshots", "latest")); got != "one" {
		t.Fatalf("latest -> %q", got)
	}
	os.WriteFile(filepath.Join(src, "a"), []byte("2"), 0o644)
	r.Snapshot(t, "--name", "two", src)
	start := time.Now()
	eventually(t, 5*time.Second, "the new snapshot shows in snapshots/", func() bool {
		return strings.Contains(must(t, m.Dir, "ls", "snapshots"), "two\n")
	})
	t.Logf("the new snapshot showed after %v", time.Since(start).Round(time.Millisecond))
	if b, err := os.ReadFile(m.Path("snapshots", "latest", "a")); err != nil || string(b) != "2" {
		t.Errorf("latest/a: %q, %v", b, err)
	}
}

func TestMountLargeSparseFile(t *testing.T) {
	if testing.Short() {
		t.Skip("snapshots 5 GiB")
	}
	r := newRepo(t)
	src := t.TempDir()
	path := filepath.Join(src, "sparse")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	const size = 5 << 30
	marks := map[int64][]byte{}
	for _, off := range []int64{0, 1<<32 - 9, 1<<32 + 123_456_789, size - 100} { // one across 4 GiB
		b := []byte(fmt.Sprintf("mark at %d", off))
		marks[off] = b
		f.WriteAt(b, off)
	}
	f.Truncate(size)
	f.Close()
	r.Snapshot(t, "--name", "sparse", src)
	m := startMount(t, r)
	file := m.Path("snapshots", "sparse", "sparse")
	if fi, err := os.Stat(file); err != nil || fi.Size() != size {
		t.Fatalf("stat: %v, %v", fi, err)
	}
	for off, want := range marks {
		got := must(t, "", "dd", "if="+file, "iflag=skip_bytes,count_bytes", "skip="+strconv.FormatInt(off, 10),
			"count="+strconv.Itoa(len(want)+10), "status=none")
		exp := append(append([]byte(nil), want...), make([]byte, 10)...)
		if off+int64(len(exp)) > size {
			exp = exp[:size-off]
		}
		if got != string(exp) {
			t.Errorf("dd at %d: %q, want %q", off, got, exp)
		}
	}
	fd, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	buf := make([]byte, 1<<20)
	for _, off := range []int64{3 << 30, 1<<32 + 1<<20, size - 2<<20} {
		if n, err := fd.ReadAt(buf, off); n != len(buf) || err != nil || !bytes.Equal(buf, make([]byte, len(buf))) {
			t.Errorf("zeros at %d: %d, %v", off, n, err)
		}
	}
}

// TestMountStop: SIGINT, SIGTERM and an external unmount each end the
// mount with exit 0 and nothing left mounted.
func TestMountStop(t *testing.T) {
	_, r, _ := sharedRepo(t)
	for _, how := range []string{"SIGINT", "SIGTERM", "fusermount3 -u", "SIGTERM while busy"} {
		t.Run(how, func(t *testing.T) {
			m := startMount(t, r)
			if _, err := os.ReadFile(m.Path("snapshots", "tree", "README.txt")); err != nil {
				t.Fatal(err)
			}
			switch how {
			case "SIGINT":
				m.Signal(t, syscall.SIGINT)
			case "SIGTERM":
				m.Signal(t, syscall.SIGTERM)
			case "fusermount3 -u":
				must(t, "", "fusermount3", "-u", m.Dir)
			case "SIGTERM while busy":
				f, err := os.Open(m.Path("snapshots", "tree", "README.txt"))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				m.Signal(t, syscall.SIGTERM)
				// The unmount fails while the file is open; the
				// mount detaches lazily, then ends once the file
				// is closed.
				eventually(t, 10*time.Second, "the mount detaches lazily", func() bool {
					return strings.Contains(m.Stderr(), "lazily") && !isMounted(m.Dir)
				})
				f.Close()
			}
			if code := m.Wait(t); code != 0 {
				t.Errorf("exit %d; stderr:\n%s", code, m.Stderr())
			}
			if isMounted(m.Dir) {
				t.Errorf("%s is still mounted", m.Dir)
			}
		})
	}
}

func TestMountpointErrors(t *testing.T) {
	needFUSE(t)
	_, r, _ := sharedRepo(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	full := filepath.Join(dir, "full")
	os.MkdirAll(filepath.Join(full, "x"), 0o755)
	for _, c := range []struct{ path, want string }{
		{filepath.Join(dir, "missing"), "does not exist"},
		{file, "not a directory"},
		{full, "not empty"},
	} {
		res := run(t, "", binary, "mount", "-r", r.Dir, "-k", r.Key, c.path)
		if res.Code == 0 || !strings.Contains(res.Stderr, c.want) || res.Stdout != "" {
			t.Errorf("mount on %s: exit %d, %q; want %q", c.path, res.Code, res.Stderr, c.want)
		}
	}

	// A mount whose process was killed leaves a dead mount.
	m := startMount(t, r)
	m.Signal(t, syscall.SIGKILL)
	m.Wait(t)
	defer exec.Command("fusermount3", "-u", "-z", m.Dir).Run()
	res := run(t, "", binary, "mount", "-r", r.Dir, "-k", r.Key, m.Dir)
	if res.Code == 0 || !strings.Contains(res.Stderr, "fusermount3 -u "+m.Dir) {
		t.Errorf("mount on a dead mount: exit %d, %q", res.Code, res.Stderr)
	}
	must(t, "", "fusermount3", "-u", m.Dir)
	// Now it mounts again.
	m2, err := startMountAt(r, m.Dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m2.cleanup(t) })
	m2.Stop(t)
}

// TestMountAllowOther: with --allow-other another user reads the mount,
// with the snapshotted permissions enforced by the kernel.
func TestMountAllowOther(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users")
	}
	needTool(t, "setpriv")
	_, r, _ := sharedRepo(t)
	m := startMount(t, r, "--allow-other")
	// Let the other user reach the mountpoint.
	for dir := filepath.Dir(m.Dir); strings.HasPrefix(dir, suiteDir); dir = filepath.Dir(dir) {
		os.Chmod(dir, 0o755)
	}
	if opts := mountOptions(m.Dir); !strings.Contains(opts, "allow_other") || !strings.Contains(opts, "default_permissions") {
		t.Errorf("mount options %q", opts)
	}
	as := func(args ...string) Result {
		return run(t, "", "setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups"}, args...)...)
	}
	if res := as("cat", m.Path("snapshots", "tree", "README.txt")); res.Code != 0 || res.Stdout != "a tree to snapshot\n" {
		t.Errorf("another user reading a 0644 file: exit %d, %q", res.Code, res.Stderr)
	}
	if res := as("cat", m.Path("snapshots", "tree", "modes", "secret")); res.Code == 0 || !strings.Contains(res.Stderr, "Permission denied") {
		t.Errorf("another user reading a 0600 file of someone else: exit %d, %q", res.Code, res.Stderr)
	}
	if res := as("ls", m.Path("snapshots", "tree", "modes", "private")); res.Code == 0 {
		t.Errorf("another user listing a 0700 directory of someone else: exit %d", res.Code)
	}
	if res := as("sh", "-c", "echo x > "+m.Path(".ctl", "status")); res.Code == 0 {
		t.Error("another user wrote to .ctl/status")
	}
	if b, err := os.ReadFile(m.Path("snapshots", "tree", "modes", "secret")); err != nil || string(b) != "secret" {
		t.Errorf("root reading the 0600 file: %q, %v", b, err)
	}
}

// mountOptions returns the options column of dir's line in /proc/mounts.
func mountOptions(dir string) string {
	b, _ := os.ReadFile("/proc/mounts")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[1] == dir {
			return f[3]
		}
	}
	return ""
}

func TestMountCacheSize(t *testing.T) {
	_, r, _ := sharedRepo(t)
	m := startMount(t, r, "--cache-size", "16M")
	b, err := os.ReadFile(m.Path(".ctl", "status"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Cache map[string]struct {
			Limit int64 `json:"limit"`
		} `json:"cache"`
	}
	json.Unmarshal(b, &st)
	if got := st.Cache["segments"].Limit + st.Cache["trees"].Limit; got != 16<<20 {
		t.Errorf("cache limits add up to %d, want %d:\n%s", got, 16<<20, b)
	}
	res := run(t, "", binary, "mount", "-r", r.Dir, "-k", r.Key, "--cache-size", "lots", t.TempDir())
	if res.Code != 2 || !strings.Contains(res.Stderr, "--cache-size") {
		t.Errorf("bad --cache-size: exit %d, %q", res.Code, res.Stderr)
	}
}
