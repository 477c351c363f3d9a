package keys

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/store"
)

// The per-generation operations a key rotation (package rotation) is built
// from. A Keychain holds the KEKs; these hand a caller one generation's KEK
// to wrap, unwrap and verify DEKs with, find the copies of a DEK under a
// generation, make a new generation and adopt its KEK once a keyring names
// it. Keyring commits go through Commit (commit.go).

// KEK is the key encryption key of one generation as a Keychain holds it,
// bound to the repository: a DEK wrapped with it names repository,
// generation and DEK id in its additional data. It is safe for concurrent
// use. It prints as "[key material]" with every verb.
type KEK struct {
	k   *kek
	rid [16]byte
}

// Generation returns the id of the KEK's generation (16 hex).
func (x *KEK) Generation() string { return hex.EncodeToString(x.k.gen[:]) }

// Wrap seals dek (KeySize bytes) for DEK id under a random nonce and
// returns the wrapped DEK (WrappedSize bytes).
func (x *KEK) Wrap(id [16]byte, dek []byte) ([]byte, error) { return x.k.wrap(x.rid, id, dek) }

// Unwrap opens a wrapped DEK of id. Every failure (format, wrong key,
// wrong repository, generation or id, tampering) wraps object.ErrCorrupt. The
// returned DEK is the caller's to clear.
func (x *KEK) Unwrap(id [16]byte, wrapped []byte) ([]byte, error) {
	return x.k.unwrap(x.rid, id, wrapped)
}

// Verify checks that wrapped opens under x to dek. Errors wrap object.ErrCorrupt;
// one that opens to another key says "holds a different key".
func (x *KEK) Verify(id [16]byte, wrapped, dek []byte) error {
	return x.k.verifyWrapped(x.rid, id, wrapped, dek)
}

func (x *KEK) String() string                { return "[key material]" }
func (x *KEK) GoString() string              { return "[key material]" }
func (x *KEK) Format(f fmt.State, verb rune) { io.WriteString(f, "[key material]") }

// KEK returns the KEK of generation gen if this Keychain holds its key,
// else an error wrapping ErrDEKUnavailable naming the generation.
func (k *Keychain) KEK(gen string) (*KEK, error) {
	k.mu.RLock()
	kk := k.keks[gen]
	k.mu.RUnlock()
	if kk == nil {
		return nil, fmt.Errorf("%w: this process does not hold the key of generation %s", ErrDEKUnavailable, gen)
	}
	return &KEK{k: kk, rid: k.rid}, nil
}

// Store returns the store the Keychain reads and writes.
func (k *Keychain) Store() store.Store { return k.st }

// Matches reports whether m is a key of generation g: its own key (its
// check value matches) or the key of one of its slots. For a passphrase
// this runs Argon2id; for a KMS key it asks KMS to decrypt g's record once
// per Material (a failure counts as no match: m.KMSFailure says why).
func (k *Keychain) Matches(g *Generation, m *Material) bool {
	return g != nil && m != nil && matchKEK(context.Background(), g, m, k.rid) != nil
}

// NewGeneration makes a generation for m that r does not have yet: fresh
// random id and KDF salt (a passphrase is stretched with Argon2id under p;
// zero p means DefaultArgon2; for a KMS key, KMS encrypts the generation's
// random input, an error wrapping ErrBadKey if it fails), state current,
// created at created. It
// returns the generation to put in a keyring and its KEK. Nothing is
// written and nothing is held for reading or wrapping: the caller commits a
// keyring naming the generation (Commit MACs that switch with this KEK
// too, the last one NewGeneration made), then Adopts the KEK.
func (k *Keychain) NewGeneration(r *Keyring, m *Material, p Argon2Params, created time.Time) (Generation, *KEK, error) {
	if m == nil {
		return Generation{}, nil, fmt.Errorf("new key generation: %w: no key given", ErrBadKey)
	}
	if p == (Argon2Params{}) {
		p = argon2Params
	}
	g, kk, err := newGeneration(context.Background(), r, m, k.rid, created, p)
	if err != nil {
		return Generation{}, nil, err
	}
	k.mu.Lock()
	k.made = kk
	k.mu.Unlock()
	return g, &KEK{k: kk, rid: k.rid}, nil
}

// Adopt makes the Keychain hold x (made by NewGeneration) and remember m,
// its key, as if m had been given to Open: from then on new DEKs are
// wrapped under x's generation when the keyring names it current. x is
// held only while the keyring the Keychain has loaded lists its generation
// as current or retiring; Adopt reports whether it is.
func (k *Keychain) Adopt(x *KEK, m *Material) bool {
	gen := x.Generation()
	k.mu.Lock()
	defer k.mu.Unlock()
	if m != nil {
		k.mats = append(k.mats, m)
		x.k.mat = m
	}
	k.made = nil
	g := k.ring.Generation(gen)
	if g == nil || g.State == StateRetired {
		return false
	}
	keks := make(map[string]*kek, len(k.keks)+1) // copy on write: readers may hold the old map
	for id, kk := range k.keks {
		keks[id] = kk
	}
	keks[gen] = x.k
	k.keks = keks
	return true
}

// Copies returns every wrapped copy of DEK id under generation gen: the
// single object deks/<gen>/<id> (looked for only with single, for a caller
// that knows from a listing whether it exists), then the entries of the
// generation's DEK packs as this Keychain has indexed them (RelistPacks
// brings the index up to date). Copies are not authenticated: open them
// with the generation's KEK. A pack that does not parse is skipped.
func (k *Keychain) Copies(ctx context.Context, gen string, id [16]byte, single bool) ([]Copy, error) {
	g, err := parseGenID(gen)
	if err != nil {
		return nil, err
	}
	cs, _, err := k.copiesIn(ctx, g, id, false, single)
	return cs, err
}

// RelistPacks lists generation gen's DEK packs again and indexes the ones
// this Keychain has not seen (packs other processes wrote meanwhile).
func (k *Keychain) RelistPacks(ctx context.Context, gen string) error {
	return k.packIndex(gen).load(ctx, k.st, gen, true)
}

// IndexPack records a DEK pack of generation gen that the caller wrote,
// read back and verified (its entries as ParsePack returned them), so that
// lookups find its DEKs without listing the packs again.
func (k *Keychain) IndexPack(gen, name string, es []PackEntry) {
	k.packIndex(gen).add(name, slices.Clone(es))
}
