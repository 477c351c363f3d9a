package rotation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// Attacks on the keyring's history (docs/security.md) against the rotation:
// Start, Run and Help refuse while the keyring has a problem, and the
// rollback and fork attacks after real rotations. The forgeries that need
// keys' internals (epochs MACed by an attacker's key) are tested in
// keys/history_test.go against Writable, the gate every operation here
// passes first; the epochs planted here are made with exported means only:
// real epochs written on a copy of the repository, then edited as bytes.

// keyringName is the object name of an epoch (docs/format.md).
func keyringName(epoch uint64) string { return fmt.Sprintf("%s%020d", keyringPrefix, epoch) }

// rotated makes a repository with DEKs under key a, rotates it to b and
// finishes the rotation: a is retired. It returns the process that did it
// (holding both keys until a was retired) and the DEKs.
func rotated(t *testing.T, st store.Store, a, b *keys.Material) (*proc, map[[16]byte][]byte) {
	t.Helper()
	ctx := context.Background()
	clock := newFakeClock()
	k := mustInit(t, st, a)
	setClock(k, clock.Now)
	deks := makeDEKs(t, k, 10)
	if err := k.start(ctx, b, testOpts); err != nil {
		t.Fatal(err)
	}
	if err := k.Run(ctx, nil); err != nil {
		t.Fatal(err)
	}
	r := k.Keyring()
	if r.Rotation != nil || r.Generations[0].State != keys.StateRetired {
		t.Fatalf("rotation did not finish: %+v", r)
	}
	return k, deks
}

// watchedStore counts the writes (Create, Put, Delete) made through it.
type watchedStore struct {
	store.Store
	writes atomic.Int64
}

func watched() *watchedStore { return &watchedStore{Store: mem.New()} }

func (s *watchedStore) Create(ctx context.Context, name string, b []byte) error {
	s.writes.Add(1)
	return s.Store.Create(ctx, name, b)
}

func (s *watchedStore) Put(ctx context.Context, name string, b []byte) error {
	s.writes.Add(1)
	return s.Store.Put(ctx, name, b)
}

func (s *watchedStore) Delete(ctx context.Context, name string) error {
	s.writes.Add(1)
	return s.Store.Delete(ctx, name)
}

// plant writes an epoch object as an attacker with storage access would.
func plant(t *testing.T, st store.Store, epoch uint64, b []byte) {
	t.Helper()
	if err := st.Put(context.Background(), keyringName(epoch), b); err != nil {
		t.Fatal(err)
	}
}

