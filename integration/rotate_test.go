package integration

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
)

// ctlStatus is what the rotation tests read of .ctl/status.
type ctlStatus struct {
	Keys struct {
		Epoch       uint64 `json:"epoch"`
		Current     string `json:"current"`
		Generations []struct {
			ID    string `json:"id"`
			State string `json:"state"`
			Held  bool   `json:"held"`
		} `json:"generations"`
	} `json:"keys"`
	Rotation struct {
		State       string `json:"state"`
		To          string `json:"to"`
		Rewrapped   int64  `json:"rewrapped"`
		Total       int64  `json:"total"`
		LastRequest *struct {
			Control string `json:"control"`
			Result  string `json:"result"`
			Errno   string `json:"errno"`
		} `json:"last_request"`
		LastError string `json:"last_error"`
	} `json:"rotation"`
}

func readStatus(t testing.TB, m *Mount) ctlStatus {
	t.Helper()
	b, err := os.ReadFile(m.Path(".ctl", "status"))
	if err != nil {
		t.Fatal(err)
	}
	var s ctlStatus
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf(".ctl/status: %v\n%s", err, b)
	}
	return s
}

// ctlWrite writes data to a control file in one write(2) and returns the
// errno (0 for success).
func ctlWrite(t testing.TB, m *Mount, name string, data []byte) syscall.Errno {
	t.Helper()
	f, err := os.OpenFile(m.Path(".ctl", name), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = f.Write(data)
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if !errors.As(err, &e) {
		t.Fatalf("write .ctl/%s: %v", name, err)
	}
	return e
}

func keyFile(t testing.TB, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	must(t, "", binary, "keygen", p)
	return p
}

func material(t testing.TB, spec string) *keys.Material {
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

// addDEKs adds n wrapped data keys through the library, so that a rotation
// has thousands to re-wrap without thousands of snapshots.
func addDEKs(t testing.TB, r *Repo, n int) {
	t.Helper()
	ctx := context.Background()
	st, err := local.Open(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := repo.ReadConfig(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := keys.Open(ctx, st, cfg.ID, material(t, r.Key))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				if _, _, err := kc.NewDEK(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// sums maps every regular file below root (relative path) to its sha256.
func sums(t testing.TB, root string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			out[rel] = sha256.Sum256(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func dropCaches() { os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0) }

// objectDEK returns the DEK id a sealed object names.
func objectDEK(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := object.ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.DEKID)
}

// dekCount counts the distinct data keys wrapped under generation gen
// (single objects and DEK pack entries).
func dekCount(t testing.TB, r *Repo, gen string) int {
	t.Helper()
	st, err := local.Open(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[[16]byte]bool{}
	if err := keys.ListDEKs(context.Background(), st, gen, func(id [16]byte) error { ids[id] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	return len(ids)
}

// TestMountRotation rotates through .ctl/rotate while readers go over every
// file of two snapshots without one error and a snapshot is taken; then
// only the new key reads the repository.
func TestMountRotation(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src, 7)
	r := newRepo(t)
	r.Snapshot(t, "--name", "one", src)
	os.WriteFile(filepath.Join(src, "changed.txt"), []byte("second snapshot"), 0o644)
	r.Snapshot(t, "--name", "two", src)
	addDEKs(t, r, 2000)
	oldKey := r.Key
	newKey := "file:" + keyFile(t, dir, "new.key")

	m := startMount(t, r, "--cache-size", "1M")
	before := readStatus(t, m)
	oldGen := before.Keys.Current
	want := map[string]map[string][32]byte{"one": sums(t, m.Path("snapshots", "one")), "two": sums(t, m.Path("snapshots", "two"))}

	// Readers: every file of both snapshots, again and again, caches dropped.
	var stop atomic.Bool
	var reads, readsDuring atomic.Int64
	var rotating atomic.Bool
	var readErr atomic.Value
	var wg sync.WaitGroup
	for _, snap := range []string{"one", "two"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				dropCaches()
				for rel, sum := range want[snap] {
					b, err := os.ReadFile(m.Path("snapshots", snap, rel))
					if err != nil {
						readErr.Store(fmt.Sprintf("%s/%s: %v", snap, rel, err))
						return
					}
					if sha256.Sum256(b) != sum {
						readErr.Store(fmt.Sprintf("%s/%s: wrong content", snap, rel))
						return
					}
					reads.Add(1)
					if rotating.Load() {
						readsDuring.Add(1)
					}
				}
			}
		}()
	}
	eventually(t, 20*time.Second, "readers started", func() bool { return reads.Load() > 0 })

	rotating.Store(true)
	if e := ctlWrite(t, m, "rotate", []byte(newKey+"\n")); e != 0 {
		t.Fatalf("write .ctl/rotate: %v\n%s", e, m.Stderr())
	}
	// The switch is durable once the write returned.
	switched := readStatus(t, m)
	if switched.Keys.Current == oldGen {
		t.Fatal("the write returned before the switch")
	}
	newGen := switched.Keys.Current
	// A snapshot during the rotation (by a host with both keys): its data
	// key is wrapped under the new generation.
	id := strings.TrimSpace(must(t, "", binary, "snapshot", "-r", r.Dir, "-k", oldKey, "-k", newKey, "--name", "during", src))
	id = id[strings.LastIndexByte(id, '\n')+1:]
	r.Key = newKey
	// A host holding only the new key snapshots too, right after the switch.
	r.Snapshot(t, "--name", "new-key-only", src)
	if dek := objectDEK(t, filepath.Join(r.Dir, "snapshots", id)); dekCount(t, r, newGen) == 0 ||
		!fileExists(filepath.Join(r.Dir, "deks", newGen, dek)) {
		t.Fatalf("the snapshot's data key %s is not under the new generation %s", dek, newGen)
	}
	eventually(t, 120*time.Second, "rotation done", func() bool { return readStatus(t, m).Rotation.State == "done" })
	rotating.Store(false)
	time.Sleep(200 * time.Millisecond) // a last round of reads after retirement
	stop.Store(true)
	wg.Wait()
	if e := readErr.Load(); e != nil {
		t.Fatalf("a read failed: %s", e)
	}
	if readsDuring.Load() == 0 {
		t.Fatal("no read ran during the rotation")
	}
	t.Logf("%d reads, %d during the rotation", reads.Load(), readsDuring.Load())
	if n := dekCount(t, r, oldGen); n != 0 {
		t.Fatalf("%d wrapped data keys remain under the retired generation", n)
	}
	// With the readers stopped the mount frees the old prefix's files.
	eventually(t, 30*time.Second, "the mount frees the retired prefix's space", func() bool {
		ms, _ := filepath.Glob(filepath.Join(r.Dir, ".trash-*"))
		return len(ms) == 0
	})
	m.Stop(t)

	// The new key alone reads everything; the old key matches nothing.
	m2 := startMount(t, r)
	for snap, files := range want {
		if got := sums(t, m2.Path("snapshots", snap)); len(got) != len(files) {
			t.Fatalf("snapshot %s: %d files after the rotation, want %d", snap, len(got), len(files))
		}
	}
	compareTrees(t, src, m2.Path("snapshots", "during"))
	m2.Stop(t)
	if _, err := startMountAt(&Repo{Dir: r.Dir, Key: oldKey}, t.TempDir()); err == nil || !strings.Contains(err.Error(), "no key matches") {
		t.Fatalf("mounting with the retired key: %v", err)
	}
	r.SC(t, "check", "--read-data")
}

// readCurrent returns the current key generation, as `status --json` says.
func readCurrent(t testing.TB, r *Repo, keys ...string) string {
	t.Helper()
	args := []string{"status", "--json", "-r", r.Dir}
	for _, k := range keys {
		args = append(args, "-k", k)
	}
	var s struct {
		Current string `json:"current_generation"`
	}
	if err := json.Unmarshal([]byte(must(t, "", binary, args...)), &s); err != nil {
		t.Fatal(err)
	}
	return s.Current
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestMountRotateBadInput: every bad request gets its errno and a status
// message, and leaves the keyring as it was.
func TestMountRotateBadInput(t *testing.T) {
	dir := t.TempDir()
	r := newRepo(t)
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644)
	r.Snapshot(t, src)
	addDEKs(t, r, 2000) // a rotation that takes a while, for the concurrent writes
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, make([]byte, 31), 0o600)
	long := filepath.Join(dir, "long.key")
	os.WriteFile(long, make([]byte, 33), 0o600)
	emptyPass := filepath.Join(dir, "empty.pass")
	os.WriteFile(emptyPass, nil, 0o600)
	junk := make([]byte, 1<<20)
	for i := range junk {
		junk[i] = byte('a' + i%26)
	}
	m := startMount(t, r, "--allow-other")
	epoch := readStatus(t, m).Keys.Epoch

	cases := []struct {
		name, control string
		data          []byte
		errno         syscall.Errno
	}{
		{"empty write", "rotate", []byte("\n"), syscall.EINVAL},
		{"garbage", "rotate", []byte("not a key spec at all\n"), syscall.EINVAL},
		{"1 MiB of junk", "rotate", junk, syscall.EINVAL},
		{"missing file", "rotate", []byte("file:" + filepath.Join(dir, "nope")), syscall.EINVAL},
		{"a directory", "rotate", []byte("file:" + dir), syscall.EINVAL},
		{"31-byte key", "rotate", []byte("file:" + short), syscall.EINVAL},
		{"33-byte key", "rotate", []byte("file:" + long), syscall.EINVAL},
		{"empty passphrase", "rotate", []byte("passfile:" + emptyPass), syscall.EINVAL},
		{"unset env", "rotate", []byte("env:SNAPCRYPT_TEST_UNSET_VARIABLE"), syscall.EINVAL},
		{"the current key", "rotate", []byte(r.Key), syscall.EEXIST},
		{"keys: empty", "keys", []byte("\n"), syscall.EINVAL},
		{"keys: garbage", "keys", []byte("garbage\n"), syscall.EINVAL},
		{"keys: a key that matches nothing", "keys", []byte("file:" + keyFile(t, dir, "stranger.key")), syscall.EINVAL},
		{"keys: 33-byte key", "keys", []byte("file:" + long), syscall.EINVAL},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := ctlWrite(t, m, c.control, c.data); got != c.errno {
				t.Fatalf("errno %v, want %v", got, c.errno)
			}
			s := readStatus(t, m)
			if s.Keys.Epoch != epoch {
				t.Fatalf("the keyring changed: epoch %d, was %d", s.Keys.Epoch, epoch)
			}
			if lr := s.Rotation.LastRequest; lr == nil || lr.Control != c.control || lr.Result == "ok" || lr.Errno == "" {
				t.Fatalf("status does not report the refused request: %+v", lr)
			}
			if strings.Contains(s.Rotation.LastError, string(junk[:64])) {
				t.Fatal("status repeats the junk request")
			}
		})
	}

	t.Run("another user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to act as another user")
		}
		cmd := exec.Command("sh", "-c", "printf 'file:%s' \"$0\" > \"$1\"", keyFile(t, dir, "other.key"), m.Path(".ctl", "rotate"))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "ermission denied") {
			t.Fatalf("another user's write: %v %s", err, out)
		}
		if s := readStatus(t, m); s.Keys.Epoch != epoch {
			t.Fatal("the keyring changed")
		}
	})

	t.Run("two writes at once", func(t *testing.T) {
		k1, k2 := keyFile(t, dir, "a.key"), keyFile(t, dir, "b.key")
		var wg sync.WaitGroup
		res := make([]syscall.Errno, 2)
		for i, k := range []string{k1, k2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i] = ctlWrite(t, m, "rotate", []byte("file:"+k))
			}()
		}
		wg.Wait()
		ok, busy := 0, 0
		for _, e := range res {
			switch e {
			case 0:
				ok++
			case syscall.EBUSY:
				busy++
			}
		}
		if ok != 1 || busy != 1 {
			t.Fatalf("two concurrent rotations: %v, want one success and one EBUSY", res)
		}
		eventually(t, 120*time.Second, "rotation done", func() bool { return readStatus(t, m).Rotation.State == "done" })
		if s := readStatus(t, m); s.Keys.Epoch != epoch+2 {
			t.Fatalf("keyring epoch %d after one rotation from %d, want +2 (switch, retire)", s.Keys.Epoch, epoch)
		}
	})
}

