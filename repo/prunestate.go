package repo

// What status shows of prune: the marks pending and the writers in flight.

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// PruneState is what a status shows of prune (docs/prune.md): the marks
// of prunes that deferred their deletions or were interrupted, which the
// next prune finishes, and the writer leases live now, which a prune
// waits for.
type PruneState struct {
	Pending []PendingPrune `json:"pending"`
	Writers []lease.Lease  `json:"writers"`
	// More counts the writer leases not read: a status reads at most
	// MaxStatusWriters of them.
	More int `json:"more_writers,omitempty"`
}

// PendingPrune is one mark: when and by whom it was made, and what
// finishing it will free (as listed when it was made).
type PendingPrune struct {
	ID    string    `json:"id"`
	Time  time.Time `json:"time"`
	Host  string    `json:"host"`
	PID   int       `json:"pid"`
	Packs int       `json:"packs"`
	Bytes int64     `json:"bytes"`
	DEKs  int       `json:"deks"`
}

// MaxStatusWriters bounds the writer leases a status reads.
const MaxStatusWriters = 64

// PruneState lists prune/ and leases/writer/ and reads the marks (each
// at most MaxMarkSize, and there is at most one but for a race) and at
// most MaxStatusWriters writer leases (each at most lease.MaxSize). It
// writes and deletes nothing.
func (r *Repository) PruneState(ctx context.Context) (*PruneState, error) {
	marks, err := r.Marks(ctx)
	if err != nil {
		return nil, err
	}
	ps := &PruneState{Pending: []PendingPrune{}, Writers: []lease.Lease{}}
	for _, m := range marks {
		p := PendingPrune{ID: m.ID.String(), Time: m.Time.UTC(), Host: m.Host, PID: m.PID, Packs: len(m.Packs), DEKs: len(m.DEKs)}
		for _, c := range m.Packs {
			p.Bytes += c.Size
		}
		ps.Pending = append(ps.Pending, p)
	}
	dirs, err := r.writerLeaseDirs(ctx)
	if err != nil {
		return nil, err
	}
	if len(dirs) > MaxStatusWriters {
		ps.More = len(dirs) - MaxStatusWriters
		dirs = dirs[:MaxStatusWriters]
	}
	now := time.Now()
	for _, dir := range dirs {
		_, l, err := lease.Latest(ctx, r.st, dir)
		if err != nil {
			return nil, fmt.Errorf("reading writer lease %s: %w", dir, err)
		}
		if l != nil && l.Live(now) {
			ps.Writers = append(ps.Writers, *l)
		}
	}
	sort.Slice(ps.Writers, func(i, j int) bool { return ps.Writers[i].Expires.Before(ps.Writers[j].Expires) })
	return ps, nil
}

// writerLeaseDirs lists leases/writer/ and returns the directory of each
// writer (leases/writer/<holder>/), sorted.
func (r *Repository) writerLeaseDirs(ctx context.Context) ([]string, error) {
	seen := map[string]bool{}
	var dirs []string
	err := r.st.List(ctx, WriterLeasePrefix, func(fi store.Info) error {
		rest := strings.TrimPrefix(fi.Name, WriterLeasePrefix)
		if i := strings.IndexByte(rest, '/'); i > 0 && !seen[rest[:i+1]] {
			seen[rest[:i+1]] = true
			dirs = append(dirs, WriterLeasePrefix+rest[:i+1])
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing writer leases: %w", err)
	}
	sort.Strings(dirs)
	return dirs, nil
}
