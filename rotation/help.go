package rotation

import (
	"context"
	"fmt"
	"strings"

	"github.com/snapcrypt/snapcrypt/keys"
)

// Help works on the rotation in progress alongside the process that runs
// it (the coordinator, which holds the rotation lease).
//
// While the keyring has a rotation record it helps re-wrap: it claims
// shards one at a time with shard leases, re-wraps each (as Run does:
// idempotent, read back and verified) and marks it done, until no shard is
// left unclaimed and unfinished; then it returns. It does not wait for
// shards others hold and never retires anything. This needs the keys of
// the new generation and of every generation rotated from
// (keys.ErrDEKUnavailable otherwise, nothing written). The first error of
// a shard is returned after the other shards were tried; the coordinator
// redoes such a shard.
//
// Once the old generations are retired it helps delete their wrapped DEKs
// (from the last shard down, while the coordinator goes up; no key is
// needed), then returns. With nothing to do it returns nil at once.
//
// A daemon calls it whenever it sees a new keyring epoch (or every few
// seconds) while the rotation is unfinished; a call with nothing to do
// costs a few listings.
func (r *Rotator) Help(ctx context.Context, progress func(Progress)) error {
	opts := r.options()
	if err := r.kc.Writable(ctx); err != nil {
		return fmt.Errorf("help rotation: %w", err)
	}
	ring := r.kc.Keyring()
	rot := ring.Rotation
	if rot == nil {
		return r.helpDelete(ctx, opts, ring, progress)
	}
	kTo := r.kek(rot.To)
	kFrom := map[string]*keys.KEK{}
	var lack []string
	for _, g := range rot.From {
		kFrom[g] = r.kek(g)
		if kFrom[g] == nil {
			lack = append(lack, g)
		}
	}
	if kTo == nil {
		lack = append(lack, rot.To)
	}
	if len(lack) > 0 {
		return fmt.Errorf("help rotation: %w: re-wrapping needs the key of generation %s, which this process does not hold", keys.ErrDEKUnavailable, strings.Join(lack, " and "))
	}
	if err := r.beginRun(rot, true); err != nil {
		return fmt.Errorf("help rotation: %w", err)
	}
	defer r.endRun()
	r.report(progress, "rewrap")
	if err := r.newShardRun(rot, kTo, kFrom, opts, progress, false).work(ctx); err != nil {
		return err
	}
	r.report(progress, "done")
	return nil
}

// helpDelete deletes the wrapped DEKs of the generations ring says are
// retired, from the last shard down.
func (r *Rotator) helpDelete(ctx context.Context, opts Options, ring keys.Keyring, progress func(Progress)) error {
	var gens []string
	for _, g := range retiredGens(ring) {
		n, err := r.count(ctx, keys.GenPrefix(g), 1)
		if err != nil {
			return fmt.Errorf("help rotation: listing %s: %w", keys.GenPrefix(g), err)
		}
		if n > 0 {
			gens = append(gens, g)
		}
	}
	if len(gens) == 0 {
		return nil
	}
	if err := r.beginRun(nil, true); err != nil {
		return fmt.Errorf("help rotation: %w", err)
	}
	defer r.endRun()
	r.mu.Lock()
	r.prog.From = gens
	r.mu.Unlock()
	r.report(progress, "delete")
	if err := r.deleteGens(ctx, opts, gens, deleteDown); err != nil {
		return err
	}
	r.report(progress, "done")
	return nil
}
