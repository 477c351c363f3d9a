package keys

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/internal/vectortest"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// slotVector is a known-answer vector of key slots: a version 3 keyring
// whose current generation has its own key and slots, an operator's key,
// and what unlocking the current generation with it gives.
type slotVector struct {
	Name       string `json:"name"`
	Comment    string `json:"comment"`
	Expect     string `json:"expect"`                // "ok", "no match" or "corrupted"
	Way        string `json:"way,omitempty"`         // on ok: "primary" or the slot id that opened
	RawKey     string `json:"raw_key,omitempty"`     // hex
	Passphrase string `json:"passphrase,omitempty"`  // text
	KEK        string `json:"kek,omitempty"`         // hex, on ok
	Keyring    string `json:"keyring"`               // the keyring JSON, as ParseKeyring reads it
	SlotKey    string `json:"slot_key,omitempty"`    // hex: on ok through a slot, its slot key
	SlotSecret string `json:"slot_secret,omitempty"` // hex: on ok through a slot, deriveKEK of its KDF
}

const slotVectorFile = "testdata/slot-vectors.json"

func makeSlotVectors(t testing.TB) []slotVector {
	rid := [16]byte(det("repo", 16))
	gen := [8]byte(det("slot gen", 8))
	t0 := time.Date(2025, 7, 1, 8, 0, 0, 0, time.UTC)
	primary, _ := NewRawKey(det("slot primary key", KeySize))
	rawSlot, _ := NewRawKey(det("slot raw key", KeySize))
	passSlot, _ := NewPassphrase([]byte("recovery horse battery staple"))
	other, _ := NewRawKey(det("slot other key", KeySize))
	kdf := KDF{Type: KDFRaw, Salt: hex.EncodeToString(det("slot gen salt", saltSize))}
	kekRaw, _ := deriveKEK(context.Background(), kdf, primary, rid, gen)
	kk := newKEK(kekRaw, rid, gen)
	seal := func(label string, kdf KDF, m *Material, content [KeySize]byte, slotGen [8]byte) Slot {
		id := [8]byte(det("slot id "+label, 8))
		secret, _ := deriveKEK(context.Background(), kdf, m, rid, slotGen)
		return Slot{ID: hex.EncodeToString(id[:]), KDF: kdf,
			Wrapped: hex.EncodeToString(sealSlot(content, secret, rid, slotGen, id, det("slot nonce "+label, 24))),
			Created: t0.Add(time.Hour)}
	}
	rawKDF := KDF{Type: KDFRaw, Salt: hex.EncodeToString(det("slot raw salt", saltSize))}
	argKDF := KDF{Type: KDFArgon2id, Salt: hex.EncodeToString(det("slot argon salt", saltSize)), T: 1, M: 64, P: 1}
	sRaw := seal("raw", rawKDF, rawSlot, kekRaw, gen)
	sPass := seal("pass", argKDF, passSlot, kekRaw, gen)
	ring := func(slots ...Slot) string {
		r := Keyring{Version: keyringVersion3, RepoID: hex.EncodeToString(rid[:]), Epoch: 2, Current: hex.EncodeToString(gen[:]),
			Generations: []Generation{{ID: hex.EncodeToString(gen[:]), KDF: kdf, Check: hex.EncodeToString(kk.check), State: StateCurrent, Created: t0, Slots: slots}},
			IDKeyDEK:    hex.EncodeToString(det("slot id key", 16))}
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	keyOf := func(v slotVector, m *Material) slotVector {
		if m.IsPassphrase() {
			v.Passphrase = string(m.pass)
		} else {
			v.RawKey = hex.EncodeToString(m.raw)
		}
		return v
	}
	okVia := func(v slotVector, m *Material, s *Slot) slotVector {
		v = keyOf(v, m)
		v.Expect, v.KEK = "ok", hex.EncodeToString(kekRaw[:])
		v.Way = PrimarySlot
		if s != nil {
			v.Way = s.ID
			secret, _ := deriveKEK(context.Background(), s.KDF, m, rid, gen)
			v.SlotSecret = hex.EncodeToString(secret[:])
			v.SlotKey = hex.EncodeToString(subkey(secret, infoSlot))
		}
		return v
	}
	full := ring(sRaw, sPass)
	flipped := sRaw
	w, _ := hex.DecodeString(flipped.Wrapped)
	w[30] ^= 1
	flipped.Wrapped = hex.EncodeToString(w)
	moved := seal("raw", rawKDF, rawSlot, kekRaw, [8]byte(det("another gen", 8)))
	wrongKEK := seal("raw", rawKDF, rawSlot, [KeySize]byte(det("not the kek", KeySize)), gen)
	renamed := sRaw
	renamed.ID = hex.EncodeToString(det("another slot id", 8))
	return []slotVector{
		okVia(slotVector{Name: "primary", Comment: "the generation's own key", Keyring: full}, primary, nil),
		okVia(slotVector{Name: "raw-slot", Comment: "a raw key opens slot 1", Keyring: full}, rawSlot, &sRaw),
		okVia(slotVector{Name: "passphrase-slot", Comment: "a passphrase (argon2id t=1 m=64 p=1) opens slot 2", Keyring: full}, passSlot, &sPass),
		keyOf(slotVector{Name: "other-key", Comment: "a key of neither the generation nor a slot", Expect: "no match", Keyring: full}, other),
		keyOf(slotVector{Name: "flipped-slot", Comment: "one bit of slot 1's sealed KEK flipped: it no longer opens", Expect: "no match", Keyring: ring(flipped, sPass)}, rawSlot),
		keyOf(slotVector{Name: "moved-slot", Comment: "slot 1 sealed for another generation and copied here (additional data)", Expect: "no match", Keyring: ring(moved, sPass)}, rawSlot),
		keyOf(slotVector{Name: "renamed-slot", Comment: "slot 1 under another slot id (additional data)", Expect: "no match", Keyring: ring(renamed, sPass)}, rawSlot),
		keyOf(slotVector{Name: "slot-holds-another-key", Comment: "slot 1 opens with its key to a KEK that fails the generation's check value", Expect: "corrupted", Keyring: ring(wrongKEK, sPass)}, rawSlot),
	}
}

func TestSlotVectors(t *testing.T) {
	vectortest.Run(t, slotVectorFile, makeSlotVectors(t), func(v slotVector) {
		r, err := ParseKeyring([]byte(v.Keyring))
		if err != nil {
			t.Errorf("%s: %v", v.Name, err)
			return
		}
		var m *Material
		if v.Passphrase != "" {
			m, _ = NewPassphrase([]byte(v.Passphrase))
		} else {
			b, _ := hex.DecodeString(v.RawKey)
			m, _ = NewRawKey(b)
		}
		rid, _ := parseRepoID(r.RepoID)
		g := r.Generation(r.Current)
		k, way, err := unlock(context.Background(), g, m, rid, true)
		got := "ok"
		switch {
		case errors.Is(err, errNoUnlock):
			got = "no match"
		case errors.Is(err, object.ErrCorrupt):
			got = "corrupted"
			if !strings.Contains(err.Error(), "corrupted or tampered with") {
				t.Errorf("%s: error %q", v.Name, err)
			}
		case err != nil:
			got = "other: " + err.Error()
		}
		if got != v.Expect {
			t.Errorf("%s: got %s, expect %s", v.Name, got, v.Expect)
			return
		}
		if got == "ok" && (hex.EncodeToString(k[:]) != v.KEK || way != v.Way) {
			t.Errorf("%s: opened through %s to another KEK or way (want %s)", v.Name, way, v.Way)
		}
		if (matchKEK(context.Background(), g, m, rid) != nil) != (got == "ok") {
			t.Errorf("%s: matchKEK disagrees with unlock", v.Name)
		}
	})
}

// A keyring with slots, committed and reopened: each slot's key alone
// opens the repository and reads its data keys; a removed slot's key no
// longer does, and says why.
func TestSlotAddOpenRemove(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a, rec, pass := rawKey(t, 1), rawKey(t, 2), passKey(t, "recovery passphrase")
	k := mustInit(t, st, a)
	deks := makeDEKs(t, k, 5)
	if _, err := Open(ctx, st, testRepoID, rec); !errors.Is(err, ErrNoKeyMatches) {
		t.Fatalf("before adding, the recovery key opens: %v", err)
	}
	sRec, err := k.AddSlot(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	sPass, err := k.AddSlot(ctx, pass)
	if err != nil {
		t.Fatal(err)
	}
	r, err := LoadKeyring(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != keyringVersion3 || len(r.Generation(r.Current).Slots) != 2 {
		t.Fatalf("keyring version %d with %d slots, want 3 with 2", r.Version, len(r.Generation(r.Current).Slots))
	}
	if got := r.Generation(r.Current).Ways(); len(got) != 3 || got[0].ID != PrimarySlot || got[1].Kind != "raw key" || got[2].Kind != "passphrase" || got[2].ID != sPass.ID {
		t.Fatalf("ways %+v", got)
	}
	for _, m := range []*Material{rec, pass} {
		k2, err := Open(ctx, st, testRepoID, m)
		if err != nil {
			t.Fatalf("open with %s alone: %v", m.Source(), err)
		}
		for id, dek := range deks {
			got, err := k2.DEK(ctx, id)
			if err != nil || !bytes.Equal(got, dek) {
				t.Fatalf("DEK %x through a slot: %v", id, err)
			}
		}
		// A slot key writes too: new DEKs, keyring commits.
		if _, _, err := k2.NewDEK(ctx); err != nil {
			t.Fatalf("new DEK through a slot: %v", err)
		}
	}
	if err := k.RemoveSlot(ctx, sRec.ID); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, st, testRepoID, rec)
	if !errors.Is(err, ErrNoKeyMatches) {
		t.Fatalf("open with the removed slot's key: %v", err)
	}
	if _, err := Open(ctx, st, testRepoID, pass); err != nil {
		t.Fatalf("the other slot stops opening: %v", err)
	}
	if err := k.RemoveSlot(ctx, sPass.ID); err != nil {
		t.Fatal(err)
	}
	// No slot left: the keyring is version 2 again, byte for byte as
	// before slots existed.
	if r, _ := LoadKeyring(ctx, st); r.Version != KeyringVersion || r.usesV3() {
		t.Fatalf("keyring version %d after the last slot went", r.Version)
	}
	if _, err := Open(ctx, st, testRepoID, a); err != nil {
		t.Fatal(err)
	}
}

func TestSlotRefusals(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a, b := rawKey(t, 1), rawKey(t, 2)
	k := mustInit(t, st, a)
	if _, err := k.AddSlot(ctx, a); !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "its own key") {
		t.Fatalf("adding the primary key as a slot: %v", err)
	}
	s, err := k.AddSlot(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.AddSlot(ctx, b); !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "slot "+s.ID) {
		t.Fatalf("adding a slot twice: %v", err)
	}
	epoch := k.Keyring().Epoch
	if err := k.RemoveSlot(ctx, PrimarySlot); err == nil || !strings.Contains(err.Error(), "cannot be removed") {
		t.Fatalf("removing the primary key: %v", err)
	}
	if err := k.RemoveSlot(ctx, "0123456789abcdef"); err == nil || !strings.Contains(err.Error(), "has no key slot") {
		t.Fatalf("removing a slot that does not exist: %v", err)
	}
	if k.Keyring().Epoch != epoch {
		t.Fatal("a refused change committed an epoch")
	}
	for i := 1; i < MaxSlots; i++ {
		if _, err := k.AddSlot(ctx, rawKey(t, byte(10+i))); err != nil {
			t.Fatalf("slot %d: %v", i+1, err)
		}
	}
	if _, err := k.AddSlot(ctx, rawKey(t, 99)); err == nil || !strings.Contains(err.Error(), "the most it may have") {
		t.Fatalf("slot %d: %v", MaxSlots+1, err)
	}
}

// Adds from several processes at once all land: each is a compare-and-swap
// commit, retried on the newer epoch.
func TestConcurrentAddSlot(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a := rawKey(t, 1)
	mustInit(t, st, a)
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		k, err := Open(ctx, st, testRepoID, a)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = k.AddSlot(ctx, rawKey(t, byte(20+i)))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
	}
	for i := range n {
		if _, err := Open(ctx, st, testRepoID, rawKey(t, byte(20+i))); err != nil {
			t.Fatalf("slot %d lost: %v", i, err)
		}
	}
}

