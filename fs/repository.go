package fs

import (
	"context"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo"
)

// Repository is what a mount needs of a repository (*repo.Repository is
// one), and all it can reach: listings, trees, content, and figures for
// .ctl/status. Nothing in it writes to the store or changes keys; the
// controls that do (Options.Controls) are handed to the mount by its
// caller. Every method is safe for concurrent use.
type Repository interface {
	// Config is the repository's configuration (its id).
	Config() repo.Config

	// SnapshotsPartial lists the snapshots it can read, oldest first,
	// and the manifests it cannot, by id (repo.Repository.SnapshotsPartial).
	SnapshotsPartial(ctx context.Context) ([]*repo.Snapshot, map[repo.ObjectID]error, error)
	// LoadIndexPartial merges the index objects not yet merged into the
	// in-memory index, and returns those it cannot read, by id.
	LoadIndexPartial(ctx context.Context) (map[repo.ObjectID]error, error)
	// PackedBytes is the plaintext size of every pack the index knows.
	PackedBytes() uint64
	// Unindexed lists the packs and counts those the index does not
	// name: unused space (repo.Repository.Unindexed).
	Unindexed(ctx context.Context) (repo.Unindexed, error)

	// LoadTree returns a decoded directory tree, from the repository's
	// cache of trees when it is there.
	LoadTree(ctx context.Context, id repo.BlobID) (*repo.Tree, error)
	// ReadChunksAt reads the content of a file made of chunks from offset
	// off of chunks[0]; ahead > 0 marks a sequential reader, for whom up
	// to ahead bytes after p (of the chunks given) are read into the cache.
	ReadChunksAt(ctx context.Context, chunks []repo.Chunk, p []byte, off, ahead int64) (int, error)

	// CacheStats are the figures of the repository's caches.
	CacheStats() map[string]repo.CacheStats
	// ReadErrors are the count of read errors and the latest of them.
	ReadErrors() (uint64, []string)
	// Keyring is a copy of the keyring as last read.
	Keyring() keys.Keyring
	// HoldsKey tells whether the key of key generation gen is held.
	HoldsKey(gen string) bool
	// KeyringProblems are the keyring's bad epochs and a rewritten
	// history (keys.Keychain.Problems).
	KeyringProblems() []error
}

var _ Repository = (*repo.Repository)(nil)
