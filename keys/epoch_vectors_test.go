package keys

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/internal/vectortest"
	"github.com/snapcrypt/snapcrypt/repo/object"
)

// epochVector is a known-answer vector of the keyring history: a chain of
// epoch objects, the raw keys a verifier holds, and what it must conclude.
type epochVector struct {
	Name     string            `json:"name"`
	Comment  string            `json:"comment"`
	Expect   string            `json:"expect"` // "ok" or the kind of the first bad epoch
	Good     int               `json:"good"`   // epochs that take effect
	Authed   uint64            `json:"authed"` // newest epoch whose MAC the verifier checks
	Held     []string          `json:"held"`   // hex raw keys
	RingKeys map[string]string `json:"ring_keys,omitempty"`
	Epochs   []string          `json:"epochs"` // the objects keyring/1, keyring/2, …
}

const epochVectorFile = "testdata/epoch-vectors.json"

// Kinds of bad epochs, as vectors name them.
var epochKinds = []error{errUnauthenticated, errBadChain, errIllegal}

func makeEpochVectors(t testing.TB) []epochVector {
	rid := [16]byte(det("repo", 16))
	repoID := hex.EncodeToString(rid[:])
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	type key struct {
		raw []byte
		gen Generation
		kk  *kek
	}
	mk := func(label string, created time.Time) key {
		raw := det("epoch key "+label, KeySize)
		m, _ := NewRawKey(raw)
		gen := [8]byte(det("epoch gen "+label, 8))
		kdf := KDF{Type: KDFRaw, Salt: hex.EncodeToString(det("epoch salt "+label, saltSize))}
		k, _ := deriveKEK(context.Background(), kdf, m, [16]byte{}, [8]byte{})
		kk := newKEK(k, rid, gen)
		g := Generation{ID: hex.EncodeToString(gen[:]), KDF: kdf, Check: hex.EncodeToString(kk.check), State: StateCurrent, Created: created}
		return key{raw, g, kk}
	}
	a, b, c := mk("A", t0), mk("B", t0.Add(time.Hour)), mk("C", t0.Add(2*time.Hour))
	rot := &Rotation{ID: hex.EncodeToString(det("epoch rotation", 16)), From: []string{a.gen.ID}, To: b.gen.ID, Started: t0.Add(time.Hour), RequestedBy: Requester{Host: "h1", PID: 42}}
	gens := func(gs ...Generation) []Generation { return gs }
	with := func(g Generation, s State) Generation { g.State = s; return g }
	r1 := Keyring{Version: KeyringVersion, RepoID: repoID, Epoch: 1, Current: a.gen.ID, Generations: gens(a.gen), IDKeyDEK: hex.EncodeToString(det("epoch id key", 16))}
	r2 := r1.Clone()
	r2.Epoch, r2.Current, r2.Rotation = 2, b.gen.ID, rot
	r2.Generations = gens(with(a.gen, StateRetiring), b.gen)
	r3 := r2.Clone()
	r3.Epoch, r3.Rotation = 3, nil
	r3.Generations = gens(with(a.gen, StateRetired), b.gen)

	sign := func(r Keyring, prev *epochObj, ks ...key) *epochObj {
		var signers []*kek
		for _, k := range ks {
			signers = append(signers, k.kk)
		}
		var p []byte
		if prev != nil {
			p = prev.hash[:]
		}
		e, err := signEpoch(&r, rid, p, signers)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	e1 := sign(r1, nil, a)
	e2 := sign(r2, e1, a, b)
	e3 := sign(r3, e2, b)
	objs := func(es ...*epochObj) []string {
		var out []string
		for _, e := range es {
			out = append(out, string(e.raw))
		}
		return out
	}
	hexes := func(ks ...key) []string {
		var out []string
		for _, k := range ks {
			out = append(out, hex.EncodeToString(k.raw))
		}
		return out
	}
	ringKeys := map[string]string{}
	for _, k := range []key{a, b, c} {
		ringKeys[k.gen.ID] = hex.EncodeToString(k.kk.ringKey)
	}
	var vs []epochVector
	add := func(v epochVector) { vs = append(vs, v) }
	add(epochVector{Name: "rotation", Comment: "init with A, switch to B (MACed by A and B), retire A (MACed by B); the verifier holds B",
		Expect: "ok", Good: 3, Authed: 3, Held: hexes(b), RingKeys: ringKeys, Epochs: objs(e1, e2, e3)})
	add(epochVector{Name: "mid-rotation-old-key", Comment: "epochs 1 and 2 (A retiring); the verifier holds only A: it checks A's MACs of both",
		Expect: "ok", Good: 2, Authed: 2, Held: hexes(a), Epochs: objs(e1, e2)})
	add(epochVector{Name: "rotation-retired-key", Comment: "all three epochs; the verifier holds only A, retired in epoch 3: it checks A's MACs (epochs 1 and 2) with A's keyring key derived for the check alone, holds no KEK of A, and a retired key's MAC authenticates nothing",
		Expect: "ok", Good: 3, Authed: 0, Held: hexes(a), Epochs: objs(e1, e2, e3)})
	bad3 := bytes.Clone(e3.raw)
	i := bytes.Index(bad3, []byte(`"mac": "`)) + len(`"mac": "`)
	bad3[i] ^= 1 // one hex digit of B's MAC changed
	add(epochVector{Name: "bad-mac", Comment: "epoch 3's MAC by B altered", Expect: errUnauthenticated.Error(), Good: 2, Authed: 2, Held: hexes(b), Epochs: []string{string(e1.raw), string(e2.raw), string(bad3)}})
	e3c := sign(r3, e1, b) // chained to epoch 1, not 2
	add(epochVector{Name: "bad-chain", Comment: "epoch 3 MACed by B but chained to epoch 1", Expect: errBadChain.Error(), Good: 2, Authed: 2, Held: hexes(b), Epochs: objs(e1, e2, e3c)})
	r4 := r3.Clone()
	r4.Epoch, r4.Current = 4, c.gen.ID
	r4.Generations = gens(with(a.gen, StateRetired), with(b.gen, StateRetiring), c.gen)
	r4.Rotation = &Rotation{ID: hex.EncodeToString(det("epoch rotation 2", 16)), From: []string{b.gen.ID}, To: c.gen.ID, Started: t0.Add(2 * time.Hour), RequestedBy: Requester{Host: "evil", PID: 1}}
	add(epochVector{Name: "attacker-generation", Comment: "epoch 4 switches to the attacker's generation C, MACed by A (retired) and C, not by B",
		Expect: errUnauthenticated.Error(), Good: 3, Authed: 3, Held: hexes(b), Epochs: objs(e1, e2, e3, sign(r4, e3, a, c))})
	r4b := r3.Clone()
	r4b.Epoch, r4b.Current = 4, a.gen.ID
	r4b.Generations = gens(with(a.gen, StateCurrent), with(b.gen, StateRetiring))
	r4b.Rotation = &Rotation{ID: hex.EncodeToString(det("epoch rotation 3", 16)), From: []string{b.gen.ID}, To: a.gen.ID, Started: t0.Add(2 * time.Hour), RequestedBy: Requester{Host: "evil", PID: 1}}
	add(epochVector{Name: "retired-comes-back", Comment: "epoch 4 makes the retired A current again; even MACed by B and A it is illegal",
		Expect: errIllegal.Error(), Good: 3, Authed: 3, Held: hexes(b), Epochs: objs(e1, e2, e3, sign(r4b, e3, b, a))})
	// Finding R1: a planted switch B → C with a garbage MAC by B, then an
	// epoch retiring B (MACed by C). B's MAC is checked though B is
	// retired in the newest epoch.
	r4c := r3.Clone()
	r4c.Epoch, r4c.Current = 4, c.gen.ID
	r4c.Generations = gens(with(a.gen, StateRetired), with(b.gen, StateRetiring), c.gen)
	r4c.Rotation = &Rotation{ID: hex.EncodeToString(det("epoch rotation 4", 16)), From: []string{b.gen.ID}, To: c.gen.ID, Started: t0.Add(2 * time.Hour), RequestedBy: Requester{Host: "evil", PID: 1}}
	bad4 := bytes.Clone(sign(r4c, e3, b, c).raw)
	i = bytes.Index(bad4, []byte(`"mac": "`)) + len(`"mac": "`)
	bad4[i] ^= 1 // one hex digit of B's MAC changed
	r5c := r4c.Clone()
	r5c.Epoch, r5c.Rotation = 5, nil
	r5c.Generations = gens(with(a.gen, StateRetired), with(b.gen, StateRetired), c.gen)
	e5c := sign(r5c, &epochObj{hash: sha256Sum(bad4)}, c)
	add(epochVector{Name: "retire-hides-bad-mac", Comment: "epoch 4 switches to C with B's MAC altered, epoch 5 retires B (MACed by C); the verifier holds only B, retired in epoch 5: it still checks B's MAC of epoch 4, which fails, and goes on from epoch 3",
		Expect: errUnauthenticated.Error(), Good: 3, Authed: 3, Held: hexes(b), Epochs: append(objs(e1, e2, e3), string(bad4), string(e5c.raw))})
	// Key slots (format version 3 inside the version 2 envelope): B's
	// holder adds a slot to B (MACed by B); a storage attacker's slot
	// epoch carries a MAC by B it could not make.
	slotKey, _ := NewRawKey(det("epoch slot key", KeySize))
	slot, err := sealSlotNonce(context.Background(), b.kk, slotKey, rid, [8]byte(det("epoch slot id", 8)),
		KDF{Type: KDFRaw, Salt: hex.EncodeToString(det("epoch slot salt", saltSize))}, det("epoch slot nonce", 24), t0.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	r4s := r3.Clone()
	r4s.Epoch = 4
	r4s.Generations[1].Slots = []Slot{slot}
	e4s := sign(r4s, e3, b)
	add(epochVector{Name: "slot-added", Comment: "epoch 4 (keyring version 3) adds a key slot to B, MACed by B",
		Expect: "ok", Good: 4, Authed: 4, Held: hexes(b), Epochs: objs(e1, e2, e3, e4s)})
	add(epochVector{Name: "slot-added-bad-mac", Comment: "epoch 4 adds a key slot to B, B's MAC altered (a storage attacker's slot)",
		Expect: errUnauthenticated.Error(), Good: 3, Authed: 3, Held: hexes(b), Epochs: append(objs(e1, e2, e3), string(garbled(e4s.raw)))})
	r5s := r4s.Clone()
	r5s.Epoch = 5
	r5s.Generations[1].Slots = nil
	add(epochVector{Name: "slot-removed", Comment: "epoch 5 removes the slot again: keyring version 2 again, MACed by B",
		Expect: "ok", Good: 5, Authed: 5, Held: hexes(b), Epochs: objs(e1, e2, e3, e4s, sign(r5s, e4s, b))})
	r4r := r3.Clone()
	r4r.Epoch = 4
	r4r.Generations[0].Slots = []Slot{slot}
	add(epochVector{Name: "slot-on-retired", Comment: "epoch 4 adds a key slot to the retired A, MACed by B: illegal",
		Expect: errIllegal.Error(), Good: 3, Authed: 3, Held: hexes(b), Epochs: objs(e1, e2, e3, sign(r4r, e3, b))})
	leg := r3.Clone()
	leg.Epoch, leg.Version = 4, legacyKeyringVersion
	legBytes, _ := leg.Marshal()
	add(epochVector{Name: "legacy-after-authenticated", Comment: "epoch 4 is a bare version 1 keyring", Expect: errUnauthenticated.Error(), Good: 3, Authed: 3, Held: hexes(b), Epochs: append(objs(e1, e2, e3), string(legBytes))})
	l1 := r1.Clone()
	l1.Version = legacyKeyringVersion
	l1Bytes, _ := l1.Marshal()
	le1 := &epochObj{raw: l1Bytes}
	le1.hash = sha256Sum(l1Bytes)
	add(epochVector{Name: "upgrade", Comment: "a version 1 epoch 1, then the switch in version 2 chained to its hash", Expect: "ok", Good: 2, Authed: 2, Held: hexes(b), Epochs: []string{string(l1Bytes), string(sign(r2, le1, a, b).raw)}})
	return vs
}

func TestEpochVectors(t *testing.T) {
	rid := [16]byte(det("repo", 16))
	vectortest.Run(t, epochVectorFile, makeEpochVectors(t), func(v epochVector) {
		var es []*epochObj
		for i, s := range v.Epochs {
			e, err := parseEpoch([]byte(s))
			if err != nil {
				t.Fatalf("%s: epoch %d: %v", v.Name, i+1, err)
			}
			es = append(es, e)
		}
		var ms []*Material
		for _, h := range v.Held {
			b, _ := hex.DecodeString(h)
			m, _ := NewRawKey(b)
			ms = append(ms, m)
		}
		got := verifyEpochs(context.Background(), nil, es, hex.EncodeToString(rid[:]), rid, nil, ms)
		kind := "ok"
		if got.bad != nil {
			kind = "other: " + got.bad.Error()
			for _, k := range epochKinds {
				if errors.Is(got.bad, k) && errors.Is(got.bad, object.ErrCorrupt) {
					kind = k.Error()
				}
			}
		}
		if kind != v.Expect || got.good != v.Good || got.authed != v.Authed {
			t.Errorf("%s: %s, %d good, authenticated to %d; want %s, %d, %d", v.Name, kind, got.good, got.authed, v.Expect, v.Good, v.Authed)
		}
	})
}

func FuzzParseEpoch(f *testing.F) {
	n := 0
	for _, v := range vectortest.Load[epochVector](f, epochVectorFile) {
		for _, s := range v.Epochs {
			f.Add([]byte(s))
			n++
		}
	}
	if n == 0 {
		f.Fatal("no seeds")
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseEpoch(b)
		if err != nil {
			return
		}
		if e.legacy {
			return // FuzzParseKeyring covers bare keyrings
		}
		// One encoding only: what parses is what a writer makes.
		body, err := e.ring.marshalBody()
		if err != nil || !bytes.Equal(marshalEnvelope(e.prev, e.macs, body), b) {
			t.Fatal("parsed epoch does not marshal back to its bytes")
		}
	})
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// garbled is an epoch object with one hex digit of its first MAC changed.
func garbled(raw []byte) []byte {
	out := bytes.Clone(raw)
	i := bytes.Index(out, []byte(`"mac": "`)) + len(`"mac": "`)
	out[i] ^= 1
	return out
}
