// Package local is a store.Store in a directory of the local file system.
//
// Object "a/b/c" is the file DIR/a/b/c; directories are made on demand and
// never removed. Writes go to a temporary file in the target directory (its
// name starts with ".", which no object name may, so List never sees it),
// which is synced and then linked (Create) or renamed (Put) to its final
// name; the directory is synced after that. Create relies on link(2) failing
// when the name exists, which is atomic among several processes and hosts
// sharing the directory on a POSIX file system (local file systems and NFS);
// file systems without hard links cannot hold a store.
//
// A crash can leave a temporary file behind; it is invisible to List and
// harmless (RemoveStale removes old ones). DeletePrefix (bulk.go) moves a
// directory to a hidden ".trash-<random>" directory at the top, which
// PurgeTrash removes. Object names must not clash as file and directory
// ("a" and "a/b" cannot both exist); snapcrypt's names never do.
//
// Beyond store.Store, a Store has every optional capability of package
// store: ReadRange, ReadSmall, ListNames, DeletePrefix, PurgeTrash and
// RemoveStale.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"github.com/snapcrypt/snapcrypt/repo/store"
)

// Store is a store in one directory. It is safe for concurrent use, also
// with other processes using the same directory.
type Store struct {
	root string // absolute, cleaned

	// synced holds the directories (relative, slash-separated, "" for the
	// root) whose own entry this Store has made durable in their parent.
	synced sync.Map

	// writeHook, when set by tests, replaces writing the temporary file's
	// content, to inject errors such as ENOSPC.
	writeHook func(f *os.File, data []byte) error

	// durable makes written data and directory entries durable, one
	// syncfs for all writers waiting at once.
	durable *groupSync
}

var (
	_ store.Store         = (*Store)(nil)
	_ store.RangeReader   = (*Store)(nil)
	_ store.SmallReader   = (*Store)(nil)
	_ store.Prefetcher    = (*Store)(nil)
	_ store.NameLister    = (*Store)(nil)
	_ store.PrefixDeleter = (*Store)(nil)
	_ store.TrashPurger   = (*Store)(nil)
	_ store.StaleRemover  = (*Store)(nil)
)

// Open opens the store in the existing directory dir.
func Open(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open store %s: not a directory", abs)
	}
	d, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{root: abs, durable: newGroupSync(d)}
	s.synced.Store("", true)
	return s, nil
}

// Init creates the directory dir (and its missing parents, mode 0700) for a
// new store and opens it. An existing directory is accepted only if it is
// empty.
func Init(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("init store %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("init store: %w", err)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("init store: %w", err)
	}
	if len(entries) > 0 {
		return nil, fmt.Errorf("init store %s: directory is not empty", abs)
	}
	if err := syncDir(filepath.Dir(abs)); err != nil {
		return nil, fmt.Errorf("init store %s: %w", abs, err)
	}
	return Open(abs)
}

// Location implements store.Store: the absolute path of the directory.
func (s *Store) Location() string { return s.root }

func (s *Store) path(name string) string {
	return filepath.Join(s.root, filepath.FromSlash(name))
}

