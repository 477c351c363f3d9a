package keys

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/snapcrypt/snapcrypt/internal/hexid"
)

// Key slots (docs/format.md, "Key slots"). A generation's KEK is derived
// from the key it was made with (its own KDF and check value: the
// "primary" way in) and can also be unlocked through up to MaxSlots slots,
// each the KEK sealed under a key derived from another operator key. A
// slot is derived exactly as a generation's KEK is (deriveKEK with the
// slot's KDF record), then
//
//	slot key = HKDF-SHA256(that, salt = none, info = "snapcrypt slot v1")
//	wrapped  = nonce (24) || XChaCha20-Poly1305(slot key, nonce, KEK, AD)
//	AD       = "snapcrypt slot v1" || repository id || generation id || slot id
//
// A KEK a slot gives is only used once it matches the generation's check
// value. Slots change only by a keyring commit (AddSlot, RemoveSlot; a
// switch may carry slots for the new generation: NewSlot): adding or
// removing one is authenticated like every other epoch.

// MaxSlots bounds the key slots of a generation.
const MaxSlots = 32

// slotWrappedSize is the size of a slot's wrapped KEK: nonce, sealed KEK
// and tag.
const slotWrappedSize = chacha20poly1305.NonceSizeX + KeySize + chacha20poly1305.Overhead

// PrimarySlot is the id SlotInfo gives a generation's own key: it cannot
// be removed (rotation replaces it).
const PrimarySlot = "primary"

// Slot is one more way to unlock a generation's KEK.
type Slot struct {
	ID      string    `json:"id"`      // 16 hex, random per slot
	KDF     KDF       `json:"kdf"`     // how the slot key is derived from the slot's operator key
	Wrapped string    `json:"wrapped"` // 144 hex: nonce || sealed KEK || tag
	Created time.Time `json:"created"` // RFC 3339 UTC, whole seconds
}

func slotAD(repoID [16]byte, gen, slot [8]byte) []byte {
	ad := make([]byte, 0, len(infoSlot)+16+8+8)
	ad = append(ad, infoSlot...)
	ad = append(ad, repoID[:]...)
	ad = append(ad, gen[:]...)
	return append(ad, slot[:]...)
}

// slotAEAD returns the AEAD of the slot key derived from secret (the
// slot's deriveKEK output).
func slotAEAD(secret [KeySize]byte) cipher.AEAD {
	sk := subkey(secret, infoSlot)
	defer clear(sk)
	aead, err := chacha20poly1305.NewX(sk)
	if err != nil {
		panic(err) // key size is fixed
	}
	return aead
}

// sealSlot seals KEK raw for a slot whose derived secret is secret.
func sealSlot(raw, secret [KeySize]byte, repoID [16]byte, gen, slot [8]byte, nonce []byte) []byte {
	out := make([]byte, 0, slotWrappedSize)
	out = append(out, nonce...)
	return slotAEAD(secret).Seal(out, nonce, raw[:], slotAD(repoID, gen, slot))
}

// open returns the KEK slot s holds if material m is the slot's key (its
// KDF applies to m and the sealed KEK authenticates under the key derived
// from m), with opened false otherwise. It does not check the KEK against
// the generation's check value: unlock does. With keep false a
// passphrase's Argon2id output is not cached in m.
func (s *Slot) open(ctx context.Context, m *Material, repoID [16]byte, gen [8]byte, keep bool) (kek [KeySize]byte, opened bool) {
	id, err := parseGenID(s.ID)
	if err != nil {
		return kek, false
	}
	w, err := hex.DecodeString(s.Wrapped)
	if err != nil || len(w) != slotWrappedSize {
		return kek, false
	}
	secret, ok := deriveKEKKeep(ctx, s.KDF, m, repoID, gen, keep)
	if !ok {
		return kek, false
	}
	defer clear(secret[:])
	nonce, sealed := w[:chacha20poly1305.NonceSizeX], w[chacha20poly1305.NonceSizeX:]
	out, err := slotAEAD(secret).Open(make([]byte, 0, KeySize), nonce, sealed, slotAD(repoID, gen, id))
	if err != nil {
		return kek, false
	}
	copy(kek[:], out)
	clear(out)
	return kek, true
}

