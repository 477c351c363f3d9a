// Package keys holds everything snapcrypt knows about keys: key specs (where
// an operator's key or passphrase comes from), KEK derivation, the keyring
// (the repository's single source of truth about key generations), wrapped
// DEKs, the Keychain that the rest of the code uses to get data keys, and the
// online rotation engine with its lease.
//
// The protocol and its invariants are specified in docs/rotation.md; the
// bytes of every object this package writes are specified in the "keys"
// section of docs/format.md.
//
// Errors about repository bytes of this package (keyring, wrapped DEK, DEK
// pack, lease) that fail authentication or do not parse wrap
// object.ErrCorrupt.
//
// No error, log line or String method of this package contains key material.
package keys

import (
	"errors"
	"fmt"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/object"
)

var (
	// ErrBadKey is wrapped by every error about a key spec or key material
	// that cannot be used (unreadable file, wrong length, empty passphrase).
	ErrBadKey = errors.New("bad key")

	// ErrNoKeyMatches is returned when none of the supplied keys matches a
	// current or retiring key generation of the repository.
	ErrNoKeyMatches = errors.New("no key matches this repository")

	// ErrDEKUnavailable is wrapped when a data key cannot be unwrapped with
	// the keys this process holds. The message names the generation(s)
	// whose key would be needed.
	ErrDEKUnavailable = errors.New("data key unavailable")

	// ErrDifferentKey is returned when a wrapped DEK authenticates under its
	// KEK, repository, generation and id but holds another data key than
	// the one expected: not damage that a fresh copy repairs, but two
	// writers that disagree. It wraps object.ErrCorrupt.
	ErrDifferentKey = fmt.Errorf("%w: holds a different key", object.ErrCorrupt)

	// ErrConflict is returned when a keyring commit lost the compare-and-swap
	// to another writer. The caller reloads the keyring and retries.
	ErrConflict = errors.New("keyring changed concurrently")

	// ErrBusy is wrapped (by a *BusyError) when another live process holds
	// the rotation lease.
	ErrBusy = errors.New("a key rotation is being run by another process")

	// ErrAlreadyCurrent is returned by StartRotation when the new key is the
	// key of the current generation. Nothing is changed.
	ErrAlreadyCurrent = errors.New("this key is already the current key")

	// ErrRotationUnfinished is returned by StartRotation when an earlier
	// rotation has not finished; Resume it first.
	ErrRotationUnfinished = errors.New("an earlier key rotation is unfinished")
)

// BusyError says who holds the rotation lease. It wraps ErrBusy.
type BusyError struct {
	Host    string
	PID     int
	Expires time.Time
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("%v: held by host %s pid %d until %s", ErrBusy, e.Host, e.PID, e.Expires.UTC().Format(time.RFC3339))
}

// Unwrap returns ErrBusy.
func (e *BusyError) Unwrap() error { return ErrBusy }

// keyError is an error about key material: its message is its own, and it
// wraps ErrBadKey and the underlying cause (if any).
type keyError struct {
	msg   string
	cause error
}

func (e *keyError) Error() string { return e.msg }

func (e *keyError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrBadKey}
	}
	return []error{ErrBadKey, e.cause}
}

func badKey(cause error, format string, args ...any) error {
	return &keyError{msg: fmt.Sprintf(format, args...), cause: cause}
}
