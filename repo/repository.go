// Package repo holds the snapcrypt repository format above the storage
// layer: configuration, packs of content and tree blobs, indexes, trees and
// snapshot manifests, and the operations that make and read them (snapshot,
// restore, check, forget). Encryption of objects is package object's; keys
// are package keys'.
//
// A Repository writes only "config" and "settings" (Init, Migrate),
// "data/", "index/", "snapshots/", "prune/" and "leases/writer/" and
// "leases/prune/" (create-only, but for forget's deletion of a manifest,
// Migrate's replacement of config, lease renewals and prune's deletions);
// it never writes below "keyring/", and below "deks/" only prune deletes
// wrapped DEKs that no object is sealed with and rewrites DEK packs without
// them (copying the entries it keeps): it takes its data keys from a
// keys.Keychain (NewDEK for a new object, DEK to open one), and only
// packages keys and rotation make those. Every object it reads is opened
// (authenticated) by package object before it is decoded, and one that
// fails gives an error wrapping object.ErrCorrupt.
//
// The files: repository.go opens a repository and seals and opens its
// objects; settings.go and migrate.go the settings object and the
// upgrade from format version 1; compress.go compresses and decompresses
// blobs, compressed.go reads compressed ones; archiver.go, packer.go and snapshot.go take snapshots; index.go
// is the index (replaceable: a fresh one can be loaded in place of the
// old); tree.go and treecache.go the trees and the one cache of decoded
// ones; engine.go, blobread.go, ciphertext.go, window.go and prefetch.go
// the read engine (one path from the store's ciphertext to a reader, one
// read-ahead policy); walk.go the reachability walk that check uses;
// restore.go, browse.go, diff.go, select.go, forget.go the other commands'
// operations; prune.go, mark.go and writerlease.go prune and the writers'
// half of its protocol (docs/prune.md). A Repository is safe for concurrent use.
package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/restic/chunker"
	"golang.org/x/crypto/hkdf"
	"golang.org/x/sync/singleflight"

	"github.com/snapcrypt/snapcrypt/internal/strictjson"
	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// FormatVersion is the newest repository format (config version) this
// code reads and writes; it reads version 1 too, and writes version 1
// objects into a version 1 repository (docs/format.md, "Versions").
const FormatVersion = 2

// ErrNewerFormat is wrapped by the error for a repository whose config
// names a format newer than FormatVersion.
var ErrNewerFormat = errors.New("newer repository format")

// ErrNotRepository is returned when the location holds no repository.
var ErrNotRepository = errors.New("no snapcrypt repository")

// Config is the plaintext `config` object: all that can be read about a
// repository without a key.
type Config struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
}

// Options tune a Repository. Zero values mean defaults.
type Options struct {
	// CacheBytes bounds the cache of decrypted content segments (three
	// quarters) and decoded trees (a quarter; the tree loaded last is kept
	// however large).
	CacheBytes int64
	// ReadWindow, when at least a segment (64 KiB), makes large reads
	// (of directMin bytes or more: a sequential reader's) fetch the
	// ciphertext of whole windows of ReadWindow bytes of pack plaintext,
	// each with one ranged read shared by the reads that fall in it (see
	// windows). It is for stores whose cost is per request
	// (S3: every GET is a signed HTTP request the server authenticates;
	// 4 MiB rather than 1 MiB per GET cut the gateway's CPU by 40%), not
	// for the local store, whose 1 MiB direct reads are fastest as they
	// are. Rounded down to whole segments. Repository.WindowBytes bounds
	// the memory the windows may hold.
	ReadWindow int64
	// WriterLease is how long a writer lease (a snapshot's, a prune's
	// repack's; docs/prune.md) lasts without renewal
	// (lease.DefaultDuration). It is renewed every third of it.
	WriterLease time.Duration
}

// DefaultCacheBytes is the default bound of the decrypted-data cache.
const DefaultCacheBytes = 32 << 20

// Repository is an open repository. It is safe for concurrent use.
type Repository struct {
	st    store.Store
	cfg   Config
	keys  *keys.Keychain
	hash  hasher
	pol   chunker.Pol
	index *Index

	eng   *engine             // reads and decrypts packs (engine.go)
	trees *lru[BlobID, *Tree] // decoded trees (treecache.go)
	// treeLoads makes concurrent LoadTrees of one tree read it once.
	treeLoads singleflight.Group
	// reloads makes the reads that find the index stale reload it once
	// (blobread.go).
	reloads struct {
		started atomic.Uint64 // reloads begun
		group   singleflight.Group
	}

	// comp is the repository's default compression (settings; always
	// off in a version 1 repository, whose blobs are stored as they are).
	comp Compression

	snapMu sync.Mutex
	snaps  map[ObjectID]*Snapshot // manifests are immutable: cache them all

	writerLease time.Duration // Options.WriterLease
	hooks       hooks         // tests stop writers and prunes at given instants
}

