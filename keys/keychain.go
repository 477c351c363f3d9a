package keys

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/snapcrypt/snapcrypt/internal/hexid"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// dekCacheSize bounds the number of unwrapped DEKs a Keychain keeps.
const dekCacheSize = 1 << 16

// Keychain is the single API the rest of snapcrypt uses for keys: it hands
// out new DEKs (wrapped and durable before they are returned) and unwraps
// DEKs with fallback across the generations it holds keys for. Package
// rotation rotates keys through its per-generation operations
// (generation.go). It is safe for concurrent use.
type Keychain struct {
	st     store.Store
	repoID string
	rid    [16]byte

	mu   sync.RWMutex
	ring *Keyring        // the newest good epoch (history.go)
	hist history         // how the keyring's epochs were verified
	keks map[string]*kek // by generation id: the live generations we hold a key for
	mats []*Material
	// made is the KEK of the generation NewGeneration made last, for
	// Commit to MAC the switch that adds it before Adopt holds it.
	made *kek

	cacheMu sync.Mutex
	cache   map[[16]byte][]byte

	packsMu sync.Mutex
	packs   map[string]*packIndex // by generation id (dekpack.go)
}

func newKeychain(st store.Store, repoID string, rid [16]byte) *Keychain {
	return &Keychain{
		st: st, repoID: repoID, rid: rid,
		keks:  map[string]*kek{},
		cache: map[[16]byte][]byte{},
		packs: map[string]*packIndex{},
	}
}

func parseRepoID(s string) ([16]byte, error) {
	var id [16]byte
	if !hexid.Valid(s, 32) {
		return id, fmt.Errorf("repository id %q is not 32 lower-case hex characters", s)
	}
	hex.Decode(id[:], []byte(s))
	return id, nil
}

func randomID(n int) ([]byte, error) {
	b := make([]byte, n)
	_, err := rand.Read(b)
	return b, err
}

// newGeneration makes a generation for m with a fresh random id (distinct
// from the keyring's) and KDF salt (a passphrase stretched under p), and
// derives its KEK.
func newGeneration(ctx context.Context, r *Keyring, m *Material, rid [16]byte, now time.Time, p Argon2Params) (Generation, *kek, error) {
	var gen [8]byte
	for {
		b, err := randomID(8)
		if err != nil {
			return Generation{}, nil, err
		}
		copy(gen[:], b)
		if r == nil || r.Generation(hex.EncodeToString(gen[:])) == nil {
			break
		}
	}
	kdf, err := newKDF(ctx, m, p, rid, gen)
	if err != nil {
		return Generation{}, nil, err
	}
	raw, _ := deriveKEK(ctx, kdf, m, rid, gen)
	kk := newKEK(raw, rid, gen)
	clear(raw[:])
	g := Generation{
		ID:      hex.EncodeToString(gen[:]),
		KDF:     kdf,
		Check:   hex.EncodeToString(kk.check),
		State:   StateCurrent,
		Created: now.UTC().Truncate(time.Second),
	}
	return g, kk, nil
}