func check(ctx context.Context, op, name string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	if err := store.CheckName(name); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// notExist tells whether err from opening an object's file means that the
// object does not exist: a missing file or a path component that is a file.
func notExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// open opens the object's file for reading; what is not a regular file
// (a directory, a FIFO) is no object.
func (s *Store) open(op, name string) (*os.File, int64, error) {
	f, size, err := openNoatime(s.path(name))
	if notExist(err) {
		return nil, 0, fmt.Errorf("%s %s: %w", op, name, store.ErrNotExist)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: %w", op, name, err)
	}
	return f, size, nil
}

// Get implements store.Reader.
func (s *Store) Get(ctx context.Context, name string) ([]byte, error) {
	if err := check(ctx, "get", name); err != nil {
		return nil, err
	}
	f, size, err := s.open("get", name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The file never changes once linked or renamed into place, so its size
	// at open is its size.
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	return data, nil
}

// GetRange implements store.Reader.
func (s *Store) GetRange(ctx context.Context, name string, off, length int64) ([]byte, error) {
	if length < 0 {
		return nil, fmt.Errorf("get range %s: negative length %d", name, length)
	}
	var data []byte
	n, err := s.readRange(ctx, name, off, func(size int64) []byte {
		data = make([]byte, min(length, size-off))
		return data
	})
	if err != nil {
		return nil, err
	}
	if data == nil {
		return []byte{}, nil // off is at or past the end
	}
	return data[:n], nil
}

// ReadRange implements store.RangeReader.
//
// With direct, the bytes come from the disk around the page cache
// (O_DIRECT), which spares the CPU the cache's bookkeeping and a copy: for
// a large range that is read once, such as the next megabyte of a file
// read sequentially through the mount (the kernel caches the plaintext).
// That needs the range rounded out to whole 4 KiB blocks and an aligned
// start in buf, so buf should hold length+store.DirectSlack bytes; with
// less room, or where the file system refuses O_DIRECT, ReadRange reads
// through the page cache as without direct.
func (s *Store) ReadRange(ctx context.Context, name string, off, length int64, buf []byte, direct bool) ([]byte, error) {
	if length < 0 || int64(len(buf)) < length {
		return nil, fmt.Errorf("get range %s: negative length %d or a buffer of %d bytes", name, length, len(buf))
	}
	if direct && int64(len(buf)) >= length+store.DirectSlack {
		p, err := s.readDirect(ctx, name, off, length, buf)
		if !errors.Is(err, errNoDirect) {
			return p, err
		}
	}
	n, err := s.readRange(ctx, name, off, func(size int64) []byte {
		return buf[:min(length, size-off)]
	})
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// directBlock is the alignment of O_DIRECT reads: file offsets, lengths
// and memory. Block devices ask for 512 bytes or 4 KiB.
const directBlock = 4096

// errNoDirect says that O_DIRECT is not to be had for a read.
var errNoDirect = errors.New("no direct I/O")

// readDirect is ReadRange's O_DIRECT read. It fails with errNoDirect when
// the file system refuses O_DIRECT or its alignment.
func (s *Store) readDirect(ctx context.Context, name string, off, length int64, buf []byte) ([]byte, error) {
	if err := check(ctx, "get range", name); err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("get range %s: negative offset %d", name, off)
	}
	// O_NONBLOCK: a FIFO opens at once and fails the check below; it
	// changes nothing for a regular file.
	f, err := os.OpenFile(s.path(name), os.O_RDONLY|syscall.O_DIRECT|syscall.O_NONBLOCK, 0)
	if notExist(err) {
		return nil, fmt.Errorf("get range %s: %w", name, store.ErrNotExist)
	}
	if err != nil {
		return nil, errNoDirect
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, errNoDirect // the buffered read says what is wrong
	}
	a := off &^ (directBlock - 1)
	e := (off + length + directBlock - 1) &^ (directBlock - 1)
	skip := int(-uintptr(unsafe.Pointer(unsafe.SliceData(buf))) % directBlock) // to an aligned address
	b := buf[skip : skip+int(e-a)]
	n := 0
	for n < len(b) {
		m, err := f.ReadAt(b[n:], a+int64(n))
		n += m
		if err == io.EOF {
			break
		}
		if errors.Is(err, syscall.EINVAL) {
			return nil, errNoDirect // an alignment this file system refuses
		}
		if err != nil {
			return nil, fmt.Errorf("get range %s: %w", name, err)
		}
	}
	lo := int(off - a)
	if n <= lo {
		return buf[:0], nil
	}
	return b[lo:min(n, lo+int(length))], nil
}

// readRange reads the object from off into the buffer that buf returns
// for the object's size; buf is not called when off is at or past the end.
func (s *Store) readRange(ctx context.Context, name string, off int64, buf func(size int64) []byte) (int, error) {
	if err := check(ctx, "get range", name); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, fmt.Errorf("get range %s: negative offset %d", name, off)
	}
	f, size, err := s.open("get range", name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if off >= size {
		return 0, nil
	}
	p := buf(size)
	n, err := f.ReadAt(p, off)
	if err != nil {
		return 0, fmt.Errorf("get range %s: %w", name, err)
	}
	return n, nil
}

// Stat implements store.Reader.
func (s *Store) Stat(ctx context.Context, name string) (store.Info, error) {
	if err := check(ctx, "stat", name); err != nil {
		return store.Info{}, err
	}
	fi, err := os.Stat(s.path(name))
	if notExist(err) || err == nil && !fi.Mode().IsRegular() {
		return store.Info{}, fmt.Errorf("stat %s: %w", name, store.ErrNotExist)
	}
	if err != nil {
		return store.Info{}, fmt.Errorf("stat %s: %w", name, err)
	}
	return store.Info{Name: name, Size: fi.Size()}, nil
}

// List implements store.Reader. It walks only the directories that can hold
// names with the prefix, and sorts each directory so that the names come out
// in lexical order of the full name.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	return s.walk(ctx, "", prefix, fn)
}

func (s *Store) walk(ctx context.Context, dir, prefix string, fn func(store.Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	entries, err := os.ReadDir(s.path(dir))
	if err != nil {
		if dir != "" && notExist(err) {
			return nil // removed while listing
		}
		if dir == "" {
			return fmt.Errorf("list %q: %w", prefix, err)
		}
		return fmt.Errorf("list %q: directory %s: %w", prefix, dir, err)
	}
	// Sort a directory as "name/" so that its objects come where their full
	// names belong: "a-b" < "a/b" because '-' < '/'.
	type entry struct {
		key string
		e   fs.DirEntry
	}
	sorted := make([]entry, 0, len(entries))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue // temporary file, or not ours
		}
		key := e.Name()
		if e.IsDir() {
			key += "/"
		}
		sorted = append(sorted, entry{key, e})
	}
	slices.SortFunc(sorted, func(a, b entry) int { return strings.Compare(a.key, b.key) })
	base := ""
	if dir != "" {
		base = dir + "/"
	}
	for _, x := range sorted {
		full := base + x.key
		if x.e.IsDir() {
			if strings.HasPrefix(full, prefix) || strings.HasPrefix(prefix, full) {
				if err := s.walk(ctx, strings.TrimSuffix(full, "/"), prefix, fn); err != nil {
					return err
				}
			}
			continue
		}
		if !strings.HasPrefix(full, prefix) || !x.e.Type().IsRegular() {
			continue
		}
		fi, err := x.e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted while listing
		}
		if err != nil {
			return fmt.Errorf("list %q: %s: %w", prefix, full, err)
		}
		if err := fn(store.Info{Name: full, Size: fi.Size()}); err != nil {
			return err
		}
	}
	return nil
}

