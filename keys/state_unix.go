//go:build unix

package keys

import (
	"os"
	"syscall"
)

// lockRecord takes an exclusive lock on the file name (creating it) and
// returns its release.
func lockRecord(name string) (unlock func(), err error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}