// validate checks a slot's fields (the keyring decoder's bounds).
func (s *Slot) validate() error {
	if !hexid.Valid(s.ID, 16) {
		return fmt.Errorf("slot id %q is not 16 hex characters", s.ID)
	}
	if err := s.KDF.validate(); err != nil {
		return fmt.Errorf("slot %s: %v", s.ID, err)
	}
	if !hexid.Valid(s.Wrapped, 2*slotWrappedSize) {
		return fmt.Errorf("slot %s: wrapped key is not %d hex characters", s.ID, 2*slotWrappedSize)
	}
	if err := checkTime(s.Created); err != nil {
		return fmt.Errorf("slot %s: created: %v", s.ID, err)
	}
	return nil
}

// validateSlots checks a generation's slots: at most MaxSlots, each valid,
// no id twice.
func (g *Generation) validateSlots() error {
	if len(g.Slots) > MaxSlots {
		return fmt.Errorf("generation %s: %d key slots, at most %d", g.ID, len(g.Slots), MaxSlots)
	}
	for i := range g.Slots {
		s := &g.Slots[i]
		if err := s.validate(); err != nil {
			return fmt.Errorf("generation %s: %v", g.ID, err)
		}
		if g.Slot(s.ID) != s {
			return fmt.Errorf("generation %s: duplicate slot %s", g.ID, s.ID)
		}
	}
	return nil
}

// slotsMove says why generation n's slots cannot follow b's in one epoch,
// if they cannot: slots change only on a generation that is current
// before and after, by removing slots (the others keep their order and
// every field) and appending new ones.
func slotsMove(b, n *Generation) error {
	if slices.EqualFunc(b.Slots, n.Slots, slotsEqual) {
		return nil
	}
	if b.State != StateCurrent || n.State != StateCurrent {
		return fmt.Errorf("key slots of generation %s changed, which is not current", b.ID)
	}
	i := 0 // n's slots kept from b come first, in b's order
	for _, s := range b.Slots {
		if i < len(n.Slots) && slotsEqual(s, n.Slots[i]) {
			i++
		}
	}
	for _, s := range n.Slots[i:] {
		if b.Slot(s.ID) != nil {
			return fmt.Errorf("key slot %s of generation %s changed or moved", s.ID, b.ID)
		}
	}
	return nil
}

func slotsEqual(a, b Slot) bool {
	return a.ID == b.ID && a.KDF == b.KDF && a.Wrapped == b.Wrapped && a.Created.Equal(b.Created)
}

// Slot returns the slot of g with the given id, or nil.
func (g *Generation) Slot(id string) *Slot {
	for i := range g.Slots {
		if g.Slots[i].ID == id {
			return &g.Slots[i]
		}
	}
	return nil
}

// SlotInfo describes one way into a generation as it is safe to show: no
// secret, no salt.
type SlotInfo struct {
	ID      string    `json:"id"`   // PrimarySlot for the generation's own key, else the slot's id
	Kind    string    `json:"kind"` // KDF.Kind
	Created time.Time `json:"created"`
}

// Ways returns the ways into g: its own key (PrimarySlot) first, then its
// slots in order (SlotInfos).
func (g *Generation) Ways() []SlotInfo {
	return append([]SlotInfo{{ID: PrimarySlot, Kind: g.KDF.Kind(), Created: g.Created}}, g.SlotInfos()...)
}

// SlotInfos describes g's key slots, in order (an empty list if none).
func (g *Generation) SlotInfos() []SlotInfo {
	out := []SlotInfo{}
	for _, s := range g.Slots {
		out = append(out, SlotInfo{ID: s.ID, Kind: s.KDF.Kind(), Created: s.Created.UTC()})
	}
	return out
}

