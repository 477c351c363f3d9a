package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/snapcrypt/snapcrypt/repo/store"
)

// Bulk operations for key rotation, which touches every wrapped DEK of a
// generation: one small file each. On ext4 reading such files in directory
// order instead of name order makes a cold pass faster (docs/bench.md: the
// inodes and data blocks were allocated in creation order, which directory
// order follows more closely than the random DEK ids do), and removing a whole
// directory is the cheapest way to delete them.

// openNoatime opens a file for reading without updating its access time
// (O_NOATIME) when the file's owner or a privileged process opens it: a
// rotation reads every wrapped DEK, tens of thousands of files, and with
// relatime each first read in a day would dirty the file's inode and cost
// a journal write. Anyone else opens it as usual.
//
// It opens without waiting (O_NONBLOCK), so that a FIFO put where an
// object belongs does not hang the caller, and returns a regular file
// only, made blocking again, with its size; anything else is an error
// wrapping fs.ErrNotExist.
func openNoatime(path string) (*os.File, int64, error) {
	fd, err := openFD(path, syscall.O_NONBLOCK)
	if err != nil {
		return nil, 0, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return nil, 0, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		syscall.Close(fd)
		return nil, 0, &os.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
	}
	if flags, err := unix.FcntlInt(uintptr(fd), syscall.F_GETFL, 0); err == nil {
		unix.FcntlInt(uintptr(fd), syscall.F_SETFL, flags&^syscall.O_NONBLOCK)
	}
	// A blocking regular file: os.NewFile does not register it with the
	// poller.
	return os.NewFile(uintptr(fd), path), st.Size, nil
}

// openFD is open(2) for reading, close-on-exec, with O_NOATIME where the
// kernel allows it, and the flags in extra.
//
// ReadSmall and Prefetch add O_NONBLOCK: a FIFO put where an object
// belongs (by anyone who can write to the store) then opens at once
// rather than wait for a writer, and its read ends or fails; a regular
// file reads as without it.
func openFD(path string, extra int) (int, error) {
	var fd int
	var err error
	flags := syscall.O_RDONLY | syscall.O_CLOEXEC | extra
	for _, flags := range []int{flags | syscall.O_NOATIME, flags} {
		for {
			fd, err = syscall.Open(path, flags, 0)
			if err != syscall.EINTR {
				break
			}
		}
		if err != syscall.EPERM {
			break
		}
	}
	return fd, err
}

// Prefetch implements store.Prefetcher: it opens each file (O_NOATIME
// where allowed), asks the kernel to read its first max bytes into the
// page cache (POSIX_FADV_WILLNEED, which starts the read and returns) and
// closes it, one file at a time, so that the reads of all of them are
// queued at once and neighbouring blocks merge. Names it cannot open are
// skipped; a file longer than max is read no further than max.
func (s *Store) Prefetch(ctx context.Context, names []string, max int) {
	if max <= 0 {
		return
	}
	for _, name := range names {
		if ctx.Err() != nil {
			return
		}
		if store.CheckName(name) != nil {
			continue
		}
		fd, err := openFD(s.path(name), syscall.O_NONBLOCK)
		if err != nil {
			continue
		}
		unix.Fadvise(fd, 0, int64(max), unix.FADV_WILLNEED)
		syscall.Close(fd)
	}
}

// readFD is read(2); tests count its calls.
var readFD = syscall.Read

