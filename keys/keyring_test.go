package keys

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/internal/vectortest"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

type keyringVector struct {
	Name    string `json:"name"`
	Expect  string `json:"expect"` // "ok", "corrupted" or "unknown version"
	Keyring string `json:"keyring"`
}

const keyringVectorFile = "testdata/keyring-vectors.json"

func sampleKeyring() Keyring {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	return Keyring{
		Version: legacyKeyringVersion, RepoID: testRepoID, Epoch: 7, Current: "2222222222222222",
		Generations: []Generation{
			{ID: "1111111111111111", KDF: KDF{Type: KDFArgon2id, Salt: strings.Repeat("ab", 16), T: 3, M: 65536, P: 4}, Check: strings.Repeat("0c", 32), State: StateRetiring, Created: t0},
			{ID: "2222222222222222", KDF: KDF{Type: KDFRaw, Salt: strings.Repeat("cd", 16)}, Check: strings.Repeat("1d", 32), State: StateCurrent, Created: t0.Add(time.Hour)},
			{ID: "0000000000000000", KDF: KDF{Type: KDFRaw, Salt: strings.Repeat("ef", 16)}, Check: strings.Repeat("2e", 32), State: StateRetired, Created: t0.Add(-time.Hour)},
		},
		Rotation: &Rotation{ID: strings.Repeat("99", 16), From: []string{"1111111111111111"}, To: "2222222222222222", Started: t0.Add(time.Hour), RequestedBy: Requester{Host: "h1", PID: 42}},
		IDKeyDEK: strings.Repeat("77", 16),
	}
}

// sampleSlot is slot i of a sample keyring: raw for even i, argon2id for
// odd.
func sampleSlot(i int) Slot {
	s := Slot{
		ID:      fmt.Sprintf("51%014x", i),
		KDF:     KDF{Type: KDFRaw, Salt: strings.Repeat(fmt.Sprintf("%02x", 0x30+i), 16)},
		Wrapped: strings.Repeat(fmt.Sprintf("%02x", 0x60+i), slotWrappedSize),
		Created: time.Date(2025, 1, 3, 0, 0, i, 0, time.UTC),
	}
	if i%2 == 1 {
		s.KDF = KDF{Type: KDFArgon2id, Salt: s.KDF.Salt, T: 3, M: 65536, P: 4}
	}
	return s
}

