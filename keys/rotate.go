package keys

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// DefaultWorkers is how many wrapped DEKs a rotation re-wraps at once.
const DefaultWorkers = 16

// Crash points: every step of a rotation calls the crash hook (tests) with
// one of these. docs/rotation.md says what recovers each.
const (
	PointLease        = "lease"         // the lease is taken
	PointSwitch       = "switch"        // the switch commit is durable
	PointShard        = "shard"         // a re-wrap shard's lease is taken
	PointRewrap       = "rewrap"        // one twin under the new generation is written and verified
	PointShardDone    = "shard-done"    // a shard's done marker is written; its lease is released next
	PointBeforeRetire = "before-retire" // every old entry has a verified twin; retire commit next
	PointRetired      = "retired"       // the retire commit is durable
	PointDelete       = "delete"        // one old-prefix entry is deleted
	PointDeleted      = "deleted"       // every retired prefix is empty; the lease is released next
)

// RotateOptions tune a rotation. Zero values mean defaults.
type RotateOptions struct {
	Workers       int           // parallel re-wraps and deletes (DefaultWorkers)
	LeaseDuration time.Duration // rotation lease lifetime without renewal (DefaultLeaseDuration)
	Host          string        // host name recorded in the lease and rotation record (os.Hostname)
	ShardPoll     time.Duration // how often a coordinator looks at shards others hold (DefaultShardPoll)

	// StartWorker, if set, is called first thing on every goroutine a
	// rotation run starts for its work (the re-wrap, check and delete
	// workers). A daemon uses it to run them at background priority, so
	// that the rotation takes only time its readers do not want.
	StartWorker func()

	// Pace, if set, is called by a rotation worker after each unit of
	// work (a wrapped DEK re-wrapped, checked or deleted, a batch of a
	// deleted prefix's files freed) with the time the unit took; it may
	// sleep, to spread a background rotation out in time.
	Pace func(worked time.Duration)
}

