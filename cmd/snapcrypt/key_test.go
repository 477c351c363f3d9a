package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
)

// keyListRow is a row of 'key list --json'.
type keyListRow struct {
	Generation, State, Slot, Kind string
}

func keyList(t *testing.T, env []string, args ...string) []keyListRow {
	t.Helper()
	r := sc(t, env, append([]string{"key", "list", "--json"}, args...)...)
	r.want(t, 0, "")
	var rows []keyListRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		t.Fatalf("key list --json: %v\n%s", err, r.stdout)
	}
	return rows
}

// A recovery key file added as a slot opens the repository alone (snapshot,
// restore); removed, it opens nothing and the command says that removal
// is not revocation. A passphrase slot works the same way. Listings and
// status show slots by id and kind and never a secret.
func TestKeySlotsCLI(t *testing.T) {
	f := newFixture(t)
	id := lastLine(sc(t, f.env, "snapshot", "--name", "first", f.src).stdout)
	rec := filepath.Join(f.dir, "recovery.key")
	sc(t, nil, "keygen", rec).want(t, 0, "")
	pass := filepath.Join(f.dir, "pass")
	if err := os.WriteFile(pass, []byte("a long recovery passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	recEnv := []string{"SNAPCRYPT_REPO=" + f.repo, "SNAPCRYPT_KEY=file:" + rec}
	passEnv := []string{"SNAPCRYPT_REPO=" + f.repo, "SNAPCRYPT_KEY=passfile:" + pass}
	sc(t, recEnv, "snapshots").want(t, exitKey, "no key matches")

	add := sc(t, f.env, "key", "add", "file:"+rec)
	add.want(t, 0, "")
	if !strings.Contains(add.stdout, "added key slot") || !strings.Contains(add.stdout, "raw key") {
		t.Fatalf("key add says %q", add.stdout)
	}
	sc(t, f.env, "key", "add", "passfile:"+pass).want(t, 0, "")
	sc(t, f.env, "key", "add", "file:"+rec).want(t, exitKey, "opens generation")

	rows := keyList(t, f.env)
	if len(rows) != 3 || rows[0].Slot != "primary" || rows[1].Kind != "raw key" || rows[2].Kind != "passphrase" {
		t.Fatalf("key list: %+v", rows)
	}
	recSlot := rows[1].Slot
	text := sc(t, f.env, "key", "list")
	text.want(t, 0, "")
	status := sc(t, f.env, "status", "--json")
	status.want(t, 0, "")
	var st statusJSON
	if err := json.Unmarshal([]byte(status.stdout), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Generations) != 1 || len(st.Generations[0].Slots) != 2 || st.Generations[0].Slots[0].ID != recSlot {
		t.Fatalf("status --json generations: %+v", st.Generations)
	}
	ls, err := local.Open(f.repo)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keys.LoadKeyring(context.Background(), ls)
	if err != nil {
		t.Fatal(err)
	}
	var stored []string // what the keyring holds of the slots, beside ids and kinds
	for _, s := range kr.Generation(kr.Current).Slots {
		stored = append(stored, s.Wrapped, s.KDF.Salt)
	}
	for _, out := range []string{text.stdout, status.stdout, sc(t, f.env, "status").stdout} {
		if !strings.Contains(out, recSlot) {
			t.Fatalf("slot %s not shown:\n%s", recSlot, out)
		}
		for _, secret := range stored {
			if strings.Contains(out, secret) {
				t.Fatalf("output shows a slot's wrapped key or salt:\n%s", out)
			}
		}
	}

	// The recovery key alone: restore, snapshot.
	sc(t, recEnv, "restore", id, filepath.Join(f.dir, "out-rec")).want(t, 0, "")
	sameTree(t, f.src, filepath.Join(f.dir, "out-rec"))
	sc(t, recEnv, "snapshot", "--name", "by-recovery", f.src).want(t, 0, "")
	sc(t, passEnv, "restore", "by-recovery", filepath.Join(f.dir, "out-pass")).want(t, 0, "")

	rm := sc(t, f.env, "key", "remove", recSlot)
	rm.want(t, 0, "removal is not revocation")
	if !strings.Contains(rm.stderr, "rotat") {
		t.Fatalf("key remove does not name rotation as the revocation: %q", rm.stderr)
	}
	sc(t, recEnv, "restore", id, filepath.Join(f.dir, "out-rec2")).want(t, exitKey, "no key matches")
	sc(t, passEnv, "snapshots").want(t, 0, "")
	sc(t, f.env, "key", "remove", recSlot).want(t, exitFailure, "has no key slot")
	sc(t, f.env, "key", "remove", "primary").want(t, exitFailure, "cannot be removed")
	sc(t, f.env, "key").want(t, exitUsage, "subcommand")
}

// rotate --slot gives the new generation slots in the switch; the old
// generation's slots are not carried over (rotate says so) and, once it
// is retired, open nothing.
func TestRotateWithSlotsCLI(t *testing.T) {
	f := newFixture(t)
	id := lastLine(sc(t, f.env, "snapshot", f.src).stdout)
	oldRec, newKey, newRec := filepath.Join(f.dir, "old-rec.key"), filepath.Join(f.dir, "new.key"), filepath.Join(f.dir, "new-rec.key")
	for _, k := range []string{oldRec, newKey, newRec} {
		sc(t, nil, "keygen", k).want(t, 0, "")
	}
	sc(t, f.env, "key", "add", "file:"+oldRec).want(t, 0, "")
	oldSlot := keyList(t, f.env)[1].Slot
	sc(t, f.env, "rotate", "--slot", "file:"+newRec).want(t, exitUsage, "--slot needs --new-key")
	r := sc(t, f.env, "rotate", "--new-key", "file:"+newKey, "--slot", "file:"+newRec)
	r.want(t, 0, "not carried over: key slot "+oldSlot)
	rows := keyList(t, []string{"SNAPCRYPT_REPO=" + f.repo, "SNAPCRYPT_KEY=file:" + newKey}, "--all")
	if len(rows) != 2 || rows[1].Kind != "raw key" || rows[1].Slot == oldSlot {
		t.Fatalf("key list --all after the rotation: %+v", rows)
	}
	newRecEnv := []string{"SNAPCRYPT_REPO=" + f.repo, "SNAPCRYPT_KEY=file:" + newRec}
	sc(t, newRecEnv, "restore", id, filepath.Join(f.dir, "out")).want(t, 0, "")
	sameTree(t, f.src, filepath.Join(f.dir, "out"))
	sc(t, []string{"SNAPCRYPT_REPO=" + f.repo, "SNAPCRYPT_KEY=file:" + oldRec}, "snapshots").want(t, exitKey, "which was retired by a rotation")
}

// sameTree fails t if the tree restored at got differs from the source.
func sameTree(t *testing.T, src, got string) {
	t.Helper()
	if want, have := describe(t, src), describe(t, got); want != have {
		t.Fatalf("restored tree differs from the source\nsource:\n%s\nrestored:\n%s", want, have)
	}
}