// legacyEpoch is r as a legacy (version 1) epoch object: the bare keyring.
func legacyEpoch(t *testing.T, r keys.Keyring) []byte {
	t.Helper()
	r.Version = 1
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// onOtherHost runs f with a host record directory of its own (another
// host's), then gives the test its own back.
func onOtherHost(t *testing.T, f func()) {
	t.Helper()
	mine := os.Getenv(keys.StateDirEnv)
	t.Setenv(keys.StateDirEnv, t.TempDir())
	defer t.Setenv(keys.StateDirEnv, mine)
	f()
}

// epochsOnCopy copies every object of st into a new store, opens it with
// ms on another host, lets act commit there, and returns the objects of
// the epochs after st's newest one as act wrote them: real epochs,
// correctly chained and MACed, for the test to edit and plant in st.
func epochsOnCopy(t *testing.T, st store.Store, act func(p *proc), ms ...*keys.Material) map[uint64][]byte {
	t.Helper()
	ctx := context.Background()
	cp := mem.New()
	for name, b := range snapshotPrefix(t, st, "") {
		if err := cp.Put(ctx, name, b); err != nil {
			t.Fatal(err)
		}
	}
	out := map[uint64][]byte{}
	onOtherHost(t, func() {
		p := openWith(t, cp, newFakeClock(), ms...)
		from := p.Keyring().Epoch
		act(p)
		for e := from + 1; e <= p.Keyring().Epoch; e++ {
			b, err := cp.Get(ctx, keyringName(e))
			if err != nil {
				t.Fatal(err)
			}
			out[e] = b
		}
	})
	if len(out) == 0 {
		t.Fatal("nothing committed on the copy")
	}
	return out
}

// noopCommit commits an epoch that changes nothing but its number.
func noopCommit(t *testing.T) func(p *proc) {
	return func(p *proc) {
		t.Helper()
		if err := p.Commit(context.Background(), func(*keys.Keyring) (bool, error) { return true, nil }); err != nil {
			t.Fatal(err)
		}
	}
}

// macLine finds the MAC of generation gen in an epoch object: the
// offsets of its line's opening brace and of the hex MAC.
func macLine(t *testing.T, raw []byte, gen string) (start, mac int) {
	t.Helper()
	head := []byte(`{"gen": "` + gen + `", "mac": "`)
	i := bytes.Index(raw, head)
	if i < 0 {
		t.Fatalf("no MAC by %s in %s", gen, raw)
	}
	return i, i + len(head)
}

// garbageMAC replaces the MAC by gen with one made without its key.
func garbageMAC(t *testing.T, raw []byte, gen string) []byte {
	t.Helper()
	_, i := macLine(t, raw, gen)
	out := bytes.Clone(raw)
	copy(out[i:], strings.Repeat("5a", 32))
	return out
}

// dropMAC removes the MAC by gen, which is not the last (the envelope
// stays in its canonical layout: one MAC a line).
func dropMAC(t *testing.T, raw []byte, gen string) []byte {
	t.Helper()
	i, j := macLine(t, raw, gen)
	end := j + 64 + len(`"},`) + len("\n    ")
	if !bytes.Equal(raw[j+64:end], []byte("\"},\n    ")) {
		t.Fatalf("MAC by %s is the last one", gen)
	}
	return append(bytes.Clone(raw[:i]), raw[end:]...)
}

// rechain replaces the hash of the epoch before in an epoch object.
func rechain(t *testing.T, raw []byte) []byte {
	t.Helper()
	head := []byte(`"prev": "`)
	i := bytes.Index(raw, head)
	if i < 0 {
		t.Fatal("no prev")
	}
	out := bytes.Clone(raw)
	copy(out[i+len(head):], strings.Repeat("07", 32))
	return out
}

func hasProblem(k *proc, msg string) bool {
	for _, p := range k.Problems() {
		if errors.Is(p, object.ErrCorrupt) && strings.Contains(p.Error(), msg) {
			return true
		}
	}
	return false
}

// wantRefused asserts that every writing operation of k (the Keychain's
// and the Rotator's) refuses with an error wrapping object.ErrCorrupt whose
// message contains each of msgs, before it writes anything (not even a
// lease). k's store must be a watchedStore.
func wantRefused(t *testing.T, k *proc, msgs ...string) {
	t.Helper()
	ctx := context.Background()
	st, ok := k.Store().(*watchedStore)
	if !ok {
		t.Fatal("wantRefused needs a watchedStore")
	}
	check := func(what string, err error) {
		t.Helper()
		for _, msg := range msgs {
			if !errors.Is(err, object.ErrCorrupt) || !strings.Contains(err.Error(), msg) {
				t.Errorf("%s: %v, want a refusal (ErrCorrupt) naming %q", what, err, msg)
			}
		}
	}
	before := st.writes.Load()
	_, _, err := k.NewDEK(ctx)
	check("NewDEK", err)
	check("Commit", k.Commit(ctx, func(r *keys.Keyring) (bool, error) { return true, nil }))
	check("Run", k.Run(ctx, nil))
	check("Help", k.Help(ctx, nil))
	_, err = k.Start(ctx, rawKey(t, 9))
	check("Start", err)
	if n := st.writes.Load() - before; n != 0 {
		t.Errorf("refused operations wrote %d times to the repository", n)
	}
}

// An epoch after a finished rotation A→B that the keyring's history does
// not accept: the process that rotated, and a new one holding both keys,
// refuse to rotate, to run or help a rotation, and to write, and the
// epoch takes no effect. (keys/history_test.go has the forgeries MACed
// with an attacker's key, and the illegal transitions.)
func TestRotationRefusesBadEpochs(t *testing.T) {
	ctx := context.Background()
	a, b, c := rawKey(t, 1), rawKey(t, 2), rawKey(t, 3)
	cases := map[string]func(t *testing.T, k *proc, st store.Store) (uint64, string){
		// The attack of issue #10 as a bare version 1 keyring: A current
		// again, with a rotation from B back to A.
		"forged-back-legacy": func(t *testing.T, k *proc, st store.Store) (uint64, string) {
			good := k.Keyring()
			genA, genB := good.Generations[0].ID, good.Current
			forged := good.Clone()
			forged.Epoch++
			forged.Current = genA
			forged.Generations[0].State = keys.StateCurrent
			forged.Generations[1].State = keys.StateRetiring
			forged.Rotation = &keys.Rotation{ID: strings.Repeat("ab", 16), From: []string{genB}, To: genA, Started: time.Now().UTC().Truncate(time.Second), RequestedBy: keys.Requester{Host: "evil", PID: 1}}
			plant(t, st, forged.Epoch, legacyEpoch(t, forged))
			return forged.Epoch, "a version 1 epoch after an authenticated one"
		},
		// A switch to the attacker's generation C, MACed by C alone: a
		// real switch made on a copy, B's MAC taken out.
		"attacker-generation": func(t *testing.T, k *proc, st store.Store) (uint64, string) {
			es := epochsOnCopy(t, st, func(p *proc) {
				if err := p.start(ctx, c, testOpts); err != nil {
					t.Fatal(err)
				}
				p.Close(ctx)
			}, b)
			e := k.Keyring().Epoch + 1
			plant(t, st, e, dropMAC(t, es[e], k.Keyring().Current))
			return e, "not authenticated"
		},
		// The same switch claiming B's MAC without B's key.
		"attacker-generation-claims-B": func(t *testing.T, k *proc, st store.Store) (uint64, string) {
			es := epochsOnCopy(t, st, func(p *proc) {
				if err := p.start(ctx, c, testOpts); err != nil {
					t.Fatal(err)
				}
				p.Close(ctx)
			}, b)
			e := k.Keyring().Epoch + 1
			plant(t, st, e, garbageMAC(t, es[e], k.Keyring().Current))
			return e, "does not verify"
		},
		"bad-mac": func(t *testing.T, k *proc, st store.Store) (uint64, string) {
			es := epochsOnCopy(t, st, noopCommit(t), b)
			e := k.Keyring().Epoch + 1
			plant(t, st, e, garbageMAC(t, es[e], k.Keyring().Current))
			return e, "does not verify"
		},
		"bad-chain": func(t *testing.T, k *proc, st store.Store) (uint64, string) {
			es := epochsOnCopy(t, st, noopCommit(t), b)
			e := k.Keyring().Epoch + 1
			plant(t, st, e, rechain(t, es[e]))
			return e, "not chained"
		},
		// Epoch e+2, signed on top of the epoch e+1 it claims to follow,
		// which is missing.
		"skipped-number": func(t *testing.T, k *proc, st store.Store) (uint64, string) {
			es := epochsOnCopy(t, st, func(p *proc) { noopCommit(t)(p); noopCommit(t)(p) }, b)
			e := k.Keyring().Epoch + 2
			plant(t, st, e, es[e])
			return e, "follows the missing epoch"
		},
		"garbage": func(t *testing.T, k *proc, st store.Store) (uint64, string) {
			e := k.Keyring().Epoch + 1
			plant(t, st, e, []byte("{\"version\": 2, junk"))
			return e, "keyring epoch " + fmt.Sprint(e)
		},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			st := watched()
			k, deks := rotated(t, st, a, b)
			good := k.Keyring()
			genA := good.Generations[0].ID
			bad, msg := f(t, k, st)
			named := "keyring epoch " + fmt.Sprint(bad)
			if err := k.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			other := openWith(t, st, newFakeClock(), a, b)
			for _, p := range []*proc{k, other} {
				wantRefused(t, p, msg, named)
				if r := p.Keyring(); r.Epoch != good.Epoch || r.Current != good.Current {
					t.Fatalf("the bad epoch took effect: epoch %d current %s", r.Epoch, r.Current)
				}
				if !hasProblem(p, named) {
					t.Fatalf("problems %v do not name epoch %d", p.Problems(), bad)
				}
				if p.Holds(genA) {
					t.Fatal("the retired key is held")
				}
			}
			if n, _ := k.count(ctx, keys.GenPrefix(genA), 0); n != 0 {
				t.Fatalf("%d DEKs re-wrapped under the retired generation", n)
			}
			// Reading goes on.
			for id, dek := range deks {
				got, err := other.DEK(ctx, id)
				if err != nil || !bytes.Equal(got, dek) {
					t.Fatalf("DEK %x: %v", id, err)
				}
			}
			// Taking the bad epoch away ends the refusal.
			if err := st.Delete(ctx, keyringName(bad)); err != nil {
				t.Fatal(err)
			}
			if err := other.start(ctx, c, testOpts); err != nil {
				t.Fatalf("after the bad epoch was deleted: %v", err)
			}
			if err := other.Run(ctx, nil); err != nil {
				t.Fatal(err)
			}
			checkFinished(t, st, newFakeClock(), deks, c)
		})
	}
}

