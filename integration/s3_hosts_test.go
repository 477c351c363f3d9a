package integration

// Several hosts on one S3 repository (issue 5, "Several hosts"): two or
// three `snapcrypt mount` daemons, each its own process as separate hosts
// would be, on one repository in a Versity Gateway the test starts. Without
// versitygw or FUSE these tests skip, except with CI=true, where they fail.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/retry"
	"github.com/snapcrypt/snapcrypt/repo/store/s3"
	"github.com/snapcrypt/snapcrypt/repo/store/s3/s3test"
	"github.com/snapcrypt/snapcrypt/rotation"
)

// s3Repo is a repository on a fresh prefix of a versitygw of the test's
// own, and the test's view of its store.
type s3Repo struct {
	*Repo
	srv *s3test.Server
	st  store.Store
}

// newS3Repo starts versitygw, gives this process (and so every snapcrypt
// it runs) the server's credentials, and makes a repository on a fresh
// prefix. It needs FUSE and versitygw: without either it skips, or fails
// with CI=true.
func newS3Repo(t *testing.T) *s3Repo {
	t.Helper()
	needFUSE(t)
	s3test.Binary(t) // skips, or fails in CI, without versitygw
	srv := s3test.Start(t)
	srv.SetEnv(t)
	dir := t.TempDir()
	r := &Repo{Dir: srv.URL(srv.NewPrefix()), Key: "file:" + keyFile(t, dir, "key")}
	r.SC(t, "init")
	st, err := s3.Open(context.Background(), r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	return &s3Repo{Repo: r, srv: srv, st: retry.New(st, retry.Options{})}
}

// keychain opens the repository's keys with the given key specs.
func (r *s3Repo) keychain(t testing.TB, specs ...string) *keys.Keychain {
	t.Helper()
	ctx := context.Background()
	cfg, err := repo.ReadConfig(ctx, r.st)
	if err != nil {
		t.Fatal(err)
	}
	var ms []*keys.Material
	for _, s := range specs {
		ms = append(ms, material(t, s))
	}
	kc, err := keys.Open(ctx, r.st, cfg.ID, ms...)
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

// addDEKs adds n wrapped data keys through the library (the S3 form of
// addDEKs), so that a rotation has thousands to re-wrap.
func (r *s3Repo) addDEKs(t testing.TB, n int) {
	t.Helper()
	start := time.Now()
	kc := r.keychain(t, r.Key)
	const workers = 32
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				var err error
				for range 3 { // the retry store retries requests; this, a failed NewDEK
					if _, _, err = kc.NewDEK(context.Background()); err == nil {
						break
					}
				}
				if err != nil {
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
	t.Logf("added %d data keys in %v", n, time.Since(start).Round(time.Millisecond))
}

// names lists the object names below prefix.
func (r *s3Repo) names(t testing.TB, prefix string) []string {
	t.Helper()
	var out []string
	err := r.st.List(context.Background(), prefix, func(i store.Info) error {
		out = append(out, i.Name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dekIDs lists the ids of the data keys wrapped under generation gen.
func (r *s3Repo) dekIDs(t testing.TB, gen string) []string {
	t.Helper()
	seen := map[[16]byte]bool{}
	var ids []string
	err := keys.ListDEKs(context.Background(), r.st, gen, func(id [16]byte) error {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, fmt.Sprintf("%x", id))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func (r *s3Repo) dekCount(t testing.TB, gen string) int { return len(r.dekIDs(t, gen)) }

// keyring reads the newest keyring from the store.
func (r *s3Repo) keyring(t testing.TB) *keys.Keyring {
	t.Helper()
	kr, err := keys.LoadKeyring(context.Background(), r.st)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// rotationLease returns the newest rotation lease, or nil if there is none.
func (r *s3Repo) rotationLease(t testing.TB) *lease.Lease {
	t.Helper()
	names := r.names(t, "leases/rotation/")
	if len(names) == 0 {
		return nil
	}
	b, err := r.st.Get(context.Background(), names[len(names)-1]) // listed in order
	if err != nil {
		t.Fatal(err)
	}
	l, err := lease.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return &l
}

// finished says whether the rotation away from gen is over: gen retired,
// no rotation record, nothing left under deks/<gen>/.
func (r *s3Repo) finished(t testing.TB, gen string) bool {
	kr := r.keyring(t)
	g := kr.Generation(gen)
	return kr.Rotation == nil && g != nil && g.State == keys.StateRetired && r.dekCount(t, gen) == 0
}

// reachable requires every data key of ids to unwrap with spec alone.
func (r *s3Repo) reachable(t testing.TB, spec string, ids []string) {
	t.Helper()
	kc := r.keychain(t, spec)
	var failed atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	next := make(chan string)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range next {
				var id [16]byte
				if _, err := hex.Decode(id[:], []byte(s)); err != nil {
					first.CompareAndSwap(nil, fmt.Sprintf("data key id %q: %v", s, err))
					failed.Add(1)
					continue
				}
				if _, err := kc.DEK(context.Background(), id); err != nil {
					first.CompareAndSwap(nil, fmt.Sprintf("data key %s: %v", s, err))
					failed.Add(1)
				}
			}
		}()
	}
	for _, id := range ids {
		next <- id
	}
	close(next)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d data keys do not open with %s alone; first: %v", n, len(ids), spec, first.Load())
	}
}

// watchShards lists the re-wrap shard leases and done markers every 20 ms
// until stop is called (or the test ends); stop returns the pids they
// named. onLease, if not nil, is called (from the watcher's goroutine) at
// the first shard lease of pid seen: that process is in the middle of a
// shard then.
func (r *s3Repo) watchShards(t testing.TB, pid int, onLease func()) (stop func() map[int]bool) {
	ctx, cancel := context.WithCancel(context.Background())
	seen := map[int]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fired := false
		for ctx.Err() == nil {
			var names []string
			r.st.List(ctx, "leases/rewrap/", func(i store.Info) error {
				names = append(names, i.Name)
				return nil
			})
			for _, name := range names {
				b, err := r.st.Get(ctx, name)
				if err != nil {
					continue
				}
				if strings.HasSuffix(name, "/done") {
					if d, err := rotation.ParseShardDone(b); err == nil {
						seen[d.PID] = true
					}
				} else if l, err := lease.Parse(b); err == nil {
					seen[l.PID] = true
					if l.PID == pid && !fired && onLease != nil {
						fired = true
						onLease()
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	stop = func() map[int]bool {
		cancel()
		<-done
		return seen
	}
	t.Cleanup(func() { stop() })
	return stop
}

// pid is the mount's process id.
func (m *Mount) pid() int { return m.cmd.Process.Pid }

// kill ends the mount with SIGKILL (unless it is dead already) and
// detaches its dead mountpoint.
func (m *Mount) kill(t testing.TB) {
	t.Helper()
	if err := m.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	m.Wait(t)
	if out, err := exec.Command("fusermount3", "-u", "-z", m.Dir).CombinedOutput(); err != nil {
		t.Fatalf("fusermount3 -u -z %s: %v %s", m.Dir, err, out)
	}
}

// reader reads every file of a snapshot on a mount again and again, caches
// dropped each round, and compares each with the source's sha256.
type reader struct {
	stop    atomic.Bool
	reads   atomic.Int64
	rounds  atomic.Int64
	during  atomic.Int64 // reads while counting is set
	counted atomic.Bool
	err     atomic.Value // string: the first failure
	wg      sync.WaitGroup
}

func startReader(m *Mount, snap string, want map[string][32]byte) *reader {
	rd := &reader{}
	rd.wg.Add(1)
	go func() {
		defer rd.wg.Done()
		for !rd.stop.Load() {
			dropCaches()
			for rel, sum := range want {
				b, err := os.ReadFile(m.Path("snapshots", snap, rel))
				if err != nil {
					rd.err.CompareAndSwap(nil, fmt.Sprintf("%s/%s: %v", snap, rel, err))
					return
				}
				if sha256.Sum256(b) != sum {
					rd.err.CompareAndSwap(nil, fmt.Sprintf("%s/%s: wrong content", snap, rel))
					return
				}
				rd.reads.Add(1)
				if rd.counted.Load() {
					rd.during.Add(1)
				}
			}
			rd.rounds.Add(1)
		}
	}()
	return rd
}

// failed reports the first failed read, or "".
func (rd *reader) failed() string {
	if e, ok := rd.err.Load().(string); ok {
		return e
	}
	return ""
}

// end stops the reader and fails t if a read failed.
func (rd *reader) end(t testing.TB, who string) {
	t.Helper()
	rd.stop.Store(true)
	rd.wg.Wait()
	if e := rd.failed(); e != "" {
		t.Fatalf("a read on %s failed: %s", who, e)
	}
}

// rounds waits for n more complete rounds of the reader, failing early if
// a read fails.
func (rd *reader) waitRounds(t testing.TB, n int64, within time.Duration, what string) {
	t.Helper()
	target := rd.rounds.Load() + n
	eventually(t, within, what, func() bool {
		if e := rd.failed(); e != "" {
			t.Fatalf("a read failed: %s", e)
		}
		return rd.rounds.Load() >= target
	})
}

// helpStatus is what the shared re-wrap test reads of a mount's status.
type helpStatus struct {
	Helping  bool `json:"helping"`
	HelpRuns int  `json:"help_runs"`
}

// helperStatus reads the helper fields of a mount's .ctl/status (safe off
// the test's goroutine).
func helperStatus(m *Mount) (helpStatus, error) {
	b, err := os.ReadFile(m.Path(".ctl", "status"))
	if err != nil {
		return helpStatus{}, err
	}
	var s struct {
		Rotation helpStatus `json:"rotation"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return helpStatus{}, fmt.Errorf(".ctl/status: %w", err)
	}
	return s.Rotation, nil
}

// genState returns the state of generation gen in a mount's status, or ""
// if the status does not list it.
func genState(s ctlStatus, gen string) string {
	for _, g := range s.Keys.Generations {
		if g.ID == gen {
			return g.State
		}
	}
	return ""
}

// snapshotCmd runs `snapcrypt snapshot` (host C) in the background with
// the given keys; wait returns its snapshot id or an error with its output.
func snapshotCmd(r *Repo, src, name string, specs ...string) (wait func() (string, error)) {
	args := []string{"snapshot", "-r", r.Dir, "--name", name}
	for _, s := range specs {
		args = append(args, "-k", s)
	}
	cmd := exec.Command(binary, append(args, src)...)
	cmd.Env = append(os.Environ(), "SNAPCRYPT_REPO=", "SNAPCRYPT_KEY=")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Start()
	done := make(chan struct{})
	go func() {
		if err == nil {
			err = cmd.Wait()
		}
		close(done)
	}()
	return func() (string, error) {
		<-done
		if err != nil {
			return "", fmt.Errorf("snapcrypt snapshot: %v\n%s", err, out.String())
		}
		s := strings.TrimSpace(out.String())
		return s[strings.LastIndexByte(s, '\n')+1:], nil
	}
}

// TestS3HostsRotation: host A rotates through .ctl/rotate while host B
// reads every file in a loop without one error and host C takes a snapshot
// with both keys; B notices the new generation within 10 s; handed the new
// key through .ctl/keys, B reads on after the old generation is retired;
// C's snapshot reads on A and B afterwards.
func TestS3HostsRotation(t *testing.T) {
	r := newS3Repo(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src, 21)
	r.Snapshot(t, "--name", "base", src)
	r.addDEKs(t, 1000)
	oldKey, newKey := r.Key, "file:"+keyFile(t, dir, "new.key")

	a := startMount(t, r.Repo, "--rotation-lease", "1s")
	b := startMount(t, r.Repo, "--rotation-lease", "1s", "--cache-size", "1M")
	oldGen := readStatus(t, b).Keys.Current
	want := sums(t, src)
	if got := sums(t, b.Path("snapshots", "base")); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatal("B reads the base snapshot differently from the source")
	}
	rd := startReader(b, "base", want)
	defer rd.end(t, "B")
	rd.waitRounds(t, 1, 30*time.Second, "B reads the whole snapshot once")

	rd.counted.Store(true)
	if e := ctlWrite(t, a, "rotate", []byte(newKey+"\n")); e != 0 {
		t.Fatalf("rotate on A: %v\n%s", e, a.Stderr())
	}
	switched := time.Now()
	newGen := readStatus(t, a).Keys.Current
	if newGen == oldGen {
		t.Fatal("the write to .ctl/rotate returned before the switch")
	}
	// Host C: a snapshot during the rotation, by a process with both keys.
	waitC := snapshotCmd(r.Repo, src, "during", oldKey, newKey)

	eventually(t, 10*time.Second-time.Since(switched), "B sees the new generation within 10 s of the switch", func() bool {
		return readStatus(t, b).Keys.Current == newGen
	})
	t.Logf("B saw generation %s %v after the switch", newGen, time.Since(switched).Round(time.Millisecond))
	if e := ctlWrite(t, b, "keys", []byte(newKey)); e != 0 {
		t.Fatalf(".ctl/keys on B: %v\n%s", e, b.Stderr())
	}
	eventually(t, 90*time.Second, "A finishes the rotation", func() bool {
		s := readStatus(t, a)
		if s.Rotation.State == "failed" {
			t.Fatalf("the rotation on A failed: %s\n%s", s.Rotation.LastError, a.Stderr())
		}
		return s.Rotation.State == "done"
	})
	rd.counted.Store(false)
	eventually(t, 10*time.Second, "B sees the old generation retired", func() bool {
		st := genState(readStatus(t, b), oldGen)
		return st == "retired" || st == ""
	})
	rd.waitRounds(t, 2, 60*time.Second, "B reads everything again after the retirement")
	rd.end(t, "B")
	if rd.during.Load() == 0 {
		t.Fatal("B read nothing during the rotation")
	}
	t.Logf("B: %d reads in %d rounds, %d during the rotation", rd.reads.Load(), rd.rounds.Load(), rd.during.Load())

	id, err := waitC()
	if err != nil {
		t.Fatal(err)
	}
	if !r.finished(t, oldGen) {
		t.Fatalf("generation %s is not retired and empty: %d wrapped data keys left", oldGen, r.dekCount(t, oldGen))
	}
	sealed, err := r.st.Get(context.Background(), "snapshots/"+id)
	if err != nil {
		t.Fatal(err)
	}
	h, err := object.ParseHeader(sealed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.Stat(context.Background(), fmt.Sprintf("deks/%s/%x", newGen, h.DEKID)); err != nil {
		t.Fatalf("the data key of C's snapshot is not under the new generation: %v", err)
	}
	// C's snapshot reads on A and B, and with the new key alone.
	for _, m := range []*Mount{a, b} {
		eventually(t, 10*time.Second, "the mount lists C's snapshot", func() bool { return fileExists(m.Path("snapshots", "during")) })
		compareTrees(t, src, m.Path("snapshots", "during"))
	}
	r.Key = newKey
	out := filepath.Join(dir, "restore")
	r.SC(t, "restore", id, out)
	compareTrees(t, src, out)
}

// TestS3HostsBusy: A and B asked to rotate at once (different keys): one
// wins, the other gets EBUSY. The winner is killed mid-rotation; once its
// lease lapses the other, handed the new key, resumes and finishes, and
// nothing is lost.
func TestS3HostsBusy(t *testing.T) {
	r := newS3Repo(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src, 22)
	r.Snapshot(t, "--name", "base", src)
	r.addDEKs(t, 1500)
	oldKey := r.Key
	mounts := []*Mount{startMount(t, r.Repo, "--rotation-lease", "1s"), startMount(t, r.Repo, "--rotation-lease", "1s")}
	oldGen := readStatus(t, mounts[0]).Keys.Current
	newKeys := []string{"file:" + keyFile(t, dir, "a.key"), "file:" + keyFile(t, dir, "b.key")}

	errnos := make([]syscall.Errno, 2)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, m := range mounts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.OpenFile(m.Path(".ctl", "rotate"), os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				errnos[i] = syscall.ENOENT
				return
			}
			defer f.Close()
			<-start
			if _, err := f.Write([]byte(newKeys[i])); err != nil && !errors.As(err, &errnos[i]) {
				errnos[i] = syscall.EIO
			}
		}()
	}
	close(start)
	wg.Wait()
	w := -1
	switch {
	case errnos[0] == 0 && errnos[1] == syscall.EBUSY:
		w = 0
	case errnos[1] == 0 && errnos[0] == syscall.EBUSY:
		w = 1
	default:
		t.Fatalf("two rotations requested at once: errnos %v, want one success and one EBUSY\nA:\n%sB:\n%s", errnos, mounts[0].Stderr(), mounts[1].Stderr())
	}
	winner, other, newKey := mounts[w], mounts[1-w], newKeys[w]
	if lr := readStatus(t, other).Rotation.LastRequest; lr == nil || lr.Errno != "EBUSY" {
		t.Fatalf("the refused host's status does not report EBUSY: %+v", lr)
	}
	newGen := r.keyring(t).Current
	if newGen == oldGen {
		t.Fatal("no switch after the winning request")
	}

	// Kill the winner in the middle of its re-wrap: once a tenth of the
	// data keys have their twins.
	total := r.dekCount(t, oldGen)
	eventually(t, 60*time.Second, "the winner re-wraps a tenth of the data keys", func() bool {
		return r.dekCount(t, newGen) >= total/10
	})
	winner.kill(t)
	if kr := r.keyring(t); kr.Rotation == nil {
		t.Fatal("the re-wrap finished before the kill: more data keys needed")
	}
	dead := r.rotationLease(t)
	if dead == nil || dead.PID != winner.pid() {
		t.Fatalf("the rotation lease is not the killed host's (pid %d): %+v", winner.pid(), dead)
	}
	t.Logf("killed the rotating host with %d of %d data keys re-wrapped", r.dekCount(t, newGen), total)
	out := filepath.Join(dir, "restore-killed")
	must(t, "", binary, "restore", "-r", r.Dir, "-k", oldKey, "-k", newKey, "base", out)
	compareTrees(t, src, out)

	// The other host, handed the new key, resumes once the lease lapsed.
	if e := ctlWrite(t, other, "keys", []byte(newKey)); e != 0 {
		t.Fatalf(".ctl/keys on the other host: %v\n%s", e, other.Stderr())
	}
	eventually(t, 60*time.Second, "the other host resumes and finishes the rotation", func() bool {
		rot := r.keyring(t).Rotation
		if now := time.Now(); rot == nil && now.Before(dead.Expires) {
			t.Fatalf("the old generation was retired at %v, before the dead host's lease lapsed at %v", now, dead.Expires)
		}
		return readStatus(t, other).Rotation.State == "done" || r.finished(t, oldGen)
	})
	eventually(t, 30*time.Second, "the old generation retired and emptied", func() bool { return r.finished(t, oldGen) })
	out = filepath.Join(dir, "restore-after")
	must(t, "", binary, "restore", "-r", r.Dir, "-k", oldKey, "-k", newKey, "base", out)
	compareTrees(t, src, out)
	must(t, "", binary, "check", "--read-data", "-r", r.Dir, "-k", newKey)
	compareTrees(t, src, other.Path("snapshots", "base"))
}

// TestS3HostsSharedRewrap: two daemons holding both keys share the re-wrap
// of a rotation started on A (shard leases); every data key stays
// reachable. Then B is killed in the middle of a shard of the next
// rotation: A takes the shard over and finishes, and nothing is lost.
func TestS3HostsSharedRewrap(t *testing.T) {
	r := newS3Repo(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src, 23)
	r.Snapshot(t, "--name", "base", src)
	r.addDEKs(t, 1500)
	key2, key3 := "file:"+keyFile(t, dir, "2.key"), "file:"+keyFile(t, dir, "3.key")
	both := []string{"--rotation-lease", "1s", "-k", key2, "-k", key3}
	a := startMount(t, r.Repo, both...)
	b := startMount(t, r.Repo, both...)

	// rotate rotates A to key and returns the generation rotated from and
	// the data keys it wrapped. B's keyring poll (every 2 s) would bring
	// it in; handing it the key it holds already through .ctl/keys makes
	// it look at once, so that the test does not depend on the re-wrap
	// outlasting a poll period.
	rotate := func(key string) (string, []string) {
		t.Helper()
		from := r.keyring(t).Current
		ids := r.dekIDs(t, from)
		if e := ctlWrite(t, a, "rotate", []byte(key)); e != 0 {
			t.Fatalf("rotate on A: %v\n%s", e, a.Stderr())
		}
		if e := ctlWrite(t, b, "keys", []byte(key)); e != 0 {
			t.Fatalf(".ctl/keys on B: %v\n%s", e, b.Stderr())
		}
		return from, ids
	}
	// finish waits for A to finish the rotation from gen and checks that
	// every data key opens with key alone.
	finish := func(gen, key string, ids []string) {
		t.Helper()
		eventually(t, 90*time.Second, "A finishes the rotation", func() bool {
			s := readStatus(t, a)
			if s.Rotation.State == "failed" {
				t.Fatalf("the rotation on A failed: %s\n%s", s.Rotation.LastError, a.Stderr())
			}
			return s.Rotation.State == "done"
		})
		if !r.finished(t, gen) {
			t.Fatalf("generation %s is not retired and empty: %d wrapped data keys left", gen, r.dekCount(t, gen))
		}
		r.reachable(t, key, ids)
	}

	if !t.Run("helper", func(t *testing.T) {
		var helping atomic.Bool
		watch := r.watchShards(t, b.pid(), nil)
		gen, ids := rotate(key2)
		began := time.Now()
		statusCtx, stopStatus := context.WithCancel(context.Background())
		statusDone := make(chan struct{})
		go func() { // B's own account of its helping
			defer close(statusDone)
			for statusCtx.Err() == nil {
				if h, err := helperStatus(b); err == nil && h.Helping {
					helping.Store(true)
				}
				select {
				case <-statusCtx.Done():
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
		defer func() { stopStatus(); <-statusDone }()
		finish(gen, key2, ids)
		took := time.Since(began)
		stopStatus()
		pids := watch()
		s, err := helperStatus(b)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("rotation of %d data keys took %v; B: helping seen %v, help runs %d; shard objects by pids %v (A %d, B %d)",
			len(ids), took.Round(time.Millisecond), helping.Load(), s.HelpRuns, pids, a.pid(), b.pid())
		if !pids[b.pid()] {
			t.Fatalf("B (pid %d) claimed no re-wrap shard (shard objects by %v)\nB:\n%s", b.pid(), pids, b.Stderr())
		}
		if s.HelpRuns == 0 && !helping.Load() {
			t.Fatal("B's status never showed it helping")
		}
	}) {
		return
	}

	t.Run("helper killed", func(t *testing.T) {
		var killAt atomic.Int64
		watch := r.watchShards(t, b.pid(), func() {
			killAt.Store(time.Now().UnixNano())
			b.cmd.Process.Kill() // B is in the middle of a shard
		})
		gen, ids := rotate(key3)
		eventually(t, 30*time.Second, "B takes a shard", func() bool { return killAt.Load() != 0 })
		b.kill(t)
		watch()
		finish(gen, key3, ids)
		if left := r.names(t, "leases/"); len(left) > 0 {
			t.Fatalf("lease objects left behind: %v", left)
		}
		must(t, "", binary, "check", "--read-data", "-r", r.Dir, "-k", key3)
		compareTrees(t, src, a.Path("snapshots", "base"))
	})
}
