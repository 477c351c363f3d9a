// Package store holds the storage layer of a snapcrypt repository: named,
// immutable-by-convention byte objects in a flat namespace, as object storage
// offers them. A store knows nothing about encryption or the repository format.
//
// Names are slash-separated relative paths such as "data/3f/3f0a…" or
// "keyring/00000000000000000001". A store gives no directory semantics: there
// is no rename, no append and no empty directory; listing by a prefix that
// ends in "/" returns every object below it. Every store accepts exactly the
// names CheckName accepts and refuses others with an error wrapping
// ErrInvalidName.
//
// Beyond Store, a store may offer optional capabilities (caps.go), each an
// interface with its contract: RangeReader (read into the caller's buffer),
// SmallReader (read a tiny object cheaply), Prefetcher (start reading
// objects before they are asked for), NameLister (list names in the
// store's fastest order), PrefixDeleter (delete a directory prefix at once),
// TrashPurger (free the space of deleted objects later) and StaleRemover
// (remove what killed writers left). Code outside this package never
// type-asserts a store: it calls the function of the capability's method
// name here (ReadRange, ReadSmall, Prefetch, ListNames, DeletePrefix,
// PurgeTrash, RemoveStale), which uses the capability if the store has it and does the
// generic thing otherwise, or asks Capable whether a store has it.
// Decorators forward every capability and implement Decorator, so Capable
// sees through them to the store beneath.
//
// Implementations: mem (in memory; no capabilities), local (a directory;
// all of them), s3 (an S3 bucket; RangeReader); decorators retry (retries
// transient errors) and faults (fault injection for tests); storetest is the
// conformance suite every implementation passes, capabilities included.
package store

import (
	"context"
	"errors"
)

// ErrNotExist is returned (possibly wrapped) when a named object does not exist.
var ErrNotExist = errors.New("object does not exist")

// ErrExist is returned (possibly wrapped) by Create when the name is taken.
var ErrExist = errors.New("object already exists")

// Info describes one stored object.
type Info struct {
	Name string // full object name, as passed to Create or Put
	Size int64  // length in bytes
}

// Reader is the read-only half of a Store. Consumers that only read (the
// mount, check) take a Reader. All methods are safe for concurrent use.
type Reader interface {
	// Get returns the whole content of the named object. It returns an error
	// wrapping ErrNotExist when the object does not exist.
	Get(ctx context.Context, name string) ([]byte, error)

	// GetRange returns length bytes of the named object starting at offset
	// off. A range that runs past the end returns the bytes up to the end
	// (possibly none) and no error; a negative offset or length is an error.
	// It returns an error wrapping ErrNotExist when the object does not exist.
	GetRange(ctx context.Context, name string, off, length int64) ([]byte, error)

	// Stat returns the object's Info, or an error wrapping ErrNotExist.
	Stat(ctx context.Context, name string) (Info, error)

	// List calls fn for every object whose name starts with prefix, in
	// lexical order of name. It stops at and returns the first error fn
	// returns. Objects created or deleted during a listing may or may not be
	// seen. A prefix that matches nothing is not an error.
	List(ctx context.Context, prefix string, fn func(Info) error) error
}

// Store is a Reader that can also write and delete. All methods are safe for
// concurrent use, also by several processes (or hosts) on the same storage.
type Store interface {
	Reader

	// Create writes a new object atomically, only if no object of that name
	// exists: of several concurrent Creates of one name exactly one succeeds
	// and the others return an error wrapping ErrExist. Readers never see a
	// partial object. On success the object is durable.
	Create(ctx context.Context, name string, data []byte) error

	// Put writes an object atomically and durably, replacing any object of
	// that name. Readers see either the old or the new content, never a mix.
	Put(ctx context.Context, name string, data []byte) error

	// Delete removes the named object. Deleting an object that does not
	// exist returns an error wrapping ErrNotExist.
	Delete(ctx context.Context, name string) error

	// Location describes the store for messages (a path or URL without
	// credentials).
	Location() string
}
