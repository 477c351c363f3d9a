package keys

import (
	"context"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/hkdf"

	"github.com/snapcrypt/snapcrypt/repo/object"
)

// KDF types of a generation.
const (
	KDFRaw      = "raw"
	KDFArgon2id = "argon2id"
	KDFAWSKMS   = "awskms" // a keyring of version 3 (awskms.go)
)

// saltSize is the size of a generation's KDF salt.
const saltSize = 16

// HKDF info strings. Changing one changes the format.
const (
	infoKEK   = "snapcrypt kek v1"
	infoCheck = "snapcrypt check v1"
	infoWrap  = "snapcrypt wrap v1"
	infoSlot  = "snapcrypt slot v1" // a key slot's key, and its sealed KEK's AD (slot.go)
	// infoKeyring (epoch.go): the keyring key that MACs keyring epochs.
)

// Argon2Params are Argon2id cost parameters: T passes over M KiB of memory
// with P lanes.
type Argon2Params struct {
	T uint32
	M uint32
	P uint8
}

// DefaultArgon2 is the second recommended option of RFC 9106 (section 4):
// t=3, m=64 MiB, p=4.
var DefaultArgon2 = Argon2Params{T: 3, M: 64 << 10, P: 4}

// argon2Params is what new passphrase generations use. Tests lower it (see
// export_test.go); nothing else changes it.
var argon2Params = DefaultArgon2

// Bounds a keyring's Argon2id parameters must keep, so that a tampered
// keyring cannot make Open exhaust memory or time.
const (
	maxArgon2T = 64
	maxArgon2M = 4 << 20 // KiB: 4 GiB
	maxArgon2P = 64
)

// KDF says how a generation's KEK is derived from an operator's key: from a
// raw key directly, from a passphrase with Argon2id, or from 32 random
// bytes that an AWS KMS key encrypted (awskms.go). Salt is hex.
type KDF struct {
	Type string `json:"type"`
	Salt string `json:"salt"`
	// Key is the KMS key (id, ARN or alias, as the operator gave it) and
	// Ciphertext the KMS ciphertext (base64, standard alphabet) of an
	// awskms KDF; both are empty for the other types.
	Key        string `json:"key,omitempty"`
	Ciphertext string `json:"ciphertext,omitempty"`
	T          uint32 `json:"t,omitempty"`
	M          uint32 `json:"m,omitempty"`
	P          uint8  `json:"p,omitempty"`
}

func (k KDF) validate() error {
	salt, err := hex.DecodeString(k.Salt)
	if err != nil || len(salt) != saltSize || hex.EncodeToString(salt) != k.Salt {
		return fmt.Errorf("kdf salt is not %d lower-case hex characters", 2*saltSize)
	}
	if k.Type != KDFAWSKMS && (k.Key != "" || k.Ciphertext != "") {
		return fmt.Errorf("%s kdf with a kms key or ciphertext", k.Type)
	}
	switch k.Type {
	case KDFRaw:
		if k.T != 0 || k.M != 0 || k.P != 0 {
			return fmt.Errorf("raw kdf with argon2 parameters")
		}
	case KDFAWSKMS:
		if k.T != 0 || k.M != 0 || k.P != 0 {
			return fmt.Errorf("awskms kdf with argon2 parameters")
		}
		return validateKMSRecord(k.Key, k.Ciphertext)
	case KDFArgon2id:
		if k.T < 1 || k.T > maxArgon2T || k.P < 1 || k.P > maxArgon2P || k.M < 8*uint32(k.P) || k.M > maxArgon2M {
			return fmt.Errorf("argon2id parameters t=%d m=%d p=%d out of range", k.T, k.M, k.P)
		}
	default:
		return fmt.Errorf("unknown kdf type %q", k.Type)
	}
	return nil
}

// newKDF returns a fresh KDF (random salt) for the material's kind, for
// generation gen of repository rid: a passphrase is stretched under p; for
// a KMS key, 32 random bytes are encrypted by KMS (newKMSRecord).
func newKDF(ctx context.Context, m *Material, p Argon2Params, rid [16]byte, gen [8]byte) (KDF, error) {
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return KDF{}, err
	}
	switch {
	case m.kms != nil:
		ct, err := m.kms.newRecord(ctx, rid, gen)
		if err != nil {
			return KDF{}, err
		}
		return KDF{Type: KDFAWSKMS, Salt: hex.EncodeToString(salt), Key: m.kms.key, Ciphertext: ct}, nil
	case m.IsPassphrase():
		return KDF{Type: KDFArgon2id, Salt: hex.EncodeToString(salt), T: p.T, M: p.M, P: p.P}, nil
	}
	return KDF{Type: KDFRaw, Salt: hex.EncodeToString(salt)}, nil
}

