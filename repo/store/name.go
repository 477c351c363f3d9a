package store

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidName is returned (wrapped) for an object name that CheckName
// rejects. Retrying such a call cannot help.
var ErrInvalidName = errors.New("invalid object name")

// ErrUnsupported is returned (wrapped) when a store cannot carry out an
// operation at all, for example Create on an S3 server that ignores
// If-None-Match. Retrying such a call cannot help.
var ErrUnsupported = errors.New("operation not supported by this store")

// CheckName reports whether name is a valid object name, and if not returns
// an error wrapping ErrInvalidName. A valid name is a non-empty relative path
// of one or more components separated by single slashes; no component may be
// empty, start with "." (this excludes "." and ".." and leaves names starting
// with a dot free for a store's temporary and probe objects) or contain a
// backslash or a NUL byte. Every store checks names on every call that takes
// one, so all stores accept and refuse the same names.
func CheckName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrInvalidName)
	}
	rest := name
	for {
		comp, tail, more := strings.Cut(rest, "/")
		switch {
		case comp == "":
			return fmt.Errorf("%w %q: empty path component or leading or trailing slash", ErrInvalidName, name)
		case comp[0] == '.':
			return fmt.Errorf("%w %q: path component starts with a dot", ErrInvalidName, name)
		case strings.ContainsAny(comp, "\\\x00"):
			return fmt.Errorf("%w %q: backslash or NUL byte", ErrInvalidName, name)
		}
		if !more {
			return nil
		}
		rest = tail
	}
}
