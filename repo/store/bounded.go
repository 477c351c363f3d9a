package store

import (
	"context"
	"errors"
	"fmt"
)

// ErrTooLarge is returned (wrapped) by GetBounded for an object larger than
// the caller's limit.
var ErrTooLarge = errors.New("object is larger than its kind allows")

// GetBounded returns the whole content of the named object if it is at most
// max bytes long, and otherwise an error wrapping ErrTooLarge that names the
// object and the limit. It never allocates more than max+1 bytes for the
// content, however large the stored object is: it reads the range [0, max+1)
// and refuses when that range comes back full, so an object that grows
// between calls is caught too. It returns an error wrapping ErrNotExist when
// the object does not exist.
func GetBounded(ctx context.Context, r Reader, name string, max int64) ([]byte, error) {
	if max < 0 {
		return nil, fmt.Errorf("reading %s: negative size limit %d", name, max)
	}
	b, err := r.GetRange(ctx, name, 0, max+1)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %w (limit %d bytes)", name, ErrTooLarge, max)
	}
	return b, nil
}
