package rotation

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// work claims and works shards until none is left that this run can do.
// A helper returns then; a coordinator also checks the shards that other
// processes marked done and waits for those they hold, taking over a shard
// whose lease expires. It returns the first error of a shard (after trying
// the others), or at once on a crash, a canceled context or a failure to
// list the shards.
//
// A scan of the shards is reused for the next claims while it is young: a
// claim is decided by the create-only lease object and the done marker,
// not by the scan, which only saves claims that would fail. The run ends
// (or a coordinator waits) only on what a fresh scan shows.
func (sr *shardRun) work(ctx context.Context) error {
	start := rand.IntN(RewrapShards) // spread the processes over the shards
	var infos [RewrapShards]shardInfo
	stale := true
	var scanned time.Time
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if over, err := sr.rotationOver(ctx); over || err != nil {
			return err
		}
		fresh := stale || time.Since(scanned) > sr.opts.LeaseDuration/4
		if fresh {
			var err error
			if infos, err = sr.r.scanShards(ctx, sr.rot.ID); err != nil {
				return err
			}
			stale, scanned = false, time.Now()
		}
		progressed, err := sr.checkNext(ctx, &infos, start)
		if err != nil {
			return err
		}
		pending := false
		if !progressed {
			var outdated bool
			progressed, pending, outdated, err = sr.claimNext(ctx, &infos, start)
			if err != nil {
				return err
			}
			stale = stale || outdated
		}
		switch {
		case progressed:
			continue
		case !fresh:
			stale = true
			continue
		case !sr.coord || !pending:
			return sr.firstFailure()
		}
		stale = true
		if err := sleep(ctx, sr.opts.ShardPoll); err != nil {
			return err
		}
	}
}

// rotationOver tells a helper to stop: the rotation it works on was
// finished or replaced. A coordinator's rotation is over only when it
// retires it.
func (sr *shardRun) rotationOver(ctx context.Context) (bool, error) {
	if sr.coord {
		return false, nil
	}
	if err := sr.r.kc.Refresh(ctx); err != nil {
		return false, fmt.Errorf("rotate: %w", err)
	}
	cur := sr.r.kc.Keyring().Rotation
	return cur == nil || cur.ID != sr.rot.ID, nil
}

// checkNext makes a coordinator check the next shard another process
// marked done: checks come before claims, which spreads the work best (a
// check costs a third of a re-wrap). It returns whether it checked one,
// and only fatal errors (a failed check fails its shard).
func (sr *shardRun) checkNext(ctx context.Context, infos *[RewrapShards]shardInfo, start int) (bool, error) {
	if !sr.coord {
		return false, nil
	}
	for i := range RewrapShards {
		s := (start + i) % RewrapShards
		if infos[s].done && !sr.settled[s] && sr.failed[s] == nil {
			sr.others = true
			if err := sr.checkShard(ctx, s); isFatal(err) {
				return false, err
			}
			return true, nil
		}
	}
	return false, nil
}

// claimNext claims and works the next shard that has no done marker and
// no live lease. progressed says it worked one; pending, that some shard
// is held by another process; outdated, that another process claimed a
// shard first (the scan is out of date). It returns only fatal errors.
func (sr *shardRun) claimNext(ctx context.Context, infos *[RewrapShards]shardInfo, start int) (progressed, pending, outdated bool, err error) {
	for i := range RewrapShards {
		s := (start + i) % RewrapShards
		if infos[s].done || sr.settled[s] || sr.failed[s] != nil {
			continue
		}
		if infos[s].seq > 0 {
			l, err := lease.Read(ctx, sr.r.st, lease.Name(shardPrefix(sr.rot.ID, s), infos[s].seq))
			if err != nil {
				sr.failed[s] = fmt.Errorf("rotate: shard %s: %w", shardHex(s), err)
				continue
			}
			if l != nil && l.Live(sr.r.now()) {
				pending, sr.others = true, true
				continue
			}
		}
		busy, err := sr.claimShard(ctx, s, infos[s].seq)
		if isFatal(err) {
			return false, pending, outdated, err
		}
		if busy {
			pending, sr.others, outdated = true, true, true
			continue
		}
		return true, pending, outdated, nil
	}
	return false, pending, outdated, nil
}