// Rollback by deletion: the epochs from the switch on are deleted and a
// saved copy of deks/<A>/ is put back. A host that saw the newer epochs
// refuses to write under A or to rotate; a host without a record that
// holds only B is told the keyring may have been rolled back.
func TestRollbackWithRestoredDEKs(t *testing.T) {
	ctx := context.Background()
	st := watched()
	a, b := rawKey(t, 1), rawKey(t, 2)
	clock := newFakeClock()
	k := mustInit(t, st, a)
	setClock(k, clock.Now)
	makeDEKs(t, k, 5)
	genA := k.Keyring().Current
	savedDEKs := snapshotPrefix(t, st, keys.GenPrefix(genA))
	before := k.Keyring().Epoch
	long := openWith(t, st, clock, a, b) // a long-lived process: the mount
	if err := k.start(ctx, b, testOpts); err != nil {
		t.Fatal(err)
	}
	if err := k.Run(ctx, nil); err != nil {
		t.Fatal(err)
	}
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
	h := openWith(t, st, clock, a)
	want := fmt.Sprintf("keyring history was rewritten: epoch %d", last)
	if !hasProblem(h, want) {
		t.Fatalf("problems %v", h.Problems())
	}
	wantRefused(t, h, want)
	if n, _ := h.count(ctx, keys.GenPrefix(genA), 0); n != len(savedDEKs) {
		t.Fatalf("%d objects under A, want the %d put back", n, len(savedDEKs))
	}
	// So does the long-lived process, from memory.
	wantRefused(t, long, "keyring history was rewritten: epoch")
	// A host with no record: the new key matches nothing, and says why.
	freshState(t)
	if _, err := keys.Open(ctx, st, testRepoID, b); !errors.Is(err, keys.ErrNoKeyMatches) || !strings.Contains(err.Error(), "may have been rolled back") {
		t.Fatalf("Open with B on a fresh host: %v", err)
	}
}