// applies reports whether the KDF can take this material: a raw key, a
// passphrase, or the very KMS key (as given) that the record names.
func (k KDF) applies(m *Material) bool {
	switch k.Type {
	case KDFRaw:
		return m.raw != nil
	case KDFArgon2id:
		return m.pass != nil
	case KDFAWSKMS:
		return m.kms != nil && m.kms.key == k.Key
	}
	return false
}

// deriveKEK returns the KEK for material m under k, for generation gen of
// repository rid: HKDF-SHA256 with the generation's salt and info
// "snapcrypt kek v1" of the raw key, of the 32-byte Argon2id output of the
// passphrase, or of the 32 bytes KMS decrypts from the record's ciphertext
// (with rid and gen as encryption context). Argon2id and KMS outputs are
// cached in m (per salt and parameters, per ciphertext), so a generation
// costs one Argon2id run or one KMS Decrypt per Material. ok is false when
// k does not apply to m, or KMS failed: m then keeps the failure
// (Material.KMSFailure) and does not ask KMS again for it before
// kmsRetryAfter.
func deriveKEK(ctx context.Context, k KDF, m *Material, rid [16]byte, gen [8]byte) (kek [KeySize]byte, ok bool) {
	return deriveKEKKeep(ctx, k, m, rid, gen, true)
}

// deriveKEKKeep is deriveKEK; with keep false a passphrase's Argon2id
// output or a KMS plaintext is not cached in m (a retired generation's:
// nothing of it stays).
func deriveKEKKeep(ctx context.Context, k KDF, m *Material, rid [16]byte, gen [8]byte, keep bool) (kek [KeySize]byte, ok bool) {
	if !k.applies(m) {
		return kek, false
	}
	salt, _ := hex.DecodeString(k.Salt)
	var ikm []byte
	switch {
	case m.kms != nil:
		p, ok := m.kms.plaintext(ctx, k.Ciphertext, rid, gen, keep)
		if !ok {
			return kek, false
		}
		ikm = p[:]
		defer clear(ikm)
	case m.IsPassphrase():
		s := m.stretch(k, salt, keep)
		ikm = s[:]
		defer clear(ikm)
	default:
		ikm = m.raw
	}
	r := hkdf.New(sha256.New, ikm, salt, []byte(infoKEK))
	io.ReadFull(r, kek[:])
	return kek, true
}

func (m *Material) stretch(k KDF, salt []byte, keep bool) [KeySize]byte {
	var ck [saltSize + 9]byte
	copy(ck[:], salt)
	binary.BigEndian.PutUint32(ck[saltSize:], k.T)
	binary.BigEndian.PutUint32(ck[saltSize+4:], k.M)
	ck[saltSize+8] = k.P
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.stretched[string(ck[:])]; ok {
		return s
	}
	var s [KeySize]byte
	out := argon2.IDKey(m.pass, salt, k.T, k.M, k.P, KeySize)
	copy(s[:], out)
	clear(out)
	if !keep {
		return s
	}
	if m.stretched == nil {
		m.stretched = map[string][KeySize]byte{}
	}
	m.stretched[string(ck[:])] = s
	return s
}

// forgetStretched clears the Argon2id outputs cached in m.
func (m *Material) forgetStretched() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for ck := range m.stretched {
		m.stretched[ck] = [KeySize]byte{}
		delete(m.stretched, ck)
	}
}

func subkey(kek [KeySize]byte, info string) []byte {
	out := make([]byte, KeySize)
	io.ReadFull(hkdf.New(sha256.New, kek[:], nil, []byte(info)), out)
	return out
}

// checkValue is HMAC-SHA256 keyed with HKDF(KEK, info "snapcrypt check v1")
// of repository id (16 bytes) || generation id (8 bytes). It tells whether a
// supplied key is this generation's and, being a PRF output under a key
// derived from the KEK, reveals nothing usable about it.
func checkValue(kek [KeySize]byte, repoID [16]byte, gen [8]byte) []byte {
	ck := subkey(kek, infoCheck)
	defer clear(ck)
	mac := hmac.New(sha256.New, ck)
	mac.Write(repoID[:])
	mac.Write(gen[:])
	return mac.Sum(nil)
}

