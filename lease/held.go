package lease

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/store"
)

// Options say how to take a lease. Zero values mean defaults.
type Options struct {
	// Duration is how long the lease lasts without renewal
	// (DefaultDuration). Longer than MaxDuration is refused (ErrTooLong).
	Duration time.Duration

	// Host is recorded in the lease object (os.Hostname).
	Host string

	// What names the lease in messages ("rotation lease").
	What string

	// Now is the clock that expiries are set and compared by (time.Now).
	Now func() time.Time

	// Logf, if set, is told of every invalid lease (expiry further ahead
	// than MaxDuration) that Take finds and takes over.
	Logf func(format string, args ...any)
}

func (o Options) withDefaults() (Options, error) {
	if o.Duration <= 0 {
		o.Duration = DefaultDuration
	}
	if o.What == "" {
		o.What = "lease"
	}
	if o.Duration > MaxDuration {
		return o, fmt.Errorf("%s of %v: %w (%v)", o.What, o.Duration, ErrTooLong, MaxDuration)
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o, nil
}

// Held is a lease this process holds, renewed in the background every
// third of its duration until released, abandoned or lost.
type Held struct {
	st   store.Store
	o    Options
	name string // the object
	pre  string // its prefix
	seq  uint64
	rec  Lease
	lost chan struct{} // closed when the lease is lost

	mu      sync.Mutex
	expires time.Time // of the last successful taking or renewal
	lapsed  bool      // a renewal came after the expiry before it
	stopped bool
	stop    chan struct{}
	done    chan struct{}
	lostErr error
}

// Take takes the lease below prefix: it creates seq+1 after the highest
// lease object if that one is absent, expired, unparseable or invalid
// (reported through o.Logf). If another process holds it live, the error
// is a *BusyError naming the holder.
func Take(ctx context.Context, st store.Store, prefix string, o Options) (*Held, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	seq, cur, err := Latest(ctx, st, prefix)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.What, err)
	}
	if cur != nil && cur.Invalid(o.Now()) {
		if o.Logf != nil {
			o.Logf("%s %s of %s is invalid: it expires more than %v ahead; taking it over", o.What, Name(prefix, seq), cur, MaxDuration)
		}
	} else if cur != nil && cur.Live(o.Now()) {
		return nil, &BusyError{What: o.What, Host: cur.Host, PID: cur.PID, Expires: cur.Expires}
	}
	return TakeAfter(ctx, st, prefix, seq, o)
}

