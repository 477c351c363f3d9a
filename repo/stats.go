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
