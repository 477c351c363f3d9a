package fs

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/rotation"
)

// TestControlErrno checks the errno table of the control files against
// what README.md promises a writer of .ctl/rotate and .ctl/keys.
func TestControlErrno(t *testing.T) {
	spec, err := keys.ParseSpec("file:" + filepath.Join(t.TempDir(), "missing.key"))
	if err != nil {
		t.Fatal(err)
	}
	_, missing := spec.Load()
	if !errors.Is(missing, keys.ErrBadKey) || !errors.Is(missing, iofs.ErrNotExist) {
		t.Fatalf("loading a missing key file: %v, want an error wrapping ErrBadKey and ErrNotExist", missing)
	}
	for _, c := range []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"the key that is already current", fmt.Errorf("rotate: %w", rotation.ErrAlreadyCurrent), syscall.EEXIST},
		{"a rotation run by another process", &lease.BusyError{Host: "h", PID: 1}, syscall.EBUSY},
		{"an unfinished rotation", fmt.Errorf("rotate: %w", rotation.ErrRotationUnfinished), syscall.EBUSY},
		{"a lost compare-and-swap", keys.ErrConflict, syscall.EAGAIN},
		{"a key that matches nothing", fmt.Errorf("keys: %w", keys.ErrNoKeyMatches), syscall.EINVAL},
		{"a missing key file", missing, syscall.EINVAL},
		{"an errno", fmt.Errorf("x: %w", syscall.EROFS), syscall.EROFS},
		{"invalid", iofs.ErrInvalid, syscall.EINVAL},
		{"permission", iofs.ErrPermission, syscall.EACCES},
		{"exists", iofs.ErrExist, syscall.EEXIST},
		{"does not exist", iofs.ErrNotExist, syscall.ENOENT},
		{"anything else", errors.New("boom"), syscall.EIO},
	} {
		if got := controlErrno(c.err); got != c.want {
			t.Errorf("%s: errno %v (%d), want %v (%d)", c.name, got, int(got), c.want, int(c.want))
		}
	}
}
