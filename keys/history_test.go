package keys

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// Attacks on the keyring's history (docs/security.md). The tests that
// drive real rotations (package rotation) and check that its operations
// refuse a tainted keyring are rotation/history_test.go; here a rotation
// is the few steps rotateTo takes with the Keychain's exported
// primitives, and a refusal is that of Writable, the gate every rotation
// operation passes first.

// makeDEKs creates n DEKs and returns them by id.
func makeDEKs(t testing.TB, k *Keychain, n int) map[[16]byte][]byte {
	t.Helper()
	out := map[[16]byte][]byte{}
	for range n {
		id, dek, err := k.NewDEK(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out[id] = dek
	}
	return out
}

// countObjects counts the objects below prefix.
func countObjects(t testing.TB, st store.Reader, prefix string) int {
	t.Helper()
	n := 0
	if err := st.List(context.Background(), prefix, func(store.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// rotateTo rotates k's repository to the key m as package rotation does
// (docs/rotation.md), in one process and without its leases, shards and
// DEK packs: it commits the switch to a new generation for m (with a key
// slot for each of slots), adopts its
// KEK, gives every wrapped DEK of the old generation a twin under the new
// one (create-only, read back and verified), commits the retire and
// deletes the old generation's wrapped DEKs.
func rotateTo(t testing.TB, k *Keychain, m *Material, slots ...*Material) {
	t.Helper()
	ctx := context.Background()
	st := k.Store()
	from := k.Keyring().Current
	var x *KEK
	err := k.Commit(ctx, func(r *Keyring) (bool, error) {
		g, kk, err := k.NewGeneration(r, m, testArgon2, time.Now())
		if err != nil {
			return false, err
		}
		for _, s := range slots {
			if err := k.NewSlot(context.Background(), &g, kk, s, testArgon2, time.Now()); err != nil {
				return false, err
			}
		}
		r.Generations = slices.Clone(r.Generations)
		for i := range r.Generations {
			if r.Generations[i].State == StateCurrent {
				r.Generations[i].State = StateRetiring
			}
		}
		r.Generations = append(r.Generations, g)
		r.Current = g.ID
		id, err := randomID(16)
		if err != nil {
			return false, err
		}
		r.Rotation = &Rotation{
			ID: hex.EncodeToString(id), From: []string{from}, To: g.ID,
			Started:     time.Now().UTC().Truncate(time.Second),
			RequestedBy: Requester{Host: "testhost", PID: os.Getpid()},
		}
		x = kk
		return true, nil
	})
	if err != nil {
		t.Fatalf("switch: %v", err)
	}
	if !k.Adopt(x, m) {
		t.Fatal("the new generation is not live")
	}
	kFrom, err := k.KEK(from)
	if err != nil {
		t.Fatal(err)
	}
	var ids [][16]byte
	if err := ListDEKs(ctx, st, from, func(id [16]byte) error { ids = append(ids, id); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		cs, err := k.Copies(ctx, from, id, true)
		if err != nil || len(cs) == 0 {
			t.Fatalf("copies of %x: %d, %v", id, len(cs), err)
		}
		dek, err := kFrom.Unwrap(id, cs[0].Wrapped)
		if err != nil {
			t.Fatal(err)
		}
		w, err := x.Wrap(id, dek)
		if err != nil {
			t.Fatal(err)
		}
		name := DEKObject(x.Generation(), id)
		if err := st.Create(ctx, name, w); err != nil && !errors.Is(err, store.ErrExist) {
			t.Fatal(err)
		}
		b, err := ReadWrapped(ctx, st, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := x.Verify(id, b, dek); err != nil {
			t.Fatal(err)
		}
	}
	err = k.Commit(ctx, func(r *Keyring) (bool, error) {
		r.Generations = slices.Clone(r.Generations)
		r.Generation(from).State = StateRetired
		r.Rotation = nil
		return true, nil
	})
	if err != nil {
		t.Fatalf("retire: %v", err)
	}
	var old []string
	st.List(ctx, GenPrefix(from), func(i store.Info) error { old = append(old, i.Name); return nil })
	for _, name := range old {
		if err := st.Delete(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
}

// rotated makes a repository with DEKs under key a, rotates it to b and
// finishes the rotation: a is retired. It returns the keychain that did it
// (holding both keys until a was retired) and the DEKs.
func rotated(t *testing.T, st store.Store, a, b *Material) (*Keychain, map[[16]byte][]byte) {
	t.Helper()
	k := mustInit(t, st, a)
	deks := makeDEKs(t, k, 10)
	rotateTo(t, k, b)
	r := k.Keyring()
	if r.Rotation != nil || r.Generations[0].State != StateRetired {
		t.Fatalf("rotation did not finish: %+v", r)
	}
	return k, deks
}

// checkFinished asserts the end state of a rotation to newKey: a process
// holding only newKey reads every DEK and the content-id key, the other
// generations are retired and nothing is left under their prefixes.
func checkFinished(t testing.TB, st store.Store, deks map[[16]byte][]byte, newKey *Material) {
	t.Helper()
	ctx := context.Background()
	k, err := Open(ctx, st, testRepoID, newKey)
	if err != nil {
		t.Fatal(err)
	}
	r := k.Keyring()
	if r.Rotation != nil {
		t.Fatalf("rotation record left: %+v", r.Rotation)
	}
	for _, g := range r.Generations {
		if g.ID == r.Current {
			continue
		}
		if g.State != StateRetired {
			t.Fatalf("generation %s is %s, want retired", g.ID, g.State)
		}
		if n := countObjects(t, st, GenPrefix(g.ID)); n != 0 {
			t.Fatalf("%d wrapped DEKs left under retired generation %s", n, g.ID)
		}
	}
	for id, dek := range deks {
		got, err := k.DEK(ctx, id)
		if err != nil || !bytes.Equal(got, dek) {
			t.Fatalf("DEK %x with the new key only: %v", id, err)
		}
	}
	if _, err := k.IDKey(ctx); err != nil {
		t.Fatal(err)
	}
}

// kekOf derives the KEK of generation gen of r from m, as an attacker who
// holds m can.
func kekOf(t *testing.T, r Keyring, gen string, m *Material) *kek {
	t.Helper()
	rid, _ := parseRepoID(testRepoID)
	kk := matchKEK(context.Background(), r.Generation(gen), m, rid)
	if kk == nil {
		t.Fatalf("key does not match generation %s", gen)
	}
	return kk
}

// storedEpoch reads epoch e as stored.
func storedEpoch(t *testing.T, st store.Store, e uint64) *epochObj {
	t.Helper()
	obj, err := readEpoch(context.Background(), st, e)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// plant writes an epoch object as an attacker with storage access would.
func plant(t *testing.T, st store.Store, epoch uint64, b []byte) {
	t.Helper()
	if err := st.Put(context.Background(), keyringName(epoch), b); err != nil {
		t.Fatal(err)
	}
}

// forge signs r as epoch r.Epoch on top of the stored epoch before it,
// with the given KEKs (an attacker's), bypassing every rule.
func forge(t *testing.T, st store.Store, r Keyring, signers ...*kek) []byte {
	t.Helper()
	rid, _ := parseRepoID(testRepoID)
	prev := storedEpoch(t, st, r.Epoch-1).hash
	e, err := signEpoch(&r, rid, prev[:], signers)
	if err != nil {
		t.Fatal(err)
	}
	return e.raw
}

// garbageMAC is a "MAC" by gen made without its key.
func garbageMAC(t *testing.T, raw []byte, gen string) []byte {
	t.Helper()
	var g [32]byte
	rand.Read(g[:])
	i := bytes.Index(raw, []byte(`"gen": "`+gen+`", "mac": "`))
	if i < 0 {
		t.Fatalf("no MAC by %s", gen)
	}
	i += len(`"gen": "` + gen + `", "mac": "`)
	out := bytes.Clone(raw)
	copy(out[i:], hex.EncodeToString(g[:]))
	return out
}

// wantRefused asserts that k refuses every change of the repository's
// keys with an error wrapping object.ErrCorrupt whose message contains
// msg: a new DEK, a keyring commit, and Writable, which package rotation
// calls before anything it does (Start, Run, Help; its own tests check
// that they refuse).
func wantRefused(t *testing.T, k *Keychain, msg string) {
	t.Helper()
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, object.ErrCorrupt) || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: %v, want a refusal (ErrCorrupt) naming %q", what, err, msg)
		}
	}
	_, _, err := k.NewDEK(ctx)
	check("NewDEK", err)
	check("Commit", k.Commit(ctx, func(r *Keyring) (bool, error) { return true, nil }))
	check("Writable", k.Writable(ctx))
}

func hasProblem(k *Keychain, msg string) bool {
	for _, p := range k.Problems() {
		if errors.Is(p, object.ErrCorrupt) && strings.Contains(p.Error(), msg) {
			return true
		}
	}
	return false
}

// The attack of issue #10: after a rotation A→B, an attacker who holds A
// writes an epoch that makes A current again with a rotation from B to A.
// A process holding both keys must not act on it, and A must open nothing.
func TestForgedRotationBack(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ name string }{
		{name: "macd-by-A"}, // MACed by A alone
		{name: "claims-B"},  // MACed by A and "B" (without B's key)
		{name: "legacy"},    // today's attack: a bare version 1 keyring
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := mem.New()
			a, b := rawKey(t, 1), rawKey(t, 2)
			k, deks := rotated(t, st, a, b)
			if err := k.AddKey(ctx, a); !errors.Is(err, ErrNoKeyMatches) {
				t.Fatalf("AddKey of the retired key: %v", err)
			}
			good := k.Keyring()
			genA, genB := good.Generations[0].ID, good.Current
			forged := good.Clone()
			forged.Epoch++
			forged.Current = genA
			forged.Generations[0].State = StateCurrent
			forged.Generations[1].State = StateRetiring
			forged.Rotation = &Rotation{ID: strings.Repeat("ab", 16), From: []string{genB}, To: genA, Started: time.Now().UTC().Truncate(time.Second), RequestedBy: Requester{Host: "evil", PID: 1}}
			kA := kekOf(t, good, genA, a)
			var raw []byte
			switch tc.name {
			case "macd-by-A":
				raw = forge(t, st, forged, kA)
			case "claims-B":
				kB := kekOf(t, good, genB, b)
				raw = garbageMAC(t, forge(t, st, forged, kB, kA), genB)
			case "legacy":
				raw = legacyEpoch(t, forged).raw
			}
			plant(t, st, forged.Epoch, raw)

			if err := k.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if r := k.Keyring(); r.Epoch != good.Epoch || r.Current != genB {
				t.Fatalf("the forged epoch took effect: epoch %d current %s", r.Epoch, r.Current)
			}
			if !hasProblem(k, "keyring epoch "+itoa(forged.Epoch)) {
				t.Fatalf("problems %v do not name epoch %d", k.Problems(), forged.Epoch)
			}
			wantRefused(t, k, "keyring epoch "+itoa(forged.Epoch))
			if n := countObjects(t, st, GenPrefix(genA)); n != 0 {
				t.Fatalf("%d DEKs wrapped under the retired generation", n)
			}
			if k.Holds(genA) {
				t.Fatal("the retired key is still held")
			}
			// Reading goes on.
			for id, dek := range deks {
				got, err := k.DEK(ctx, id)
				if err != nil || !bytes.Equal(got, dek) {
					t.Fatalf("DEK %x: %v", id, err)
				}
			}
			// The old key opens nothing; the new one opens, warned.
			if _, err := Open(ctx, st, testRepoID, a); !errors.Is(err, ErrNoKeyMatches) {
				t.Fatalf("Open with the retired key: %v", err)
			}
			kb, err := Open(ctx, st, testRepoID, b)
			if err != nil {
				t.Fatal(err)
			}
			if kb.Keyring().Epoch != good.Epoch || !hasProblem(kb, "keyring epoch "+itoa(forged.Epoch)) {
				t.Fatalf("Open with B: epoch %d, problems %v", kb.Keyring().Epoch, kb.Problems())
			}
			// Taking the bad epoch away ends the refusal.
			if err := st.Delete(ctx, keyringName(forged.Epoch)); err != nil {
				t.Fatal(err)
			}
			if _, _, err := kb.NewDEK(ctx); err != nil {
				t.Fatalf("after the bad epoch was deleted: %v", err)
			}
		})
	}
}

func itoa(e uint64) string { return strings.TrimLeft(keyringName(e)[len(keyringPrefix):], "0") }

// An epoch that adds a generation of the attacker's and makes it current.
func TestAttackerGeneration(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a, b, c := rawKey(t, 1), rawKey(t, 2), rawKey(t, 3)
	k, _ := rotated(t, st, a, b)
	good := k.Keyring()
	rid, _ := parseRepoID(testRepoID)
	forged := good.Clone()
	forged.Epoch++
	g, kC, err := newGeneration(context.Background(), &forged, c, rid, time.Now(), testArgon2)
	if err != nil {
		t.Fatal(err)
	}
	forged.Generations[1].State = StateRetiring
	forged.Generations = append(forged.Generations, g)
	forged.Current = g.ID
	forged.Rotation = &Rotation{ID: strings.Repeat("cd", 16), From: []string{good.Current}, To: g.ID, Started: time.Now().UTC().Truncate(time.Second)}
	kA := kekOf(t, good, good.Generations[0].ID, a)
	// MACed by C alone, and by A as if it were still current.
	for _, raw := range [][]byte{forge(t, st, forged, kC), forge(t, st, forged, kA, kC)} {
		plant(t, st, forged.Epoch, raw)
		if err := k.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if k.Keyring().Current != good.Current {
			t.Fatal("the attacker's generation became current")
		}
		if !hasProblem(k, "not authenticated") {
			t.Fatalf("problems: %v", k.Problems())
		}
		wantRefused(t, k, "keyring epoch "+itoa(forged.Epoch))
	}
	if n := countObjects(t, st, GenPrefix(g.ID)); n != 0 {
		t.Fatalf("%d DEKs wrapped under the attacker's generation", n)
	}
}

// A storage attacker (writes to the store, holds no key) adds a key slot
// for a key they chose to the current generation. Not knowing the KEK,
// they seal a KEK of their own and cannot MAC the epoch: MACed by their
// own key posing as the current generation, or with garbage, it is refused
// and their key opens nothing.
func TestAttackerSlot(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a, evil := rawKey(t, 1), rawKey(t, 66)
	k := mustInit(t, st, a)
	deks := makeDEKs(t, k, 3)
	good := k.Keyring()
	rid, _ := parseRepoID(testRepoID)
	g := good.Generation(good.Current)
	gen, _ := parseGenID(g.ID)
	// The attacker's stand-in for the generation's KEK: their key's own
	// derivation, so that their MAC "by" the generation is consistent.
	fake := newKEK([KeySize]byte(det("attacker kek", KeySize)), rid, gen)
	s, err := makeSlot(context.Background(), g, fake, evil, rid, testArgon2, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	forged := good.Clone()
	forged.Epoch++
	forged.Generation(forged.Current).Slots = []Slot{s}
	macced := forge(t, st, forged, fake)
	for _, raw := range [][]byte{macced, garbageMAC(t, macced, g.ID)} {
		plant(t, st, forged.Epoch, raw)
		if _, err := Open(ctx, st, testRepoID, evil); !errors.Is(err, ErrNoKeyMatches) {
			t.Fatalf("open with the attacker's key: %v", err)
		}
		if err := k.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if kr := k.Keyring(); len(kr.Generation(good.Current).Slots) != 0 {
			t.Fatal("the attacker's slot took effect")
		}
		if !hasProblem(k, "not authenticated") {
			t.Fatalf("problems: %v", k.Problems())
		}
		wantRefused(t, k, "keyring epoch "+itoa(forged.Epoch))
		k2, err := Open(ctx, st, testRepoID, a)
		if err != nil {
			t.Fatal(err)
		}
		if k2.Keyring().Epoch != good.Epoch || !hasProblem(k2, "not authenticated") {
			t.Fatalf("a fresh open took epoch %d, problems %v", k2.Keyring().Epoch, k2.Problems())
		}
		for id, dek := range deks {
			if got, err := k2.DEK(ctx, id); err != nil || !bytes.Equal(got, dek) {
				t.Fatalf("DEK %x: %v", id, err)
			}
		}
	}
}

// listHook is a store whose List of keyring/ calls before and after.
type listHook struct {
	store.Store
	before, after func()
}

func (s *listHook) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	if prefix == keyringPrefix && s.before != nil {
		s.before()
	}
	err := s.Store.List(ctx, prefix, fn)
	if prefix == keyringPrefix && s.after != nil {
		s.after()
	}
	return err
}

// Another process commits while Writable lists keyring/, once before the
// listing and once after it: the second Refresh reads an epoch the listing
// lacks, which is new, not gone (concurrent key slot adds hit this).
func TestWritableListingRace(t *testing.T) {
	ctx := context.Background()
	mst := mem.New()
	a := rawKey(t, 1)
	mustInit(t, mst, a)
	st := &listHook{Store: mst}
	k, err := Open(ctx, st, testRepoID, a)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Open(ctx, mst, testRepoID, a)
	if err != nil {
		t.Fatal(err)
	}
	commit := func() {
		if _, err := other.AddSlot(ctx, rawKey(t, byte(40+other.Keyring().Epoch))); err != nil {
			t.Error(err)
		}
	}
	st.before, st.after = commit, func() { commit(); st.before, st.after = nil, nil }
	if err := k.Writable(ctx); err != nil {
		t.Fatalf("Writable with commits racing its listing: %v", err)
	}
	if ps := k.Problems(); len(ps) != 0 {
		t.Fatalf("problems: %v", ps)
	}
	if got, want := k.Keyring().Epoch, other.Keyring().Epoch; got != want {
		t.Fatalf("epoch %d, the other process committed %d", got, want)
	}
}

// A bad MAC, a broken chain, a skipped epoch number, an illegal transition
// signed with the right key: each is refused and named.
func TestBadEpochs(t *testing.T) {
	ctx := context.Background()
	a, b := rawKey(t, 1), rawKey(t, 2)
	// next returns a legal, correctly signed epoch after the latest.
	next := func(t *testing.T, k *Keychain, st store.Store) (Keyring, *kek) {
		good := k.Keyring()
		n := good.Clone()
		n.Epoch++
		return n, kekOf(t, good, good.Current, b)
	}
	cases := map[string]func(t *testing.T, k *Keychain, st store.Store) (uint64, string){
		"bad-mac": func(t *testing.T, k *Keychain, st store.Store) (uint64, string) {
			n, kB := next(t, k, st)
			plant(t, st, n.Epoch, garbageMAC(t, forge(t, st, n, kB), n.Current))
			return n.Epoch, "does not verify"
		},
		"bad-chain": func(t *testing.T, k *Keychain, st store.Store) (uint64, string) {
			n, kB := next(t, k, st)
			rid, _ := parseRepoID(testRepoID)
			e, err := signEpoch(&n, rid, bytes.Repeat([]byte{7}, 32), []*kek{kB})
			if err != nil {
				t.Fatal(err)
			}
			plant(t, st, n.Epoch, e.raw)
			return n.Epoch, "not chained"
		},
		"skipped-number": func(t *testing.T, k *Keychain, st store.Store) (uint64, string) {
			n, kB := next(t, k, st)
			n.Epoch++ // signed on top of the epoch it claims to follow
			rid, _ := parseRepoID(testRepoID)
			prev := storedEpoch(t, st, n.Epoch-2).hash
			e, err := signEpoch(&n, rid, prev[:], []*kek{kB})
			if err != nil {
				t.Fatal(err)
			}
			plant(t, st, n.Epoch, e.raw)
			return n.Epoch, "follows the missing epoch"
		},
		"retired-comes-back": func(t *testing.T, k *Keychain, st store.Store) (uint64, string) {
			n, kB := next(t, k, st)
			n.Generations[0].State = StateRetiring
			n.Rotation = &Rotation{ID: strings.Repeat("ef", 16), From: []string{n.Generations[0].ID}, To: n.Current, Started: time.Now().UTC().Truncate(time.Second)}
			plant(t, st, n.Epoch, forge(t, st, n, kB))
			return n.Epoch, "went from retired to retiring"
		},
		"generation-removed": func(t *testing.T, k *Keychain, st store.Store) (uint64, string) {
			n, kB := next(t, k, st)
			n.Generations = n.Generations[1:]
			plant(t, st, n.Epoch, forge(t, st, n, kB))
			return n.Epoch, "disappeared"
		},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			st := mem.New()
			k, _ := rotated(t, st, a, b)
			good := k.Keyring().Epoch
			bad, msg := f(t, k, st)
			wantRefused(t, k, msg)
			if !hasProblem(k, "keyring epoch "+itoa(bad)) || k.Keyring().Epoch != good {
				t.Fatalf("problems %v, epoch %d", k.Problems(), k.Keyring().Epoch)
			}
			k2, err := Open(ctx, st, testRepoID, b)
			if err != nil {
				t.Fatal(err)
			}
			if !hasProblem(k2, "keyring epoch "+itoa(bad)) || k2.Keyring().Epoch != good {
				t.Fatalf("Open: problems %v, epoch %d", k2.Problems(), k2.Keyring().Epoch)
			}
		})
	}
}

// Rollback by deletion: the epochs from the switch on are deleted and a
// saved copy of deks/<A>/ is put back. A host that saw the newer epochs
// refuses to write under A; a host without a record that holds only B is
// told the keyring may have been rolled back. (rotation/history_test.go
// has this attack after a real rotation, and the rotation operations'
// refusals.)
func TestRollbackWithRestoredDEKs(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a, b := rawKey(t, 1), rawKey(t, 2)
	k := mustInit(t, st, a)
	makeDEKs(t, k, 5)
	genA := k.Keyring().Current
	savedDEKs := snapshotPrefix(t, st, GenPrefix(genA))
	before := k.Keyring().Epoch
	long, err := Open(ctx, st, testRepoID, a, b) // a long-lived process: the mount
	if err != nil {
		t.Fatal(err)
	}
	rotateTo(t, k, b)
	if err := long.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	last := k.Keyring().Epoch
	for e := before + 1; e <= last; e++ {
		if err := st.Delete(ctx, keyringName(e)); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range savedDEKs {
		st.Put(ctx, name, data)
	}

	// This host saw epoch `last`: a new process refuses to write.
	h, err := Open(ctx, st, testRepoID, a)
	if err != nil {
		t.Fatal(err)
	}
	want := "keyring history was rewritten: epoch " + itoa(last)
	if !hasProblem(h, want) {
		t.Fatalf("problems %v", h.Problems())
	}
	wantRefused(t, h, want)
	if n := countObjects(t, st, GenPrefix(genA)); n != len(savedDEKs) {
		t.Fatalf("%d objects under A, want the %d put back", n, len(savedDEKs))
	}
	// So does the long-lived process, from memory.
	if _, _, err := long.NewDEK(ctx); !errors.Is(err, object.ErrCorrupt) || !strings.Contains(err.Error(), "keyring history was rewritten: epoch") {
		t.Fatalf("long-lived process: %v", err)
	}
	// A host with no record: the new key matches nothing, and says why.
	freshState(t)
	if _, err := Open(ctx, st, testRepoID, b); !errors.Is(err, ErrNoKeyMatches) || !strings.Contains(err.Error(), "may have been rolled back") {
		t.Fatalf("Open with B on a fresh host: %v", err)
	}
}

// A fork authenticated by A: the attacker deletes the epochs from the
// switch on and commits a switch of its own (A and its own key C sign it:
// a valid chain). The host's record catches it; B opens nothing.
// (rotation/history_test.go has it with the attacker's switch made by a
// real rotation.)
func TestForkAuthenticatedByA(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a, b, c := rawKey(t, 1), rawKey(t, 2), rawKey(t, 3)
	k := mustInit(t, st, a)
	makeDEKs(t, k, 3)
	base := k.Keyring()
	rotateTo(t, k, b)
	last := k.Keyring().Epoch
	for e := base.Epoch + 1; e <= last; e++ {
		st.Delete(ctx, keyringName(e))
	}
	// The attacker's switch, on its own host, through the library's own
	// rules.
	hostState := os.Getenv(StateDirEnv)
	t.Setenv(StateDirEnv, t.TempDir())
	evil, err := Open(ctx, st, testRepoID, a)
	if err != nil {
		t.Fatal(err)
	}
	err = evil.Commit(ctx, func(r *Keyring) (bool, error) {
		g, _, err := evil.NewGeneration(r, c, testArgon2, time.Now())
		if err != nil {
			return false, err
		}
		r.Generations = slices.Clone(r.Generations)
		r.Generations[0].State = StateRetiring
		r.Generations = append(r.Generations, g)
		r.Current = g.ID
		r.Rotation = &Rotation{ID: strings.Repeat("66", 16), From: []string{base.Current}, To: g.ID, Started: time.Now().UTC().Truncate(time.Second)}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(StateDirEnv, hostState)

	h, err := Open(ctx, st, testRepoID, a)
	if err != nil {
		t.Fatal(err)
	}
	if !hasProblem(h, "keyring history was rewritten") {
		t.Fatalf("the fork went unnoticed: %v", h.Problems())
	}
	wantRefused(t, h, "keyring history was rewritten")
	freshState(t)
	if _, err := Open(ctx, st, testRepoID, b); !errors.Is(err, ErrNoKeyMatches) || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("Open with B: %v", err)
	}
}

// localStore is a new local store in a temporary directory.
func localStore(t *testing.T) *local.Store {
	t.Helper()
	st, err := local.Init(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// A 1 GiB object planted as a keyring epoch is refused after reading at
// most MaxKeyringSize+1 bytes of it.
func TestHugeEpoch(t *testing.T) {
	ctx := context.Background()
	st := localStore(t)
	a := rawKey(t, 1)
	k := mustInit(t, st, a)
	path := filepath.Join(st.Location(), filepath.FromSlash(keyringName(2)))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil { // sparse
		t.Fatal(err)
	}
	f.Close()
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	if err := k.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	k2, err := Open(ctx, st, testRepoID, a)
	if err != nil {
		t.Fatal(err)
	}
	_, _, nerr := k.NewDEK(ctx)
	runtime.ReadMemStats(&m1)
	if got := m1.TotalAlloc - m0.TotalAlloc; got > 64<<20 {
		t.Fatalf("allocated %d MiB reading a 1 GiB epoch", got>>20)
	}
	for _, kc := range []*Keychain{k, k2} {
		if !hasProblem(kc, "keyring epoch 2") || kc.Keyring().Epoch != 1 {
			t.Fatalf("problems %v", kc.Problems())
		}
	}
	if !errors.Is(nerr, object.ErrCorrupt) {
		t.Fatalf("NewDEK: %v", nerr)
	}
}

// Retired key material is forgotten and never held again: opening with
// the retired passphrase and the new key holds no KEK of the retired
// generation and keeps no Argon2id output of it. (Open does derive it
// once, to check its MACs of the epochs it signed: docs/format.md,
// "Keyring history", rule 3; TestForgedRetireHidesBadMAC.)
func TestRetiredKeyNeverDerived(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a, b := passKey(t, "old passphrase"), rawKey(t, 2)
	k, _ := rotated(t, st, a, b)
	genA := k.Keyring().Generations[0]
	if k.Holds(genA.ID) {
		t.Fatal("the retiring process still holds the retired key")
	}
	fresh := passKey(t, "old passphrase")
	k2, err := Open(ctx, st, testRepoID, fresh, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := k2.AddKey(ctx, fresh); !errors.Is(err, ErrNoKeyMatches) {
		t.Fatalf("AddKey of the retired key: %v", err)
	}
	if k2.Holds(genA.ID) {
		t.Fatal("the retired key is held")
	}
	// The AddKey error's hint compares check values (one derivation).
	// Open checks A's MACs on epochs 1 and 2 (docs/format.md, rule 3):
	// it derives A's KEK for that check alone, compares check values,
	// keeps only the keyring key until verifying ends, and keeps nothing
	// of it afterwards: no KEK (not held), no cached passphrase stretch.
	fresh2 := passKey(t, "old passphrase")
	if _, err := Open(ctx, st, testRepoID, fresh2, b); err != nil {
		t.Fatal(err)
	}
	fresh2.mu.Lock()
	n := len(fresh2.stretched)
	fresh2.mu.Unlock()
	if n != 0 {
		t.Fatalf("Open kept %d stretched passphrase(s) of a retired generation", n)
	}
}

// A repository made before format version 2 (legacy epochs) opens, writes,
// and is authenticated by its next keyring commit; a legacy epoch after
// an authenticated one is refused. (rotation/history_test.go has the
// upgrade by a real rotation.)
func TestLegacyUpgrade(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a, b := rawKey(t, 1), rawKey(t, 2)
	k := mustInit(t, st, a)
	r := k.Keyring()
	if err := st.Delete(ctx, keyringName(1)); err != nil {
		t.Fatal(err)
	}
	plant(t, st, 1, legacyEpoch(t, r).raw)
	freshState(t)
	k, err := Open(ctx, st, testRepoID, a)
	if err != nil {
		t.Fatal(err)
	}
	if k.Authenticated() || len(k.Problems()) > 0 {
		t.Fatalf("legacy keyring: authenticated %v, problems %v", k.Authenticated(), k.Problems())
	}
	deks := makeDEKs(t, k, 3)
	rotateTo(t, k, b)
	if !k.Authenticated() || storedEpoch(t, st, 2).legacy {
		t.Fatal("the switch commit did not authenticate the keyring")
	}
	checkFinished(t, st, deks, b)
	// A legacy epoch after it is refused.
	n := k.Keyring()
	n.Epoch++
	plant(t, st, n.Epoch, legacyEpoch(t, n).raw)
	wantRefused(t, k, "a version 1 epoch after an authenticated one")
}

// The host record only moves forward, one file per repository.
func TestRecordAdvances(t *testing.T) {
	dir := freshState(t)
	id := testRepoID
	h := func(b byte) [32]byte { return [32]byte{b} }
	if err := advanceRecord(id, 5, h(5)); err != nil {
		t.Fatal(err)
	}
	if err := advanceRecord(id, 3, h(3)); err != nil {
		t.Fatal(err)
	}
	rec, ok, err := loadRecord(id)
	want := h(5)
	if err != nil || !ok || rec.Epoch != 5 || rec.Hash != hex.EncodeToString(want[:]) {
		t.Fatalf("record %+v %v %v", rec, ok, err)
	}
	if _, err := os.Stat(recordPath(dir, id)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(recordPath(dir, id), []byte("junk"), 0o600)
	if _, _, err := loadRecord(id); err == nil {
		t.Fatal("a damaged record loaded")
	}
}

// A wrapped DEK object larger than a wrapped DEK is refused after reading
// at most one byte more than that size.
func TestHugeWrappedDEK(t *testing.T) {
	ctx := context.Background()
	st := localStore(t)
	k := mustInit(t, st, rawKey(t, 1))
	id, _, err := k.NewDEK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	gen, _ := parseGenID(k.Keyring().Current)
	path := filepath.Join(st.Location(), filepath.FromSlash(dekName(gen, id)))
	if err := os.Truncate(path, 1<<30); err != nil {
		t.Fatal(err)
	}
	k2, err := Open(ctx, st, testRepoID, rawKey(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	_, err = k2.DEK(ctx, id)
	runtime.ReadMemStats(&m1)
	if !errors.Is(err, object.ErrCorrupt) || !strings.Contains(err.Error(), dekName(gen, id)) {
		t.Fatalf("DEK of a 1 GiB wrapped DEK object: %v", err)
	}
	if got := m1.TotalAlloc - m0.TotalAlloc; got > 16<<20 {
		t.Fatalf("allocated %d MiB", got>>20)
	}
}

// Finding R1: after a finished rotation A→B, an attacker with no key
// plants epoch 4 (a switch B→C, C made up, with a garbage MAC "by B") and
// epoch 5 (retires B, MACed by C). B is retired in the newest candidate,
// yet B's MAC on epoch 4 must be checked at Open (docs/format.md, rule 3):
// it fails, so epoch 4 is bad, reading goes on from epoch 3 with B current
// and held, the problem names epoch 4 and nothing writes.
func TestForgedRetireHidesBadMAC(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	freshState(t)
	a, b, c := rawKey(t, 1), rawKey(t, 2), rawKey(t, 3)
	k, deks := rotated(t, st, a, b) // epochs 1..3, B current, host record at 3
	good := k.Keyring()
	genB := good.Current
	rid, _ := parseRepoID(testRepoID)
	s := good.Clone() // 4: switch B -> C
	s.Epoch++
	g, kC, err := newGeneration(context.Background(), &s, c, rid, time.Now(), testArgon2)
	if err != nil {
		t.Fatal(err)
	}
	s.Generations[1].State = StateRetiring
	s.Generations = append(s.Generations, g)
	s.Current = g.ID
	s.Rotation = &Rotation{ID: strings.Repeat("ef", 16), From: []string{genB}, To: g.ID, Started: time.Now().UTC().Truncate(time.Second)}
	kB := kekOf(t, good, genB, b) // layout only: garbageMAC replaces B's MAC
	plant(t, st, s.Epoch, garbageMAC(t, forge(t, st, s, kB, kC), genB))
	r := s.Clone() // 5: retire B, MACed by C
	r.Epoch++
	r.Generations[1].State = StateRetired
	r.Rotation = nil
	plant(t, st, r.Epoch, forge(t, st, r, kC))

	// A fresh process (after a restart) holding B only.
	k2, err := Open(ctx, st, testRepoID, b)
	if err != nil {
		t.Fatalf("Open with B: %v", err)
	}
	if got := k2.Keyring(); got.Epoch != 3 || got.Current != genB {
		t.Fatalf("reading from epoch %d (current %s), want epoch 3 (current %s)", got.Epoch, got.Current, genB)
	}
	if !k2.Holds(genB) {
		t.Fatal("B is not held")
	}
	if !hasProblem(k2, "keyring epoch 4") || !hasProblem(k2, "MAC of generation "+genB+" does not verify") {
		t.Fatalf("problems %v, want epoch 4's MAC by B named", k2.Problems())
	}
	for id, dek := range deks {
		got, err := k2.DEK(ctx, id)
		if err != nil || !bytes.Equal(got, dek) {
			t.Fatalf("DEK %x: %v", id, err)
		}
	}
	wantRefused(t, k2, "keyring epoch 4")

	// The retired generation A's key is not held either: its MACs (epochs
	// 1 and 2) are checked with a MAC key derived for the check alone.
	k3, err := Open(ctx, st, testRepoID, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if k3.Holds(good.Generations[0].ID) || !hasProblem(k3, "keyring epoch 4") {
		t.Fatalf("with A and B: holds A %v, problems %v", k3.Holds(good.Generations[0].ID), k3.Problems())
	}
}
