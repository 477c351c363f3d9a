// Package retry wraps a store.Store to retry calls that failed with a
// transient error, waiting a bounded, exponentially growing, jittered time
// between attempts.
//
// An error is transient unless it wraps store.ErrNotExist, store.ErrExist,
// store.ErrInvalidName, store.ErrUnsupported, store.ErrTooLarge,
// context.Canceled or context.DeadlineExceeded, or is marked permanent
// (see Permanent). A call whose context is done is not retried.
//
// A lost response makes some retries ambiguous; the wrapper resolves them so:
//   - Create: when an attempt after a transient failure reports ErrExist, the
//     object is read back; if it holds exactly the data being written, the
//     earlier attempt evidently succeeded and Create returns nil.
//   - Delete: when an attempt after a transient failure reports ErrNotExist,
//     Delete returns nil, since the earlier attempt may have deleted the
//     object. (A Delete of an object that never existed then reports success.)
//   - List resumes after the last name it delivered, so the callback sees
//     each object at most once and in order. Errors from the callback are
//     returned at once, never retried.
//
// Store has every optional capability of package store (ReadRange,
// ReadSmall, ListNames, DeletePrefix, PurgeTrash, RemoveStale) and is a
// store.Decorator. Over an inner store with the capability it retries the
// inner store's method, by the rules above and these:
//   - ListNames remembers the names it delivered and skips them when a
//     later attempt lists them again, so the callback sees each object at
//     most once (at the cost of the names' memory until it returns).
//   - DeletePrefix, PurgeTrash and RemoveStale are idempotent; every
//     transient failure is retried. RemoveStale counts the removals of
//     every attempt.
//
// Over an inner store without it, the method does the generic thing with
// the retrying Get, GetRange, List and Delete above (as the function of
// the same name in package store does), and store.Capable reports that
// the capability is missing.
package retry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/store"
)

