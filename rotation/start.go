package rotation

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
)

// Start switches the repository to a new key (the first step of
// docs/rotation.md): it takes the rotation lease and commits one keyring
// epoch that adds a new generation for m (fresh random id and salt) as
// current, marks the old current generation retiring and records the
// rotation. It returns once that commit is durable; from then on every new
// DEK is wrapped under the new key, which the Keychain holds at once.
//
// If m is the current key already because an unfinished rotation switched
// to it (an interrupted `snapcrypt rotate`, run again), Start resumes that
// rotation instead: it hands the Keychain m, takes the lease and returns
// resumed true, and Run finishes the rotation.
//
// The lease stays held (and renewed) for Run, which does the re-wrapping
// and retires the old generation; Close releases it if Run is not called.
//
// Errors: ErrAlreadyCurrent if m is the current key and nothing is
// unfinished; a *lease.BusyError (lease.ErrBusy) if another live process
// holds the lease; ErrRotationUnfinished if an earlier rotation to another
// key has not finished (Resume it); keys.ErrDEKUnavailable if the Keychain
// does not hold the current key. In each case the keyring is unchanged.
func (r *Rotator) Start(ctx context.Context, m *keys.Material) (resumed bool, err error) {
	if m == nil {
		return false, fmt.Errorf("rotate: %w: no new key given", keys.ErrBadKey)
	}
	r.mu.Lock()
	if r.running || r.lease != nil {
		r.mu.Unlock()
		return false, fmt.Errorf("rotate: %w: a rotation is running in this process", lease.ErrBusy)
	}
	opts := r.opts
	r.mu.Unlock()

	if err := r.kc.Writable(ctx); err != nil {
		return false, fmt.Errorf("rotate: %w", err)
	}
	// Before the lease only what needs no lease: so that a second rotator
	// learns who runs the rotation (ErrBusy) rather than that one runs.
	ring := r.kc.Keyring()
	if r.kc.Matches(ring.Generation(ring.Current), m) {
		if err := r.resumable(ctx, m, ring); err != nil {
			return false, err
		}
		resumed = true
	}
	h, err := lease.Take(ctx, r.st, leasePrefix, r.leaseOptions(opts, "rotation lease"))
	if err != nil {
		return false, fmt.Errorf("rotate: %w", err)
	}
	defer func() {
		switch {
		case isCrash(err):
			h.Abandon()
		case err != nil:
			h.Release(context.WithoutCancel(ctx))
		default:
			r.mu.Lock()
			r.lease = h
			r.mu.Unlock()
		}
	}()
	if err := r.step(PointLease); err != nil || resumed {
		return resumed, err
	}
	kNew, err := r.commitSwitch(ctx, m, opts)
	if err != nil {
		return false, fmt.Errorf("rotate: %w", err)
	}
	r.kc.Adopt(kNew, m)
	if err := r.step(PointSwitch); err != nil {
		return false, err
	}
	r.rewrapIDKey(ctx, kNew)
	return false, nil
}

// resumable says whether m, the current key of ring, names a rotation to
// resume: one is unfinished (a rotation record, or DEKs of a retired
// generation left). If so the Keychain is handed m; if not, the error is
// ErrAlreadyCurrent.
func (r *Rotator) resumable(ctx context.Context, m *keys.Material, ring keys.Keyring) error {
	unfinished, err := r.Unfinished(ctx)
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	if !unfinished {
		return fmt.Errorf("rotate: %w (generation %s)", ErrAlreadyCurrent, ring.Current)
	}
	if err := r.kc.AddKey(ctx, m); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	return nil
}

// commitSwitch commits the switch to a new generation for m (recomputed
// on the latest keyring after a lost compare-and-swap) and returns its KEK.
func (r *Rotator) commitSwitch(ctx context.Context, m *keys.Material, opts Options) (*keys.KEK, error) {
	var kNew *keys.KEK
	err := r.kc.Commit(ctx, func(ring *keys.Keyring) (bool, error) {
		if err := r.checkRotatable(*ring, m); err != nil {
			return false, err
		}
		g, x, err := r.kc.NewGeneration(ring, m, opts.Argon2, r.now().UTC().Truncate(time.Second))
		if err != nil {
			return false, err
		}
		for _, sm := range opts.Slots {
			if err := r.kc.NewSlot(ctx, &g, x, sm, opts.Argon2, r.now()); err != nil {
				return false, err
			}
		}
		id, err := randomHex(16)
		if err != nil {
			return false, err
		}
		old := ring.Current
		ring.Generations = slices.Clone(ring.Generations)
		for i := range ring.Generations {
			if ring.Generations[i].State == keys.StateCurrent {
				ring.Generations[i].State = keys.StateRetiring
			}
		}
		ring.Generations = append(ring.Generations, g)
		ring.Current = g.ID
		ring.Rotation = &keys.Rotation{
			ID: id, From: []string{old}, To: g.ID,
			Started:     r.now().UTC().Truncate(time.Second),
			RequestedBy: keys.Requester{Host: opts.Host, PID: os.Getpid()},
		}
		kNew = x
		return true, nil
	})
	return kNew, err
}

// checkRotatable says why ring cannot be rotated to m, if it cannot.
func (r *Rotator) checkRotatable(ring keys.Keyring, m *keys.Material) error {
	if r.kc.Matches(ring.Generation(ring.Current), m) {
		return fmt.Errorf("%w (generation %s)", ErrAlreadyCurrent, ring.Current)
	}
	if rot := ring.Rotation; rot != nil {
		return fmt.Errorf("%w: from %s to %s, started %s by %s pid %d; resume it first",
			ErrRotationUnfinished, strings.Join(rot.From, ","), rot.To,
			rot.Started.Format(time.RFC3339), rot.RequestedBy.Host, rot.RequestedBy.PID)
	}
	if !r.kc.Holds(ring.Current) {
		return fmt.Errorf("%w: rotating needs the current key (generation %s)", keys.ErrDEKUnavailable, ring.Current)
	}
	return nil
}

// rewrapIDKey gives the content-id key its twin under the new generation
// right after the switch, so that a process holding only the new key can
// open the repository and write snapshots at once. Best effort: the re-wrap
// step does it anyway.
func (r *Rotator) rewrapIDKey(ctx context.Context, kTo *keys.KEK) {
	ring := r.kc.Keyring()
	var id [16]byte
	if !parseHexID(ring.IDKeyDEK, id[:]) || ring.Rotation == nil {
		return
	}
	for _, from := range ring.Rotation.From {
		kFrom := r.kek(from)
		if kFrom == nil {
			continue
		}
		cs, err := r.kc.Copies(ctx, from, id, true)
		if err != nil {
			continue
		}
		for _, c := range cs {
			dek, err := kFrom.Unwrap(id, c.Wrapped)
			if err != nil {
				continue
			}
			if w, err := kTo.Wrap(id, dek); err == nil {
				r.st.Create(ctx, keys.DEKObject(kTo.Generation(), id), w)
			}
			clear(dek)
			return
		}
	}
}