// Init creates the keys of a new repository: a keyring of epoch 1 with one
// generation (current) derived from m, and the content-id key, a DEK wrapped
// under it. The store must hold no keyring yet.
func Init(ctx context.Context, st store.Store, repoID string, m *Material) (*Keychain, error) {
	rid, err := parseRepoID(repoID)
	if err != nil {
		return nil, fmt.Errorf("init keys: %w", err)
	}
	if m == nil {
		return nil, fmt.Errorf("init keys: %w: no key given", ErrBadKey)
	}
	if _, err := LoadKeyring(ctx, st); err == nil {
		return nil, fmt.Errorf("init keys: %s already has a keyring", st.Location())
	} else if !errors.Is(err, store.ErrNotExist) {
		return nil, fmt.Errorf("init keys: %w", err)
	}
	k := newKeychain(st, repoID, rid)
	g, kk, err := newGeneration(ctx, nil, m, rid, time.Now(), argon2Params)
	if err != nil {
		return nil, fmt.Errorf("init keys: %w", err)
	}
	var id [16]byte
	b, err := randomID(16)
	if err != nil {
		return nil, err
	}
	copy(id[:], b)
	dek, err := randomID(KeySize)
	if err != nil {
		return nil, err
	}
	w, err := kk.wrap(rid, id, dek)
	if err != nil {
		return nil, err
	}
	// The DEK first, so that no keyring ever names a missing one.
	if err := st.Create(ctx, dekName(kk.gen, id), w); err != nil {
		return nil, fmt.Errorf("init keys: writing the content-id key: %w", err)
	}
	ring := &Keyring{
		RepoID:      repoID,
		Epoch:       1,
		Current:     g.ID,
		Generations: []Generation{g},
		IDKeyDEK:    hex.EncodeToString(id[:]),
	}
	ring.Version = ring.formatVersion()
	e, err := signEpoch(ring, rid, nil, []*kek{kk})
	if err != nil {
		return nil, fmt.Errorf("init keys: %w", err)
	}
	if err := commitEpoch(ctx, st, e); err != nil {
		return nil, fmt.Errorf("init keys: %w", err)
	}
	k.ring = ring
	k.hist.hashes = [][32]byte{e.hash}
	k.hist.authed = 1
	kk.mat = m
	k.keks[g.ID] = kk
	k.mats = []*Material{m}
	k.cachePut(id, dek)
	k.mu.Lock()
	k.checkRecordLocked()
	k.mu.Unlock()
	return k, nil
}

// Open loads the repository's keyring, verifying its history (history.go),
// and matches the given keys to its generations. At least one key must
// match a current or retiring generation, else the error wraps
// ErrNoKeyMatches. A bad epoch or a rewritten history does not fail Open:
// reading goes on from the newest good epoch, Problems lists what is
// wrong, and nothing writes. Open fails (object.ErrCorrupt) when no epoch is good.
func Open(ctx context.Context, st store.Store, repoID string, ms ...*Material) (*Keychain, error) {
	rid, err := parseRepoID(repoID)
	if err != nil {
		return nil, fmt.Errorf("open keys: %w", err)
	}
	k := newKeychain(st, repoID, rid)
	for _, m := range ms {
		if m != nil {
			k.mats = append(k.mats, m)
		}
	}
	if err := k.loadHistory(ctx); err != nil {
		return nil, fmt.Errorf("open keys: %w", err)
	}
	if len(k.keks) == 0 {
		if err := kmsFailures(k.mats); err != nil {
			return nil, fmt.Errorf("open keys: %w: %w", ErrNoKeyMatches, err)
		}
		hint := noMatchHint(ctx, k.ring, k.mats, rid)
		switch {
		case k.hist.rewritten != nil:
			hint += "; " + k.hist.rewritten.Error()
		case hint == "" && k.hist.recorded == 0 && k.hist.recErr == nil:
			hint = "; the keyring may have been rolled back (this host has no record of it)"
		}
		return nil, fmt.Errorf("open keys: %w%s", ErrNoKeyMatches, hint)
	}
	return k, nil
}

// matchAll returns held plus the KEKs of every live generation of r that
// one of ms matches and held lacks. Generations no longer live are dropped.
func matchAll(ctx context.Context, r *Keyring, ms []*Material, rid [16]byte, held map[string]*kek) map[string]*kek {
	out := map[string]*kek{}
	for i := range r.Generations {
		g := &r.Generations[i]
		if g.State == StateRetired {
			continue
		}
		if kk := held[g.ID]; kk != nil {
			out[g.ID] = kk
			continue
		}
		for _, m := range ms {
			if kk := matchKEK(ctx, g, m, rid); kk != nil {
				out[g.ID] = kk
				break
			}
		}
	}
	return out
}