// kek is a derived KEK ready to wrap and unwrap DEKs.
type kek struct {
	gen     [8]byte
	raw     [KeySize]byte // the KEK itself: a new key slot seals it (slot.go)
	aead    cipher.AEAD   // XChaCha20-Poly1305 under HKDF(KEK, info "snapcrypt wrap v1")
	check   []byte
	ringKey []byte // HKDF(KEK, info "snapcrypt keyring v2"): MACs keyring epochs
	// mat is the operator's key that gave this KEK (nil if none did, as
	// for a generation NewGeneration made): the Keychain forgets it when
	// the generation is retired (installLocked).
	mat *Material
}

func newKEK(k [KeySize]byte, repoID [16]byte, gen [8]byte) *kek {
	wk := subkey(k, infoWrap)
	defer clear(wk)
	aead, err := chacha20poly1305.NewX(wk)
	if err != nil {
		panic(err) // key size is fixed
	}
	return &kek{gen: gen, raw: k, aead: aead, check: checkValue(k, repoID, gen), ringKey: keyringKey(k)}
}

// matchKEK returns the KEK of generation g if material m opens it (its
// own KDF, or one of its key slots: see unlock), else nil.
func matchKEK(ctx context.Context, g *Generation, m *Material, repoID [16]byte) *kek {
	k, _, err := unlock(ctx, g, m, repoID, true)
	if err != nil {
		return nil
	}
	defer clear(k[:])
	gen, _ := parseGenID(g.ID)
	kk := newKEK(k, repoID, gen)
	kk.mat = m
	return kk
}

// errNoUnlock is unlock's error when a key opens neither a generation nor
// any of its slots.
var errNoUnlock = errors.New("the key opens neither the generation nor any of its slots")

// unlock returns generation g's KEK if material m is its key: the KEK
// derived with g's own KDF matches g's check value, or m opens one of g's
// key slots and the KEK the slot holds matches the check value. A slot
// that opens (so it was sealed under m) to a KEK that fails the check is
// an error wrapping object.ErrCorrupt naming the slot; no match at all is
// errNoUnlock. way is PrimarySlot or the id of the slot that matched.
// With keep false nothing of m's derivations is cached in m (a
// passphrase's Argon2id output, a KMS plaintext). The caller clears the
// KEK.
func unlock(ctx context.Context, g *Generation, m *Material, repoID [16]byte, keep bool) (kek [KeySize]byte, way string, err error) {
	gen, err := parseGenID(g.ID)
	if err != nil {
		return kek, "", err
	}
	want, err := hex.DecodeString(g.Check)
	if err != nil {
		return kek, "", fmt.Errorf("generation %s: check value: %w", g.ID, object.ErrCorrupt)
	}
	if k, ok := deriveKEKKeep(ctx, g.KDF, m, repoID, gen, keep); ok {
		if hmac.Equal(checkValue(k, repoID, gen), want) {
			return k, PrimarySlot, nil
		}
		clear(k[:])
		m.noteMismatch(g)
	}
	for i := range g.Slots {
		s := &g.Slots[i]
		k, opened := s.open(ctx, m, repoID, gen, keep)
		if !opened {
			continue
		}
		if hmac.Equal(checkValue(k, repoID, gen), want) {
			return k, s.ID, nil
		}
		clear(k[:])
		return kek, "", fmt.Errorf("key slot %s of generation %s is %w: it opens with %s to a key that is not the generation's", s.ID, g.ID, object.ErrCorrupt, m.Source())
	}
	return kek, "", errNoUnlock
}

// matchesCheck reports whether material m is generation g's key, deriving
// its KEK only to compare check values and keeping nothing.
func matchesCheck(ctx context.Context, g *Generation, m *Material, repoID [16]byte) bool {
	return checkOnly(ctx, g, m, repoID, nil)
}

// macKeyOnly returns generation g's keyring key (for checking epoch MACs)
// if material m is g's key, else nil. It derives the KEK, compares check
// values, derives the keyring key and keeps nothing else: no KEK, no
// wrapping key, no cached passphrase stretch. The caller drops the key
// (clear) when the check is done. For a generation that is retired: its
// MACs must still verify (docs/format.md, rule 3), its key is never held.
func macKeyOnly(ctx context.Context, g *Generation, m *Material, repoID [16]byte) []byte {
	var ring []byte
	if !checkOnly(ctx, g, m, repoID, &ring) {
		return nil
	}
	return ring
}

// checkOnly compares m's check value for g without caching anything; with
// ring non-nil and a match, *ring is g's keyring key.
func checkOnly(ctx context.Context, g *Generation, m *Material, repoID [16]byte, ring *[]byte) bool {
	k, _, err := unlock(ctx, g, m, repoID, false)
	if err != nil {
		return false
	}
	defer clear(k[:])
	if ring != nil {
		*ring = keyringKey(k)
	}
	return true
}
