package rotation

import (
	"context"
	"errors"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// Optional capabilities of a store that a rotation uses when it has them
// (the local store has all three).

// nameLister is a store that lists names fastest in an order of its own
// and without sizes (the local store: directory order). A rotation reads
// every wrapped DEK of a generation and needs neither.
type nameLister interface {
	ListNames(ctx context.Context, prefix string, fn func(name string) error) error
}

// prefixDeleter is a store that deletes every object below a directory
// prefix at once, atomically for readers, and frees their space later in
// PurgeTrash (the local store).
type prefixDeleter interface {
	DeletePrefix(ctx context.Context, prefix string) error
	PurgeTrash(ctx context.Context, pace func(worked time.Duration)) error
}

// smallReader is a store that reads a tiny object cheaper than Get (the
// local store: three system calls).
type smallReader interface {
	ReadSmall(ctx context.Context, name string, max int) ([]byte, error)
}

// listNames lists the names below prefix in whatever order the store lists
// fastest.
func (r *Rotator) listNames(ctx context.Context, prefix string, fn func(name string) error) error {
	if nl, ok := r.st.(nameLister); ok {
		return nl.ListNames(ctx, prefix, fn)
	}
	return r.st.List(ctx, prefix, func(i store.Info) error { return fn(i.Name) })
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