// hooks are called, when set, at instants of a snapshot or a prune that
// tests of their concurrency need to reach (docs/prune.md).
type hooks struct {
	writerLeaseTaken func(*lease.Held) // W1 done, marks not read yet
	beforeManifest   func()            // packs and index written, W5 next
	pruneStep        func(step string) error
}

// InitOptions are the choices of a new repository. Zero values mean
// defaults.
type InitOptions struct {
	// Version is the format version to create: FormatVersion by
	// default; 1 makes a repository that older snapcrypts read (and
	// whose blobs are never compressed).
	Version int
	// Compression is the default compression of snapshots (version 2
	// only): CompressionAuto by default.
	Compression Compression
}

// Init creates a new repository in an empty store, protected by the key
// m, with the default InitOptions.
func Init(ctx context.Context, st store.Store, m *keys.Material) (*Repository, error) {
	return InitWith(ctx, st, m, InitOptions{})
}

// InitWith creates a new repository in an empty store, protected by the
// key m. The objects are written in this order: the first keyring epoch,
// settings (version 2), config; a location with no config is no
// repository, so an init that stops midway leaves none.
func InitWith(ctx context.Context, st store.Store, m *keys.Material, o InitOptions) (*Repository, error) {
	if o.Version == 0 {
		o.Version = FormatVersion
	}
	if o.Compression == 0 {
		o.Compression = CompressionAuto
	}
	if o.Version != 1 && o.Version != 2 {
		return nil, fmt.Errorf("init: format version %d: this snapcrypt writes version 1 or 2", o.Version)
	}
	if o.Version == 1 && o.Compression != CompressionAuto {
		return nil, fmt.Errorf("init: a version 1 repository is not compressed")
	}
	empty := true
	if err := st.List(ctx, "", func(store.Info) error { empty = false; return errStop }); err != nil && !errors.Is(err, errStop) {
		return nil, fmt.Errorf("init %s: %w", st.Location(), err)
	}
	if !empty {
		return nil, fmt.Errorf("init %s: the location is not empty", st.Location())
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	cfg := Config{Version: o.Version, ID: hex.EncodeToString(id[:])}
	kc, err := keys.Init(ctx, st, cfg.ID, m)
	if err != nil {
		return nil, fmt.Errorf("init %s: %w", st.Location(), err)
	}
	if cfg.Version >= 2 {
		if err := st.Create(ctx, settingsName, marshalSettings(Settings{Compression: o.Compression.String()})); err != nil {
			return nil, fmt.Errorf("init %s: writing settings: %w", st.Location(), err)
		}
	}
	b, _ := json.Marshal(cfg)
	if err := st.Create(ctx, "config", append(b, '\n')); err != nil {
		return nil, fmt.Errorf("init %s: writing config: %w", st.Location(), err)
	}
	return open(ctx, st, cfg, kc, Options{})
}

var errStop = errors.New("stop")

// ReadConfig reads the plaintext config object.
func ReadConfig(ctx context.Context, st store.Reader) (Config, error) {
	b, err := readBounded(ctx, st, "config", MaxConfigSize)
	if errors.Is(err, store.ErrNotExist) {
		return Config{}, fmt.Errorf("%s: %w (no config object)", locationOf(st), ErrNotRepository)
	}
	if err != nil {
		return Config{}, err
	}
	return ParseConfig(b)
}

// ParseConfig decodes the config object strictly.
func ParseConfig(b []byte) (Config, error) {
	var cfg Config
	if err := strictjson.Decode(b, &cfg); err != nil {
		return cfg, fmt.Errorf("config: %w: %v", object.ErrCorrupt, err)
	}
	if cfg.Version > FormatVersion {
		return cfg, fmt.Errorf("config: %w: repository format version %d, this snapcrypt reads versions 1 to %d (a newer snapcrypt wrote it: upgrade)", ErrNewerFormat, cfg.Version, FormatVersion)
	}
	if cfg.Version < 1 {
		return cfg, fmt.Errorf("config: %w: format version %d", object.ErrCorrupt, cfg.Version)
	}
	if len(cfg.ID) != 32 || strings.Trim(cfg.ID, "0123456789abcdef") != "" {
		return cfg, fmt.Errorf("config: %w: bad repository id", object.ErrCorrupt)
	}
	return cfg, nil
}

func locationOf(st store.Reader) string {
	if l := store.LocationOf(st); l != "" {
		return l
	}
	return "repository"
}

// Open opens an existing repository with the given keys. At least one key
// must match a current or retiring key generation.
func Open(ctx context.Context, st store.Store, opts Options, ms ...*keys.Material) (*Repository, error) {
	cfg, err := ReadConfig(ctx, st)
	if err != nil {
		return nil, err
	}
	kc, err := keys.Open(ctx, st, cfg.ID, ms...)
	if err != nil {
		return nil, err
	}
	return open(ctx, st, cfg, kc, opts)
}

func open(ctx context.Context, st store.Store, cfg Config, kc *keys.Keychain, opts Options) (*Repository, error) {
	comp := CompressionOff
	if cfg.Version >= 2 {
		set, err := ReadSettings(ctx, st)
		if err != nil {
			return nil, err
		}
		if comp, err = ParseCompression(set.Compression); err != nil {
			return nil, fmt.Errorf("object %s is %w: %v", settingsName, object.ErrCorrupt, err)
		}
	}
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	idKey, err := kc.IDKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("content-id key: %w", err)
	}
	if len(idKey) != 32 {
		return nil, fmt.Errorf("content-id key: %w: length %d", object.ErrCorrupt, len(idKey))
	}
	pol, err := chunker.DerivePolynomial(hkdf.New(newSHA256, idKey, nil, []byte("snapcrypt chunker polynomial v1")))
	if err != nil {
		return nil, fmt.Errorf("chunker polynomial: %w", err)
	}
	r := &Repository{
		st: st, cfg: cfg, keys: kc, hash: hasher{key: idKey}, pol: pol, index: newIndex(),
		eng:         newEngine(st, kc.DEK, opts.CacheBytes*3/4, opts.ReadWindow),
		trees:       newTreeCache(opts.CacheBytes / 4),
		snaps:       map[ObjectID]*Snapshot{},
		writerLease: opts.WriterLease,
		comp:        comp,
	}
	// An index that cannot be read (sealed with a data key that none of
	// the keys unwraps yet, during a rotation) does not stop the opening:
	// what needs its blobs fails later and says why (see ReadBlob).
	if _, err := r.LoadIndexPartial(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Config returns the repository's configuration.
func (r *Repository) Config() Config { return r.cfg }

// Compression returns the repository's default compression: the settings
// object's (CompressionOff in a version 1 repository).
func (r *Repository) Compression() Compression { return r.comp }

// Keys returns the repository's keychain.
func (r *Repository) Keys() *keys.Keychain { return r.keys }

// Store returns the underlying store.
func (r *Repository) Store() store.Store { return r.st }

// Index returns the in-memory index.
func (r *Repository) Index() *Index { return r.index }

// Keyring returns a copy of the keyring as the repository last read it.
func (r *Repository) Keyring() keys.Keyring { return r.keys.Keyring() }

// HoldsKey tells whether the repository was opened with (or has since been
// given) the key of key generation gen.
func (r *Repository) HoldsKey(gen string) bool { return r.keys.Holds(gen) }

// KeyringProblems returns the keyring's bad epochs and a rewritten history
// (keys.Keychain.Problems): reads go on from the newest good epoch, writes
// refuse.
func (r *Repository) KeyringProblems() []error { return r.keys.Problems() }

// openObject reads, authenticates and decrypts a whole sealed object.
func (r *Repository) openObject(ctx context.Context, name string, kind object.Kind) ([]byte, error) {
	b, err := readBounded(ctx, r.st, name, maxSealedSize(kind))
	if err != nil {
		return nil, err
	}
	h, err := object.ParseHeader(b)
	if err != nil {
		return nil, fmt.Errorf("object %s is %w", name, object.ErrCorrupt)
	}
	if h.Kind != kind {
		return nil, fmt.Errorf("object %s is %w (kind %d, want %d)", name, object.ErrCorrupt, h.Kind, kind)
	}
	dek, err := r.keys.DEK(ctx, h.DEKID)
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", name, err)
	}
	_, plain, err := object.Open(dek, name, b)
	if err != nil {
		return nil, fmt.Errorf("object %s is %w", name, object.ErrCorrupt)
	}
	return plain, nil
}

// sealObject seals plaintext under the given DEK and writes it create-only.
func (r *Repository) sealObject(ctx context.Context, name string, kind object.Kind, dekID [16]byte, dek, plain []byte) (object.Header, int64, error) {
	h, err := object.NewHeader(kind, dekID)
	if err != nil {
		return h, 0, err
	}
	ct, err := object.Seal(dek, h, name, plain)
	if err != nil {
		return h, 0, fmt.Errorf("sealing %s: %w", name, err)
	}
	if err := r.st.Create(ctx, name, ct); err != nil {
		return h, 0, fmt.Errorf("writing %s: %w", name, err)
	}
	return h, int64(len(ct)), nil
}