// noMatchHint explains a failed match: a key is of a retired generation
// (or of a slot of one), or opens a slot of a live generation that holds
// another key than the generation's. It compares check values only: no
// KEK of a retired generation is kept.
func noMatchHint(ctx context.Context, r *Keyring, ms []*Material, rid [16]byte) string {
	for i := range r.Generations {
		g := &r.Generations[i]
		for _, m := range ms {
			if g.State != StateRetired {
				if _, _, err := unlock(ctx, g, m, rid, true); errors.Is(err, object.ErrCorrupt) {
					return fmt.Sprintf(" (%v)", err)
				}
				continue
			}
			if matchesCheck(ctx, g, m, rid) {
				return fmt.Sprintf(" (%s is the key of generation %s, which was retired by a rotation; the current generation is %s)", m.Source(), g.ID, r.Current)
			}
		}
	}
	return ""
}

// installCommitted takes e, an epoch this process just committed on top of
// its newest good epoch.
func (k *Keychain) installCommitted(ctx context.Context, e *epochObj) {
	k.mu.RLock()
	held := k.keks
	mats := slices.Clone(k.mats)
	k.mu.RUnlock()
	keks := matchAll(ctx, e.ring, mats, k.rid, held) // may run Argon2id or ask KMS: no lock held
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.hist.head()+1 != e.ring.Epoch {
		return // a Refresh took it (and maybe more) meanwhile
	}
	k.hist.hashes = append(k.hist.hashes, e.hash)
	k.hist.authed = e.ring.Epoch
	k.installLocked(e.ring, keks, false)
	k.checkRecordLocked()
}

// Keyring returns a copy of the keyring as last loaded.
func (k *Keychain) Keyring() Keyring {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.ring.Clone()
}

// RepoID returns the repository id.
func (k *Keychain) RepoID() string { return k.repoID }

// Holds reports whether this Keychain holds the key of generation gen.
func (k *Keychain) Holds(gen string) bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.keks[gen] != nil
}