// A fork authenticated by A: the attacker deletes the epochs from the
// switch on and starts a rotation of its own (A and its own key C sign the
// switch: a valid chain); in "as-long" it also finishes it, so that the
// fork is as long as the history this host saw. The host's record catches
// it; B opens nothing.
func TestForkAuthenticatedByA(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		finish bool   // the attacker runs its rotation to the end
		want   string // what the host's record says
	}{
		{"switch", false, "keyring history was rewritten: epoch 3 was seen on this host, but the keyring's history ends at epoch 2"},
		{"as-long", true, "keyring history was rewritten: epoch 3 differs from the one this host saw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := watched()
			a, b, c := rawKey(t, 1), rawKey(t, 2), rawKey(t, 3)
			k := mustInit(t, st, a)
			makeDEKs(t, k, 3)
			base := k.Keyring()
			if err := k.start(ctx, b, testOpts); err != nil {
				t.Fatal(err)
			}
			if err := k.Run(ctx, nil); err != nil {
				t.Fatal(err)
			}
			last := k.Keyring().Epoch
			for e := base.Epoch + 1; e <= last; e++ {
				st.Delete(ctx, keyringName(e))
			}
			// The attacker's rotation, on its own host, through the
			// library's own rules.
			onOtherHost(t, func() {
				evil := openWith(t, st, newFakeClock(), a)
				if _, err := evil.Start(ctx, c); err != nil {
					t.Fatal(err)
				}
				if tc.finish {
					if err := evil.Run(ctx, nil); err != nil {
						t.Fatal(err)
					}
				}
				if err := evil.Close(ctx); err != nil {
					t.Fatal(err)
				}
			})

			key := a
			if tc.finish {
				// A is retired in the fork: it opens nothing, and says why.
				if _, err := keys.Open(ctx, st, testRepoID, a); !errors.Is(err, keys.ErrNoKeyMatches) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Open with A: %v", err)
				}
				// Even the attacker's key, handed to a process on this
				// host, changes nothing.
				key = c
			}
			h := openWith(t, st, newFakeClock(), key)
			if !hasProblem(h, tc.want) {
				t.Fatalf("the fork went unnoticed: %v", h.Problems())
			}
			wantRefused(t, h, tc.want)
			freshState(t)
			if _, err := keys.Open(ctx, st, testRepoID, b); !errors.Is(err, keys.ErrNoKeyMatches) || !strings.Contains(err.Error(), "rolled back") {
				t.Fatalf("Open with B: %v", err)
			}
		})
	}
}

