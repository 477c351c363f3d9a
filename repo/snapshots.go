package repo

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// Snapshots returns every snapshot, oldest first. It fails if any manifest
// cannot be read (SnapshotsPartial goes on past such manifests).
func (r *Repository) Snapshots(ctx context.Context) ([]*Snapshot, error) {
	snaps, failed, err := r.SnapshotsPartial(ctx)
	if err != nil {
		return nil, err
	}
	if err := firstFailure(failed); err != nil {
		return nil, err
	}
	return snaps, nil
}

// LoadSnapshot reads one snapshot manifest.
func (r *Repository) LoadSnapshot(ctx context.Context, id ObjectID) (*Snapshot, error) {
	r.snapMu.Lock()
	s, ok := r.snaps[id]
	r.snapMu.Unlock()
	if ok {
		return s, nil
	}
	name := snapshotName(id)
	plain, err := r.openObject(ctx, name, object.KindSnapshot)
	if err != nil {
		return nil, err
	}
	s, err = UnmarshalSnapshot(plain)
	if err != nil {
		return nil, fmt.Errorf("object %s is %w: %v", name, object.ErrCorrupt, err)
	}
	s.ID = id
	r.snapMu.Lock()
	r.snaps[id] = s
	r.snapMu.Unlock()
	return s, nil
}

// FindSnapshot resolves "latest", a name, an id or a unique id prefix.
func (r *Repository) FindSnapshot(ctx context.Context, ref string) (*Snapshot, error) {
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return nil, err
	}
	if len(snaps) == 0 {
		return nil, fmt.Errorf("the repository has no snapshots")
	}
	if ref == "latest" {
		return snaps[len(snaps)-1], nil
	}
	var byName, byID []*Snapshot
	for _, s := range snaps {
		if s.Name == ref {
			byName = append(byName, s)
		}
		if strings.HasPrefix(s.ID.String(), strings.ToLower(ref)) {
			byID = append(byID, s)
		}
	}
	if len(byName) > 0 {
		return byName[len(byName)-1], nil // the newest of that name
	}
	switch len(byID) {
	case 1:
		return byID[0], nil
	case 0:
		return nil, fmt.Errorf("no snapshot matches %q", ref)
	}
	return nil, fmt.Errorf("snapshot id prefix %q is ambiguous (%d snapshots)", ref, len(byID))
}

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
