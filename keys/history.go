package keys

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// How a Keychain follows the keyring's history (docs/format.md, "Keyring
// history"; docs/security.md). It accepts epoch e+1 only if it parses,
// chains to the hash of epoch e, is a legal transition from e and carries
// the MACs of the right generations, every one of which it can check
// verifying. The first epoch that fails takes no effect, nor does any
// after it: reading goes on from the newest good epoch, and Problems names
// the bad one. Anything that writes calls writable first, which refuses
// while there is a problem.

// history is the part of a Keychain's state that follows the keyring's
// epochs. Guarded by Keychain.mu.
type history struct {
	hashes [][32]byte // hashes[e-1]: SHA-256 of good epoch e's object
	legacy bool       // the newest good epoch is a legacy (version 1) one
	authed uint64     // newest epoch whose MAC this process checked or made

	bad       error   // the first epoch after the newest good one that is bad
	listed    []error // problems of the last listing of keyring/
	rewritten error   // the history differs from what this process or host saw

	recorded uint64 // the epoch of the host record, as this process last saw it
	recErr   error  // the host record could not be read or written
}

// head is the newest good epoch.
func (h *history) head() uint64 { return uint64(len(h.hashes)) }

// historyErr makes an error about the keyring history: it wraps
// object.ErrCorrupt, and its message names the epoch.
func historyErr(epoch uint64, format string, args ...any) error {
	return fmt.Errorf("keyring epoch %d: %w: %w", epoch, object.ErrCorrupt, fmt.Errorf(format, args...))
}

// rewrittenErr makes the error of a history that went backwards or forked.
func rewrittenErr(epoch uint64, format string, args ...any) error {
	return fmt.Errorf("keyring history was rewritten: epoch %d %s (%w)", epoch, fmt.Sprintf(format, args...), object.ErrCorrupt)
}

// tip is the newest good epoch a verification starts from.
type tip struct {
	ring   *Keyring
	hash   [32]byte
	legacy bool
}

// structural returns how many epochs of es (consecutive, the first right
// after base; base nil: es starts at epoch 1) parse, chain and are legal
// transitions, and the error of the first that is not.
func structural(base *tip, es []*epochObj, repoID string) (int, error) {
	for i, e := range es {
		if e.ring.RepoID != repoID {
			return i, historyErr(e.ring.Epoch, "keyring of repository %s", e.ring.RepoID)
		}
		if base == nil {
			// An authenticated history starts as Init starts it: one
			// generation, current, no rotation. So a generation can enter
			// it only through a switch that generation MACs (a forged
			// epoch 1 cannot list B as retiring beside A).
			if !e.legacy && (e.ring.Epoch != 1 || len(e.ring.Generations) != 1 || e.ring.Rotation != nil) {
				return i, historyErr(e.ring.Epoch, "%w: an authenticated history must start with one current generation and no rotation", errIllegal)
			}
			base = &tip{ring: e.ring, hash: e.hash, legacy: e.legacy}
			continue
		}
		if e.legacy && !base.legacy {
			return i, historyErr(e.ring.Epoch, "%w: a version 1 epoch after an authenticated one", errUnauthenticated)
		}
		if !e.legacy && !bytes.Equal(e.prev, base.hash[:]) {
			return i, historyErr(e.ring.Epoch, "%w: not chained to epoch %d (its prev hash differs)", errBadChain, base.ring.Epoch)
		}
		if err := checkTransition(base.ring, e.ring); err != nil {
			return i, historyErr(e.ring.Epoch, "%w", err)
		}
		base = &tip{ring: e.ring, hash: e.hash, legacy: e.legacy}
	}
	return len(es), nil
}

// verified is the outcome of verifying epochs.
type verified struct {
	good   int             // how many of the epochs are good
	authed uint64          // newest epoch whose MAC was checked, or 0
	keks   map[string]*kek // the KEKs of the newest good epoch's live generations
	bad    error           // why epoch good+1 is not good, if it is not
}

