package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Optional capabilities. A store may offer, beyond Store, any of the method
// sets below, each a faster or more thorough way to do something the Store
// methods can do too (or that needs doing only for some stores). A caller
// never type-asserts a store for them: where it wants "the fast way if the
// store has it, else the generic way" it calls the function of the same
// name in this package (ReadRange, ReadSmall, Prefetch, ListNames,
// DeletePrefix, PurgeTrash, RemoveStale), which does exactly that; where it must choose
// its own course by whether a store has one, it asks Capable.
//
// Decorators (package retry, package faults) have every capability method
// whatever their inner store offers, and forward each to the inner store
// where it has the capability and do the generic thing otherwise; they
// implement Decorator, through which Capable tells a forwarded capability
// from such a fallback.

// RangeReader is a store that reads a range of an object into the caller's
// buffer, sparing an allocation per read (local, s3). Package repo reads
// pack ciphertext with it.
type RangeReader interface {
	// ReadRange reads length bytes of the named object from off into buf
	// and returns the part of buf that holds them (a slice of buf, never a
	// copy elsewhere): fewer, possibly none, where the object ends, as
	// GetRange returns. A negative offset or length, or a buf shorter
	// than length, is an error that does not wrap ErrNotExist; a missing
	// object is an error wrapping ErrNotExist. buf may have been written
	// to when ReadRange fails.
	//
	// direct asks the store to read around the operating system's page
	// cache, for a large range that is read once (local: O_DIRECT, which
	// needs buf to hold DirectSlack bytes beyond length). A store may
	// ignore it, and does where buf has too little room; the bytes
	// returned are the same either way.
	//
	// It is safe for concurrent use, with a buffer of its own per call.
	ReadRange(ctx context.Context, name string, off, length int64, buf []byte, direct bool) ([]byte, error)
}

// DirectSlack is the room beyond length a buffer needs for
// RangeReader.ReadRange to honour direct: a read rounded out to whole
// 4 KiB blocks at both ends, and an aligned start in memory.
const DirectSlack = 12 << 10

// SmallReader is a store that reads a tiny object cheaper than Get (local:
// open, one read and close, no stat). A key rotation reads every wrapped
// DEK, tens of thousands of objects of 77 bytes, with it.
type SmallReader interface {
	// ReadSmall returns the whole content of the named object if it is at
	// most max bytes long. A longer object is an error wrapping
	// ErrTooLarge, a missing one an error wrapping ErrNotExist, a negative
	// max an error. It allocates about max bytes whatever the object's
	// size, so max should be small. It is safe for concurrent use.
	ReadSmall(ctx context.Context, name string, max int) ([]byte, error)
}

// Prefetcher is a store that can start reading objects before they are
// asked for (local: the kernel reads them all into its page cache at
// once, and merges neighbouring blocks into one request, where reads one
// after another each wait for the disk). A key rotation prefetches the
// wrapped DEKs it is about to read (docs/bench.md: a cold rotation of
// 100,000 single wrapped DEKs took 1.7-1.8 s so, against 5.7-6.1 s).
type Prefetcher interface {
	// Prefetch hints that at most the first max bytes of each named
	// object are about to be read. It returns without waiting for their
	// content, and at most MaxPrefetch names are worth giving it at a
	// time. A name it cannot read (missing, invalid, not a regular file)
	// is skipped: the read that follows reports it. It changes nothing
	// any read returns, and is safe for concurrent use.
	Prefetch(ctx context.Context, names []string, max int)
}

// MaxPrefetch is the most names a Prefetch call should carry.
const MaxPrefetch = 256

// NameLister is a store that lists names faster than List, in an order of
// its own and without sizes (local: directory order, the order in which
// reading many small files is fastest).
type NameLister interface {
	// ListNames calls fn with the name of every object whose name starts
	// with prefix, in an order of the store's choosing that a caller may
	// not rely on. Every object that exists for the whole listing is
	// delivered exactly once; objects created or deleted during it may or
	// may not be. fn is called from one goroutine at a time, and may call
	// any method of the store. ListNames stops at
	// and returns the first error fn returns. A prefix that matches
	// nothing is not an error. It is safe for concurrent use.
	ListNames(ctx context.Context, prefix string, fn func(name string) error) error
}