func (o RotateOptions) withDefaults() RotateOptions {
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.LeaseDuration <= 0 {
		o.LeaseDuration = DefaultLeaseDuration
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	if o.ShardPoll <= 0 {
		o.ShardPoll = DefaultShardPoll
	}
	return o
}

// Progress of a rotation run in this process.
type Progress struct {
	Phase   string    // "rewrap", "retire", "delete" or "done"
	From    []string  // the generations rotated away from
	To      string    // the new current generation
	Done    int64     // wrapped DEKs with a verified twin under To
	Total   int64     // wrapped DEKs found under From so far
	Deleted int64     // old-prefix entries deleted
	Started time.Time // when this run started
	Rate    float64   // Done per second since Started
	Helper  bool      // this process helps (HelpRotation); it does not retire or delete
	Shards  int64     // re-wrap shards this process claimed and finished
	Checked int64     // of Done: twins other processes made, checked by this one
}

// rotator is the rotation state of a Keychain.
type rotator struct {
	mu      sync.Mutex
	opts    RotateOptions
	lease   *heldLease
	running bool
	prog    Progress
	done    atomic.Int64
	total   atomic.Int64
	deleted atomic.Int64
	shards  atomic.Int64
	checked atomic.Int64

	// verified holds the old-prefix entries whose twins this process has
	// verified, for the rotation verifiedID, so that a run retried after a
	// failure does not redo them.
	verifiedMu sync.Mutex
	verifiedID string
	verified   map[[16]byte]bool // by DEK id: no pointers for the GC to scan
}

// SetRotateOptions sets the options later rotation runs (RunRotation,
// Resume) use.
func (k *Keychain) SetRotateOptions(o RotateOptions) {
	k.rot.mu.Lock()
	k.rot.opts = o.withDefaults()
	k.rot.mu.Unlock()
}

func (k *Keychain) rotateOptions() RotateOptions {
	k.rot.mu.Lock()
	defer k.rot.mu.Unlock()
	return k.rot.opts.withDefaults()
}

// errCrashed marks an error returned by the crash hook.
type errCrashed struct{ err error }

func (e errCrashed) Error() string { return e.err.Error() }
func (e errCrashed) Unwrap() error { return e.err }

// step calls the crash hook at a rotation step. A crash is sticky: like a
// dead process, a Keychain that crashed takes no further step (in-flight
// operations of other workers may still land, as they may in a real crash).
func (k *Keychain) step(point string) error {
	if k.crash == nil {
		return nil
	}
	if err := k.crashed.Load(); err != nil {
		return *err
	}
	if err := k.crash(point); err != nil {
		c := errCrashed{fmt.Errorf("at %s: %w", point, err)}
		k.crashed.CompareAndSwap(nil, &c)
		return c
	}
	return nil
}

// StartRotation switches the repository to a new key (the first step of
// docs/rotation.md): it takes the rotation lease and commits one keyring
// epoch that adds a new generation for m (fresh random id and salt) as
// current, marks the old current generation retiring and records the
// rotation. It returns once that commit is durable; from then on every new
// DEK is wrapped under the new key, which k holds at once.
//
// The lease stays held (and renewed) for RunRotation, which does the
// re-wrapping and retires the old generation; Close releases it if
// RunRotation is not called.
//
// Errors: ErrAlreadyCurrent if m is the current key; a *BusyError (ErrBusy)
// if another live process holds the lease; ErrRotationUnfinished if an
// earlier rotation has not finished (Resume it); ErrDEKUnavailable if k
// does not hold the current key. In each case the keyring is unchanged.
func (k *Keychain) StartRotation(ctx context.Context, m *Material, opts RotateOptions) (err error) {
	if m == nil {
		return fmt.Errorf("rotate: %w: no new key given", ErrBadKey)
	}
	opts = opts.withDefaults()
	k.rot.mu.Lock()
	if k.rot.running || k.rot.lease != nil {
		k.rot.mu.Unlock()
		return fmt.Errorf("rotate: %w: a rotation is running in this process", ErrBusy)
	}
	k.rot.opts = opts
	k.rot.mu.Unlock()

	if err := k.Refresh(ctx); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	// Before the lease only what needs no lease: so that a second rotator
	// learns who runs the rotation (ErrBusy) rather than that one runs.
	r := k.Keyring()
	if cur := r.Generation(r.Current); matchKEK(cur, m, k.rid) != nil {
		return fmt.Errorf("rotate: %w (generation %s)", ErrAlreadyCurrent, r.Current)
	}
	lease, err := k.takeLease(ctx, opts)
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	defer func() {
		var c errCrashed
		switch {
		case errors.As(err, &c):
			lease.abandon()
		case err != nil:
			lease.release(context.WithoutCancel(ctx))
		default:
			k.rot.mu.Lock()
			k.rot.lease = lease
			k.rot.mu.Unlock()
		}
	}()
	if err := k.step(PointLease); err != nil {
		return err
	}
	var newKEK *kek
	var newGen Generation
	err = k.Commit(ctx, func(r *Keyring) (bool, error) {
		if err := k.checkRotatable(*r, m); err != nil {
			return false, err
		}
		g, kk, err := newGeneration(r, m, k.rid, k.now())
		if err != nil {
			return false, err
		}
		rid, err := randomID(16)
		if err != nil {
			return false, err
		}
		old := r.Current
		r.Generations = slices.Clone(r.Generations)
		for i := range r.Generations {
			if r.Generations[i].State == StateCurrent {
				r.Generations[i].State = StateRetiring
			}
		}
		r.Generations = append(r.Generations, g)
		r.Current = g.ID
		r.Rotation = &Rotation{
			ID: hex.EncodeToString(rid), From: []string{old}, To: g.ID,
			Started:     k.now().UTC().Truncate(time.Second),
			RequestedBy: Requester{Host: opts.Host, PID: os.Getpid()},
		}
		newKEK, newGen = kk, g
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	k.mu.Lock()
	keks := make(map[string]*kek, len(k.keks)+1)
	for id, kk := range k.keks {
		keks[id] = kk
	}
	if g := k.ring.Generation(newGen.ID); g != nil && g.State != StateRetired {
		keks[newGen.ID] = newKEK
	}
	k.keks = keks
	k.mats = append(k.mats, m)
	k.mu.Unlock()
	if err := k.step(PointSwitch); err != nil {
		return err
	}
	k.rewrapIDKey(ctx, newKEK)
	return nil
}

// rewrapIDKey gives the content-id key its twin under the new generation
// right after the switch, so that a process holding only the new key can
// open the repository and write snapshots at once. Best effort: the re-wrap
// step does it anyway.
func (k *Keychain) rewrapIDKey(ctx context.Context, kTo *kek) {
	r := k.Keyring()
	id, err := parseDEKID(r.IDKeyDEK)
	if err != nil || r.Rotation == nil {
		return
	}
	for _, from := range r.Rotation.From {
		k.mu.RLock()
		kFrom := k.keks[from]
		k.mu.RUnlock()
		if kFrom == nil {
			continue
		}
		cs, _, err := k.copiesIn(ctx, kFrom.gen, id, false, true)
		if err != nil {
			continue
		}
		for _, c := range cs {
			dek, err := kFrom.unwrap(k.rid, id, c.wrapped)
			if err != nil {
				continue
			}
			k.writeWrapped(ctx, kTo, id, dek)
			clear(dek)
			return
		}
	}
}

// checkRotatable says why r cannot be rotated to m, if it cannot.
func (k *Keychain) checkRotatable(r Keyring, m *Material) error {
	if cur := r.Generation(r.Current); matchKEK(cur, m, k.rid) != nil {
		return fmt.Errorf("%w (generation %s)", ErrAlreadyCurrent, r.Current)
	}
	if r.Rotation != nil {
		return fmt.Errorf("%w: from %s to %s, started %s by %s pid %d; resume it first",
			ErrRotationUnfinished, strings.Join(r.Rotation.From, ","), r.Rotation.To,
			r.Rotation.Started.Format(time.RFC3339), r.Rotation.RequestedBy.Host, r.Rotation.RequestedBy.PID)
	}
	k.mu.RLock()
	held := k.keks[r.Current] != nil
	k.mu.RUnlock()
	if !held {
		return fmt.Errorf("%w: rotating needs the current key (generation %s)", ErrDEKUnavailable, r.Current)
	}
	return nil
}

// Unfinished reports whether a rotation is unfinished: the keyring has a
// rotation record, or a retired generation still has wrapped DEKs.
func (k *Keychain) Unfinished(ctx context.Context) (bool, error) {
	if err := k.Refresh(ctx); err != nil {
		return false, err
	}
	r := k.Keyring()
	if r.Rotation != nil {
		return true, nil
	}
	for _, g := range r.Generations {
		if g.State != StateRetired {
			continue
		}
		n, err := k.count(ctx, genPrefix(g.ID), 1)
		if err != nil {
			return false, err
		}
		if n > 0 {
			return true, nil
		}
	}
	return false, nil
}

var errEnough = errors.New("enough")

// count counts objects below prefix, stopping at limit (0: no limit).
func (k *Keychain) count(ctx context.Context, prefix string, limit int) (int, error) {
	n := 0
	err := k.st.List(ctx, prefix, func(store.Info) error {
		n++
		if limit > 0 && n >= limit {
			return errEnough
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		err = nil
	}
	return n, err
}

// countDEKs counts the wrapped DEKs of generation gen: single objects and
// the entries of DEK packs (by their names).
func (k *Keychain) countDEKs(ctx context.Context, gen string) (int, error) {
	n := 0
	err := k.listNames(ctx, genPrefix(gen), func(name string) error {
		n += int(objectEntries(name))
		return nil
	})
	return n, err
}

// Resume finishes an unfinished rotation (see Unfinished): it takes the
// rotation lease and does what RunRotation does. Re-wrapping needs the key
// of the new current generation and, for entries not yet re-wrapped, the
// old one; deleting the DEKs of retired generations needs no key. With
// nothing unfinished it returns nil.
func (k *Keychain) Resume(ctx context.Context, progress func(Progress)) error {
	return k.RunRotation(ctx, progress)
}

// RunRotation re-wraps every DEK of the retiring generations under the
// current one, retires them and deletes their wrapped DEKs (steps 3 and 4
// of docs/rotation.md), then releases the rotation lease. It takes the lease
// if this Keychain does not hold it already (after StartRotation it does).
// progress, if not nil, is called from time to time and at every phase.
// Any failure leaves the repository consistent; Resume continues.
func (k *Keychain) RunRotation(ctx context.Context, progress func(Progress)) (err error) {
	opts := k.rotateOptions()
	if err := k.awaitHelperRun(ctx); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	if err := k.beginRun(nil, false); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	defer k.endRun()
	k.rot.mu.Lock()
	lease := k.rot.lease
	k.rot.lease = nil
	k.rot.mu.Unlock()

	if lease == nil {
		if lease, err = k.takeLease(ctx, opts); err != nil {
			return fmt.Errorf("rotate: %w", err)
		}
		if err := k.step(PointLease); err != nil {
			lease.abandon()
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-lease.lost:
			cancel()
		case <-ctx.Done():
		}
	}()
	defer func() {
		if lerr := lease.err(); lerr != nil && err != nil {
			err = fmt.Errorf("rotate: lost the rotation lease: %w: %w", lerr, err)
		}
		var c errCrashed
		if errors.As(err, &c) {
			lease.abandon()
			return
		}
		if rerr := lease.release(context.WithoutCancel(ctx)); err == nil {
			err = rerr
		}
	}()
	if err := k.rotate(ctx, opts, progress); err != nil {
		return err
	}
	return k.step(PointDeleted)
}

// awaitHelperRun waits while this process runs HelpRotation (a daemon's
// keyring poll may have started one for the very rotation this process is
// about to coordinate, or a deletion it helps with); a helper run ends on
// its own once no shard is left to claim. It returns at once when no
// helper run is active, and ctx's error if ctx ends first.
func (k *Keychain) awaitHelperRun(ctx context.Context) error {
	for {
		k.rot.mu.Lock()
		helper := k.rot.running && k.rot.prog.Helper
		k.rot.mu.Unlock()
		if !helper {
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// beginRun marks a rotation run (RunRotation, HelpRotation) as running in
// this process and resets its progress; ErrBusy if one is running already.
func (k *Keychain) beginRun(rot *Rotation, helper bool) error {
	k.rot.mu.Lock()
	defer k.rot.mu.Unlock()
	if k.rot.running {
		return fmt.Errorf("%w: a rotation is running in this process", ErrBusy)
	}
	k.rot.running = true
	k.rot.done.Store(0)
	k.rot.total.Store(0)
	k.rot.deleted.Store(0)
	k.rot.shards.Store(0)
	k.rot.checked.Store(0)
	k.rot.prog = Progress{Phase: "starting", Started: k.now(), Helper: helper}
	if rot != nil {
		k.rot.prog.From, k.rot.prog.To = slices.Clone(rot.From), rot.To
	}
	return nil
}

func (k *Keychain) endRun() {
	k.rot.mu.Lock()
	k.rot.running = false
	k.rot.mu.Unlock()
}

func (k *Keychain) report(progress func(Progress), phase string) {
	k.rot.mu.Lock()
	if phase != "" {
		k.rot.prog.Phase = phase
	}
	p := k.progressLocked()
	k.rot.mu.Unlock()
	if progress != nil {
		progress(p)
	}
}

func (k *Keychain) progressLocked() Progress {
	p := k.rot.prog
	p.From = slices.Clone(p.From)
	p.Done, p.Total, p.Deleted = k.rot.done.Load(), k.rot.total.Load(), k.rot.deleted.Load()
	p.Shards, p.Checked = k.rot.shards.Load(), k.rot.checked.Load()
	if el := k.now().Sub(p.Started).Seconds(); el > 0 {
		p.Rate = float64(p.Done) / el
	}
	return p
}

func (k *Keychain) rotate(ctx context.Context, opts RotateOptions, progress func(Progress)) error {
	if err := k.Refresh(ctx); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	r := k.Keyring()
	order := deleteAll
	if rot := r.Rotation; rot != nil {
		k.rot.mu.Lock()
		k.rot.prog.From, k.rot.prog.To = slices.Clone(rot.From), rot.To
		k.rot.mu.Unlock()
		k.report(progress, "rewrap")
		others, err := k.rewrapAll(ctx, rot, opts, progress)
		if err != nil {
			return err
		}
		if others {
			order = deleteUp // helpers may delete from the top down
		}
		if err := k.step(PointBeforeRetire); err != nil {
			return err
		}
		k.report(progress, "retire")
		err = k.Commit(ctx, func(r *Keyring) (bool, error) {
			if r.Rotation == nil || r.Rotation.ID != rot.ID {
				return false, nil // finished by another process
			}
			r.Generations = slices.Clone(r.Generations)
			for i := range r.Generations {
				if slices.Contains(rot.From, r.Generations[i].ID) {
					r.Generations[i].State = StateRetired
				}
			}
			r.Rotation = nil
			return true, nil
		})
		if err != nil {
			return fmt.Errorf("rotate: retiring %s: %w", strings.Join(rot.From, ","), err)
		}
		k.rot.verifiedMu.Lock()
		k.rot.verifiedID, k.rot.verified = "", nil
		k.rot.verifiedMu.Unlock()
		if err := k.step(PointRetired); err != nil {
			return err
		}
	}
	k.report(progress, "delete")
	if err := k.deleteRetired(ctx, opts, order); err != nil {
		return err
	}
	k.report(progress, "done")
	return nil
}

// Purge gives the store back the space of the wrapped DEKs of retired
// generations on stores that delete a whole prefix at once (the local
// store renames it away: no reader sees it from then on, but its files are
// still on disk). It is housekeeping, not part of the rotation, which is
// finished when RunRotation returns: a rotating command calls it after,
// a daemon when it is idle. It also frees what killed processes left; with
// nothing to free it costs one directory read. pace, if not nil, is
// called after each batch of files with the time it took (it may sleep).
func (k *Keychain) Purge(ctx context.Context, pace func(worked time.Duration)) error {
	pd, ok := k.st.(prefixDeleter)
	if !ok {
		return nil
	}
	if err := pd.PurgeTrash(ctx, pace); err != nil {
		return fmt.Errorf("freeing deleted data keys: %w", err)
	}
	return nil
}

// rewrapAll gives every entry below deks/<from>/ a verified twin under
// rot.To: shard by shard, together with any helpers (shard.go), then one
// pass over the whole old prefix, re-listed until a listing finds nothing
// unverified (late writers, and whatever a lying done marker hid).
//
// others says whether other processes worked shards (they may help delete).
func (k *Keychain) rewrapAll(ctx context.Context, rot *Rotation, opts RotateOptions, progress func(Progress)) (others bool, err error) {
	k.mu.RLock()
	kTo := k.keks[rot.To]
	kFrom := map[string]*kek{}
	for _, g := range rot.From {
		kFrom[g] = k.keks[g]
	}
	k.mu.RUnlock()
	if kTo == nil {
		return false, fmt.Errorf("rotate: %w: finishing the rotation needs the key of the new generation %s", ErrDEKUnavailable, rot.To)
	}
	run := k.newShardRun(rot, kTo, kFrom, opts, progress, true)
	if err := run.work(ctx); err != nil {
		return false, err
	}
	k.report(progress, "")
	for {
		before := k.rot.done.Load()
		n, err := run.fullPass(ctx)
		if err != nil {
			return false, err
		}
		if k.rot.done.Load() == before || n == 0 {
			return run.others, nil
		}
		k.report(progress, "")
	}
}

func (k *Keychain) wasVerified(rotID string, id [16]byte) bool {
	k.rot.verifiedMu.Lock()
	defer k.rot.verifiedMu.Unlock()
	return k.rot.verifiedID == rotID && k.rot.verified[id]
}

func (k *Keychain) setVerified(rotID string, id [16]byte) {
	k.rot.verifiedMu.Lock()
	defer k.rot.verifiedMu.Unlock()
	if k.rot.verifiedID != rotID {
		k.rot.verifiedID, k.rot.verified = rotID, map[[16]byte]bool{}
	}
	k.rot.verified[id] = true
}

// parallel calls fn for every name with at most n at once and returns the
// first error (a crash error first of all). An error does not stop the
// other names (each one done is progress kept for the next attempt); a
// crash stops everything.
func (k *Keychain) parallel(ctx context.Context, n int, names []string, fn func(string) error) error {
	return k.parallelN(ctx, n, len(names), func(i int) error { return fn(names[i]) })
}

// parallelN is parallel over the indexes 0 to count-1.
func (k *Keychain) parallelN(ctx context.Context, n, count int, fn func(int) error) error {
	o := k.rotateOptions()
	start, pace := o.StartWorker, o.Pace
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan int)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range min(n, count) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if start != nil {
				start()
			}
			for i := range ch {
				if ctx.Err() != nil {
					continue // drain: stop after a crash
				}
				t := time.Now()
				err := fn(i)
				if pace != nil {
					pace(time.Since(t))
				}
				if err != nil {
					mu.Lock()
					var c errCrashed
					crashed := errors.As(err, &c)
					if first == nil || (crashed && !errors.As(first, &c)) {
						first = err
					}
					mu.Unlock()
					if crashed {
						cancel()
					}
				}
			}
		}()
	}
feed:
	for i := range count {
		select {
		case ch <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// prepareTwin looks for a twin of e under kTo's generation (singles says
// which single objects exist there; pack entries come from the index). It
// returns rw == nil when e has a verified twin already (checked: with
// check, a twin another process made that opens under the new key), and
// otherwise e's DEK wrapped under kTo, to be packed. kFrom may be nil (this
// process lacks the old key): then a twin that opens under the new key is
// accepted and a missing one is an error. A damaged copy under the new
// generation is not repaired in place: the new pack entry supersedes it
// (readers try every copy).
func (k *Keychain) prepareTwin(ctx context.Context, e oldEntry, kFrom, kTo *kek, singles map[[16]byte]bool, check bool) (rw *rewrapped, checked bool, err error) {
	cs, _, err := k.copiesIn(ctx, kTo.gen, e.id, false, singles[e.id])
	if err != nil {
		return nil, false, fmt.Errorf("rotate: %w", err)
	}
	opensNew := func() bool {
		for _, c := range cs {
			if d, err := kTo.unwrap(k.rid, e.id, c.wrapped); err == nil {
				clear(d)
				return true
			}
		}
		return false
	}
	if check || kFrom == nil {
		if opensNew() {
			return nil, check, nil
		}
		if kFrom == nil {
			if len(cs) == 0 {
				return nil, false, fmt.Errorf("rotate: %s: %w: re-wrapping it needs the key of generation %s", e.object, ErrDEKUnavailable, e.object[len(deksPrefix):len(deksPrefix)+16])
			}
			return nil, false, fmt.Errorf("rotate: object %s is %w", cs[0].object, object.ErrCorrupt)
		}
	}
	old := e.wrapped
	if old == nil {
		b, err := k.st.Get(ctx, e.object)
		if errors.Is(err, store.ErrNotExist) {
			return nil, false, nil // deleted: the rotation was finished by another process
		}
		if err != nil {
			return nil, false, fmt.Errorf("rotate: %w", err)
		}
		old = b
	}
	dek, err := kFrom.unwrap(k.rid, e.id, old)
	if err != nil {
		if opensNew() { // a late writer's double wrap
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("rotate: object %s is %w", e.object, err)
	}
	for _, c := range cs {
		verr := kTo.verifyWrapped(k.rid, e.id, c.wrapped, dek)
		if verr == nil {
			clear(dek)
			return nil, false, nil
		}
		if !errors.Is(verr, object.ErrCorrupt) || errors.Is(verr, ErrDifferentKey) {
			clear(dek)
			return nil, false, fmt.Errorf("rotate: object %s does not match %s: %w", c.object, e.object, verr)
		}
	}
	w, err := kTo.wrap(k.rid, e.id, dek)
	if err != nil {
		clear(dek)
		return nil, false, err
	}
	return &rewrapped{e: e, dek: dek, wrapped: w}, false, nil
}

// deleteRetired deletes the shard leases and done markers of finished
// rotations, then every wrapped DEK of every retired generation.
func (k *Keychain) deleteRetired(ctx context.Context, opts RotateOptions, order deleteOrder) error {
	r := k.Keyring()
	keep := ""
	if r.Rotation != nil {
		keep = r.Rotation.ID
	}
	if err := k.deleteRewrapObjects(ctx, opts, keep); err != nil {
		return err
	}
	return k.deleteGens(ctx, opts, retiredGens(r), order)
}

func retiredGens(r Keyring) []string {
	var out []string
	for _, g := range r.Generations {
		if g.State == StateRetired {
			out = append(out, g.ID)
		}
	}
	return out
}

// nameLister is a store that lists names fastest in an order of its own
// and without sizes (the local store: directory order). A rotation reads
// every wrapped DEK of a generation and needs neither.
type nameLister interface {
	ListNames(ctx context.Context, prefix string, fn func(name string) error) error
}

// prefixDeleter is a store that deletes every object below a directory
// prefix at once, atomically for readers, and frees their space later in
// PurgeTrash (the local store).
type prefixDeleter interface {
	DeletePrefix(ctx context.Context, prefix string) error
	PurgeTrash(ctx context.Context, pace func(worked time.Duration)) error
}

// listNames lists the names below prefix in whatever order the store lists
// fastest.
func (k *Keychain) listNames(ctx context.Context, prefix string, fn func(name string) error) error {
	if nl, ok := k.st.(nameLister); ok {
		return nl.ListNames(ctx, prefix, fn)
	}
	return k.st.List(ctx, prefix, func(i store.Info) error { return fn(i.Name) })
}

// deleteOrder is how deleteGens walks a retired prefix.
type deleteOrder int

const (
	deleteAll  deleteOrder = iota // one listing per generation: nobody else deletes
	deleteUp                      // shard by shard from the first (a coordinator with helpers about)
	deleteDown                    // shard by shard from the last (a helper)
)

// deleteGens deletes every wrapped DEK below deks/<g>/ for each of gens,
// which a committed keyring says are retired. A coordinator and a helper
// deleting at once go shard by shard, listing each afresh, from opposite
// ends, so that they meet in the middle; an empty prefix then costs one
// listing.
func (k *Keychain) deleteGens(ctx context.Context, opts RotateOptions, gens []string, order deleteOrder) error {
	del := func(names []string) error {
		return k.parallel(ctx, opts.Workers, names, func(name string) error {
			err := k.st.Delete(ctx, name)
			if err != nil && !errors.Is(err, store.ErrNotExist) {
				return fmt.Errorf("rotate: %w", err)
			}
			if err == nil {
				k.rot.deleted.Add(objectEntries(name))
			}
			return k.step(PointDelete)
		})
	}
	list := func(prefix string) ([]string, error) {
		var names []string
		err := k.st.List(ctx, prefix, func(i store.Info) error {
			names = append(names, i.Name)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("rotate: listing %s: %w", prefix, err)
		}
		return names, nil
	}
	if pd, ok := k.st.(prefixDeleter); ok {
		for _, g := range gens {
			n, err := k.countDEKs(ctx, g)
			if err != nil {
				return fmt.Errorf("rotate: listing %s: %w", genPrefix(g), err)
			}
			if err := pd.DeletePrefix(ctx, genPrefix(g)); err != nil {
				return fmt.Errorf("rotate: %w", err)
			}
			k.rot.deleted.Add(int64(n))
			if err := k.step(PointDelete); err != nil {
				return err
			}
		}
		return nil
	}
	for _, g := range gens {
		if order == deleteAll {
			names, err := list(genPrefix(g))
			if err == nil {
				err = del(names)
			}
			if err != nil {
				return err
			}
			continue
		}
		if n, err := k.count(ctx, genPrefix(g), 1); err != nil {
			return fmt.Errorf("rotate: listing %s: %w", genPrefix(g), err)
		} else if n == 0 {
			continue
		}
		// The shards' single objects, then the DEK packs (a last pseudo
		// shard).
		for i := range RewrapShards + 1 {
			s := i
			if order == deleteDown {
				s = RewrapShards - i
			}
			prefix := packPrefix(g)
			if s < RewrapShards {
				prefix = shardDEKPrefix(g, s)
			}
			names, err := list(prefix)
			if err == nil {
				err = del(names)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// Close releases the rotation lease if StartRotation left it held (when
// RunRotation is not going to be called).
func (k *Keychain) Close(ctx context.Context) error {
	k.rot.mu.Lock()
	lease := k.rot.lease
	k.rot.lease = nil
	k.rot.mu.Unlock()
	if lease != nil {
		return lease.release(ctx)
	}
	return nil
}

// RotationLease returns the live rotation lease (its holder runs the
// rotation), or nil: one listing of the lease prefix, cheap enough to poll.
func (k *Keychain) RotationLease(ctx context.Context) (*Lease, error) {
	_, l, err := latestLease(ctx, k.st)
	if err != nil {
		return nil, err
	}
	if l != nil && k.now().Before(l.Expires) {
		return l, nil
	}
	return nil, nil
}

// GenerationStatus is one generation in a Status.
type GenerationStatus struct {
	ID      string
	State   State
	KDF     string
	Created time.Time
	Held    bool // this process holds its key
	DEKs    int  // wrapped DEKs below deks/<id>/
}

// Status is what .ctl/status shows about keys. It holds no key material.
type Status struct {
	Epoch       uint64
	Current     string
	Generations []GenerationStatus
	Rotation    *Rotation     // the keyring's rotation record, if any
	Progress    *Progress     // a rotation running in this process, if any
	Lease       *Lease        // the live rotation lease, if any
	Unfinished  bool          // a rotation record, or DEKs of a retired generation remain
	Shards      []ShardStatus // re-wrap shards of the rotation in progress, if any
}

// Status reloads the keyring and reports generations (with counts of
// wrapped DEKs), the rotation record, the lease holder and the progress of
// a rotation running in this process.
func (k *Keychain) Status(ctx context.Context) (Status, error) {
	if err := k.Refresh(ctx); err != nil {
		return Status{}, err
	}
	r := k.Keyring()
	s := Status{Epoch: r.Epoch, Current: r.Current, Rotation: r.Rotation}
	for _, g := range r.Generations {
		n, err := k.countDEKs(ctx, g.ID)
		if err != nil {
			return Status{}, err
		}
		s.Generations = append(s.Generations, GenerationStatus{ID: g.ID, State: g.State, KDF: g.KDF.Type, Created: g.Created, Held: k.Holds(g.ID), DEKs: n})
		if g.State == StateRetired && n > 0 {
			s.Unfinished = true
		}
	}
	if r.Rotation != nil {
		s.Unfinished = true
		shards, err := k.shardStatus(ctx, r.Rotation.ID)
		if err != nil {
			return Status{}, err
		}
		s.Shards = shards
	}
	lease, err := k.RotationLease(ctx)
	if err != nil {
		return Status{}, err
	}
	s.Lease = lease
	k.rot.mu.Lock()
	if k.rot.running {
		p := k.progressLocked()
		s.Progress = &p
	}
	k.rot.mu.Unlock()
	return s, nil
}