func makeKeyringVectors() []keyringVector {
	enc := func(r Keyring) string {
		b, _ := json.MarshalIndent(r, "", "  ")
		return string(b) + "\n"
	}
	mut := func(f func(r *Keyring)) string {
		r := sampleKeyring().Clone()
		f(&r)
		return enc(r)
	}
	// withSlots is the sample keyring in version 3 with two slots of its
	// current generation (and one of the retiring one), changed by f.
	withSlots := func(f func(r *Keyring)) string {
		return mut(func(r *Keyring) {
			r.Version = keyringVersion3
			r.Generations[0].Slots = []Slot{sampleSlot(2)}
			r.Generations[1].Slots = []Slot{sampleSlot(0), sampleSlot(1)}
			if f != nil {
				f(r)
			}
		})
	}
	ok := sampleKeyring()
	settled := sampleKeyring().Clone()
	settled.Rotation = nil
	settled.Generations[0].State = StateRetired
	var vs []keyringVector
	add := func(name, expect, s string) { vs = append(vs, keyringVector{name, expect, s}) }
	add("rotating", "ok", enc(ok))
	add("settled", "ok", enc(settled))
	add("version-2", "ok", mut(func(r *Keyring) { r.Version = 2 }))
	// Version 3 is written only for a keyring that uses a feature of it.
	add("version-4", "unknown version", mut(func(r *Keyring) { r.Version = 4 }))
	add("version-3-without-its-features", "corrupted", mut(func(r *Keyring) { r.Version = 3 }))
	add("slots", "ok", withSlots(nil))
	add("slots-in-version-2", "corrupted", mut(func(r *Keyring) {
		r.Version = 2
		r.Generations[1].Slots = []Slot{sampleSlot(1)}
	}))
	add("slots-in-version-1", "corrupted", mut(func(r *Keyring) { r.Generations[1].Slots = []Slot{sampleSlot(1)} }))
	add("slots-33", "corrupted", withSlots(func(r *Keyring) {
		r.Generations[1].Slots = nil
		for i := range MaxSlots + 1 {
			r.Generations[1].Slots = append(r.Generations[1].Slots, sampleSlot(i))
		}
	}))
	add("slots-32", "ok", withSlots(func(r *Keyring) {
		r.Generations[1].Slots = nil
		for i := range MaxSlots {
			r.Generations[1].Slots = append(r.Generations[1].Slots, sampleSlot(i))
		}
	}))
	add("slot-duplicate-id", "corrupted", withSlots(func(r *Keyring) { r.Generations[1].Slots[1].ID = r.Generations[1].Slots[0].ID }))
	add("slot-short-id", "corrupted", withSlots(func(r *Keyring) { r.Generations[1].Slots[0].ID = "51" }))
	add("slot-short-wrapped", "corrupted", withSlots(func(r *Keyring) { r.Generations[1].Slots[0].Wrapped = strings.Repeat("ab", slotWrappedSize-1) }))
	add("slot-long-wrapped", "corrupted", withSlots(func(r *Keyring) { r.Generations[1].Slots[0].Wrapped = strings.Repeat("ab", slotWrappedSize+1) }))
	add("slot-upper-hex-wrapped", "corrupted", withSlots(func(r *Keyring) { r.Generations[1].Slots[0].Wrapped = strings.Repeat("AB", slotWrappedSize) }))
	add("slot-unknown-kdf", "corrupted", withSlots(func(r *Keyring) { r.Generations[1].Slots[0].KDF.Type = "scrypt" }))
	add("slot-huge-argon2", "corrupted", withSlots(func(r *Keyring) { r.Generations[1].Slots[1].KDF.M = 1 << 30 }))
	add("slot-no-created", "corrupted", withSlots(func(r *Keyring) { r.Generations[1].Slots[0].Created = time.Time{} }))
	add("slot-unknown-field", "corrupted", strings.Replace(withSlots(nil), `"wrapped"`, `"secret": "x", "wrapped"`, 1))
	// Version 3 times are RFC 3339 UTC in whole seconds.
	add("v3-created-not-utc", "corrupted", withSlots(func(r *Keyring) {
		r.Generations[0].Created = r.Generations[0].Created.In(time.FixedZone("", 2*3600))
	}))
	add("v3-created-fraction", "corrupted", withSlots(func(r *Keyring) {
		r.Generations[0].Created = r.Generations[0].Created.Add(time.Second / 2)
	}))
	add("v3-started-not-utc", "corrupted", withSlots(func(r *Keyring) {
		r.Rotation.Started = r.Rotation.Started.In(time.FixedZone("", -3600))
	}))
	add("v3-slot-created-fraction", "corrupted", withSlots(func(r *Keyring) {
		r.Generations[1].Slots[0].Created = r.Generations[1].Slots[0].Created.Add(time.Millisecond)
	}))
	kms := func(f func(k *KDF)) func(r *Keyring) {
		return func(r *Keyring) {
			r.Version = keyringVersion3
			r.Generations[1].KDF = KDF{Type: KDFAWSKMS, Salt: strings.Repeat("cd", 16), Key: "alias/snapcrypt-backup", Ciphertext: base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xc7}, 184))}
			if f != nil {
				f(&r.Generations[1].KDF)
			}
		}
	}
	add("awskms", "ok", mut(kms(nil)))
	add("awskms-arn", "ok", mut(kms(func(k *KDF) { k.Key = "arn:aws:kms:eu-west-2:111122223333:key/bc436485-5092-42b8-92a3-0aa8b93536dc" })))
	add("awskms-in-version-2", "corrupted", mut(func(r *Keyring) { kms(nil)(r); r.Version = 2 }))
	add("awskms-ciphertext-not-base64", "corrupted", mut(kms(func(k *KDF) { k.Ciphertext = "not base64!" })))
	add("awskms-ciphertext-unpadded", "corrupted", mut(kms(func(k *KDF) {
		k.Ciphertext = strings.TrimRight(base64.StdEncoding.EncodeToString([]byte{1, 2, 3, 4}), "=")
	})))
	add("awskms-ciphertext-empty", "corrupted", mut(kms(func(k *KDF) { k.Ciphertext = "" })))
	add("awskms-ciphertext-too-long", "corrupted", mut(kms(func(k *KDF) { k.Ciphertext = base64.StdEncoding.EncodeToString(make([]byte, maxKMSCiphertext+1)) })))
	add("awskms-key-empty", "corrupted", mut(kms(func(k *KDF) { k.Key = "" })))
	add("awskms-key-with-space", "corrupted", mut(kms(func(k *KDF) { k.Key = "alias/my key" })))
	add("awskms-key-too-long", "corrupted", mut(kms(func(k *KDF) { k.Key = "alias/" + strings.Repeat("k", maxKMSKey) })))
	add("awskms-with-argon2-params", "corrupted", mut(kms(func(k *KDF) { k.T = 1 })))
	add("raw-with-kms-key", "corrupted", mut(func(r *Keyring) { r.Generations[1].KDF.Key = "alias/snapcrypt-backup" }))
	add("unknown-field", "corrupted", strings.Replace(enc(ok), `"epoch"`, `"colour": 1, "epoch"`, 1))
	add("trailing-data", "corrupted", enc(ok)+"{}")
	add("duplicate-generation", "corrupted", mut(func(r *Keyring) { r.Generations[2].ID = r.Generations[0].ID }))
	add("two-current", "corrupted", mut(func(r *Keyring) { r.Generations[0].State = StateCurrent }))
	add("no-current", "corrupted", mut(func(r *Keyring) {
		r.Generations[1].State = StateRetiring
		r.Rotation.From = append(r.Rotation.From, r.Generations[1].ID)
	}))
	add("bad-state", "corrupted", mut(func(r *Keyring) { r.Generations[2].State = "resting" }))
	add("current-mismatch", "corrupted", mut(func(r *Keyring) { r.Current = "1111111111111111" }))
	add("retiring-without-rotation", "corrupted", mut(func(r *Keyring) { r.Rotation = nil }))
	add("rotation-from-current", "corrupted", mut(func(r *Keyring) { r.Rotation.From = []string{r.Current} }))
	add("rotation-to-other", "corrupted", mut(func(r *Keyring) { r.Rotation.To = "1111111111111111" }))
	add("short-gen-id", "corrupted", mut(func(r *Keyring) { r.Generations[2].ID = "00" }))
	add("upper-hex-check", "corrupted", mut(func(r *Keyring) { r.Generations[2].Check = strings.Repeat("2E", 32) }))
	add("unknown-kdf", "corrupted", mut(func(r *Keyring) { r.Generations[2].KDF.Type = "scrypt" }))
	add("huge-argon2", "corrupted", mut(func(r *Keyring) { r.Generations[0].KDF.M = 1 << 30 }))
	add("raw-with-params", "corrupted", mut(func(r *Keyring) { r.Generations[1].KDF.T = 1 }))
	add("epoch-0", "corrupted", mut(func(r *Keyring) { r.Epoch = 0 }))
	add("no-generations", "corrupted", mut(func(r *Keyring) { r.Generations = nil }))
	add("bad-id-key", "corrupted", mut(func(r *Keyring) { r.IDKeyDEK = "" }))
	add("not-json", "corrupted", "keyring\n")
	return vs
}

