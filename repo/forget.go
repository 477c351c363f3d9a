package repo

import (
	"context"
	"errors"
	"fmt"

	"github.com/snapcrypt/snapcrypt/repo/store"
)

// ForgetSnapshot deletes one snapshot's manifest, snapshots/<id>, and
// nothing else: the trees and data it references stay where they are
// (other snapshots may share them) until prune, which does not exist yet,
// reclaims what no snapshot references. Until then the repository stays
// complete and check passes. A snapshot that is gone already (another
// forget removed it) is not an error.
//
// Readers list snapshots/ on every refresh, so a mount stops showing the
// snapshot at its next refresh; files it has open keep reading, as their
// data is still there.
func (r *Repository) ForgetSnapshot(ctx context.Context, id ObjectID) error {
	err := r.st.Delete(ctx, snapshotName(id))
	r.snapMu.Lock()
	delete(r.snaps, id)
	r.snapMu.Unlock()
	if err != nil && !errors.Is(err, store.ErrNotExist) {
		return fmt.Errorf("forgetting snapshot %s: %w", id, err)
	}
	return nil
}

// dropForgotten removes from the manifest cache the snapshots that a
// listing no longer shows (forgotten, here or by another process), so a
// long-running reader's cache does not grow with every forget.
func (r *Repository) dropForgotten(listed []ObjectID) {
	keep := make(map[ObjectID]bool, len(listed))
	for _, id := range listed {
		keep[id] = true
	}
	r.snapMu.Lock()
	defer r.snapMu.Unlock()
	for id := range r.snaps {
		if !keep[id] {
			delete(r.snaps, id)
		}
	}
}

// forgotten reports whether a manifest that failed to load with err was
// forgotten after it was listed: such a snapshot is simply no longer
// there, not unreadable.
func (r *Repository) forgotten(ctx context.Context, id ObjectID, err error) bool {
	if !errors.Is(err, store.ErrNotExist) {
		return false
	}
	_, serr := r.st.Stat(ctx, snapshotName(id))
	return errors.Is(serr, store.ErrNotExist)
}
