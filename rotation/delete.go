package rotation

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// deleteOrder is how deleteGens walks a retired prefix.
type deleteOrder int

const (
	deleteAll  deleteOrder = iota // one listing per generation: nobody else deletes
	deleteUp                      // shard by shard from the first (a coordinator with helpers about)
	deleteDown                    // shard by shard from the last (a helper)
)

// deleteRetired deletes the shard leases and done markers of finished
// rotations, then every wrapped DEK of every retired generation.
func (r *Rotator) deleteRetired(ctx context.Context, opts Options, order deleteOrder) error {
	ring := r.kc.Keyring()
	keep := ""
	if ring.Rotation != nil {
		keep = ring.Rotation.ID
	}
	if err := r.deleteRewrapObjects(ctx, opts, keep); err != nil {
		return err
	}
	return r.deleteGens(ctx, opts, retiredGens(ring), order)
}

func retiredGens(ring keys.Keyring) []string {
	var out []string
	for _, g := range ring.Generations {
		if g.State == keys.StateRetired {
			out = append(out, g.ID)
		}
	}
	return out
}

// deleteGens deletes every wrapped DEK below deks/<g>/ for each of gens,
// which a committed keyring says are retired: at once where the store
// deletes a whole prefix, else object by object. A coordinator and a
// helper deleting at once go shard by shard, listing each afresh, from
// opposite ends, so that they meet in the middle; an empty prefix then
// costs one listing.
func (r *Rotator) deleteGens(ctx context.Context, opts Options, gens []string, order deleteOrder) error {
	if _, ok := store.Capable[store.PrefixDeleter](r.st); ok {
		return r.deletePrefixes(ctx, gens)
	}
	for _, g := range gens {
		if order == deleteAll {
			if err := r.deleteBelow(ctx, opts, keys.GenPrefix(g)); err != nil {
				return err
			}
			continue
		}
		if n, err := r.count(ctx, keys.GenPrefix(g), 1); err != nil {
			return fmt.Errorf("rotate: listing %s: %w", keys.GenPrefix(g), err)
		} else if n == 0 {
			continue
		}
		// The shards' single objects, then the DEK packs (a last pseudo
		// shard).
		for i := range RewrapShards + 1 {
			s := i
			if order == deleteDown {
				s = RewrapShards - i
			}
			prefix := keys.PackPrefix(g)
			if s < RewrapShards {
				prefix = shardDEKPrefix(g, s)
			}
			if err := r.deleteBelow(ctx, opts, prefix); err != nil {
				return err
			}
		}
	}
	return nil
}

// deletePrefixes deletes each generation's prefix at once (DeletePrefix).
func (r *Rotator) deletePrefixes(ctx context.Context, gens []string) error {
	for _, g := range gens {
		n, err := r.countDEKs(ctx, g)
		if err != nil {
			return fmt.Errorf("rotate: listing %s: %w", keys.GenPrefix(g), err)
		}
		if err := store.DeletePrefix(ctx, r.st, keys.GenPrefix(g)); err != nil {
			return fmt.Errorf("rotate: %w", err)
		}
		r.deleted.Add(int64(n))
		if err := r.step(PointDelete); err != nil {
			return err
		}
	}
	return nil
}

// deleteBelow lists prefix and deletes every object found, in parallel.
func (r *Rotator) deleteBelow(ctx context.Context, opts Options, prefix string) error {
	var names []string
	err := r.st.List(ctx, prefix, func(i store.Info) error {
		names = append(names, i.Name)
		return nil
	})
	if err != nil {
		return fmt.Errorf("rotate: listing %s: %w", prefix, err)
	}
	return r.parallel(ctx, opts.Workers, names, func(name string) error {
		err := r.st.Delete(ctx, name)
		if err != nil && !errors.Is(err, store.ErrNotExist) {
			return fmt.Errorf("rotate: %w", err)
		}
		if err == nil {
			r.deleted.Add(keys.ObjectEntries(name))
		}
		return r.step(PointDelete)
	})
}

// deleteRewrapObjects deletes the shard leases and done markers of every
// rotation other than keep (the one in progress, if any).
func (r *Rotator) deleteRewrapObjects(ctx context.Context, opts Options, keep string) error {
	var names []string
	err := r.st.List(ctx, rewrapPrefix, func(i store.Info) error {
		if keep == "" || !strings.HasPrefix(i.Name, rewrapRotPrefix(keep)) {
			names = append(names, i.Name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rotate: listing %s: %w", rewrapPrefix, err)
	}
	return r.parallel(ctx, opts.Workers, names, func(name string) error {
		if err := r.st.Delete(ctx, name); err != nil && !errors.Is(err, store.ErrNotExist) {
			return fmt.Errorf("rotate: %w", err)
		}
		return nil
	})
}
