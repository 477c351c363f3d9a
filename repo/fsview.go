package repo

// What the FUSE mount (package fs) needs beyond the rest of this package: a
// long-running reader must keep going when some objects cannot be read (a
// manifest or index sealed with a data key that none of its keys unwraps,
// or a corrupted one), instead of failing whole listings.

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/snapcrypt/snapcrypt/repo/store"
)

// SnapshotsPartial is Snapshots for a reader that keeps going: it returns
// every snapshot it could read, oldest first, and for each manifest it could
// not read (corrupted, or sealed with a data key no supplied key unwraps)
// the error, by snapshot id. err is for the listing itself.
func (r *Repository) SnapshotsPartial(ctx context.Context) (snaps []*Snapshot, failed map[ObjectID]error, err error) {
	var ids []ObjectID
	err = r.st.List(ctx, "snapshots/", func(fi store.Info) error {
		id, err := ParseObjectID(strings.TrimPrefix(fi.Name, "snapshots/"))
		if err == nil {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("listing snapshots: %w", err)
	}
	out := make([]*Snapshot, len(ids))
	errs := make([]error, len(ids))
	var g errgroup.Group
	g.SetLimit(8)
	for i, id := range ids {
		g.Go(func() error {
			out[i], errs[i] = r.LoadSnapshot(ctx, id)
			return nil
		})
	}
	g.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	r.dropForgotten(ids)
	failed = map[ObjectID]error{}
	for i, s := range out {
		if errs[i] != nil && r.forgotten(ctx, ids[i], errs[i]) {
			continue
		}
		if errs[i] != nil {
			failed[ids[i]] = errs[i]
		} else {
			snaps = append(snaps, s)
		}
	}
	sort.SliceStable(snaps, func(i, j int) bool {
		if !snaps[i].Time.Equal(snaps[j].Time) {
			return snaps[i].Time.Before(snaps[j].Time)
		}
		return bytes.Compare(snaps[i].ID[:], snaps[j].ID[:]) < 0
	})
	return snaps, failed, nil
}

// LoadIndexPartial is LoadIndex for a reader that keeps going: every index
// object not yet merged is read on its own, so one that cannot be read does
// not stop the others; the failures are returned by object id (and tried
// again by the next call). err is for the listing itself.
func (r *Repository) LoadIndexPartial(ctx context.Context) (failed map[ObjectID]error, err error) {
	var names []ObjectID
	err = r.st.List(ctx, "index/", func(fi store.Info) error {
		id, err := ParseObjectID(strings.TrimPrefix(fi.Name, "index/"))
		if err != nil {
			return nil
		}
		r.index.mu.RLock()
		done := r.index.loaded[id]
		r.index.mu.RUnlock()
		if !done {
			names = append(names, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing indexes: %w", err)
	}
	failed = map[ObjectID]error{}
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(8)
	for _, id := range names {
		g.Go(func() error {
			packs, err := r.readIndex(ctx, id)
			if err != nil {
				mu.Lock()
				failed[id] = err
				mu.Unlock()
				return nil
			}
			r.index.add(packs)
			r.index.mu.Lock()
			r.index.loaded[id] = true
			r.index.mu.Unlock()
			return nil
		})
	}
	g.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.setIndexFailures(failed)
	return failed, nil
}
