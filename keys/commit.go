package keys

import (
	"context"
	"errors"
	"fmt"
)

// Commit applies mutate to a copy of the latest keyring and commits the
// result as the next epoch (create-only keyring/<epoch>), retrying from the
// new latest epoch on conflict, at most 16 times. mutate returns false to
// commit nothing; it may be called more than once and must not keep the
// Keyring it is given. On success k has installed the committed epoch.
func (k *Keychain) Commit(ctx context.Context, mutate func(r *Keyring) (bool, error)) error {
	for range 16 {
		if err := k.Refresh(ctx); err != nil {
			return err
		}
		base := k.Keyring()
		next := base.Clone()
		changed, err := mutate(&next)
		if err != nil || !changed {
			return err
		}
		next.Epoch = base.Epoch + 1
		err = commitKeyring(ctx, k.st, &next)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return err
		}
		return k.install(&next)
	}
	return fmt.Errorf("committing keyring: %w (gave up after 16 attempts)", ErrConflict)
}
