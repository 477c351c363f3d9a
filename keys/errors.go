// Package keys holds everything snapcrypt knows about keys: key specs (where
// an operator's key or passphrase comes from), KEK derivation, the keyring
// (the repository's single source of truth about key generations), wrapped
// DEKs and DEK packs, and the Keychain that the rest of the code uses to get
// data keys. The online rotation is package rotation, built on the
// per-generation operations of generation.go and on Keychain.Commit.
//
// Below a repository's "deks/" and "keyring/" only this package and package
// rotation write: here a new DEK's wrapped copy (Keychain.NewDEK), its
// twin under the current generation when a late writer finds the keyring
// changed, and keyring epochs (Init, Keychain.Commit), written create-only;
// in rotation, the re-wrapped twins and the deletion of a retired
// generation's prefix. A Keychain is safe for concurrent use.
//
// The bytes of every object this package reads or writes are specified in
// the "keys" section of docs/format.md; how a rotation uses them, in
// docs/rotation.md.
//
// No error, log line or String method of this package contains key material.
package keys

import (
	"errors"
	"fmt"

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
)

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