// A repository made before format version 2 (legacy epochs) opens, writes,
// and is authenticated by its next rotation; a legacy epoch after an
// authenticated one is refused.
func TestLegacyUpgrade(t *testing.T) {
	ctx := context.Background()
	st := watched()
	a, b := rawKey(t, 1), rawKey(t, 2)
	k := mustInit(t, st, a)
	r := k.Keyring()
	if err := st.Delete(ctx, keyringName(1)); err != nil {
		t.Fatal(err)
	}
	plant(t, st, 1, legacyEpoch(t, r))
	freshState(t)
	k = openWith(t, st, newFakeClock(), a)
	if k.Authenticated() || len(k.Problems()) > 0 {
		t.Fatalf("legacy keyring: authenticated %v, problems %v", k.Authenticated(), k.Problems())
	}
	deks := makeDEKs(t, k, 3)
	if err := k.start(ctx, b, testOpts); err != nil {
		t.Fatal(err)
	}
	if err := k.Run(ctx, nil); err != nil {
		t.Fatal(err)
	}
	e2, err := st.Get(ctx, keyringName(2))
	if err != nil {
		t.Fatal(err)
	}
	if !k.Authenticated() || !bytes.HasPrefix(e2, []byte("{\n  \"version\": 2,\n  \"prev\": ")) {
		t.Fatalf("the switch commit did not authenticate the keyring: %s", e2)
	}
	checkFinished(t, st, newFakeClock(), deks, b)
	// A legacy epoch after it is refused.
	n := k.Keyring()
	n.Epoch++
	plant(t, st, n.Epoch, legacyEpoch(t, n))
	wantRefused(t, k, "a version 1 epoch after an authenticated one")
}
