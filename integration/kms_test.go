package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/internal/kmstest"
)

// The AWS KMS tests run local-kms (internal/kmstest) on loopback; every
// snapcrypt process reaches it through AWS_ENDPOINT_URL_KMS, which
// kmstest sets in this process's environment for the test.

// startKMS starts local-kms for the test, points snapcrypt at it, and
// makes a tree to snapshot (makeTree with seed) in a new directory.
func startKMS(t *testing.T, seed uint64) (s *kmstest.Server, dir, src string) {
	t.Helper()
	s = kmstest.Start(t)
	s.SetEnv(t)
	dir = t.TempDir()
	src = filepath.Join(dir, "src")
	if seed != 0 {
		makeTree(t, src, seed)
	}
	return s, dir, src
}

// newKMSRepo makes a repository whose key is the KMS key spec key.
func newKMSRepo(t testing.TB, key string) *Repo {
	t.Helper()
	r := &Repo{Dir: filepath.Join(t.TempDir(), "repo"), Key: key}
	r.SC(t, "init")
	return r
}

// TestKMSRestoreAndErrors: init with a KMS key, snapshot, restore with
// only the KMS key; then each failure of KMS is exit 3 with a message that
// names it.
func TestKMSRestoreAndErrors(t *testing.T) {
	s, dir, src := startKMS(t, 21)
	r := newKMSRepo(t, "awskms:"+s.AliasA)
	r.Snapshot(t, "--name", "one", src)
	out := filepath.Join(dir, "restored")
	r.SC(t, "restore", "one", out)
	compareTrees(t, src, out)
	if st := r.SC(t, "status"); !strings.Contains(st, "awskms") {
		t.Fatalf("status does not show the generation's kdf:\n%s", st)
	}
	keyring, err := os.ReadFile(filepath.Join(r.Dir, "keyring", "00000000000000000001"))
	if err != nil || !strings.Contains(string(keyring), `"type": "awskms"`) || !strings.Contains(string(keyring), `"version": 3`) {
		t.Fatalf("keyring epoch 1: %v\n%s", err, keyring)
	}

	fails := func(what, want string) {
		t.Helper()
		res := run(t, "", binary, "snapshots", "-r", r.Dir, "-k", r.Key)
		if res.Code != 3 || !strings.Contains(res.Stderr, want) {
			t.Fatalf("%s: exit %d, want 3 and %q in:\n%s", what, res.Code, want, res.Stderr)
		}
	}
	s.DisableKey(t, s.KeyA)
	fails("a disabled key", "the KMS key is disabled")
	s.EnableKey(t, s.KeyA)
	s.Down()
	fails("KMS down", "KMS endpoint "+s.Endpoint+" is unreachable")
	s.Up(t)
	s.Inject("Decrypt", "AccessDeniedException", 1)
	fails("access denied", "access denied by KMS")
	if res := run(t, "", binary, "snapshots", "-r", r.Dir, "-k", "awskms:alias/no-such-key"); res.Code != 3 || !strings.Contains(res.Stderr, "no key matches") {
		t.Fatalf("another KMS key: exit %d\n%s", res.Code, res.Stderr)
	}
	if res := run(t, "", binary, "init", "-r", filepath.Join(dir, "repo2"), "-k", "awskms:alias/no-such-key"); res.Code != 3 || !strings.Contains(res.Stderr, "not found") {
		t.Fatalf("init with a missing KMS key: exit %d\n%s", res.Code, res.Stderr)
	}
}

