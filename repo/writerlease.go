package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// WriterLeasePrefix is where writers' leases live (docs/prune.md, "What a
// writer does"): leases/writer/<32 hex holder>/<seq>, one directory per
// writer run, each a lease of package lease.
const WriterLeasePrefix = "leases/writer/"

// ErrLeaseLapsed is wrapped by the error of a snapshot whose writer lease
// lapsed (the process was paused past its expiry) while a prune deleted
// data the snapshot reused: it writes no manifest.
var ErrLeaseLapsed = errors.New("the snapshot's lease lapsed while a prune ran; data it reused was deleted; run it again")

// writeGuard is a writer's half of the prune protocol: its lease, taken
// before it reads the index, and the marks it read.
type writeGuard struct {
	r      *Repository
	held   *lease.Held
	prefix string
}

// beginWrite takes a writer lease (W1), reads every prune mark (W2), then
// loads the index and drops from it every candidate pack of the marks
// (W3), so that the writer neither deduplicates against nor reuses a
// parent's chunks in a pack a prune may delete: it writes such blobs
// again. An index object that cannot be read costs deduplication, not the
// write (as in LoadIndexPartial).
func (r *Repository) beginWrite(ctx context.Context, host string) (*writeGuard, error) {
	holder := make([]byte, 16)
	if _, err := rand.Read(holder); err != nil {
		return nil, err
	}
	prefix := WriterLeasePrefix + hex.EncodeToString(holder) + "/"
	held, err := lease.Take(ctx, r.st, prefix, lease.Options{Duration: r.writerLease, Host: host, What: "writer lease"})
	if err != nil {
		return nil, err
	}
	g := &writeGuard{r: r, held: held, prefix: prefix}
	if h := r.hooks.writerLeaseTaken; h != nil {
		h(held)
	}
	marks, err := r.Marks(ctx)
	if err == nil {
		_, err = r.LoadIndexPartial(ctx)
	}
	if err != nil {
		g.release(ctx)
		return nil, err
	}
	var drop []ObjectID
	for id := range candidatePacks(marks) {
		drop = append(drop, id)
	}
	if len(drop) > 0 {
		r.index.Drop(drop...)
	}
	return g, nil
}

// check is W5, before the manifest is written: if the writer lease may
// have looked expired to a prune at some moment (it lapsed), a prune may
// have gone ahead without waiting for this writer. Then every pack that
// holds a blob the new snapshot reaches (from its root tree) must still
// exist and be no candidate of a mark; else the snapshot fails with
// ErrLeaseLapsed.
func (g *writeGuard) check(ctx context.Context, root BlobID) error {
	if !g.held.Lapsed() {
		return nil
	}
	marks, err := g.r.Marks(ctx)
	if err != nil {
		return fmt.Errorf("snapshot: the writer lease lapsed, and the prune marks cannot be read: %w", err)
	}
	cands := candidatePacks(marks)
	seen := map[ObjectID]bool{}
	lapsed := func(format string, args ...any) error {
		return fmt.Errorf("snapshot: %w (%s)", ErrLeaseLapsed, fmt.Sprintf(format, args...))
	}
	return g.r.Walk(ctx, []*Snapshot{{Tree: root}}, func(x Reached) error {
		if x.Err != nil {
			return lapsed("tree %s: %v", x.ID.Short(), x.Err)
		}
		loc, ok := g.r.index.lookup(x.Type, x.ID)
		if !ok {
			return lapsed("%s blob %s is in no index", x.Type, x.ID.Short())
		}
		id := loc.pack.ID
		if seen[id] {
			return nil
		}
		seen[id] = true
		if cands[id] {
			return lapsed("pack %s is a prune candidate", id.String()[:8])
		}
		if _, err := g.r.st.Stat(ctx, packName(id)); errors.Is(err, store.ErrNotExist) {
			return lapsed("pack %s is gone", id.String()[:8])
		} else if err != nil {
			return fmt.Errorf("snapshot: the writer lease lapsed; checking pack %s: %w", id.String()[:8], err)
		}
		return nil
	})
}

// release ends the lease (W6), after the manifest is durable or when the
// write failed. A lease that cannot be deleted lapses at its expiry.
func (g *writeGuard) release(ctx context.Context) {
	g.held.Release(context.WithoutCancel(ctx))
}
