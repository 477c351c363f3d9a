package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
)

func loadKey(t *testing.T, path string) *keys.Material {
	t.Helper()
	spec, err := keys.ParseSpec("file:" + path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := spec.Load()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type statusOut struct {
	Current    string `json:"current_generation"`
	Unfinished bool   `json:"rotation_unfinished"`
	Lease      *struct {
		PID int `json:"pid"`
	} `json:"rotation_lease"`
	Generations []struct {
		ID    string `json:"id"`
		State string `json:"state"`
		DEKs  int    `json:"wrapped_deks"`
	} `json:"generations"`
}

func status(t *testing.T, env []string, args ...string) statusOut {
	t.Helper()
	r := sc(t, env, append([]string{"status", "--json"}, args...)...)
	r.want(t, 0, "")
	var s statusOut
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	return s
}

func TestRotateCommand(t *testing.T) {
	f := newFixture(t)
	sc(t, f.env, "snapshot", "--name", "before", f.src).want(t, 0, "")
	newKey := filepath.Join(f.dir, "new.key")
	sc(t, nil, "keygen", newKey).want(t, 0, "")
	before := status(t, f.env)

	// Bad requests change nothing.
	sc(t, f.env, "rotate", "--new-key", "file:"+f.key).want(t, exitKey, "already the current key")
	sc(t, f.env, "rotate", "--new-key", filepath.Join(f.dir, "missing")).want(t, exitKey, "missing")
	if after := status(t, f.env); after.Current != before.Current || len(after.Generations) != 1 {
		t.Fatalf("a rejected rotation changed the keyring: %+v", after)
	}

	r := sc(t, f.env, "rotate", "--new-key", "file:"+newKey)
	r.want(t, 0, "switched")
	newEnv := []string{"SNAPCRYPT_REPO=" + f.repo, "SNAPCRYPT_KEY=file:" + newKey}
	st := status(t, newEnv)
	if st.Current == before.Current || st.Unfinished {
		t.Fatalf("after rotate: %+v", st)
	}
	for _, g := range st.Generations {
		if g.ID == before.Current && (g.State != "retired" || g.DEKs != 0) {
			t.Fatalf("old generation not retired and emptied: %+v", g)
		}
	}
	// Only the new key reads; the old key is refused.
	sc(t, f.env, "snapshots").want(t, exitKey, "no key matches")
	dst := filepath.Join(f.dir, "r")
	sc(t, newEnv, "restore", "before", dst).want(t, 0, "")
	if describe(t, dst) != describe(t, f.src) {
		t.Fatal("restore after rotation differs")
	}
	sc(t, newEnv, "check", "--read-data").want(t, 0, "")
}

func TestRotateNoWaitThenSnapshotResumes(t *testing.T) {
	f := newFixture(t)
	sc(t, f.env, "snapshot", f.src).want(t, 0, "")
	newKey := filepath.Join(f.dir, "new.key")
	sc(t, nil, "keygen", newKey).want(t, 0, "")
	sc(t, f.env, "rotate", "--no-wait", "--new-key", "file:"+newKey).want(t, 0, "switched")
	both := []string{"SNAPCRYPT_REPO=" + f.repo}
	if st := status(t, both, "-k", f.key, "-k", newKey); !st.Unfinished {
		t.Fatalf("--no-wait finished the rotation: %+v", st)
	}
	// A snapshot that holds the new key finishes the rotation.
	r := sc(t, both, "snapshot", "-k", f.key, "-k", newKey, f.src)
	r.want(t, 0, "finished an interrupted key rotation")
	if st := status(t, both, "-k", newKey); st.Unfinished {
		t.Fatalf("snapshot did not finish the rotation: %+v", st)
	}
	sc(t, both, "check", "--read-data", "-k", newKey).want(t, 0, "")
}

// TestRotateRerunResumes: a rotation left unfinished after its switch
// (here by --no-wait) is finished by running the same command again,
// holding only the old key: it says it resumes, exits 0, and the old
// generation is retired.
func TestRotateRerunResumes(t *testing.T) {
	f := newFixture(t)
	sc(t, f.env, "snapshot", f.src).want(t, 0, "")
	newKey := filepath.Join(f.dir, "new.key")
	sc(t, nil, "keygen", newKey).want(t, 0, "")
	orig := status(t, f.env).Current
	sc(t, f.env, "rotate", "--no-wait", "--new-key", "file:"+newKey).want(t, 0, "switched")
	both := []string{"SNAPCRYPT_REPO=" + f.repo}
	if st := status(t, both, "-k", f.key, "-k", newKey); !st.Unfinished || st.Current == orig {
		t.Fatalf("after --no-wait: %+v", st)
	}
	r := sc(t, f.env, "rotate", "--new-key", "file:"+newKey)
	r.want(t, 0, "resuming")
	if !strings.Contains(r.stdout, "rotation done") {
		t.Fatalf("stdout %q", r.stdout)
	}
	st := status(t, both, "-k", newKey)
	if st.Unfinished || len(st.Generations) != 2 {
		t.Fatalf("after the rerun: %+v", st)
	}
	for _, g := range st.Generations {
		if g.ID == orig && (g.State != "retired" || g.DEKs != 0) {
			t.Fatalf("old generation after the rerun: %+v", g)
		}
	}
	// Once finished, the same command is refused: nothing to resume.
	sc(t, both, "rotate", "-k", newKey, "--new-key", "file:"+newKey).want(t, exitKey, "already the current key")
	sc(t, both, "check", "--read-data", "-k", newKey).want(t, 0, "")
}

// TestRotateBreakLease: a rotation lease left by a rotator that hung
// (an hour long) makes rotate exit busy naming its holder, until
// rotate --break-lease ends it (exit 0, naming the holder); rotate then
// runs.
func TestRotateBreakLease(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	sc(t, f.env, "snapshot", f.src).want(t, 0, "")
	newKey := filepath.Join(f.dir, "new.key")
	sc(t, nil, "keygen", newKey).want(t, 0, "")
	st, err := local.Open(f.repo)
	if err != nil {
		t.Fatal(err)
	}
	h, err := lease.Take(ctx, st, "leases/rotation/", lease.Options{Duration: lease.MaxDuration, Host: "hung-host"})
	if err != nil {
		t.Fatal(err)
	}
	h.Abandon() // hung: no renewals, no release
	sc(t, f.env, "rotate", "--new-key", "file:"+newKey).want(t, exitBusy, "hung-host")
	r := sc(t, f.env, "rotate", "--break-lease")
	r.want(t, 0, "")
	if !strings.Contains(r.stdout, "hung-host") {
		t.Fatalf("--break-lease does not name the holder: %q", r.stdout)
	}
	sc(t, f.env, "rotate", "--new-key", "file:"+newKey).want(t, 0, "switched")
	newEnv := []string{"SNAPCRYPT_REPO=" + f.repo, "SNAPCRYPT_KEY=file:" + newKey}
	if s := status(t, newEnv); s.Unfinished || s.Lease != nil {
		t.Fatalf("after the rotation: %+v", s)
	}
	r = sc(t, newEnv, "rotate", "--break-lease")
	r.want(t, 0, "")
	if !strings.Contains(r.stdout, "no rotation lease") {
		t.Fatalf("--break-lease with no lease: %q", r.stdout)
	}
	sc(t, newEnv, "rotate", "--break-lease", "--new-key", "file:"+newKey).want(t, exitUsage, "")
}

// TestRotateKilled sends SIGKILL to `snapcrypt rotate` at many points of a
// rotation of a repository with thousands of data keys. After each kill a
// fresh process with both keys reads everything; the last run finishes the
// rotation, after which the new key alone reads everything.
func TestRotateKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	ctx := context.Background()
	f := newFixture(t)
	sc(t, f.env, "snapshot", f.src).want(t, 0, "")
	newKey := filepath.Join(f.dir, "new.key")
	sc(t, nil, "keygen", newKey).want(t, 0, "")
	oldM, newM := loadKey(t, f.key), loadKey(t, newKey)

	st, err := local.Open(f.repo)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := repo.ReadConfig(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := keys.Open(ctx, st, cfg.ID, oldM)
	if err != nil {
		t.Fatal(err)
	}
	deks := map[[16]byte][]byte{}
	for range 3000 {
		id, dek, err := kc.NewDEK(ctx)
		if err != nil {
			t.Fatal(err)
		}
		deks[id] = dek
	}
	verify := func(ms ...*keys.Material) {
		t.Helper()
		k, err := keys.Open(ctx, st, cfg.ID, ms...)
		if err != nil {
			t.Fatal(err)
		}
		for id, want := range deks {
			got, err := k.DEK(ctx, id)
			if err != nil {
				t.Fatalf("data key %x unreachable: %v", id, err)
			}
			if string(got) != string(want) {
				t.Fatalf("data key %x changed", id)
			}
		}
	}
	both := []string{"SNAPCRYPT_REPO=" + f.repo}
	resume := []string{"rotate", "--workers", "2", "--lease", "1s", "-k", f.key, "-k", newKey}
	args := append(resume, "--new-key", "file:"+newKey)
	orig := status(t, f.env).Current
	midway := 0
	for i, delay := range []time.Duration{5, 30, 50, 70, 90, 110, 150, 200, 300, 1000, 2000} {
		// Let the killed holder's lease lapse, so the kill lands in work.
		for deadline := time.Now().Add(10 * time.Second); status(t, both, "-k", f.key, "-k", newKey).Lease != nil; {
			if time.Now().After(deadline) {
				t.Fatal("the rotation lease of a killed process did not lapse")
			}
			time.Sleep(100 * time.Millisecond)
		}
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), both...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay * time.Millisecond) // when to kill, not a wait for readiness
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		// Everything reads with the keys the keyring names.
		verify(oldM, newM)
		dst := filepath.Join(f.dir, "r", strings.Repeat("x", i+1))
		sc(t, both, "restore", "-k", f.key, "-k", newKey, "latest", dst).want(t, 0, "")
		if describe(t, dst) != describe(t, f.src) {
			t.Fatalf("after kill %d: restore differs", i)
		}
		// Once switched, later runs resume instead of starting anew.
		s := status(t, both, "-k", f.key, "-k", newKey)
		phase := "before the switch"
		switch {
		case s.Current != orig && s.Unfinished:
			phase = "switched, unfinished"
			midway++
			args = resume
		case s.Current != orig:
			phase = "finished"
			args = resume
		}
		t.Logf("kill %d after %v: %s", i, delay*time.Millisecond, phase)
	}
	if midway == 0 {
		t.Fatal("no kill landed between the switch and the end of the rotation")
	}
	// Finish: retry while the killed holder's lease runs out.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := sc(t, both, "rotate", "--lease", "1s", "-k", f.key, "-k", newKey)
		if r.code == 0 {
			break
		}
		if r.code != exitBusy || time.Now().After(deadline) {
			r.want(t, 0, "")
		}
		time.Sleep(200 * time.Millisecond)
	}
	s := status(t, both, "-k", newKey)
	if s.Unfinished || len(s.Generations) != 2 {
		t.Fatalf("rotation not finished: %+v", s)
	}
	verify(newM)
	sc(t, both, "snapshots", "-k", f.key).want(t, exitKey, "no key matches")
	sc(t, both, "check", "--read-data", "-k", newKey).want(t, 0, "")
}