// firstFailure returns the first shard's error of this run, if any.
func (sr *shardRun) firstFailure() error {
	for _, err := range sr.failed {
		if err != nil {
			return err
		}
	}
	return nil
}

// sleep waits d, or until ctx ends (its error).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// checkShard checks every entry of shard s, which another process marked
// done: each twin must open under the new key (missing or damaged twins
// are made here).
func (sr *shardRun) checkShard(ctx context.Context, s int) error {
	_, err := sr.shardPass(ctx, s, true)
	if err != nil {
		if !isFatal(err) {
			sr.failed[s] = err
		}
		return err
	}
	sr.settled[s] = true
	return nil
}

// claimShard takes shard s's lease and re-wraps the shard. busy says
// another process took the lease first. A failure is recorded in sr.failed
// (and returned); a shard lease lost to a takeover is not a failure: the
// new holder finishes the shard.
func (sr *shardRun) claimShard(ctx context.Context, s int, seq uint64) (busy bool, err error) {
	r := sr.r
	h, err := lease.TakeAfter(ctx, r.st, shardPrefix(sr.rot.ID, s), seq, r.leaseOptions(sr.opts, "re-wrap lease of shard "+shardHex(s)))
	if errors.Is(err, lease.ErrBusy) {
		return true, nil
	}
	if err != nil {
		sr.failed[s] = fmt.Errorf("rotate: %w", err)
		return false, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-h.Lost():
			cancel()
		case <-sctx.Done():
		}
	}()
	defer func() {
		if isCrash(err) {
			h.Abandon() // a dead process releases nothing
			return
		}
		h.Release(context.WithoutCancel(ctx)) // best effort: a leftover lapses
	}()
	// Done and released meanwhile (the scan was older than that)?
	if _, err := r.st.Stat(ctx, shardDoneObject(sr.rot.ID, s)); err == nil {
		return true, nil
	} else if !errors.Is(err, store.ErrNotExist) {
		sr.failed[s] = fmt.Errorf("rotate: %w", err)
		return false, sr.failed[s]
	}
	if err := r.step(PointShard); err != nil {
		return false, err
	}
	n, err := sr.shardPass(sctx, s, false)
	if lerr := h.Err(); lerr != nil && ctx.Err() == nil && !isCrash(err) {
		if errors.Is(lerr, lease.ErrTakenOver) {
			return false, nil
		}
		sr.failed[s] = fmt.Errorf("rotate: shard %s: lost the shard lease: %w", shardHex(s), lerr)
		return false, sr.failed[s]
	}
	if err != nil {
		if !isFatal(err) {
			sr.failed[s] = err
		}
		return false, err
	}
	sr.settled[s] = true
	r.shards.Add(1)
	return false, sr.markDone(ctx, s, n, h.Lease().Holder)
}

// markDone writes shard s's done marker. The marker is a hint for the
// others; losing it costs only a redo. A helper that was slow writes none
// once the rotation is over (it would be left behind until the next
// rotation's cleanup).
func (sr *shardRun) markDone(ctx context.Context, s int, entries int64, holder string) error {
	if over, err := sr.rotationOver(ctx); over || err != nil {
		return nil
	}
	m := ShardDone{Rotation: sr.rot.ID, Shard: shardHex(s), Entries: entries, Holder: holder,
		Host: sr.opts.Host, PID: os.Getpid(), Finished: sr.r.now().UTC().Truncate(time.Second)}
	sr.r.st.Create(ctx, shardDoneObject(sr.rot.ID, s), m.marshal())
	return sr.r.step(PointShardDone)
}