// TestKMSMountRotate mounts a repository with a file key and, while a
// reader goes over every file without one error, rotates it online to a
// KMS key through .ctl/rotate, then with `snapcrypt rotate` from that KMS
// key to another (given as an ARN, the first as an alias), the mount
// handed the new key through .ctl/keys. The last KMS key alone then
// restores everything.
func TestKMSMountRotate(t *testing.T) {
	s, dir, src := startKMS(t, 22)
	r := newRepo(t)
	r.Snapshot(t, "--name", "one", src)
	addDEKs(t, r, 500)
	fileKey := r.Key
	keyA, keyB := "awskms:"+s.AliasA, "awskms:"+kmstest.ARN(s.KeyB)

	m := startMount(t, r)
	gen0 := readStatus(t, m).Keys.Current
	rd := startReader(m, "one", sums(t, m.Path("snapshots", "one")))
	rd.counted.Store(true)
	rd.waitRounds(t, 1, 60*time.Second, "the reader's first round")

	if e := ctlWrite(t, m, "rotate", []byte(keyA+"\n")); e != 0 {
		t.Fatalf("write .ctl/rotate: %v\n%s", e, m.Stderr())
	}
	genA := readStatus(t, m).Keys.Current
	if genA == gen0 {
		t.Fatal("the write returned before the switch")
	}
	eventually(t, 120*time.Second, "rotation to the KMS key done", func() bool { return readStatus(t, m).Rotation.State == "done" })
	if n := s.Calls("Decrypt"); n != 0 {
		t.Fatalf("the mount that made the KMS generation asked KMS to decrypt it %d times", n)
	}

	// `snapcrypt rotate` from KMS key A to KMS key B by another process;
	// the mount, holding A, reads on, and is handed B afterwards (as a
	// second host would be).
	must(t, "", binary, "rotate", "-r", r.Dir, "-k", keyA, "--new-key", keyB)
	eventually(t, 30*time.Second, "the mount sees A retired", func() bool {
		for _, g := range readStatus(t, m).Keys.Generations {
			if g.ID == genA {
				return g.State == "retired"
			}
		}
		return false
	})
	if e := ctlWrite(t, m, "keys", []byte(keyB+"\n")); e != 0 {
		t.Fatalf("write .ctl/keys: %v\n%s", e, m.Stderr())
	}
	rd.waitRounds(t, 1, 60*time.Second, "a round of reads after A's retirement")
	rd.end(t, "the mount")
	t.Logf("%d reads during the rotations", rd.during.Load())

	r.Key = keyB
	r.Snapshot(t, "--name", "two", src)
	eventually(t, 10*time.Second, "the mount lists the new snapshot", func() bool { return fileExists(m.Path("snapshots", "two")) })
	compareTrees(t, src, m.Path("snapshots", "two"))
	m.Stop(t)
	out := filepath.Join(dir, "restored")
	r.SC(t, "restore", "one", out)
	compareTrees(t, src, out)
	for _, old := range []string{fileKey, keyA} {
		if res := run(t, "", binary, "snapshots", "-r", r.Dir, "-k", old); res.Code != 3 || !strings.Contains(res.Stderr, "no key matches") {
			t.Fatalf("the retired key %s: exit %d\n%s", old, res.Code, res.Stderr)
		}
	}
}

// TestKMSMountOneDecrypt: a mount of a KMS-keyed repository reading 10,000
// files asks KMS to decrypt once; with KMS gone, the mount reads on and a
// new process fails with a clear error.
func TestKMSMountOneDecrypt(t *testing.T) {
	s, _, src := startKMS(t, 0)
	for i := range 10000 {
		p := filepath.Join(src, fmt.Sprintf("d%02d", i/100), fmt.Sprintf("f%05d", i))
		if i%100 == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(p, []byte(fmt.Sprintf("file %d\n", i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := newKMSRepo(t, "awskms:"+s.AliasA)
	r.Snapshot(t, "--name", "many", src)
	before := s.Calls("Decrypt")
	m := startMount(t, r)
	want := sums(t, m.Path("snapshots", "many"))
	if len(want) != 10000 {
		t.Fatalf("%d files read, want 10000", len(want))
	}
	if n := s.Calls("Decrypt") - before; n != 1 {
		t.Fatalf("the mount made %d Decrypt calls, want 1", n)
	}

	s.Down()
	dropCaches()
	if got := sums(t, m.Path("snapshots", "many")); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatal("the mount reads differently with KMS down")
	}
	if e := ctlWrite(t, m, "keys", []byte("awskms:"+s.AliasA+"\n")); e != syscall.EINVAL {
		t.Fatalf(".ctl/keys with KMS down: errno %v, want EINVAL", e)
	}
	if lr := readStatus(t, m).Rotation.LastRequest; lr == nil || !strings.Contains(lr.Result, "unreachable") {
		t.Fatalf("status of .ctl/keys with KMS down: %+v", lr)
	}
	res := run(t, "", binary, "snapshots", "-r", r.Dir, "-k", r.Key)
	if res.Code != 3 || !strings.Contains(res.Stderr, "unreachable") {
		t.Fatalf("a new process with KMS down: exit %d\n%s", res.Code, res.Stderr)
	}
	m.Stop(t)
}
