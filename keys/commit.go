package keys

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
)

// Commit applies mutate to a copy of the latest keyring and commits the
// result as the next epoch (create-only keyring/<epoch>), retrying from the
// new latest epoch on conflict, at most 16 times. mutate returns false to
// commit nothing; it may be called more than once and must not keep the
// Keyring it is given. On success k has installed the committed epoch.
//
// The epoch is written in the current format (docs/format.md, "Keyring
// history"): chained to the hash of the epoch it follows and MACed by that
// epoch's current generation and, if mutate switched to a new current
// generation, by the new one too. So Commit needs the key of the current
// generation (an error wrapping ErrDEKUnavailable otherwise) and, for a
// switch, the new generation's key: the one NewGeneration made last, or
// one of the Keychain's materials. It
// refuses, with an error wrapping object.ErrCorrupt that names the epoch, while
// the keyring's history has a problem (Problems), and refuses a result
// that is not a legal transition.
func (k *Keychain) Commit(ctx context.Context, mutate func(r *Keyring) (bool, error)) error {
	for range 16 {
		if err := k.Writable(ctx); err != nil {
			return err
		}
		k.mu.RLock()
		base := k.ring.Clone()
		baseHash := k.hist.hashes[base.Epoch-1]
		k.mu.RUnlock()
		next := base.Clone()
		changed, err := mutate(&next)
		if err != nil || !changed {
			return err
		}
		next.Epoch = base.Epoch + 1
		next.Version = next.formatVersion()
		if err := checkTransition(&base, &next); err != nil {
			return fmt.Errorf("committing keyring epoch %d: %w", next.Epoch, err)
		}
		var keks []*kek
		for _, gen := range signers(&base, &next) {
			kk, err := k.signerKEK(ctx, &next, gen)
			if err != nil {
				return fmt.Errorf("committing keyring epoch %d: %w", next.Epoch, err)
			}
			keks = append(keks, kk)
		}
		e, err := signEpoch(&next, k.rid, baseHash[:], keks)
		if err != nil {
			return err
		}
		err = commitEpoch(ctx, k.st, e)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return err
		}
		k.installCommitted(ctx, e)
		return nil
	}
	return fmt.Errorf("committing keyring: %w (gave up after 16 attempts)", ErrConflict)
}

// signerKEK returns the KEK of generation gen of next: one held, or (a new
// generation) one of the Keychain's materials matches.
func (k *Keychain) signerKEK(ctx context.Context, next *Keyring, gen string) (*kek, error) {
	k.mu.RLock()
	kk := k.keks[gen]
	if kk == nil && k.made != nil && hex.EncodeToString(k.made.gen[:]) == gen {
		kk = k.made
	}
	mats := k.mats
	k.mu.RUnlock()
	if kk != nil {
		return kk, nil
	}
	if g := next.Generation(gen); g != nil && g.State != StateRetired {
		for _, m := range mats {
			if kk := matchKEK(ctx, g, m, k.rid); kk != nil {
				return kk, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: MACing it needs the key of generation %s, which this process does not hold", ErrDEKUnavailable, gen)
}