// A slot that a holder of the generation's key sealed with another KEK:
// its key opens nothing, and the error names the slot as corrupted.
func TestSlotHoldsAnotherKey(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a, b := rawKey(t, 1), rawKey(t, 2)
	k := mustInit(t, st, a)
	r := k.Keyring()
	g := &r.Generations[0]
	gen, _ := parseGenID(g.ID)
	bogus := &kek{gen: gen, raw: [KeySize]byte(det("not the kek", KeySize))}
	rid, _ := parseRepoID(testRepoID)
	s, err := makeSlot(context.Background(), g, bogus, b, rid, testArgon2, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	next := r.Clone()
	next.Epoch++
	next.Generations[0].Slots = []Slot{s}
	plant(t, st, next.Epoch, forge(t, st, next, kekOf(t, r, g.ID, a)))
	_, err = Open(ctx, st, testRepoID, b)
	if !errors.Is(err, ErrNoKeyMatches) || !strings.Contains(err.Error(), "key slot "+s.ID) || !strings.Contains(err.Error(), "corrupted or tampered with") {
		t.Fatalf("open with the bad slot's key: %v", err)
	}
}

// Slots change only on the current generation, by removing some and
// appending others; a slot never changes in place.
func TestSlotTransitions(t *testing.T) {
	base := sampleKeyring()
	base.Generations = base.Generations[:2] // retiring, then current (the newest)
	base.Version = keyringVersion3
	base.Generations[0].Slots = []Slot{sampleSlot(1)}
	base.Generations[1].Slots = []Slot{sampleSlot(2), sampleSlot(3), sampleSlot(4)}
	cases := []struct {
		name string
		f    func(r *Keyring)
		ok   bool
	}{
		{"unchanged", func(r *Keyring) {}, true},
		{"append", func(r *Keyring) { r.Generations[1].Slots = append(r.Generations[1].Slots, sampleSlot(5)) }, true},
		{"remove middle", func(r *Keyring) {
			r.Generations[1].Slots = []Slot{sampleSlot(2), sampleSlot(4)}
		}, true},
		{"remove all and add", func(r *Keyring) { r.Generations[1].Slots = []Slot{sampleSlot(6)} }, true},
		{"reorder", func(r *Keyring) {
			r.Generations[1].Slots = []Slot{sampleSlot(3), sampleSlot(2), sampleSlot(4)}
		}, false},
		{"changed in place", func(r *Keyring) { r.Generations[1].Slots[1].Wrapped = strings.Repeat("ee", slotWrappedSize) }, false},
		{"kdf changed", func(r *Keyring) { r.Generations[1].Slots[0].KDF.Salt = strings.Repeat("ee", saltSize) }, false},
		{"retiring generation's slot removed", func(r *Keyring) { r.Generations[0].Slots = nil }, false},
		{"retiring generation's slot added", func(r *Keyring) {
			r.Generations[0].Slots = append(r.Generations[0].Slots, sampleSlot(7))
		}, false},
	}
	for _, c := range cases {
		next := base.Clone()
		next.Epoch++
		c.f(&next)
		err := checkTransition(&base, &next)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v, want ok=%v", c.name, err, c.ok)
		}
		if err != nil && !errors.Is(err, errIllegal) {
			t.Errorf("%s: %v does not wrap errIllegal", c.name, err)
		}
	}
	// Clone copies the slots: changing the clone's leaves base alone.
	c := base.Clone()
	c.Generations[1].Slots[0].ID = "ffffffffffffffff"
	if base.Generations[1].Slots[0].ID == c.Generations[1].Slots[0].ID {
		t.Fatal("Clone shares the slots")
	}
}