// PrefixDeleter is a store that deletes every object below a directory
// prefix at once (local: one rename). A key rotation deletes a retired
// generation's wrapped DEKs, deks/<generation>/, with it.
type PrefixDeleter interface {
	// DeletePrefix deletes every object whose name starts with prefix,
	// which must be a valid name (see CheckName) followed by "/", else it
	// returns an error wrapping ErrInvalidName. It is atomic for readers
	// and durable: the objects below prefix disappear all at one moment
	// (before it, a reader sees all of them, after it none; a crash in
	// between leaves all or none), and once it has returned success none
	// exists for any reader, also after a crash. Objects created below
	// prefix while it runs may or may not survive it; once it has
	// returned, the names are free again. A prefix with no objects is not
	// an error. The objects' space may stay taken until PurgeTrash runs (a
	// store that needs that is a TrashPurger). It is safe for concurrent
	// use, also by several processes.
	DeletePrefix(ctx context.Context, prefix string) error
}

// TrashPurger is a store whose deletions can leave space to free later
// (local: the directories DeletePrefix moved aside).
type TrashPurger interface {
	// PurgeTrash frees the space of objects that were deleted and not yet
	// freed, by this process or any other (also ones killed before they
	// got to it). It changes no object that exists. pace, if not nil, is
	// called after each batch of work with the time the batch took; it may
	// sleep, to spread a background purge out. With nothing to free it
	// costs about one listing. It returns the first error; a later call
	// carries on where it stopped. Several processes may purge at once.
	PurgeTrash(ctx context.Context, pace func(worked time.Duration)) error
}

// StaleRemover is a store whose writers can leave debris when they are
// killed in the middle of a write (local: temporary files).
type StaleRemover interface {
	// RemoveStale removes such leftovers that were last modified more than
	// age ago (a writer at work finishes within seconds, so an age of
	// minutes keeps RemoveStale off the files of live writers) and returns
	// how many it removed, with the first error. It never touches an
	// object, and is safe for concurrent use, also by several processes.
	RemoveStale(ctx context.Context, age time.Duration) (int, error)
}

// Decorator is a store that passes its calls on to another store, adding
// something on the way (retries, faults). Its capability methods exist
// whether or not the inner store has the capability; see Capable.
type Decorator interface {
	// Inner returns the store the calls go to.
	Inner() Store
}

// Capable returns st as the capability interface C, and whether st has
// that capability for real: st has C's methods and, if st is a Decorator,
// its inner store is Capable of C as well (a decorator's method over a
// store without the capability does the generic thing, which is no fast
// path). C is one of the interfaces above; a caller that only wants the
// capability used if present calls the function of the method's name
// instead.
func Capable[C any](st Reader) (C, bool) {
	c, ok := st.(C)
	if !ok {
		return c, false
	}
	if d, isDec := st.(Decorator); isDec {
		if _, ok := Capable[C](d.Inner()); !ok {
			var zero C
			return zero, false
		}
	}
	return c, true
}

// ReadRange reads length bytes of the named object from off into buf and
// returns the part of buf that holds them, as RangeReader.ReadRange: with
// r's ReadRange if r is Capable of it, else with GetRange and a copy into
// buf (direct then means nothing).
func ReadRange(ctx context.Context, r Reader, name string, off, length int64, buf []byte, direct bool) ([]byte, error) {
	if rr, ok := Capable[RangeReader](r); ok {
		return rr.ReadRange(ctx, name, off, length, buf, direct)
	}
	if length >= 0 && int64(len(buf)) < length {
		return nil, fmt.Errorf("get range %s: length %d, but a buffer of %d bytes", name, length, len(buf))
	}
	data, err := r.GetRange(ctx, name, off, length)
	if err != nil {
		return nil, err
	}
	return buf[:copy(buf, data)], nil
}

