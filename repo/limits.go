package repo

import (
	"context"
	"errors"
	"fmt"

	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// Limits on what a reader accepts from the repository (docs/format.md,
// "Limits"). Anyone who can write to the storage can plant objects of any
// size or trees of any shape; these bounds keep every command's memory and
// work bounded whatever they plant. The writers keep within them, so nothing
// snapcrypt writes is refused.
const (
	// MaxConfigSize bounds the config object.
	MaxConfigSize = 64 << 10
	// MaxSnapshotSize bounds a sealed snapshot manifest object.
	MaxSnapshotSize = 4 << 20
	// MaxIndexSize bounds a sealed index object. Writers split their
	// index into objects of at most indexSplit bytes of plaintext.
	MaxIndexSize = 256 << 20
	// MaxPackSize bounds a sealed pack read whole (check --read-data).
	MaxPackSize = 512 << 20
	// MaxTreeSize bounds a tree blob's plaintext.
	MaxTreeSize = 128 << 20
	// MaxTreeDepth is the deepest a tree may nest below a snapshot's root
	// tree (depth 0). A snapshot does not keep directories deeper than that.
	MaxTreeDepth = 512
)

// indexSplit is the plaintext size at which a writer starts a new index
// object, well below MaxIndexSize.
const indexSplit = 32 << 20

// maxPackBlobs is the number of blobs at which a writer seals a pack, so
// that one pack's index entry stays far below indexSplit.
const maxPackBlobs = 1 << 18

// ErrTreeLoop is wrapped (with object.ErrCorrupt) by the error for a tree that
// contains itself, directly or through other trees, or that nests deeper
// than MaxTreeDepth. Readers stop there instead of walking on forever.
var ErrTreeLoop = errors.New("directory trees loop or nest too deep")

// maxSealedSize is the largest sealed object of the kind a reader reads
// whole.
func maxSealedSize(kind object.Kind) int64 {
	switch kind {
	case object.KindSnapshot:
		return MaxSnapshotSize
	case object.KindIndex:
		return MaxIndexSize
	case object.KindMark:
		return MaxMarkSize
	}
	return MaxPackSize
}

// readBounded reads the whole named object if it is at most max bytes long.
// A larger object is an error wrapping object.ErrCorrupt and store.ErrTooLarge that
// names it; no more than max+1 bytes are read or held either way.
func readBounded(ctx context.Context, st store.Reader, name string, max int64) ([]byte, error) {
	b, err := store.GetBounded(ctx, st, name, max)
	if errors.Is(err, store.ErrTooLarge) {
		return nil, fmt.Errorf("object %w: %w", err, object.ErrCorrupt)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return b, nil
}