func TestKeyringVectors(t *testing.T) {
	vectortest.Run(t, keyringVectorFile, makeKeyringVectors(), func(v keyringVector) {
		r, err := ParseKeyring([]byte(v.Keyring))
		got := "ok"
		switch {
		case err == nil:
		case errors.Is(err, object.ErrCorrupt):
			got = "corrupted"
		case strings.Contains(err.Error(), "format version"):
			got = "unknown version"
		default:
			got = "other: " + err.Error()
		}
		if got != v.Expect {
			t.Errorf("%s: got %q (%v), expect %q", v.Name, got, err, v.Expect)
			return
		}
		if err == nil {
			b, err := r.Marshal()
			if err != nil || string(b) != v.Keyring {
				t.Errorf("%s: marshal does not give back the stored bytes: %v", v.Name, err)
			}
		}
	})
}

func FuzzParseKeyring(f *testing.F) {
	for _, v := range vectortest.Load[keyringVector](f, keyringVectorFile) {
		f.Add([]byte(v.Keyring))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseKeyring(b)
		if err != nil {
			return
		}
		out, err := r.Marshal()
		if err != nil {
			t.Fatalf("parsed keyring does not marshal: %v", err)
		}
		r2, err := ParseKeyring(out)
		if err != nil {
			t.Fatalf("marshalled keyring does not parse: %v", err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatal("parse/marshal/parse changed the keyring")
		}
		out2, _ := r2.Marshal()
		if !bytes.Equal(out, out2) {
			t.Fatal("marshal is not stable")
		}
	})
}

// legacyEpoch is r as a legacy (version 1) epoch object.
func legacyEpoch(t testing.TB, r Keyring) *epochObj {
	t.Helper()
	r.Version = legacyKeyringVersion
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return &epochObj{ring: &r, raw: b, legacy: true, body: b}
}

func TestLoadKeyringHighestEpoch(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r := sampleKeyring()
	commitKeyring := func(ctx context.Context, st store.Store, r *Keyring) error {
		return commitEpoch(ctx, st, legacyEpoch(t, *r))
	}
	for e := uint64(1); e <= 12; e++ {
		r.Epoch = e
		if err := commitKeyring(ctx, st, &r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := LoadKeyring(ctx, st)
	if err != nil || got.Epoch != 12 {
		t.Fatalf("LoadKeyring: epoch %v, %v", got, err)
	}
	r.Epoch = 12
	if err := commitKeyring(ctx, st, &r); err != nil {
		t.Fatalf("repeating the same commit (a lost response): %v", err)
	}
	r.IDKeyDEK = strings.Repeat("78", 16)
	if err := commitKeyring(ctx, st, &r); !errors.Is(err, ErrConflict) {
		t.Fatalf("second commit of an epoch: %v", err)
	}
	r.IDKeyDEK = strings.Repeat("77", 16)
	// An epoch object holding another epoch is corrupt.
	r.Epoch = 13
	b, _ := r.Marshal()
	st.Create(ctx, keyringName(14), b)
	if _, err := LoadKeyring(ctx, st); !errors.Is(err, object.ErrCorrupt) {
		t.Fatalf("mismatched epoch: %v", err)
	}
	st.Create(ctx, "keyring/junk", []byte("x"))
	if _, err := LoadKeyring(ctx, st); !errors.Is(err, object.ErrCorrupt) {
		t.Fatalf("junk name: %v", err)
	}
}