// Options tune a retrying Store. The zero value gives the defaults.
type Options struct {
	// Attempts is the most attempts one call makes, the first included
	// (default 5).
	Attempts int

	// Base is the wait before the second attempt (default 100ms); each
	// further wait doubles, up to Max (default 5s). Each wait is chosen
	// at random between half and all of that.
	Base, Max time.Duration

	// OnRetry, if set, is called before each wait with the method, the
	// object name (the prefix for List), the attempt that failed (1 for the
	// first) and its error, for logging.
	OnRetry func(op, name string, attempt int, err error)

	// Sleep waits d or until ctx is done, returning ctx's error then. Tests
	// set it; the default uses a timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Store is a store.Store that retries the calls of an inner store.
type Store struct {
	inner store.Store
	opts  Options
}

var (
	_ store.Store         = (*Store)(nil)
	_ store.Decorator     = (*Store)(nil)
	_ store.RangeReader   = (*Store)(nil)
	_ store.SmallReader   = (*Store)(nil)
	_ store.Prefetcher    = (*Store)(nil)
	_ store.NameLister    = (*Store)(nil)
	_ store.PrefixDeleter = (*Store)(nil)
	_ store.TrashPurger   = (*Store)(nil)
	_ store.StaleRemover  = (*Store)(nil)
)

// New returns a Store that retries calls of inner as opts say.
func New(inner store.Store, opts Options) *Store {
	if opts.Attempts <= 0 {
		opts.Attempts = 5
	}
	if opts.Base <= 0 {
		opts.Base = 100 * time.Millisecond
	}
	if opts.Max <= 0 {
		opts.Max = 5 * time.Second
	}
	if opts.Max < opts.Base {
		opts.Max = opts.Base
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	return &Store{inner: inner, opts: opts}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type permanentError struct{ err error }

func (e permanentError) Error() string   { return e.err.Error() }
func (e permanentError) Unwrap() error   { return e.err }
func (e permanentError) Permanent() bool { return true }

// Permanent marks err as not worth retrying. Stores can also mark their
// errors without importing this package: any error in the chain with a
// method Permanent() bool that returns true counts.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// Transient reports whether err is worth retrying.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	for _, target := range []error{
		store.ErrNotExist, store.ErrExist, store.ErrInvalidName, store.ErrUnsupported,
		store.ErrTooLarge, context.Canceled, context.DeadlineExceeded,
	} {
		if errors.Is(err, target) {
			return false
		}
	}
	var p interface{ Permanent() bool }
	return !errors.As(err, &p) || !p.Permanent()
}

// Backoff returns the longest wait after the given failed attempt (1 for
// the first): Base doubled attempt-1 times, at most Max.
func (s *Store) Backoff(attempt int) time.Duration {
	d := s.opts.Base
	for i := 1; i < attempt && d < s.opts.Max; i++ {
		d *= 2
	}
	return min(d, s.opts.Max)
}

// do runs call until it succeeds, fails for good or runs out of attempts.
// call learns whether an earlier attempt failed transiently.
func (s *Store) do(ctx context.Context, op, name string, call func(retried bool) error) error {
	retried := false
	for attempt := 1; ; attempt++ {
		err := call(retried)
		if err == nil || !Transient(err) {
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("retry %s %s: %w (last error: %v)", op, name, cerr, err)
		}
		if attempt >= s.opts.Attempts {
			return fmt.Errorf("retry: gave up after %d attempts: %w", attempt, err)
		}
		if s.opts.OnRetry != nil {
			s.opts.OnRetry(op, name, attempt, err)
		}
		max := s.Backoff(attempt)
		wait := max/2 + rand.N(max/2+1)
		if serr := s.opts.Sleep(ctx, wait); serr != nil {
			return fmt.Errorf("retry %s %s: %w (last error: %v)", op, name, serr, err)
		}
		retried = true
	}
}

// Get implements store.Reader.
func (s *Store) Get(ctx context.Context, name string) (data []byte, err error) {
	err = s.do(ctx, "get", name, func(bool) error {
		data, err = s.inner.Get(ctx, name)
		return err
	})
	return data, err
}

// GetRange implements store.Reader.
func (s *Store) GetRange(ctx context.Context, name string, off, length int64) (data []byte, err error) {
	if off < 0 || length < 0 {
		return s.inner.GetRange(ctx, name, off, length) // fails; nothing to retry
	}
	err = s.do(ctx, "get range", name, func(bool) error {
		data, err = s.inner.GetRange(ctx, name, off, length)
		return err
	})
	return data, err
}

// ReadRange implements store.RangeReader: it retries the inner store's
// ReadRange, each attempt reading into buf afresh, or, over a store
// without one, reads with GetRange and copies into buf. direct is passed
// on.
func (s *Store) ReadRange(ctx context.Context, name string, off, length int64, buf []byte, direct bool) (data []byte, err error) {
	rr, ok := store.Capable[store.RangeReader](s.inner)
	if !ok {
		return store.ReadRange(ctx, s, name, off, length, buf, direct)
	}
	if off < 0 || length < 0 || int64(len(buf)) < length {
		return rr.ReadRange(ctx, name, off, length, buf, direct) // fails; nothing to retry
	}
	err = s.do(ctx, "get range", name, func(bool) error {
		data, err = rr.ReadRange(ctx, name, off, length, buf, direct)
		return err
	})
	if err != nil {
		return nil, err
	}
	return data, nil
}

// ReadSmall implements store.SmallReader: it retries the inner store's
// ReadSmall, or, over a store without one, reads with GetBounded. An
// object larger than max is not retried.
func (s *Store) ReadSmall(ctx context.Context, name string, max int) (data []byte, err error) {
	sr, ok := store.Capable[store.SmallReader](s.inner)
	if !ok {
		return store.ReadSmall(ctx, s, name, max)
	}
	if max < 0 {
		return sr.ReadSmall(ctx, name, max) // fails; nothing to retry
	}
	err = s.do(ctx, "read small", name, func(bool) error {
		data, err = sr.ReadSmall(ctx, name, max)
		return err
	})
	return data, err
}

// Prefetch implements store.Prefetcher: a hint, passed to the inner store
// if it takes them, never retried (the reads that follow are).
func (s *Store) Prefetch(ctx context.Context, names []string, max int) {
	store.Prefetch(ctx, s.inner, names, max)
}

// ListNames implements store.NameLister: it retries the inner store's
// ListNames, delivering each name at most once, or, over a store without
// one, lists with List.
func (s *Store) ListNames(ctx context.Context, prefix string, fn func(name string) error) error {
	nl, ok := store.Capable[store.NameLister](s.inner)
	if !ok {
		return store.ListNames(ctx, s, prefix, fn)
	}
	var (
		delivered = map[string]struct{}{}
		fnErr     error
	)
	err := s.do(ctx, "list names", prefix, func(bool) error {
		err := nl.ListNames(ctx, prefix, func(name string) error {
			if _, seen := delivered[name]; seen {
				return nil // seen before a failed attempt
			}
			if err := fn(name); err != nil {
				fnErr = err
				return err
			}
			delivered[name] = struct{}{}
			return nil
		})
		if fnErr != nil {
			return Permanent(fnErr)
		}
		return err
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

// DeletePrefix implements store.PrefixDeleter: it retries the inner
// store's DeletePrefix, or, over a store without one, deletes object by
// object with List and Delete (not atomically; see store.DeletePrefix).
func (s *Store) DeletePrefix(ctx context.Context, prefix string) error {
	pd, ok := store.Capable[store.PrefixDeleter](s.inner)
	if !ok {
		return store.DeletePrefix(ctx, s, prefix)
	}
	return s.do(ctx, "delete prefix", prefix, func(bool) error {
		return pd.DeletePrefix(ctx, prefix)
	})
}

// PurgeTrash implements store.TrashPurger: it retries the inner store's
// PurgeTrash, or, over a store without one, does nothing.
func (s *Store) PurgeTrash(ctx context.Context, pace func(worked time.Duration)) error {
	tp, ok := store.Capable[store.TrashPurger](s.inner)
	if !ok {
		return nil
	}
	return s.do(ctx, "purge trash", "", func(bool) error {
		return tp.PurgeTrash(ctx, pace)
	})
}

// RemoveStale implements store.StaleRemover: it retries the inner store's
// RemoveStale and returns the removals of all attempts, or, over a store
// without one, removes nothing.
func (s *Store) RemoveStale(ctx context.Context, age time.Duration) (int, error) {
	sr, ok := store.Capable[store.StaleRemover](s.inner)
	if !ok {
		return 0, nil
	}
	total := 0
	err := s.do(ctx, "remove stale", "", func(bool) error {
		n, err := sr.RemoveStale(ctx, age)
		total += n
		return err
	})
	return total, err
}

// Stat implements store.Reader.
func (s *Store) Stat(ctx context.Context, name string) (info store.Info, err error) {
	err = s.do(ctx, "stat", name, func(bool) error {
		info, err = s.inner.Stat(ctx, name)
		return err
	})
	return info, err
}

// List implements store.Reader.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	var (
		last      string
		delivered bool
		fnErr     error
	)
	err := s.do(ctx, "list", prefix, func(bool) error {
		err := s.inner.List(ctx, prefix, func(info store.Info) error {
			if delivered && info.Name <= last {
				return nil // seen before a failed attempt
			}
			if err := fn(info); err != nil {
				fnErr = err
				return err
			}
			last, delivered = info.Name, true
			return nil
		})
		if fnErr != nil {
			return Permanent(fnErr)
		}
		return err
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, name string, data []byte) error {
	return s.do(ctx, "create", name, func(retried bool) error {
		err := s.inner.Create(ctx, name, data)
		if retried && errors.Is(err, store.ErrExist) {
			got, gerr := s.inner.Get(ctx, name)
			if Transient(gerr) {
				return gerr // read back on the next attempt
			}
			if gerr != nil {
				return err
			}
			if bytes.Equal(got, data) {
				return nil // an earlier attempt made it
			}
		}
		return err
	})
}

// Put implements store.Store. Put is idempotent, so every transient failure
// is retried.
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	return s.do(ctx, "put", name, func(bool) error {
		return s.inner.Put(ctx, name, data)
	})
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	return s.do(ctx, "delete", name, func(retried bool) error {
		err := s.inner.Delete(ctx, name)
		if retried && errors.Is(err, store.ErrNotExist) {
			return nil // an earlier attempt may have made it
		}
		return err
	})
}

// Location implements store.Store.
func (s *Store) Location() string { return s.inner.Location() }

// Inner implements store.Decorator.
func (s *Store) Inner() store.Store { return s.inner }