// Kind names the kind of key a KDF record is for: "raw key" or
// "passphrase" (else the record's type).
func (k KDF) Kind() string {
	switch k.Type {
	case KDFRaw:
		return "raw key"
	case KDFArgon2id:
		return "passphrase"
	case KDFAWSKMS:
		return "awskms"
	}
	return k.Type
}

// NewSlot appends to g, a generation NewGeneration made and no keyring
// holds yet, a slot for material m that unlocks x, g's KEK (a passphrase
// is stretched under p; zero p means DefaultArgon2). A switch commit may
// thus carry slots for its new generation.
func (k *Keychain) NewSlot(ctx context.Context, g *Generation, x *KEK, m *Material, p Argon2Params, created time.Time) error {
	if x.Generation() != g.ID {
		return fmt.Errorf("new key slot: the key is of generation %s, not %s", x.Generation(), g.ID)
	}
	s, err := makeSlot(ctx, g, x.k, m, k.rid, p, created)
	if err != nil {
		return err
	}
	g.Slots = append(slices.Clone(g.Slots), s)
	return nil
}

// makeSlot makes a slot of generation g for material m holding kk, g's
// KEK: fresh random id (distinct from g's slots) and KDF salt.
func makeSlot(ctx context.Context, g *Generation, kk *kek, m *Material, rid [16]byte, p Argon2Params, created time.Time) (Slot, error) {
	if m == nil {
		return Slot{}, fmt.Errorf("new key slot: %w: no key given", ErrBadKey)
	}
	if len(g.Slots) >= MaxSlots {
		return Slot{}, fmt.Errorf("new key slot: generation %s has %d slots, the most it may have", g.ID, MaxSlots)
	}
	if p == (Argon2Params{}) {
		p = argon2Params
	}
	var id [8]byte
	for {
		b, err := randomID(8)
		if err != nil {
			return Slot{}, err
		}
		copy(id[:], b)
		if g.Slot(hex.EncodeToString(id[:])) == nil {
			break
		}
	}
	kdf, err := newKDF(ctx, m, p, rid, kk.gen)
	if err != nil {
		return Slot{}, err
	}
	return sealNewSlot(ctx, kk, m, rid, id, kdf, created)
}

// sealNewSlot seals kk for material m into a slot with id and KDF kdf
// under a random nonce.
func sealNewSlot(ctx context.Context, kk *kek, m *Material, rid [16]byte, id [8]byte, kdf KDF, created time.Time) (Slot, error) {
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	if _, err := rand.Read(nonce); err != nil {
		return Slot{}, err
	}
	return sealSlotNonce(ctx, kk, m, rid, id, kdf, nonce, created)
}

// sealSlotNonce is sealNewSlot with the nonce given.
func sealSlotNonce(ctx context.Context, kk *kek, m *Material, rid [16]byte, id [8]byte, kdf KDF, nonce []byte, created time.Time) (Slot, error) {
	secret, ok := deriveKEK(ctx, kdf, m, rid, kk.gen)
	if !ok {
		return Slot{}, fmt.Errorf("new key slot: %w: %s cannot make a slot", ErrBadKey, m.Source())
	}
	defer clear(secret[:])
	return Slot{
		ID:      hex.EncodeToString(id[:]),
		KDF:     kdf,
		Wrapped: hex.EncodeToString(sealSlot(kk.raw, secret, rid, kk.gen, id, nonce)),
		Created: created.UTC().Truncate(time.Second),
	}, nil
}