// TakeAfter takes the lease below prefix by creating seq+1, where seq is
// the highest lease object the caller found absent, expired, unparseable
// or invalid. Of two racing takers exactly one wins; the other gets a
// *BusyError. Older lease objects are deleted (best effort).
func TakeAfter(ctx context.Context, st store.Store, prefix string, seq uint64, o Options) (*Held, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	holder := make([]byte, 16)
	if _, err := rand.Read(holder); err != nil {
		return nil, err
	}
	now := o.Now()
	rec := Lease{Holder: hex.EncodeToString(holder), Host: o.Host, PID: os.Getpid(), Expires: now.Add(o.Duration).UTC()}
	name := Name(prefix, seq+1)
	if err := create(ctx, st, name, rec.Marshal()); err != nil {
		if errors.Is(err, store.ErrExist) {
			if _, other, err2 := Latest(ctx, st, prefix); err2 == nil && other != nil {
				return nil, &BusyError{What: o.What, Host: other.Host, PID: other.PID, Expires: other.Expires}
			}
			return nil, &BusyError{What: o.What, Host: "unknown", Expires: now.Add(o.Duration)}
		}
		return nil, fmt.Errorf("%s: %w", o.What, err)
	}
	// Older lease objects are expired or superseded: remove them.
	for s := seq; s > 0; s-- {
		if err := st.Delete(ctx, Name(prefix, s)); errors.Is(err, store.ErrNotExist) {
			break
		}
	}
	h := &Held{st: st, o: o, name: name, pre: prefix, seq: seq + 1, rec: rec, expires: rec.Expires,
		lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go h.renewLoop()
	return h, nil
}

// create creates name with b. A Create that failed but whose object holds
// exactly b succeeded (its response was lost); any other object there
// means another process won.
func create(ctx context.Context, st store.Store, name string, b []byte) error {
	err := st.Create(ctx, name, b)
	if err != nil {
		if got, gerr := store.GetBounded(ctx, st, name, MaxSize); gerr == nil && bytes.Equal(got, b) {
			return nil
		}
	}
	return err
}

// Lease returns the lease as this process took it (the expiry of the
// taking, not of the last renewal).
func (h *Held) Lease() Lease { return h.rec }

// Seq returns the lease's sequence number.
func (h *Held) Seq() uint64 { return h.seq }

// Lost is closed when the lease is lost: a renewal failed or another
// process took it over (Err says which).
func (h *Held) Lost() <-chan struct{} { return h.lost }

func (h *Held) renewLoop() {
	defer close(h.done)
	t := time.NewTicker(max(h.o.Duration/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		if err := h.Renew(context.Background()); err != nil {
			h.mu.Lock()
			h.lostErr = err
			h.mu.Unlock()
			close(h.lost)
			return
		}
	}
}

// Renew extends the lease by its duration from now, after checking that
// no higher sequence exists (else the error wraps ErrTakenOver). The
// background loop calls it; tests may too.
func (h *Held) Renew(ctx context.Context) error {
	seq, _, err := Latest(ctx, h.st, h.pre)
	if err != nil {
		return fmt.Errorf("renewing the %s: %w", h.o.What, err)
	}
	if seq != h.seq {
		return fmt.Errorf("the %s was %w (lease %d, ours %d)", h.o.What, ErrTakenOver, seq, h.seq)
	}
	rec := h.rec
	rec.Expires = h.o.Now().Add(h.o.Duration).UTC()
	if err := h.st.Put(ctx, h.name, rec.Marshal()); err != nil {
		return fmt.Errorf("renewing the %s: %w", h.o.What, err)
	}
	now := h.o.Now()
	h.mu.Lock()
	if !now.Before(h.expires) {
		h.lapsed = true // others may have seen it expired in between
	}
	h.expires = rec.Expires
	h.mu.Unlock()
	return nil
}

// Lapsed reports whether the lease may have looked expired to others at
// some moment since it was taken: a renewal landed after the expiry of
// the one before (the process was paused, or the store slow), or the
// expiry has passed now without a renewal, or the lease was lost. A
// holder whose work relies on others seeing its lease all along (a
// snapshot beside a prune) asks this before it commits.
func (h *Held) Lapsed() bool {
	if h.Err() != nil {
		return true
	}
	now := h.o.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lapsed || !now.Before(h.expires)
}

// Err returns why the lease was lost, or nil.
func (h *Held) Err() error {
	select {
	case <-h.lost:
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.lostErr
	default:
		return nil
	}
}

// Abandon stops renewing without deleting the object, as a crash would:
// the lease lapses at its expiry.
func (h *Held) Abandon() {
	h.mu.Lock()
	first := !h.stopped
	h.stopped = true
	h.mu.Unlock()
	if first {
		close(h.stop)
	}
	<-h.done
}

// Release stops renewing and deletes the lease object, unless the lease
// was lost meanwhile (then the object is not ours any more).
func (h *Held) Release(ctx context.Context) error {
	h.Abandon()
	if h.Err() != nil {
		return nil
	}
	err := h.st.Delete(ctx, h.name)
	if err != nil && !errors.Is(err, store.ErrNotExist) {
		return fmt.Errorf("releasing the %s: %w", h.o.What, err)
	}
	return nil
}

// Break ends the lease below prefix whoever holds it, and returns the
// lease it broke: the highest lease object if it was live or invalid; nil
// if no lease was held. It creates the next lease object, already expired
// and naming this host: the holder's next renewal finds it and gives the
// lease up (ErrTakenOver), and the next Take takes the lease at once.
// For an operator who knows the holder is gone (or hung) and does not want
// to wait for the expiry; breaking a lease whose holder is still working
// makes two processes do the same maintenance, which the work a lease
// guards must tolerate anyway.
func Break(ctx context.Context, st store.Store, prefix string) (*Lease, error) {
	now := time.Now()
	for range 16 {
		seq, cur, err := Latest(ctx, st, prefix)
		if err != nil {
			return nil, fmt.Errorf("breaking the lease %s: %w", prefix, err)
		}
		if cur == nil || !(cur.Live(now) || cur.Invalid(now)) {
			return nil, nil
		}
		holder := make([]byte, 16)
		if _, err := rand.Read(holder); err != nil {
			return nil, err
		}
		host, _ := os.Hostname()
		// Expired even for a reader whose clock is behind by ClockSkew.
		rec := Lease{Holder: hex.EncodeToString(holder), Host: host, PID: os.Getpid(), Expires: now.Add(-ClockSkew).UTC()}
		err = create(ctx, st, Name(prefix, seq+1), rec.Marshal())
		if errors.Is(err, store.ErrExist) {
			continue // taken or broken meanwhile: look again
		}
		if err != nil {
			return nil, fmt.Errorf("breaking the lease %s: %w", prefix, err)
		}
		return cur, nil
	}
	return nil, fmt.Errorf("breaking the lease %s: it keeps changing", prefix)
}
