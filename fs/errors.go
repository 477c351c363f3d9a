package fs

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"strconv"
	"syscall"
	"unicode/utf8"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/rotation"
)

// maxLogged bounds the set of error lines already logged.
const maxLogged = 4096

// fail turns an error of the repository met while serving node n into an
// errno for the caller: ELOOP for trees that loop or nest too deep
// (repo.ErrTreeLoop), EIO for anything else. It logs one line per distinct
// error (the error names the object), counts the answers, and remembers
// errors about data keys for .ctl/status.
func (m *mount) fail(n placed, err error) syscall.Errno {
	errno := syscall.EIO
	if errors.Is(err, repo.ErrTreeLoop) {
		errno = syscall.ELOOP
	}
	if m.ctx.Err() != nil {
		return errno // unmounting: nothing to report
	}
	m.eio.Add(1)
	m.ctlGen.Add(1) // .ctl/status shows it
	m.noteError(err)
	m.logOnceKey(err.Error(), "reading %s: %v", n.path(), err)
	return errno
}

// logOnce logs a line unless the same line was logged before.
func (m *mount) logOnce(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	m.logOnceKey(msg, "%s", msg)
}

// logOnceKey logs a line unless a line with the same key was logged.
func (m *mount) logOnceKey(key, format string, args ...any) {
	m.errMu.Lock()
	if m.logged[key] {
		m.errMu.Unlock()
		return
	}
	if len(m.logged) >= maxLogged {
		clear(m.logged)
	}
	m.logged[key] = true
	m.errMu.Unlock()
	m.opts.Logf(format, args...)
}

// noteError remembers errors about data keys for status.
func (m *mount) noteError(err error) {
	if errors.Is(err, keys.ErrDEKUnavailable) {
		m.noteKeyError(err.Error())
	}
}

// maxKeyErrors bounds the data-key errors kept for status.
const maxKeyErrors = 16

func (m *mount) noteKeyError(msg string) {
	m.errMu.Lock()
	defer m.errMu.Unlock()
	for _, s := range m.keyErrs {
		if s == msg {
			return
		}
	}
	m.keyErrs = append(m.keyErrs, msg)
	if len(m.keyErrs) > maxKeyErrors {
		m.keyErrs = m.keyErrs[len(m.keyErrs)-maxKeyErrors:]
	}
}

// placed is what an error is about: a node of the node table, or of
// go-fuse's tree (inodePlace).
type placed interface {
	// path is the path below the mountpoint, quoted when it is not
	// UTF-8 (quotePath).
	path() string
}

// inodePlace is a node of go-fuse's tree, as placed.
type inodePlace struct{ *gofs.Inode }

func (n inodePlace) path() string { return quotePath(n.Path(nil)) }

// quotePath quotes p when it is not UTF-8.
func quotePath(p string) string {
	if !utf8.ValidString(p) {
		return strconv.Quote(p)
	}
	return p
}

// controlErrno maps the error of a control file's handler to the errno the
// writer (or reader) gets. This is the one table (README.md describes the
// same errnos for .ctl/rotate and .ctl/keys); the first row that matches
// wins, so a key error caused by a missing key file is EINVAL, not ENOENT:
//
//	rotation.ErrAlreadyCurrent                      EEXIST
//	lease.ErrBusy, rotation.ErrRotationUnfinished   EBUSY
//	keys.ErrConflict                                EAGAIN
//	keys.ErrBadKey, keys.ErrNoKeyMatches            EINVAL
//	a syscall.Errno                                 itself
//	fs.ErrInvalid (os.ErrInvalid)                   EINVAL
//	fs.ErrPermission                                EACCES
//	fs.ErrExist                                     EEXIST
//	fs.ErrNotExist                                  ENOENT
//	anything else                                   EIO
func controlErrno(err error) syscall.Errno {
	var e syscall.Errno
	switch {
	case errors.Is(err, rotation.ErrAlreadyCurrent):
		return syscall.EEXIST
	case errors.Is(err, lease.ErrBusy), errors.Is(err, rotation.ErrRotationUnfinished):
		return syscall.EBUSY
	case errors.Is(err, keys.ErrConflict):
		return syscall.EAGAIN
	case errors.Is(err, keys.ErrBadKey), errors.Is(err, keys.ErrNoKeyMatches):
		return syscall.EINVAL
	case errors.As(err, &e):
		return e
	case errors.Is(err, iofs.ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, iofs.ErrPermission):
		return syscall.EACCES
	case errors.Is(err, iofs.ErrExist):
		return syscall.EEXIST
	case errors.Is(err, iofs.ErrNotExist):
		return syscall.ENOENT
	}
	return syscall.EIO
}
