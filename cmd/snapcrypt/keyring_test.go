package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
)

// The attack of issue #10 through the CLI: after a rotation from A to B an
// attacker who holds A writes a keyring epoch (a bare version 1 keyring, as
// today's format allowed) that makes A current again. The CLI must not
// take it: check lists it (exit 1), writes refuse (exit 5), A opens
// nothing, B reads with a warning.
func TestForgedKeyringEpochCLI(t *testing.T) {
	f := newFixture(t)
	newKey := filepath.Join(f.dir, "new.key")
	sc(t, nil, "keygen", newKey).want(t, 0, "")
	sc(t, f.env, "rotate", "--new-key", "file:"+newKey).want(t, 0, "switched")
	newEnv := []string{"SNAPCRYPT_REPO=" + f.repo, "SNAPCRYPT_KEY=file:" + newKey}
	sc(t, newEnv, "snapshot", "--name", "after", f.src).want(t, 0, "")

	ctx := context.Background()
	st, err := local.Open(f.repo)
	if err != nil {
		t.Fatal(err)
	}
	good, err := keys.LoadKeyring(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	forged := good.Clone()
	forged.Version, forged.Epoch = 1, good.Epoch+1
	genA, genB := good.Generations[0].ID, good.Current
	forged.Current = genA
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

	r := sc(t, newEnv, "check")
	r.want(t, exitFailure, "problems found")
	if !strings.Contains(r.stdout, "problem: "+bad) {
		t.Fatalf("check does not list the bad epoch:\n%s", r.stdout)
	}
	sc(t, newEnv, "snapshot", "--name", "refused", f.src).want(t, exitDamaged, bad)
	sc(t, newEnv, "rotate", "--new-key", "file:"+f.key).want(t, exitDamaged, bad)

	var s struct {
		Epoch    uint64   `json:"keyring_epoch"`
		Current  string   `json:"current_generation"`
		Auth     bool     `json:"keyring_authenticated"`
		Problems []string `json:"keyring_problems"`
	}
	out := sc(t, newEnv, "status", "--json")
	out.want(t, 0, bad)
	if err := json.Unmarshal([]byte(out.stdout), &s); err != nil {
		t.Fatal(err)
	}
	if s.Epoch != good.Epoch || s.Current != genB || !s.Auth || !slices.ContainsFunc(s.Problems, func(p string) bool { return strings.Contains(p, bad) }) {
		t.Fatalf("status: %+v", s)
	}

	// A opens nothing; B restores the snapshot taken after the rotation.
	sc(t, f.env, "restore", "latest", filepath.Join(f.dir, "outA")).want(t, exitKey, "no key matches")
	if _, err := os.Stat(filepath.Join(f.dir, "outA", "hello.txt")); err == nil {
		t.Fatal("the retired key restored the snapshot")
	}
	sc(t, newEnv, "restore", "latest", filepath.Join(f.dir, "outB")).want(t, 0, "warning: "+bad)
	got, err := os.ReadFile(filepath.Join(f.dir, "outB", "hello.txt"))
	if err != nil || !strings.Contains(string(got), marker) {
		t.Fatalf("restore with B: %q %v", got, err)
	}
}

// A repository made before format version 2 (the frozen example) opens, and
// status says its keyring is not authenticated until its next keyring
// commit, which a rotation makes.
func TestLegacyKeyringStatus(t *testing.T) {
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	if out, err := exec.Command("cp", "-r", "../../repo/testdata/example-repo", repoDir).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	env := []string{"SNAPCRYPT_REPO=" + repoDir, "SNAPCRYPT_KEY=passfile:../../repo/testdata/example.pass"}
	r := sc(t, env, "status")
	r.want(t, 0, "")
	if !strings.Contains(r.stdout, "keyring not authenticated") {
		t.Fatalf("status of a version 1 keyring:\n%s", r.stdout)
	}
	newKey := filepath.Join(dir, "new.key")
	sc(t, nil, "keygen", newKey).want(t, 0, "")
	sc(t, env, "rotate", "--new-key", "file:"+newKey).want(t, 0, "switched")
	newEnv := []string{"SNAPCRYPT_REPO=" + repoDir, "SNAPCRYPT_KEY=file:" + newKey}
	r = sc(t, newEnv, "status")
	r.want(t, 0, "")
	if strings.Contains(r.stdout, "keyring not authenticated") || strings.Contains(r.stdout, "keyring problem") {
		t.Fatalf("status after a rotation:\n%s", r.stdout)
	}
	sc(t, newEnv, "check").want(t, 0, "")
}