// Create implements store.Store: temporary file, sync, link to the final
// name (which fails if it exists), remove the temporary, sync. Syncs are
// shared by concurrent writers (see groupSync).
func (s *Store) Create(ctx context.Context, name string, data []byte) error {
	if err := check(ctx, "create", name); err != nil {
		return err
	}
	return s.write("create", name, data, func(tmp, final string) error {
		err := os.Link(tmp, final)
		if errors.Is(err, fs.ErrExist) {
			return store.ErrExist
		}
		return err
	})
}

// Put implements store.Store: temporary file, sync, rename over the final
// name, sync.
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	if err := check(ctx, "put", name); err != nil {
		return err
	}
	return s.write("put", name, data, os.Rename)
}

// write writes data to a temporary file next to the object's file, makes it
// durable, and calls install to move it into place. The temporary file is
// removed in every case.
func (s *Store) write(op, name string, data []byte, install func(tmp, final string) error) (err error) {
	final := s.path(name)
	dirName, _ := splitDir(name)
	if err := s.mkdir(dirName); err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	f, err := os.CreateTemp(filepath.Dir(final), tmpPrefix+"*")
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	tmp := f.Name()
	defer func() {
		if rmErr := os.Remove(tmp); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) && err == nil {
			err = fmt.Errorf("%s %s: removing temporary file: %w", op, name, rmErr)
		}
	}()
	if s.writeHook != nil {
		err = s.writeHook(f, data)
	} else {
		_, err = f.Write(data)
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = s.durable.wait() // the content is durable before its name
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	if err := install(tmp, final); err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	if err := s.durable.wait(); err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	return nil
}

// Delete implements store.Store. It unlinks the file (never a directory) and
// syncs. Directories stay.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := check(ctx, "delete", name); err != nil {
		return err
	}
	p := s.path(name)
	err := syscall.Unlink(p)
	if notExist(err) || errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.EPERM) && isDir(p) {
		return fmt.Errorf("delete %s: %w", name, store.ErrNotExist)
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", name, &os.PathError{Op: "unlink", Path: p, Err: err})
	}
	if err := s.durable.wait(); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

// splitDir splits a slash-separated name into its directory ("" for none)
// and last component.
func splitDir(name string) (dir, file string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return "", name
	}
	return name[:i], name[i+1:]
}

// mkdir makes sure the directory dir (relative, slash-separated) exists and
// that its entry and those of its parents are durable. The first time a
// Store meets a directory it syncs the parent even if another process made
// the directory, since that process may not have synced it yet.
func (s *Store) mkdir(dir string) error {
	if _, ok := s.synced.Load(dir); ok {
		return nil
	}
	parent, _ := splitDir(dir)
	if err := s.mkdir(parent); err != nil {
		return err
	}
	p := s.path(dir)
	if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := syncDir(s.path(parent)); err != nil {
		return err
	}
	s.synced.Store(dir, true)
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	err = d.Sync()
	if closeErr := d.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
