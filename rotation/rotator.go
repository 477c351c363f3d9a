package rotation

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/snapcrypt/snapcrypt/internal/hexid"
	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// Rotator runs the key rotations of one Keychain: it starts them (Start),
// coordinates them (Run, Resume), helps another process's (Help), and
// reports on them (Status, Unfinished, Lease). One process uses one
// Rotator per Keychain: it remembers the lease Start took for Run, the
// progress of the run in this process, and which entries it verified. It
// is safe for concurrent use; one run (Run, Resume, Help) at a time.
type Rotator struct {
	kc *keys.Keychain
	st store.Store
	t  *testHooks // nil in production (export_test.go)

	mu      sync.Mutex
	opts    Options
	lease   *lease.Held // taken by Start, for Run
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

// testHooks are what tests set (export_test.go): a clock and the crash
// hook that every step calls.
type testHooks struct {
	now     func() time.Time
	crash   func(point string) error
	crashed atomic.Pointer[errCrashed]
}

// New returns a Rotator for kc, which reads and writes kc.Store().
func New(kc *keys.Keychain, opts Options) *Rotator {
	return &Rotator{kc: kc, st: kc.Store(), opts: opts.withDefaults()}
}

// SetOptions sets the options later calls use.
func (r *Rotator) SetOptions(o Options) {
	r.mu.Lock()
	r.opts = o.withDefaults()
	r.mu.Unlock()
}

func (r *Rotator) options() Options {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.opts
}

func (r *Rotator) now() time.Time {
	if r.t != nil && r.t.now != nil {
		return r.t.now()
	}
	return time.Now()
}

// leaseOptions are the options of the rotation's leases.
func (r *Rotator) leaseOptions(o Options, what string) lease.Options {
	return lease.Options{Duration: o.LeaseDuration, Host: o.Host, What: what, Now: r.now, Logf: o.Logf}
}

// errCrashed marks an error returned by the crash hook.
type errCrashed struct{ err error }

func (e errCrashed) Error() string { return e.err.Error() }
func (e errCrashed) Unwrap() error { return e.err }

// step calls the crash hook at a rotation step. A crash is sticky: like a
// dead process, a Rotator that crashed takes no further step (in-flight
// operations of other workers may still land, as they may in a real crash).
func (r *Rotator) step(point string) error {
	if r.t == nil || r.t.crash == nil {
		return nil
	}
	if err := r.t.crashed.Load(); err != nil {
		return *err
	}
	if err := r.t.crash(point); err != nil {
		c := errCrashed{fmt.Errorf("at %s: %w", point, err)}
		r.t.crashed.CompareAndSwap(nil, &c)
		return c
	}
	return nil
}

func isCrash(err error) bool {
	var c errCrashed
	return errors.As(err, &c)
}

// isFatal says whether an error ends a run at once: a crash or a canceled
// context. Other errors fail one shard.
func isFatal(err error) bool {
	return isCrash(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// kek returns the KEK of generation gen, or nil if this process lacks it.
func (r *Rotator) kek(gen string) *keys.KEK {
	x, err := r.kc.KEK(gen)
	if err != nil {
		return nil
	}
	return x
}

// awaitHelperRun waits while this process runs Help (a daemon's keyring
// poll may have started one for the very rotation this process is about
// to coordinate, or a deletion it helps with); a helper run ends on its
// own once no shard is left to claim. It returns at once when no helper
// run is active, and ctx's error if ctx ends first.
func (r *Rotator) awaitHelperRun(ctx context.Context) error {
	for {
		r.mu.Lock()
		helper := r.running && r.prog.Helper
		r.mu.Unlock()
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

// beginRun marks a rotation run (Run, Help) as running in this process
// and resets its progress; ErrBusy if one is running already.
func (r *Rotator) beginRun(rot *keys.Rotation, helper bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running {
		return fmt.Errorf("%w: a rotation is running in this process", lease.ErrBusy)
	}
	r.running = true
	r.done.Store(0)
	r.total.Store(0)
	r.deleted.Store(0)
	r.shards.Store(0)
	r.checked.Store(0)
	r.prog = Progress{Phase: "starting", Started: r.now(), Helper: helper}
	if rot != nil {
		r.prog.From, r.prog.To = slices.Clone(rot.From), rot.To
	}
	return nil
}

func (r *Rotator) endRun() {
	r.mu.Lock()
	r.running = false
	r.mu.Unlock()
}

// report sets the phase (unless empty) and calls progress with the
// progress so far.
func (r *Rotator) report(progress func(Progress), phase string) {
	r.mu.Lock()
	if phase != "" {
		r.prog.Phase = phase
	}
	p := r.progressLocked()
	r.mu.Unlock()
	if progress != nil {
		progress(p)
	}
}

func (r *Rotator) progressLocked() Progress {
	p := r.prog
	p.From = slices.Clone(p.From)
	p.Done, p.Total, p.Deleted = r.done.Load(), r.total.Load(), r.deleted.Load()
	p.Shards, p.Checked = r.shards.Load(), r.checked.Load()
	if el := r.now().Sub(p.Started).Seconds(); el > 0 {
		p.Rate = float64(p.Done) / el
	}
	return p
}

func (r *Rotator) wasVerified(rotID string, id [16]byte) bool {
	r.verifiedMu.Lock()
	defer r.verifiedMu.Unlock()
	return r.verifiedID == rotID && r.verified[id]
}

func (r *Rotator) setVerified(rotID string, id [16]byte) {
	r.verifiedMu.Lock()
	defer r.verifiedMu.Unlock()
	if r.verifiedID != rotID {
		r.verifiedID, r.verified = rotID, map[[16]byte]bool{}
	}
	r.verified[id] = true
}

func (r *Rotator) forgetVerified() {
	r.verifiedMu.Lock()
	r.verifiedID, r.verified = "", nil
	r.verifiedMu.Unlock()
}

// parallel calls fn for every name with at most n at once and returns the
// first error (a crash error first of all). An error does not stop the
// other names (each one done is progress kept for the next attempt); a
// crash stops everything.
func (r *Rotator) parallel(ctx context.Context, n int, names []string, fn func(string) error) error {
	return r.parallelN(ctx, n, len(names), func(i int) error { return fn(names[i]) })
}

// paceQuantum is the least work a paced worker does between sleeps
// (Options.Pace).
const paceQuantum = 2 * time.Millisecond

// workClockGap is the least wall time between two readings of a paced
// worker's WorkClock. A daemon's is the thread's CPU clock, a system call
// (no vDSO) of about a microsecond: read after every unit, it was a third
// of the workers' CPU (units of 3 µs, re-wrapping packed DEKs). Work takes
// no more CPU than wall time, so at most this much waits to be billed. A
// variable for tests.
var workClockGap = 100 * time.Microsecond

// paced runs fn, work on the calling goroutine, and in a paced run
// (Options.Pace) pays for it as a worker pays for its units. Options.WorkClock
// is read before and after fn on the calling goroutine: a thread's CPU
// clock (a daemon's) needs the goroutine locked to its thread, as a
// daemon's run is (Daemon.enter). The goroutine
// that drives the workers reads the old DEK packs and writes, reads back
// and verifies the new ones (8,192 unwraps a pack): 43 % of a daemon's
// rotation CPU in a profile once the workers' was cut, in bursts the
// pacing did not see.
func (r *Rotator) paced(fn func()) {
	o := r.options()
	if o.Pace == nil {
		fn()
		return
	}
	clock := o.WorkClock
	if clock == nil {
		t0 := time.Now()
		clock = func() time.Duration { return time.Since(t0) }
	}
	c := clock()
	fn()
	if now := clock(); c > 0 && now > c {
		o.Pace(now - c)
	}
}

// parallelN is parallel over the indexes 0 to count-1. Workers take the
// next index from a counter, never waiting for one: a worker runs on a
// locked thread (Options.StartWorker), and handing each index over a
// channel parked and woke that thread once per unit, two futex calls and
// a thread switch or more for a few microseconds of work. Those cost more
// than the work (56 % of a daemon's rotation CPU), much of it on the
// threads of the goroutines that woke them, at normal priority.
func (r *Rotator) parallelN(ctx context.Context, n, count int, fn func(int) error) error {
	o := r.options()
	start, pace, clock, gap := o.StartWorker, o.Pace, o.WorkClock, workClockGap
	if clock == nil {
		t0 := time.Now()
		clock = func() time.Duration { return time.Since(t0) }
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
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
			// Paced, the work is costed by the clock, read after a unit
			// once workClockGap of wall time has passed since the last
			// reading (and after the last unit), and paid for in sleeps
			// of at least paceQuantum of work: a sleep after each unit of
			// a few microseconds made thousands of wake-ups a second of a
			// locked thread, whose cost the readers bore and the clock
			// did not show.
			var c, owed time.Duration
			var last time.Time // of the last clock reading
			bill := func() {
				// A clock that failed (0) or went back costs nothing:
				// its next reading must not bill a whole thread's time.
				now := clock()
				if c > 0 && now >= c {
					owed += now - c
				}
				c, last = now, time.Now()
			}
			if pace != nil {
				c, last = clock(), time.Now()
				defer func() {
					if ctx.Err() == nil {
						bill()
						if owed > 0 {
							pace(owed)
						}
					}
				}()
			}
			for ctx.Err() == nil { // stop after a crash
				i := int(next.Add(1) - 1)
				if i >= count {
					return
				}
				err := fn(i)
				if pace != nil && time.Since(last) >= gap {
					bill()
					if owed >= paceQuantum && ctx.Err() == nil {
						pace(owed)
						owed, c, last = 0, clock(), time.Now() // the sleep is not work
					}
				}
				if err == nil {
					continue
				}
				mu.Lock()
				crashed := isCrash(err)
				if first == nil || (crashed && !isCrash(first)) {
					first = err
				}
				mu.Unlock()
				if crashed {
					cancel()
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// parseHexID decodes an id of len(out) bytes written as lower-case hex.
func parseHexID(s string, out []byte) bool {
	if !hexid.Valid(s, 2*len(out)) {
		return false
	}
	hex.Decode(out, []byte(s))
	return true
}