// AddSlot commits a new key slot for material m to the current
// generation and returns it. It needs the current generation's key (an
// error wrapping ErrDEKUnavailable otherwise), and refuses a key that
// opens the current generation already (naming the way). The commit goes
// through Commit: authenticated, compare-and-swap safe; after a lost race
// the slot is sealed again for what is current then.
func (k *Keychain) AddSlot(ctx context.Context, m *Material) (Slot, error) {
	if m == nil {
		return Slot{}, fmt.Errorf("add key slot: %w: no key given", ErrBadKey)
	}
	if err := k.Refresh(ctx); err != nil {
		return Slot{}, fmt.Errorf("add key slot: %w", err)
	}
	var made Slot
	err := k.Commit(ctx, func(r *Keyring) (bool, error) {
		g := r.Generation(r.Current)
		k.mu.RLock()
		kk := k.keks[g.ID]
		k.mu.RUnlock()
		if kk == nil {
			return false, fmt.Errorf("%w: adding a key slot needs a key that opens the current generation %s", ErrDEKUnavailable, g.ID)
		}
		switch k, way, err := unlock(ctx, g, m, k.rid, true); {
		case err == nil:
			clear(k[:])
			return false, fmt.Errorf("%w: %s opens generation %s already (%s)", ErrBadKey, m.Source(), g.ID, wayName(way))
		case !errors.Is(err, errNoUnlock):
			return false, err
		}
		if len(g.Slots) >= MaxSlots {
			return false, fmt.Errorf("generation %s has %d key slots, the most it may have", g.ID, MaxSlots)
		}
		// The KDF and its Argon2id run are made once; a retry after a lost
		// race only seals again.
		if made.ID == "" {
			s, err := makeSlot(ctx, g, kk, m, k.rid, argon2Params, time.Now())
			if err != nil {
				return false, err
			}
			made = s
		} else {
			s, err := resealSlot(ctx, made, g, kk, m, k.rid)
			if err != nil {
				return false, err
			}
			made = s
		}
		g.Slots = append(g.Slots, made)
		return true, nil
	})
	if err != nil {
		return Slot{}, fmt.Errorf("add key slot: %w", err)
	}
	return made, nil
}

// resealSlot seals kk (the KEK of g) into slot s again, keeping its KDF:
// for a retry of AddSlot on another keyring epoch. The id is fresh if g
// has one like it.
func resealSlot(ctx context.Context, s Slot, g *Generation, kk *kek, m *Material, rid [16]byte) (Slot, error) {
	for g.Slot(s.ID) != nil {
		b, err := randomID(8)
		if err != nil {
			return Slot{}, err
		}
		s.ID = hex.EncodeToString(b)
	}
	id, _ := parseGenID(s.ID)
	return sealNewSlot(ctx, kk, m, rid, id, s.KDF, s.Created)
}

// RemoveSlot commits the removal of key slot id from the current
// generation. The generation's own key (PrimarySlot) is not a slot and
// cannot be removed: the generation would have no way in but its slots,
// and no key to check them against that anyone was given at its making;
// a rotation replaces it. Removal is not revocation: whoever held the
// slot's key may have kept the generation's KEK; only a rotation (a new
// generation) shuts them out.
func (k *Keychain) RemoveSlot(ctx context.Context, id string) error {
	if id == PrimarySlot {
		return fmt.Errorf("remove key slot: the generation's own key is its last sure way in and cannot be removed; rotate to replace it")
	}
	if err := k.Refresh(ctx); err != nil {
		return fmt.Errorf("remove key slot: %w", err)
	}
	err := k.Commit(ctx, func(r *Keyring) (bool, error) {
		g := r.Generation(r.Current)
		if g.Slot(id) == nil {
			for _, o := range r.Generations {
				if o.Slot(id) != nil {
					return false, fmt.Errorf("key slot %s is of generation %s, which is %s: only the current generation's slots change (a finished rotation retires the rest)", id, o.ID, o.State)
				}
			}
			return false, fmt.Errorf("generation %s has no key slot %s", g.ID, id)
		}
		g.Slots = slices.DeleteFunc(g.Slots, func(s Slot) bool { return s.ID == id })
		if len(g.Slots) == 0 {
			g.Slots = nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("remove key slot: %w", err)
	}
	return nil
}

// wayName names a way into a generation as unlock returns it.
func wayName(way string) string {
	if way == PrimarySlot {
		return "its own key"
	}
	return "slot " + way
}

// cloneGenerations copies gs and each generation's slots, so that a
// mutation of a slot list does not reach a keyring that shares them.
func cloneGenerations(gs []Generation) []Generation {
	out := slices.Clone(gs)
	for i := range out {
		out[i].Slots = slices.Clone(out[i].Slots)
	}
	return out
}
