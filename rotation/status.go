package rotation

import (
	"context"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
)

// GenerationStatus is one generation in a Status.
type GenerationStatus struct {
	ID      string
	State   keys.State
	KDF     string
	Created time.Time
	Held    bool // this process holds its key
	DEKs    int  // wrapped DEKs below deks/<id>/
}

// Status is what `snapcrypt status` and a mount's .ctl/status show about
// keys and rotation. It holds no key material.
type Status struct {
	Epoch       uint64
	Current     string
	Generations []GenerationStatus
	Rotation    *keys.Rotation // the keyring's rotation record, if any
	Progress    *Progress      // a rotation running in this process, if any
	Lease       *lease.Lease   // the live rotation lease, if any
	Unfinished  bool           // a rotation record, or DEKs of a retired generation remain
	Shards      []ShardStatus  // re-wrap shards of the rotation in progress, if any
}

// ShardStatus is one re-wrap shard of the rotation in progress, in a Status.
type ShardStatus struct {
	Shard int
	Done  bool         // a done marker exists (a hint: the coordinator checks anyway)
	Lease *lease.Lease // the live shard lease, if any
}

// Status reloads the keyring and reports generations (with counts of
// wrapped DEKs), the rotation record, the lease holder, the re-wrap shards
// and the progress of a rotation running in this process.
func (r *Rotator) Status(ctx context.Context) (Status, error) {
	if err := r.kc.Refresh(ctx); err != nil {
		return Status{}, err
	}
	ring := r.kc.Keyring()
	s := Status{Epoch: ring.Epoch, Current: ring.Current, Rotation: ring.Rotation}
	for _, g := range ring.Generations {
		n, err := r.countDEKs(ctx, g.ID)
		if err != nil {
			return Status{}, err
		}
		s.Generations = append(s.Generations, GenerationStatus{ID: g.ID, State: g.State, KDF: g.KDF.Type, Created: g.Created, Held: r.kc.Holds(g.ID), DEKs: n})
		if g.State == keys.StateRetired && n > 0 {
			s.Unfinished = true
		}
	}
	if ring.Rotation != nil {
		s.Unfinished = true
		shards, err := r.shardStatus(ctx, ring.Rotation.ID)
		if err != nil {
			return Status{}, err
		}
		s.Shards = shards
	}
	l, err := r.Lease(ctx)
	if err != nil {
		return Status{}, err
	}
	s.Lease = l
	r.mu.Lock()
	if r.running {
		p := r.progressLocked()
		s.Progress = &p
	}
	r.mu.Unlock()
	return s, nil
}

// Lease returns the live rotation lease (its holder runs the rotation),
// or nil: one listing of the lease prefix, cheap enough to poll.
func (r *Rotator) Lease(ctx context.Context) (*lease.Lease, error) {
	return lease.Current(ctx, r.st, leasePrefix, r.now())
}

// BreakLease ends the rotation lease whoever holds it (lease.Break) and
// returns the holder it broke, nil if none. The holder, if still running,
// loses the lease at its next renewal and stops ("lost the rotation
// lease"); the next Start or Resume can take the lease at once.
func BreakLease(ctx context.Context, kc *keys.Keychain) (*lease.Lease, error) {
	return lease.Break(ctx, kc.Store(), leasePrefix)
}

// shardStatus reports the shards of rotation rotID.
func (r *Rotator) shardStatus(ctx context.Context, rotID string) ([]ShardStatus, error) {
	infos, err := r.scanShards(ctx, rotID)
	if err != nil {
		return nil, err
	}
	out := make([]ShardStatus, 0, RewrapShards)
	for s, in := range infos {
		ss := ShardStatus{Shard: s, Done: in.done}
		if in.seq > 0 && !in.done {
			l, err := lease.Read(ctx, r.st, lease.Name(shardPrefix(rotID, s), in.seq))
			if err != nil {
				return nil, err
			}
			if l != nil && l.Live(r.now()) {
				ss.Lease = l
			}
		}
		out = append(out, ss)
	}
	return out, nil
}