// AddKey hands the Keychain another key without rotating (.ctl/keys). It
// fails with ErrNoKeyMatches if m matches no current or retiring generation,
// and succeeds if m's generation is held already.
func (k *Keychain) AddKey(ctx context.Context, m *Material) error {
	if m == nil {
		return fmt.Errorf("add key: %w: no key given", ErrBadKey)
	}
	if err := k.Refresh(ctx); err != nil {
		return fmt.Errorf("add key: %w", err)
	}
	k.mu.RLock()
	r := k.ring
	k.mu.RUnlock()
	found := matchAll(ctx, r, []*Material{m}, k.rid, nil)
	if len(found) == 0 {
		if err := m.KMSFailure(); err != nil {
			return fmt.Errorf("add key %s: %w: %w", m.Source(), ErrNoKeyMatches, err)
		}
		return fmt.Errorf("add key %s: %w%s", m.Source(), ErrNoKeyMatches, noMatchHint(ctx, r, []*Material{m}, k.rid))
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, kk := range found {
		if k.keks[id] == nil && k.ring.Generation(id) != nil && k.ring.Generation(id).State != StateRetired {
			// copy on write: readers may hold the old map
			keks := make(map[string]*kek, len(k.keks)+1)
			for i, x := range k.keks {
				keks[i] = x
			}
			keks[id] = kk
			k.keks = keks
		}
	}
	k.mats = append(k.mats, m)
	return nil
}

// NewDEK returns a new random DEK and its id. Before it returns, the DEK is
// wrapped under the current generation and written create-only; then the
// keyring is re-read, and if the current generation changed meanwhile (a
// rotation switched), the DEK is wrapped under the new current one too (the
// late-writer rule of docs/rotation.md). If this process does not hold the
// new current key, NewDEK fails and the DEK must not be used. It refuses
// (object.ErrCorrupt) while the keyring's history has a problem (Problems).
func (k *Keychain) NewDEK(ctx context.Context) (id [16]byte, dek []byte, err error) {
	if err := k.Writable(ctx); err != nil {
		return id, nil, fmt.Errorf("new data key: %w", err)
	}
	b, err := randomID(16)
	if err != nil {
		return id, nil, err
	}
	copy(id[:], b)
	if dek, err = randomID(KeySize); err != nil {
		return id, nil, err
	}
	kk, err := k.currentKEK(ctx)
	if err != nil {
		return id, nil, err
	}
	if err := k.writeWrapped(ctx, kk, id, dek); err != nil {
		return id, nil, err
	}
	wrapped := []*kek{kk}
	for range 16 {
		if err := k.Refresh(ctx); err != nil {
			return id, nil, fmt.Errorf("new data key: %w", err)
		}
		k.mu.RLock()
		cur := k.ring.Current
		kc := k.keks[cur]
		k.mu.RUnlock()
		if slices.ContainsFunc(wrapped, func(x *kek) bool { return hex.EncodeToString(x.gen[:]) == cur }) {
			k.dropStale(ctx, wrapped, id)
			k.cachePut(id, dek)
			return id, bytes.Clone(dek), nil
		}
		if kc == nil {
			return id, nil, fmt.Errorf("new data key: %w: the repository key was rotated to generation %s, whose key this process does not hold (hand it the new key)", ErrDEKUnavailable, cur)
		}
		if err := k.writeWrapped(ctx, kc, id, dek); err != nil {
			return id, nil, err
		}
		wrapped = append(wrapped, kc)
	}
	return id, nil, fmt.Errorf("new data key: %w: the current generation keeps changing", ErrConflict)
}

// dropStale deletes copies of a new DEK wrapped under generations that are
// retired by now (a writer that was an entire rotation behind). Best effort:
// a leftover copy is deleted by the next Resume.
func (k *Keychain) dropStale(ctx context.Context, wrapped []*kek, id [16]byte) {
	k.mu.RLock()
	r := k.ring
	k.mu.RUnlock()
	for _, kk := range wrapped {
		if g := r.Generation(hex.EncodeToString(kk.gen[:])); g != nil && g.State == StateRetired {
			k.st.Delete(ctx, dekName(kk.gen, id))
		}
	}
}

// currentKEK returns the current generation's KEK, refreshing once if the
// keyring is stale.
func (k *Keychain) currentKEK(ctx context.Context) (*kek, error) {
	for i := 0; ; i++ {
		k.mu.RLock()
		cur := k.ring.Current
		kk := k.keks[cur]
		k.mu.RUnlock()
		if kk != nil {
			return kk, nil
		}
		if i > 0 {
			return nil, fmt.Errorf("new data key: %w: this process does not hold the key of the current generation %s", ErrDEKUnavailable, cur)
		}
		if err := k.Refresh(ctx); err != nil {
			return nil, fmt.Errorf("new data key: %w", err)
		}
	}
}

// writeWrapped wraps dek under kk and creates deks/<gen>/<id>. If the object
// exists already (a retried write) it must verify.
func (k *Keychain) writeWrapped(ctx context.Context, kk *kek, id [16]byte, dek []byte) error {
	w, err := kk.wrap(k.rid, id, dek)
	if err != nil {
		return err
	}
	name := dekName(kk.gen, id)
	err = k.st.Create(ctx, name, w)
	if errors.Is(err, store.ErrExist) {
		b, gerr := ReadWrapped(ctx, k.st, name)
		if gerr != nil {
			return fmt.Errorf("writing data key: %w", gerr)
		}
		if verr := kk.verifyWrapped(k.rid, id, b, dek); verr != nil {
			return fmt.Errorf("writing data key: %s exists and %w", name, verr)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("writing data key: %w", err)
	}
	return nil
}

// DEK returns the DEK with the given id. It unwraps with fallback: first
// under every retiring generation, then under the current one, using the
// generations this process holds keys for (the seed's order: a retiring
// copy exists until its twin under the current generation is verified).
// Within a generation the single object deks/<gen>/<id> comes first, then
// the generation's DEK packs. If no copy is found the keyring is refreshed
// (and the packs listed again) once and the lookup repeated. Errors:
// ErrDEKUnavailable naming the generation(s) whose key is needed; a wrapped
// DEK that fails authentication names the object and wraps object.ErrCorrupt.
// The returned slice is the caller's.
func (k *Keychain) DEK(ctx context.Context, id [16]byte) ([]byte, error) {
	if dek := k.cacheGet(id); dek != nil {
		return bytes.Clone(dek), nil
	}
	dek, err := k.unwrapAny(ctx, id, false)
	if errors.Is(err, store.ErrNotExist) || errors.Is(err, ErrDEKUnavailable) || errors.Is(err, object.ErrCorrupt) {
		if rerr := k.Refresh(ctx); rerr != nil {
			return nil, fmt.Errorf("data key %x: %w", id, rerr)
		}
		dek, err = k.unwrapAny(ctx, id, true)
	}
	if err != nil {
		return nil, err
	}
	k.cachePut(id, dek)
	return bytes.Clone(dek), nil
}

func (k *Keychain) unwrapAny(ctx context.Context, id [16]byte, relist bool) ([]byte, error) {
	k.mu.RLock()
	r := k.ring
	keks := k.keks
	k.mu.RUnlock()
	var order []*Generation
	for i := range r.Generations {
		if r.Generations[i].State == StateRetiring {
			order = append(order, &r.Generations[i])
		}
	}
	order = append(order, r.Generation(r.Current))
	var corrupt error
	var unheld []string
	for _, g := range order {
		kk := keks[g.ID]
		if kk == nil {
			unheld = append(unheld, g.ID)
			continue
		}
		cs, bad, err := k.copiesIn(ctx, kk.gen, id, relist, true)
		if err != nil {
			return nil, fmt.Errorf("data key %x: %w", id, err)
		}
		for _, c := range cs {
			dek, err := kk.unwrap(k.rid, id, c.Wrapped)
			if err == nil {
				return dek, nil
			}
			if corrupt == nil {
				corrupt = fmt.Errorf("data key %x: object %s is %w", id, c.Object, err)
			}
		}
		if corrupt == nil && bad != nil {
			corrupt = fmt.Errorf("data key %x: %w", id, bad)
		}
	}
	if corrupt != nil {
		return nil, corrupt
	}
	var need []string
	for _, gen := range unheld {
		gid, _ := parseGenID(gen)
		cs, _, err := k.copiesIn(ctx, gid, id, relist, true)
		if err != nil {
			return nil, fmt.Errorf("data key %x: %w", id, err)
		}
		if len(cs) > 0 {
			need = append(need, gen)
		}
	}
	if len(need) > 0 {
		return nil, fmt.Errorf("data key %x: %w: wrapped only under key generation %s, whose key this process does not hold", id, ErrDEKUnavailable, strings.Join(need, " and "))
	}
	live := make([]string, 0, len(order))
	for _, g := range order {
		live = append(live, g.ID)
	}
	return nil, fmt.Errorf("data key %x: %w: no wrapped copy under the live key generation(s) %s: %w", id, ErrDEKUnavailable, strings.Join(live, ", "), store.ErrNotExist)
}

// IDKey returns the content-id key: the DEK the keyring names as id_key_dek.
func (k *Keychain) IDKey(ctx context.Context) ([]byte, error) {
	k.mu.RLock()
	s := k.ring.IDKeyDEK
	k.mu.RUnlock()
	id, err := parseDEKID(s)
	if err != nil {
		return nil, err
	}
	dek, err := k.DEK(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("content-id key: %w", err)
	}
	return dek, nil
}

func (k *Keychain) cacheGet(id [16]byte) []byte {
	k.cacheMu.Lock()
	defer k.cacheMu.Unlock()
	return k.cache[id]
}

func (k *Keychain) cachePut(id [16]byte, dek []byte) {
	k.cacheMu.Lock()
	defer k.cacheMu.Unlock()
	if len(k.cache) >= dekCacheSize {
		for victim := range k.cache { // an arbitrary entry
			delete(k.cache, victim)
			break
		}
	}
	k.cache[id] = dek
}