// After a rotation, a slot of the retired generation opens nothing, and
// the error says whose key it was; a slot the switch carried opens the new
// generation.
func TestSlotAcrossRotation(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a, b, recOld, recNew := rawKey(t, 1), rawKey(t, 2), rawKey(t, 3), passKey(t, "new recovery")
	k := mustInit(t, st, a)
	deks := makeDEKs(t, k, 3)
	if _, err := k.AddSlot(ctx, recOld); err != nil {
		t.Fatal(err)
	}
	old := k.Keyring().Current
	rotateTo(t, k, b, recNew)
	_, err := Open(ctx, st, testRepoID, recOld)
	if !errors.Is(err, ErrNoKeyMatches) || !strings.Contains(err.Error(), "generation "+old+", which was retired") {
		t.Fatalf("open with the old generation's slot key: %v", err)
	}
	checkFinished(t, st, deks, recNew)
}

// The Keychain forgets the operator's key of a generation once it is
// retired (and that key's cached Argon2id outputs).
func TestRetiredMaterialDropped(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	a, b := passKey(t, "old passphrase"), rawKey(t, 2)
	k := mustInit(t, st, a)
	makeDEKs(t, k, 2)
	has := func(m *Material) bool {
		k.mu.RLock()
		defer k.mu.RUnlock()
		for _, x := range k.mats {
			if x == m {
				return true
			}
		}
		return false
	}
	if !has(a) || len(a.stretched) == 0 {
		t.Fatal("the key is not held before the rotation")
	}
	rotateTo(t, k, b)
	if has(a) {
		t.Fatal("the retired generation's key is still held")
	}
	a.mu.Lock()
	n := len(a.stretched)
	a.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d Argon2id outputs of the retired key still cached", n)
	}
	if !has(b) {
		t.Fatal("the current key was dropped")
	}
	if _, _, err := k.NewDEK(ctx); err != nil {
		t.Fatal(err)
	}
}

func FuzzSlotOpen(f *testing.F) {
	vs := vectortest.Load[slotVector](f, slotVectorFile)
	for _, v := range vs {
		f.Add([]byte(v.Keyring))
	}
	m, _ := NewRawKey(det("slot raw key", KeySize))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseKeyring(b)
		if err != nil {
			return
		}
		rid, _ := parseRepoID(r.RepoID)
		for i := range r.Generations {
			g := &r.Generations[i]
			k, _, err := unlock(context.Background(), g, m, rid, true)
			if err == nil {
				gen, _ := parseGenID(g.ID)
				if !hexEqual(checkValue(k, rid, gen), g.Check) {
					t.Fatal("unlocked a KEK that fails the check value")
				}
			}
		}
	})
}

func hexEqual(b []byte, h string) bool {
	want, err := hex.DecodeString(h)
	return err == nil && bytes.Equal(want, b)
}
