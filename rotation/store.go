package rotation

import (
	"context"
	"errors"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// listNames lists the names below prefix in whatever order the store lists
// fastest (store.ListNames: directory order on a local store).
func (r *Rotator) listNames(ctx context.Context, prefix string, fn func(name string) error) error {
	return store.ListNames(ctx, r.st, prefix, fn)
}

var errEnough = errors.New("enough")

// count counts objects below prefix, stopping at limit (0: no limit).
func (r *Rotator) count(ctx context.Context, prefix string, limit int) (int, error) {
	n := 0
	err := r.st.List(ctx, prefix, func(store.Info) error {
		n++
		if limit > 0 && n >= limit {
			return errEnough
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		err = nil
	}
	return n, err
}

// countDEKs counts the wrapped DEKs of generation gen: single objects and
// the entries of DEK packs (by their names).
func (r *Rotator) countDEKs(ctx context.Context, gen string) (int, error) {
	n := 0
	err := r.listNames(ctx, keys.GenPrefix(gen), func(name string) error {
		n += int(keys.ObjectEntries(name))
		return nil
	})
	return n, err
}