// verifyEpochs verifies es, the epochs after base (base nil: from epoch 1):
// structure first, then the MACs, with the KEKs held and those the
// materials give for the generations live in the newest candidate. A MAC
// by a generation retired in the newest candidate is checked too when a
// material is that generation's key (rule 3 of docs/format.md: else a
// planted epoch that retires it would hide a bad MAC of it): its keyring
// key alone is derived for the check (macKeyOnly) and dropped when
// verifyEpochs returns; its KEK is never held. Such a check makes no
// epoch authenticated (authed): a retired key may be a leaked one. If a
// MAC fails, the newest candidate moves back and the KEKs are matched
// again.
func verifyEpochs(ctx context.Context, base *tip, es []*epochObj, repoID string, rid [16]byte, held map[string]*kek, mats []*Material) verified {
	n, bad := structural(base, es, repoID)
	retired := map[string]*kek{} // MAC-only keys of retired generations; nil: no material matches
	defer func() {
		for _, kk := range retired {
			if kk != nil {
				clear(kk.ringKey)
			}
		}
	}()
	for {
		top := base
		if n > 0 {
			top = &tip{ring: es[n-1].ring}
		}
		var keks map[string]*kek
		if top != nil {
			keks = matchAll(ctx, top.ring, mats, rid, held)
		}
		var live int // MACs of the epoch being checked by a key held or matched live
		keyFor := func(gen string) *kek {
			if kk := keks[gen]; kk != nil {
				live++
				return kk
			}
			if kk := held[gen]; kk != nil {
				live++
				return kk // about to be forgotten, but may still check a MAC
			}
			g := top.ring.Generation(gen)
			if g == nil || g.State != StateRetired {
				return nil // live: matchAll tried every material
			}
			kk, tried := retired[gen]
			if !tried {
				gid, _ := parseGenID(gen)
				for _, m := range mats {
					if key := macKeyOnly(ctx, g, m, rid); key != nil {
						kk = &kek{gen: gid, ringKey: key}
						break
					}
				}
				retired[gen] = kk
			}
			return kk
		}
		v := verified{good: n, keks: keks, bad: bad}
		prev := base
		failed := false
		for i, e := range es[:n] {
			if !e.legacy {
				var pr *Keyring
				if prev != nil {
					pr = prev.ring
				}
				live = 0
				_, err := checkMACs(e, pr, rid, keyFor)
				if err != nil {
					n, bad = i, historyErr(e.ring.Epoch, "%w", err)
					failed = true
					break
				}
				if live > 0 {
					v.authed = e.ring.Epoch
				}
			}
			prev = &tip{ring: e.ring}
		}
		if !failed {
			return v
		}
	}
}

// MaxHistoryRead bounds the bytes of keyring epochs one load or refresh
// reads (and holds) at once. A history this large would take hundreds of
// rotations; past it the rest is refused as if damaged, so that epochs an
// attacker planted cannot make a process hold more than a bounded amount
// (each epoch is also at most MaxKeyringSize).
const MaxHistoryRead = 16 << 20

// readEpochs reads epochs from, from+1, ... (up to the first that does not
// exist, or with upTo > 0, up to upTo), each checked against the one
// before (base before the first; nil: from is epoch 1) as it is read: a
// damaged epoch, one not chained to the one before or not a legal
// transition from it, or one past MaxHistoryRead bytes ends the list and
// is returned as bad, and nothing after it is read. A read that fails for
// another reason than damage returns err.
func readEpochs(ctx context.Context, st store.Reader, repoID string, base *tip, from, upTo uint64) (es []*epochObj, bad error, err error) {
	var total int
	for e := from; upTo == 0 || e <= upTo; e++ {
		obj, rerr := readEpoch(ctx, st, e)
		switch {
		case rerr == nil:
		case errors.Is(rerr, store.ErrNotExist):
			if upTo > 0 {
				return es, historyErr(e, "missing (epochs up to %d exist)", upTo), nil
			}
			return es, nil, nil
		case errors.Is(rerr, object.ErrCorrupt):
			return es, historyErr(e, "%w", rerr), nil
		default:
			return nil, nil, rerr
		}
		if total += len(obj.raw); total > MaxHistoryRead {
			return es, historyErr(e, "%w: the keyring history read at once passes %d MiB", object.ErrCorrupt, MaxHistoryRead>>20), nil
		}
		if _, err := structural(base, []*epochObj{obj}, repoID); err != nil {
			return es, err, nil
		}
		base = &tip{ring: obj.ring, hash: obj.hash, legacy: obj.legacy}
		es = append(es, obj)
	}
	return es, nil, nil
}

