package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
)

// ctlKeyErrors reads keys.errors of .ctl/status.
func ctlKeyErrors(t testing.TB, m *Mount) []string {
	t.Helper()
	b, err := os.ReadFile(m.Path(".ctl", "status"))
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Keys struct {
			Errors []string `json:"errors"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s.Keys.Errors
}

// rotateOnMount rotates the repository from its key to a new one through
// the mount's .ctl/rotate and waits until the rotation is done. It returns
// the old and new generations and the new key spec.
func rotateOnMount(t *testing.T, r *Repo, m *Mount) (oldGen, newGen, newKey string) {
	t.Helper()
	oldGen = readStatus(t, m).Keys.Current
	newKey = "file:" + keyFile(t, t.TempDir(), "new.key")
	if e := ctlWrite(t, m, "rotate", []byte(newKey+"\n")); e != 0 {
		t.Fatalf("write .ctl/rotate: %v\n%s", e, m.Stderr())
	}
	eventually(t, 60*time.Second, "rotation done", func() bool { return readStatus(t, m).Rotation.State == "done" })
	newGen = readStatus(t, m).Keys.Current
	if newGen == oldGen {
		t.Fatal("no switch")
	}
	return oldGen, newGen, newKey
}

// The attack of issue #10 against a running mount: after the mount rotated
// from A to B, an attacker who holds A writes keyring/<N+1> by hand (A
// current, B retiring, a rotation from B to A: a bare version 1 keyring,
// as the old format allowed). The mount, which still has A's material,
// must not resume that "rotation"; A must restore nothing taken after the
// rotation, B must restore it.
func TestMountForgedKeyringEpoch(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src, 3)
	r := newRepo(t)
	oldKey := r.Key
	r.Snapshot(t, "--name", "before", src)
	m := startMount(t, r)
	genA, genB, newKey := rotateOnMount(t, r, m)
	r.Key = newKey
	r.Snapshot(t, "--name", "after", src)

	ctx := context.Background()
	st, err := local.Open(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	good, err := keys.LoadKeyring(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	forged := good.Clone()
	forged.Version, forged.Epoch, forged.Current = 1, good.Epoch+1, genA
	forged.Generations[0].State, forged.Generations[1].State = keys.StateCurrent, keys.StateRetiring
	forged.Rotation = &keys.Rotation{ID: strings.Repeat("ab", 16), From: []string{genB}, To: genA, Started: time.Now().UTC().Truncate(time.Second)}
	b, err := forged.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctx, fmt.Sprintf("keyring/%020d", forged.Epoch), b); err != nil {
		t.Fatal(err)
	}
	bad := fmt.Sprintf("keyring epoch %d", forged.Epoch)
	eventually(t, 20*time.Second, ".ctl/status names the bad epoch", func() bool {
		for _, e := range ctlKeyErrors(t, m) {
			if strings.Contains(e, bad) {
				return true
			}
		}
		return false
	})
	time.Sleep(5 * time.Second) // two more keyring polls of the mount
	s := readStatus(t, m)
	if s.Keys.Epoch != good.Epoch || s.Keys.Current != genB {
		t.Fatalf("the mount took the forged epoch: epoch %d current %s", s.Keys.Epoch, s.Keys.Current)
	}
	if _, err := os.Stat(filepath.Join(r.Dir, fmt.Sprintf("keyring/%020d", forged.Epoch+1))); err == nil {
		t.Fatal("the mount committed on top of the forged epoch")
	}
	if ents, _ := os.ReadDir(filepath.Join(r.Dir, "deks", genA)); len(ents) > 0 {
		t.Fatalf("the mount re-wrapped %d data keys under the retired key", len(ents))
	}
	m.Stop(t)

	res := run(t, "", binary, "restore", "-r", r.Dir, "-k", oldKey, "after", filepath.Join(dir, "outA"))
	if res.Code != 3 || dirHasFiles(filepath.Join(dir, "outA")) {
		t.Fatalf("restore with the retired key: exit %d\n%s", res.Code, res.Stderr)
	}
	res = run(t, "", binary, "restore", "-r", r.Dir, "-k", newKey, "after", filepath.Join(dir, "outB"))
	if res.Code != 0 || !strings.Contains(res.Stderr, bad) {
		t.Fatalf("restore with the new key: exit %d\n%s", res.Code, res.Stderr)
	}
	compareTrees(t, src, filepath.Join(dir, "outB"))
}

func dirHasFiles(d string) bool {
	ents, _ := os.ReadDir(d)
	return len(ents) > 0
}

// Rollback by deletion: after a rotation A→B seen by this host, the
// attacker deletes the epochs from the switch on and puts back a saved
// copy of deks/<A>/. This host refuses to write under A (exit 5); a mount
// with A reads, and says so in .ctl/status.
func TestRollbackRefusedOnThisHost(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeTree(t, src, 3)
	r := newRepo(t)
	oldKey := r.Key
	r.Snapshot(t, "--name", "before", src)
	ctx := context.Background()
	st, err := local.Open(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	before, err := keys.LoadKeyring(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	genA := before.Current
	saved := map[string][]byte{}
	filepath.WalkDir(filepath.Join(r.Dir, "deks", genA), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			saved[p], _ = os.ReadFile(p)
		}
		return nil
	})
	m := startMount(t, r)
	rotateOnMount(t, r, m)
	m.Stop(t)
	after, err := keys.LoadKeyring(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	for e := before.Epoch + 1; e <= after.Epoch; e++ {
		if err := os.Remove(filepath.Join(r.Dir, fmt.Sprintf("keyring/%020d", e))); err != nil {
			t.Fatal(err)
		}
	}
	for p, b := range saved {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	res := run(t, "", binary, "snapshot", "-r", r.Dir, "-k", oldKey, "--name", "under-A", src)
	if res.Code != 5 || !strings.Contains(res.Stderr, fmt.Sprintf("keyring history was rewritten: epoch %d", after.Epoch)) {
		t.Fatalf("snapshot with A after the rollback: exit %d\n%s", res.Code, res.Stderr)
	}
	r.Key = oldKey
	m2 := startMount(t, r)
	found := false
	for _, e := range ctlKeyErrors(t, m2) {
		found = found || strings.Contains(e, "keyring history was rewritten")
	}
	if !found {
		t.Fatalf(".ctl/status keys.errors: %v", ctlKeyErrors(t, m2))
	}
	m2.Stop(t)
}