// TestMountTwoHosts: two daemons on one repository, as two hosts would be.
// A rotates; B notices within 10 s and keeps reading; handed the new key
// through .ctl/keys, B reads on after the old key is retired, including a
// snapshot taken with the new key.
func TestMountTwoHosts(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src, 11)
	r := newRepo(t)
	r.Snapshot(t, "--name", "base", src)
	newKey := "file:" + keyFile(t, dir, "new.key")
	a := startMount(t, r)
	b := startMount(t, r)
	want := sums(t, b.Path("snapshots", "base"))
	oldGen := readStatus(t, b).Keys.Current

	if e := ctlWrite(t, a, "rotate", []byte(newKey)); e != 0 {
		t.Fatalf("rotate on A: %v\n%s", e, a.Stderr())
	}
	eventually(t, 10*time.Second, "B sees the new generation", func() bool { return readStatus(t, b).Keys.Current != oldGen })
	eventually(t, 60*time.Second, "A finishes", func() bool { return readStatus(t, a).Rotation.State == "done" })
	// B holds DEKs it read before; hand it the new key for the rest.
	if e := ctlWrite(t, b, "keys", []byte(newKey)); e != 0 {
		t.Fatalf(".ctl/keys on B: %v\n%s", e, b.Stderr())
	}
	r.Key = newKey
	r.Snapshot(t, "--name", "after", src)
	dropCaches()
	got := sums(t, b.Path("snapshots", "base"))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatal("B reads the base snapshot differently after the rotation")
	}
	eventually(t, 10*time.Second, "B lists the new snapshot", func() bool { return fileExists(b.Path("snapshots", "after")) })
	compareTrees(t, src, b.Path("snapshots", "after"))
}