// loadHistory reads and verifies the whole history (Open). It fails only
// when no epoch is good, or the store fails.
func (k *Keychain) loadHistory(ctx context.Context) error {
	epochs, listed, err := k.listKeyring(ctx)
	if err != nil {
		return err
	}
	if len(epochs) == 0 {
		return fmt.Errorf("no keyring: %w", store.ErrNotExist)
	}
	upTo, gap := epochs[len(epochs)-1], error(nil)
	for i, e := range epochs {
		if e != uint64(i)+1 {
			upTo, gap = uint64(i), historyErr(e, "follows the missing epoch %d", i+1)
			break
		}
	}
	var es []*epochObj
	var bad error
	if upTo > 0 {
		es, bad, err = readEpochs(ctx, k.st, k.repoID, nil, 1, upTo)
		if err != nil {
			return err
		}
	}
	if bad == nil {
		bad = gap
	}
	v := verifyEpochs(ctx, nil, es, k.repoID, k.rid, nil, k.mats)
	if v.good == 0 {
		if v.bad != nil {
			return v.bad
		}
		return bad
	}
	if v.bad != nil {
		bad = v.bad
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, e := range es[:v.good] {
		k.hist.hashes = append(k.hist.hashes, e.hash)
	}
	top := es[v.good-1]
	k.ring, k.keks, k.hist.legacy, k.hist.authed = top.ring, v.keks, top.legacy, v.authed
	k.hist.bad, k.hist.listed = bad, listed
	k.checkRecordLocked()
	return nil
}

// listKeyring lists keyring/: the epochs in increasing order, and a
// problem for every other name.
func (k *Keychain) listKeyring(ctx context.Context) ([]uint64, []error, error) {
	var epochs []uint64
	var problems []error
	err := k.st.List(ctx, keyringPrefix, func(info store.Info) error {
		e, err := parseEpochName(info.Name)
		if err != nil {
			problems = append(problems, fmt.Errorf("keyring: %w", err))
			return nil
		}
		epochs = append(epochs, e)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("listing keyring: %w", err)
	}
	slices.Sort(epochs)
	return epochs, problems, nil
}

// Refresh reloads the keyring if a newer epoch exists and matches the keys
// this Keychain holds to any new generation. It checks that the newest
// epoch it holds is still stored as it was read, verifies each new epoch,
// and takes the good ones; a bad epoch is kept as a problem (Problems), not
// returned. The daemon calls it every few seconds; NewDEK and DEK call it
// when they need to.
func (k *Keychain) Refresh(ctx context.Context) error {
	k.mu.RLock()
	head := k.hist.head()
	headHash := k.hist.hashes[head-1]
	base := &tip{ring: k.ring, hash: headHash, legacy: k.hist.legacy}
	held := k.keks
	mats := slices.Clone(k.mats)
	k.mu.RUnlock()

	var rewritten error
	switch cur, err := readEpoch(ctx, k.st, head); {
	case errors.Is(err, store.ErrNotExist):
		rewritten = rewrittenErr(head, "was read by this process and is gone")
	case errors.Is(err, object.ErrCorrupt) || err == nil && cur.hash != headHash:
		rewritten = rewrittenErr(head, "differs from the one this process read")
	case err != nil:
		return fmt.Errorf("refreshing keyring: %w", err)
	}
	es, bad, err := readEpochs(ctx, k.st, k.repoID, base, head+1, 0)
	if err != nil {
		return fmt.Errorf("refreshing keyring: %w", err)
	}
	var v verified
	if len(es) > 0 {
		// may run Argon2id: no lock held
		v = verifyEpochs(ctx, base, es, k.repoID, k.rid, held, mats)
		if v.bad != nil {
			bad = v.bad
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.hist.head() != head {
		return nil // another call took epochs meanwhile: its view is newer
	}
	k.hist.bad = bad
	if rewritten != nil {
		k.hist.rewritten = rewritten
	} else {
		k.hist.rewritten = nil
	}
	if v.good > 0 {
		for _, e := range es[:v.good] {
			k.hist.hashes = append(k.hist.hashes, e.hash)
		}
		top := es[v.good-1]
		if v.authed > 0 {
			k.hist.authed = v.authed
		}
		k.installLocked(top.ring, v.keks, top.legacy)
	}
	k.checkRecordLocked()
	return nil
}

// installLocked makes r the keyring with the KEKs keks (of r's live
// generations), keeping keys added meanwhile to generations r keeps live.
// A retired generation's KEK is dropped here and never held again (its
// keyring key may be derived for a moment to check its MACs: verifyEpochs),
// and so is the operator's key that gave it, unless it gave a KEK still
// held: once r is good, no later epoch can need it (a retired generation
// signs nothing again).
func (k *Keychain) installLocked(r *Keyring, keks map[string]*kek, legacy bool) {
	for id, kk := range k.keks { // keys added meanwhile
		if g := r.Generation(id); g != nil && g.State != StateRetired && keks[id] == nil {
			keks[id] = kk
		}
	}
	k.forgetMaterialsLocked(keks)
	k.ring, k.keks, k.hist.legacy = r, keks, legacy
	k.dropPackIndexes(func(gen string) bool {
		g := r.Generation(gen)
		return g != nil && g.State != StateRetired
	})
}

// forgetMaterialsLocked drops from k.mats the operator's keys that gave
// a KEK k holds now but keks, the KEKs about to be held, lacks, unless
// one of keks came from the same key; their cached Argon2id outputs are
// cleared.
func (k *Keychain) forgetMaterialsLocked(keks map[string]*kek) {
	kept := map[*Material]bool{}
	for _, kk := range keks {
		kept[kk.mat] = true
	}
	for id, kk := range k.keks {
		if m := kk.mat; m != nil && keks[id] == nil && !kept[m] {
			// copy on write: readers may hold the old slice (signerKEK)
			k.mats = slices.DeleteFunc(slices.Clone(k.mats), func(x *Material) bool { return x == m })
			m.forgetStretched()
		}
	}
}

// checkRecordLocked compares the history with the host's record and
// advances the record to the newest epoch this process authenticated (or
// to the newest legacy epoch of a never authenticated keyring). A history
// that ends below the record, or differs at its epoch, sets rewritten.
func (k *Keychain) checkRecordLocked() {
	h := &k.hist
	rec, ok, err := loadRecord(k.repoID)
	switch {
	case errors.Is(err, object.ErrCorrupt):
		// A damaged record protects nothing, and deleting or garbling it
		// must not switch the check off: nothing writes until it is
		// deleted (its error says so). Reading goes on.
		h.recErr = err
		if h.rewritten == nil {
			h.rewritten = err
		}
		return
	case err != nil:
		h.recErr = err // the state directory cannot be read: status says so
	case ok:
		switch {
		case rec.Epoch > h.head():
			h.rewritten = rewrittenErr(rec.Epoch, "was seen on this host, but the keyring's history ends at epoch %d", h.head())
		case hex.EncodeToString(h.hashes[rec.Epoch-1][:]) != rec.Hash:
			h.rewritten = rewrittenErr(rec.Epoch, "differs from the one this host saw")
		}
		h.recorded = max(h.recorded, rec.Epoch)
	}
	// What this process recorded holds even if the file went back or went
	// away.
	if h.rewritten == nil && h.recorded > h.head() {
		h.rewritten = rewrittenErr(h.recorded, "was seen by this process, but the keyring's history ends at epoch %d", h.head())
	}
	if h.rewritten != nil || err != nil {
		return
	}
	upTo := h.authed
	if h.legacy {
		upTo = h.head()
	}
	if upTo > h.recorded {
		if err := advanceRecord(k.repoID, upTo, h.hashes[upTo-1]); err != nil {
			h.recErr = err
			return
		}
		h.recorded = upTo
	}
	h.recErr = nil
}

// Problems returns what is wrong with the keyring's history, each error
// wrapping object.ErrCorrupt and naming the epoch: a bad epoch (unauthenticated,
// illegal, unreadable, missing), a history that was rewritten, a stray
// object below keyring/. While there is one, nothing writes (see
// writable); reading goes on from the newest good epoch.
func (k *Keychain) Problems() []error {
	k.mu.RLock()
	defer k.mu.RUnlock()
	var out []error
	if k.hist.rewritten != nil {
		out = append(out, k.hist.rewritten)
	}
	if k.hist.bad != nil {
		out = append(out, k.hist.bad)
	}
	return append(out, k.hist.listed...)
}

// Authenticated reports whether the keyring's history has an authenticated
// epoch. A repository made before format version 2 has none until its next
// keyring commit (a rotation).
func (k *Keychain) Authenticated() bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return !k.hist.legacy
}

// RecordError returns why the host's keyring record (StateDir) could not
// be read or advanced, if it could not: rollback protection then rests on
// the keys alone.
func (k *Keychain) RecordError() error {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.hist.recErr
}

// Writable refreshes the keyring, lists keyring/, and returns nil only if
// this process may act on the keyring: write wrapped DEKs, commit, rotate,
// help a rotation. It refuses (an error wrapping object.ErrCorrupt that names the
// epoch) while the history has a problem, and (ErrDEKUnavailable) when
// the newest epoch is authenticated by no key this process holds.
func (k *Keychain) Writable(ctx context.Context) error {
	if err := k.Refresh(ctx); err != nil {
		return err
	}
	// The listing is checked against the head this process had before it
	// listed: epochs read after the listing (by the Refresh below, or by
	// another goroutine's) are not in it and are not missing.
	var epochs []uint64
	var listed []error
	var head uint64
	for i := 0; ; i++ {
		k.mu.RLock()
		head = k.hist.head()
		k.mu.RUnlock()
		var err error
		if epochs, listed, err = k.listKeyring(ctx); err != nil {
			return err
		}
		if i > 0 || len(epochs) == 0 || epochs[len(epochs)-1] <= head {
			break
		}
		// A commit may have raced the listing: take it, and look again
		// once.
		if err := k.Refresh(ctx); err != nil {
			return err
		}
	}
	k.mu.Lock()
	have := map[uint64]bool{}
	for _, e := range epochs {
		have[e] = true
		if e > head+1 && !have[head+1] {
			listed = append(listed, historyErr(e, "follows the missing epoch %d", head+1))
			break
		}
	}
	for e := uint64(1); e <= head && len(epochs) > 0; e++ {
		if !have[e] && k.hist.rewritten == nil {
			k.hist.rewritten = rewrittenErr(e, "was read by this process and is gone")
		}
	}
	k.hist.listed = listed
	k.mu.Unlock()
	if ps := k.Problems(); len(ps) > 0 {
		return fmt.Errorf("refusing to change the repository's keys: %w", ps[0])
	}
	return k.authenticateHead(ctx)
}

// authenticateHead makes sure this process checked a MAC of the newest
// good epoch: with a key handed over since it was read (AddKey), the MAC
// is checked now; an epoch that fails it is a problem.
func (k *Keychain) authenticateHead(ctx context.Context) error {
	k.mu.RLock()
	head, authed, legacy := k.hist.head(), k.hist.authed, k.hist.legacy
	headHash := k.hist.hashes[head-1]
	keks := k.keks
	k.mu.RUnlock()
	if legacy || authed >= head {
		return nil
	}
	e, err := readEpoch(ctx, k.st, head)
	if err != nil {
		return fmt.Errorf("refusing to change the repository's keys: %w", err)
	}
	if e.hash != headHash {
		return fmt.Errorf("refusing to change the repository's keys: %w", rewrittenErr(head, "differs from the one this process read"))
	}
	var base *Keyring
	if head > 1 {
		b, err := readEpoch(ctx, k.st, head-1)
		if err != nil {
			return fmt.Errorf("refusing to change the repository's keys: %w", err)
		}
		if b.hash != k.hashAt(head-1) {
			return fmt.Errorf("refusing to change the repository's keys: %w", rewrittenErr(head-1, "differs from the one this process read"))
		}
		base = b.ring
	}
	checked, err := checkMACs(e, base, k.rid, func(gen string) *kek { return keks[gen] })
	if err != nil {
		err = historyErr(head, "%w", err)
		k.mu.Lock()
		k.hist.bad = err
		k.mu.Unlock()
		return fmt.Errorf("refusing to change the repository's keys: %w", err)
	}
	if checked == 0 {
		return fmt.Errorf("%w: keyring epoch %d is authenticated only by generation(s) whose key this process does not hold", ErrDEKUnavailable, head)
	}
	k.mu.Lock()
	if k.hist.head() == head {
		k.hist.authed = head
		k.checkRecordLocked()
	}
	k.mu.Unlock()
	return nil
}

func (k *Keychain) hashAt(epoch uint64) [32]byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.hist.hashes[epoch-1]
}
