package rotation

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// Resume finishes an unfinished rotation (see Unfinished): it takes the
// rotation lease and does what Run does. Re-wrapping needs the key of the
// new current generation and, for entries not yet re-wrapped, the old
// one; deleting the DEKs of retired generations needs no key. With nothing
// unfinished it returns nil.
func (r *Rotator) Resume(ctx context.Context, progress func(Progress)) error {
	return r.Run(ctx, progress)
}

// Run re-wraps every DEK of the retiring generations under the current
// one, retires them and deletes their wrapped DEKs (steps 3 and 4 of
// docs/rotation.md), then releases the rotation lease. It takes the lease
// if this Rotator does not hold it already (after Start it does).
// progress, if not nil, is called from time to time and at every phase.
// Any failure leaves the repository consistent; Resume continues.
func (r *Rotator) Run(ctx context.Context, progress func(Progress)) (err error) {
	opts := r.options()
	if err := r.kc.Writable(ctx); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	if err := r.awaitHelperRun(ctx); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	if err := r.beginRun(nil, false); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	defer r.endRun()
	r.mu.Lock()
	h := r.lease
	r.lease = nil
	r.mu.Unlock()

	if h == nil {
		if h, err = lease.Take(ctx, r.st, leasePrefix, r.leaseOptions(opts, "rotation lease")); err != nil {
			return fmt.Errorf("rotate: %w", err)
		}
		if err := r.step(PointLease); err != nil {
			h.Abandon()
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-h.Lost():
			cancel()
		case <-ctx.Done():
		}
	}()
	defer func() {
		if lerr := h.Err(); lerr != nil && err != nil {
			err = fmt.Errorf("rotate: lost the rotation lease: %w: %w", lerr, err)
		}
		if isCrash(err) {
			h.Abandon()
			return
		}
		if rerr := h.Release(context.WithoutCancel(ctx)); err == nil {
			err = rerr
		}
	}()
	if err := r.rotate(ctx, opts, progress); err != nil {
		return err
	}
	return r.step(PointDeleted)
}

// rotate finishes the rotation the keyring records, if any (re-wrap,
// retire), then deletes the wrapped DEKs of every retired generation.
func (r *Rotator) rotate(ctx context.Context, opts Options, progress func(Progress)) error {
	if err := r.kc.Writable(ctx); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	order := deleteAll
	if rot := r.kc.Keyring().Rotation; rot != nil {
		r.mu.Lock()
		r.prog.From, r.prog.To = slices.Clone(rot.From), rot.To
		r.mu.Unlock()
		r.report(progress, "rewrap")
		others, err := r.rewrapAll(ctx, rot, opts, progress)
		if err != nil {
			return err
		}
		if others {
			order = deleteUp // helpers may delete from the top down
		}
		if err := r.retire(ctx, rot, progress); err != nil {
			return err
		}
	}
	r.report(progress, "delete")
	if err := r.deleteRetired(ctx, opts, order); err != nil {
		return err
	}
	r.report(progress, "done")
	return nil
}

// retire commits the keyring epoch that marks rot's old generations
// retired and ends the rotation record (step 4), once every old entry has
// a verified twin. A rotation another process finished is left as it is.
func (r *Rotator) retire(ctx context.Context, rot *keys.Rotation, progress func(Progress)) error {
	if err := r.step(PointBeforeRetire); err != nil {
		return err
	}
	r.report(progress, "retire")
	err := r.kc.Commit(ctx, func(ring *keys.Keyring) (bool, error) {
		if ring.Rotation == nil || ring.Rotation.ID != rot.ID {
			return false, nil // finished by another process
		}
		ring.Generations = slices.Clone(ring.Generations)
		for i := range ring.Generations {
			if slices.Contains(rot.From, ring.Generations[i].ID) {
				ring.Generations[i].State = keys.StateRetired
			}
		}
		ring.Rotation = nil
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("rotate: retiring %s: %w", strings.Join(rot.From, ","), err)
	}
	r.forgetVerified()
	return r.step(PointRetired)
}

// rewrapAll gives every entry below deks/<from>/ a verified twin under
// rot.To: shard by shard, together with any helpers (work.go), then one
// pass over the whole old prefix, re-listed until a listing finds nothing
// unverified (late writers, and whatever a lying done marker hid).
//
// others says whether other processes worked shards (they may help delete).
func (r *Rotator) rewrapAll(ctx context.Context, rot *keys.Rotation, opts Options, progress func(Progress)) (others bool, err error) {
	kTo := r.kek(rot.To)
	if kTo == nil {
		return false, fmt.Errorf("rotate: %w: finishing the rotation needs the key of the new generation %s", keys.ErrDEKUnavailable, rot.To)
	}
	kFrom := map[string]*keys.KEK{}
	for _, g := range rot.From {
		kFrom[g] = r.kek(g)
	}
	run := r.newShardRun(rot, kTo, kFrom, opts, progress, true)
	if err := run.work(ctx); err != nil {
		return false, err
	}
	r.report(progress, "")
	for {
		before := r.done.Load()
		n, err := run.fullPass(ctx)
		if err != nil {
			return false, err
		}
		if r.done.Load() == before || n == 0 {
			return run.others, nil
		}
		r.report(progress, "")
	}
}

// Close releases the rotation lease if Start left it held (when Run is
// not going to be called).
func (r *Rotator) Close(ctx context.Context) error {
	r.mu.Lock()
	h := r.lease
	r.lease = nil
	r.mu.Unlock()
	if h != nil {
		return h.Release(ctx)
	}
	return nil
}

// Unfinished reports whether a rotation is unfinished: the keyring has a
// rotation record, or a retired generation still has wrapped DEKs.
func (r *Rotator) Unfinished(ctx context.Context) (bool, error) {
	if err := r.kc.Refresh(ctx); err != nil {
		return false, err
	}
	ring := r.kc.Keyring()
	if ring.Rotation != nil {
		return true, nil
	}
	for _, g := range ring.Generations {
		if g.State != keys.StateRetired {
			continue
		}
		n, err := r.count(ctx, keys.GenPrefix(g.ID), 1)
		if err != nil {
			return false, err
		}
		if n > 0 {
			return true, nil
		}
	}
	return false, nil
}

// Purge gives the store back the space of the wrapped DEKs of retired
// generations on stores that delete a whole prefix at once (the local
// store renames it away: no reader sees it from then on, but its files are
// still on disk). It is housekeeping, not part of the rotation, which is
// finished when Run returns: a rotating command calls it after, a daemon
// when it is idle. It also frees what killed processes left; with nothing
// to free it costs one directory read. pace, if not nil, is called after
// each batch of files with the time it took (it may sleep).
func (r *Rotator) Purge(ctx context.Context, pace func(worked time.Duration)) error {
	if err := store.PurgeTrash(ctx, r.st, pace); err != nil {
		return fmt.Errorf("freeing deleted data keys: %w", err)
	}
	return nil
}
