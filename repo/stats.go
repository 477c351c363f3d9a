package repo

import (
	"context"
	"fmt"
	"strings"

	"github.com/snapcrypt/snapcrypt/repo/store"
)

// Usage counts the objects and bytes below each top-level prefix of the
// store ("data", "index", "snapshots", "keyring", "leases") and, for wrapped
// DEKs, below each key generation ("deks/<generation>").
type Usage struct {
	Objects map[string]int   `json:"objects"`
	Bytes   map[string]int64 `json:"bytes"`
	Total   int64            `json:"total_bytes"`
}

// Usage lists the whole store once.
func (r *Repository) Usage(ctx context.Context) (*Usage, error) {
	u := &Usage{Objects: map[string]int{}, Bytes: map[string]int64{}}
	err := r.st.List(ctx, "", func(fi store.Info) error {
		parts := strings.SplitN(fi.Name, "/", 3)
		k := parts[0]
		if k == "deks" && len(parts) == 3 {
			k = "deks/" + parts[1]
		}
		u.Objects[k]++
		u.Bytes[k] += fi.Size
		u.Total += fi.Size
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the repository: %w", err)
	}
	return u, nil
}

// Unindexed is the unused space of packs that no index names: an
// interrupted snapshot's, or the packs of one in flight until it writes
// its index. Unreachable blobs of indexed packs need a walk of every
// snapshot and are counted by Check only.
type Unindexed struct {
	Packs int   `json:"unindexed_packs"`
	Bytes int64 `json:"unindexed_bytes"` // as stored
}

// Unindexed lists data/ once and counts the packs the index does not name.
// Packs of index objects that could not be read count as unindexed.
func (r *Repository) Unindexed(ctx context.Context) (Unindexed, error) {
	var u Unindexed
	err := r.st.List(ctx, "data/", func(fi store.Info) error {
		id, err := ParseObjectID(fi.Name[strings.LastIndexByte(fi.Name, '/')+1:])
		if err == nil && packName(id) == fi.Name && r.index.knows(id) {
			return nil
		}
		u.Packs++
		u.Bytes += fi.Size
		return nil
	})
	if err != nil {
		return Unindexed{}, fmt.Errorf("listing packs: %w", err)
	}
	return u, nil
}