// ReadSmall returns the whole content of the named object if it is at
// most max bytes long, as SmallReader.ReadSmall: with r's ReadSmall if r is
// Capable of it, else with GetBounded.
func ReadSmall(ctx context.Context, r Reader, name string, max int) ([]byte, error) {
	if sr, ok := Capable[SmallReader](r); ok {
		return sr.ReadSmall(ctx, name, max)
	}
	return GetBounded(ctx, r, name, int64(max))
}

// Prefetch hints to r that at most the first max bytes of each named
// object are about to be read, as Prefetcher.Prefetch, if r is Capable of
// it; else it does nothing.
func Prefetch(ctx context.Context, r Reader, names []string, max int) {
	if p, ok := Capable[Prefetcher](r); ok {
		p.Prefetch(ctx, names, max)
	}
}

// ListNames calls fn with the name of every object below prefix, as
// NameLister.ListNames: with r's ListNames if r is Capable of it, else
// with List (in lexical order, which is one order a NameLister may use).
func ListNames(ctx context.Context, r Reader, prefix string, fn func(name string) error) error {
	if nl, ok := Capable[NameLister](r); ok {
		return nl.ListNames(ctx, prefix, fn)
	}
	return r.List(ctx, prefix, func(i Info) error { return fn(i.Name) })
}

// CheckPrefix returns an error wrapping ErrInvalidName unless prefix is a
// directory prefix as DeletePrefix takes it: a valid name and "/".
func CheckPrefix(prefix string) error {
	dir, ok := strings.CutSuffix(prefix, "/")
	if !ok || CheckName(dir) != nil {
		return fmt.Errorf("%w %q: not a valid name followed by a slash", ErrInvalidName, prefix)
	}
	return nil
}

// DeletePrefix deletes every object below prefix, a valid name followed
// by "/": with st's DeletePrefix if st is Capable of it, atomically for
// readers, else object by object with List and Delete, which is not atomic
// (a reader meanwhile sees some objects gone and others not, and a crash
// leaves some) and costs a call per object. An object deleted by someone
// else meanwhile is no error.
func DeletePrefix(ctx context.Context, st Store, prefix string) error {
	if pd, ok := Capable[PrefixDeleter](st); ok {
		return pd.DeletePrefix(ctx, prefix)
	}
	if err := CheckPrefix(prefix); err != nil {
		return fmt.Errorf("delete prefix: %w", err)
	}
	var names []string
	err := st.List(ctx, prefix, func(i Info) error {
		names = append(names, i.Name)
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete prefix %q: %w", prefix, err)
	}
	for _, name := range names {
		if err := st.Delete(ctx, name); err != nil && !errors.Is(err, ErrNotExist) {
			return fmt.Errorf("delete prefix %q: %w", prefix, err)
		}
	}
	return nil
}

// PurgeTrash frees the space deleted objects still take, with st's
// PurgeTrash if st is Capable of it; other stores free it when they delete,
// and PurgeTrash does nothing for them.
func PurgeTrash(ctx context.Context, st Store, pace func(worked time.Duration)) error {
	if tp, ok := Capable[TrashPurger](st); ok {
		return tp.PurgeTrash(ctx, pace)
	}
	return nil
}

// RemoveStale removes the leftovers of killed writers older than age, with
// st's RemoveStale if st is Capable of it, and returns how many it removed;
// other stores leave none, and RemoveStale returns 0 for them.
func RemoveStale(ctx context.Context, st Store, age time.Duration) (int, error) {
	if sr, ok := Capable[StaleRemover](st); ok {
		return sr.RemoveStale(ctx, age)
	}
	return 0, nil
}

// LocationOf returns r's Location if r has one (every Store does), for
// messages, and "" otherwise.
func LocationOf(r Reader) string {
	if l, ok := r.(interface{ Location() string }); ok {
		return l.Location()
	}
	return ""
}