// ReadSmall implements store.SmallReader with three system calls: open
// (O_NOATIME where allowed), one read, close; no stat, and no registration
// with Go's poller, which os.Open tries for every file. For reading many
// tiny objects at once (a rotation reads every wrapped DEK).
func (s *Store) ReadSmall(ctx context.Context, name string, max int) ([]byte, error) {
	if err := check(ctx, "get", name); err != nil {
		return nil, err
	}
	if max < 0 {
		return nil, fmt.Errorf("get %s: negative size limit %d", name, max)
	}
	p := s.path(name)
	fd, err := openFD(p, syscall.O_NONBLOCK)
	if notExist(err) {
		return nil, fmt.Errorf("get %s: %w", name, store.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", name, &os.PathError{Op: "open", Path: p, Err: err})
	}
	defer syscall.Close(fd)
	buf := make([]byte, max+1)
	n := 0
	for n < len(buf) {
		m, err := readFD(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EISDIR {
			return nil, fmt.Errorf("get %s: %w", name, store.ErrNotExist)
		}
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", name, &os.PathError{Op: "read", Path: p, Err: err})
		}
		if m == 0 {
			break
		}
		n += m
		if n < len(buf) {
			// A read of a regular file returns less than asked only at
			// its end: no second read to be told so (a rotation reads
			// every wrapped DEK, 77 bytes each).
			break
		}
	}
	if n > max {
		return nil, fmt.Errorf("get %s: %w (limit %d bytes)", name, store.ErrTooLarge, max)
	}
	return buf[:n:n], nil
}

// trashPrefix starts the names of directories DeletePrefix moved away and
// is removing (a dot: List never sees them).
const trashPrefix = ".trash-"

// ListNames implements store.NameLister: List without order and sizes. It
// calls fn with the name of every object below prefix in the order the
// file system returns directory entries (the fastest order to read the
// objects in), and stats nothing.
func (s *Store) ListNames(ctx context.Context, prefix string, fn func(name string) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	dir, _ := splitDir(prefix)
	return s.walkNames(ctx, dir, prefix, fn)
}

func (s *Store) walkNames(ctx context.Context, dir, prefix string, fn func(string) error) error {
	f, err := os.Open(s.path(dir))
	if err != nil {
		if notExist(err) {
			return nil // no such directory, or removed while listing
		}
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.IsDir() {
		// An object where the prefix names a directory ("config/"),
		// or one removed while listing: nothing below it.
		if err != nil && !notExist(err) {
			return fmt.Errorf("list %q: %w", prefix, err)
		}
		return nil
	}
	base := ""
	if dir != "" {
		base = dir + "/"
	}
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("list %q: %w", prefix, err)
		}
		entries, err := f.ReadDir(4096)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				continue // temporary file, or not ours
			}
			full := base + e.Name()
			if e.IsDir() {
				if strings.HasPrefix(full+"/", prefix) || strings.HasPrefix(prefix, full+"/") {
					if err := s.walkNames(ctx, full, prefix, fn); err != nil {
						return err
					}
				}
				continue
			}
			if !strings.HasPrefix(full, prefix) || !e.Type().IsRegular() {
				continue
			}
			if err := fn(full); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %q: %w", prefix, err)
		}
	}
}

// DeletePrefix implements store.PrefixDeleter for a directory prefix
// ("deks/<generation>/"): the directory is renamed out of the store's name
// space (to a hidden directory at the top) and that is made durable, so
// from then on no object below prefix exists for any reader, even after a
// crash. Freeing the files' space is left to PurgeTrash, which any process
// may run later.
func (s *Store) DeletePrefix(ctx context.Context, prefix string) error {
	if err := store.CheckPrefix(prefix); err != nil {
		return fmt.Errorf("delete prefix: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete prefix %q: %w", prefix, err)
	}
	dir := strings.TrimSuffix(prefix, "/")
	if fi, err := os.Lstat(s.path(dir)); notExist(err) || err == nil && !fi.IsDir() {
		return nil // nothing below prefix (an object named dir is not)
	}
	b := make([]byte, 8)
	rand.Read(b)
	trash := filepath.Join(s.root, trashPrefix+hex.EncodeToString(b))
	if err := os.Rename(s.path(dir), trash); err != nil {
		if notExist(err) {
			return nil
		}
		return fmt.Errorf("delete prefix %q: %w", prefix, err)
	}
	// Directories below dir must be made again (and synced) if reused.
	s.synced.Range(func(k, _ any) bool {
		if d := k.(string); d == dir || strings.HasPrefix(d, prefix) {
			s.synced.Delete(d)
		}
		return true
	})
	parent, _ := splitDir(dir)
	if err := syncDir(s.path(parent)); err != nil {
		return fmt.Errorf("delete prefix %q: %w", prefix, err)
	}
	if err := syncDir(s.root); err != nil {
		return fmt.Errorf("delete prefix %q: %w", prefix, err)
	}
	return nil
}

// PurgeTrash implements store.TrashPurger: it removes the directories
// DeletePrefix moved away (by any process, including ones killed before
// they purged), files in directory order, the cheapest way to free them.
// pace is called after every batch of purgeBatch files.
func (s *Store) PurgeTrash(ctx context.Context, pace func(worked time.Duration)) error {
	entries, err := os.ReadDir(s.root)
	if err != nil {
		return fmt.Errorf("purge: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), trashPrefix) {
			continue
		}
		// A directory read while it shrinks might skip an entry: then
		// the last removal finds it not empty, and a second pass takes
		// what is left.
		var err error
		for range 3 {
			if err = removeTree(ctx, filepath.Join(s.root, e.Name()), pace); !errors.Is(err, syscall.ENOTEMPTY) {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("purge: %w", err)
		}
	}
	return nil
}

// purgeBatch is how many files PurgeTrash removes between calls of pace.
const purgeBatch = 256

// removeTree removes the directory dir and everything below it, reading
// each directory in batches and unlinking in directory order.
func removeTree(ctx context.Context, dir string, pace func(time.Duration)) error {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // another process purged it
	}
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		t := time.Now()
		entries, rerr := f.ReadDir(purgeBatch)
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			if e.IsDir() {
				if err := removeTree(ctx, p, pace); err != nil {
					return err
				}
				continue
			}
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		if pace != nil && len(entries) > 0 {
			pace(time.Since(t))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