// TestMountRotateKilled sends SIGKILL to a mount in the middle of a rotation
// it runs; a fresh process with both keys reads everything, and a new mount
// finishes the rotation by itself.
func TestMountRotateKilled(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src, 13)
	r := newRepo(t)
	r.Snapshot(t, "--name", "base", src)
	addDEKs(t, r, 3000)
	oldKey, newKey := r.Key, "file:"+keyFile(t, dir, "new.key")
	for i, delay := range []time.Duration{0, 50 * time.Millisecond, 300 * time.Millisecond} {
		m := startMount(t, r, "--rotation-lease", "1s")
		oldGen := readStatus(t, m).Keys.Current
		if e := ctlWrite(t, m, "rotate", []byte(newKey)); e != 0 {
			t.Fatalf("rotate: %v\n%s", e, m.Stderr())
		}
		time.Sleep(delay) // when to kill, not a wait for readiness
		m.Signal(t, syscall.SIGKILL)
		m.Wait(t)
		exec.Command("fusermount3", "-u", "-z", m.Dir).Run()
		// Everything reads with both keys.
		out := filepath.Join(dir, fmt.Sprint("restore", i))
		must(t, "", binary, "restore", "-r", r.Dir, "-k", oldKey, "-k", newKey, "base", out)
		compareTrees(t, src, out)
		t.Logf("kill %d after %v: generation %s holds %d data keys", i, delay, readCurrent(t, r, oldKey, newKey), dekCount(t, r, readCurrent(t, r, oldKey, newKey)))
		// The next mount holds both keys and finishes the rotation.
		r = &Repo{Dir: r.Dir, Key: oldKey}
		m2 := startMount(t, r, "-k", newKey, "--rotation-lease", "1s")
		eventually(t, 60*time.Second, "the new mount finishes the rotation", func() bool {
			s := readStatus(t, m2)
			return s.Rotation.State == "done" || (s.Rotation.State == "idle" && s.Keys.Current != oldGen && dekCount(t, r, oldGen) == 0)
		})
		m2.Stop(t)
		if n := dekCount(t, r, oldGen); n != 0 {
			t.Fatalf("%d data keys left under the retired generation\nstatus: %s\nmount log:\n%s", n,
				must(t, "", binary, "status", "-r", r.Dir, "-k", newKey), m2.Stderr())
		}
		must(t, "", binary, "check", "--read-data", "-r", r.Dir, "-k", newKey)
		if i < 2 {
			// Rotate back for the next round: new generation, old key file.
			newKey, oldKey = oldKey, newKey
			r = &Repo{Dir: r.Dir, Key: oldKey}
		}
	}
}
