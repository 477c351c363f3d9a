package keys

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/snapcrypt/snapcrypt/internal/strictjson"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// leasePrefix is where rotation lease objects live.
const leasePrefix = "leases/rotation/"

// DefaultLeaseDuration is how long a rotation lease lasts without renewal.
const DefaultLeaseDuration = 30 * time.Second

// Lease is the content of a lease object leases/rotation/<seq>.
type Lease struct {
	Holder  string    `json:"holder"` // 32 hex characters, random per taking
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Expires time.Time `json:"expires"`
}

func leaseName(seq uint64) string { return leaseNameAt(leasePrefix, seq) }

// leaseNameAt is the name of lease seq below prefix (the rotation lease, or
// a re-wrap shard's lease).
func leaseNameAt(prefix string, seq uint64) string { return fmt.Sprintf("%s%020d", prefix, seq) }

// ParseLease decodes a lease object strictly.
func ParseLease(b []byte) (Lease, error) {
	var l Lease
	if err := strictjson.Decode(b, &l); err != nil {
		return Lease{}, fmt.Errorf("lease: %w: %v", object.ErrCorrupt, err)
	}
	if !isHex(l.Holder, 32) || l.Expires.IsZero() || l.PID < 0 {
		return Lease{}, fmt.Errorf("lease: %w: bad holder, pid or expiry", object.ErrCorrupt)
	}
	return l, nil
}

func (l *Lease) marshal() []byte {
	b, _ := json.MarshalIndent(l, "", "  ")
	return append(b, '\n')
}

// latestLease returns the highest lease sequence number (0 if none) and its
// lease. An unparseable lease object counts as expired: the lease is
// advisory (keyring commits are compare-and-swap), and a damaged object
// must not block rotation forever.
func latestLease(ctx context.Context, st store.Reader) (uint64, *Lease, error) {
	return latestLeaseAt(ctx, st, leasePrefix)
}

// latestLeaseAt is latestLease for the lease below prefix. Names below
// prefix that are not 20 decimal digits (a shard's done marker) are ignored.
func latestLeaseAt(ctx context.Context, st store.Reader, prefix string) (uint64, *Lease, error) {
	var last uint64
	err := st.List(ctx, prefix, func(info store.Info) error {
		s := strings.TrimPrefix(info.Name, prefix)
		seq, err := strconv.ParseUint(s, 10, 64)
		if err != nil || len(s) != 20 {
			return nil // not ours; ignore
		}
		last = max(last, seq)
		return nil
	})
	if err != nil || last == 0 {
		return 0, nil, err
	}
	l, err := readLease(ctx, st, leaseNameAt(prefix, last))
	return last, l, err
}

// readLease reads one lease object: nil if it is gone (released) or does not
// parse (counts as expired).
func readLease(ctx context.Context, st store.Reader, name string) (*Lease, error) {
	b, err := st.Get(ctx, name)
	if errors.Is(err, store.ErrNotExist) { // released meanwhile
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	l, err := ParseLease(b)
	if err != nil {
		return nil, nil
	}
	return &l, nil
}

// errTakenOver is wrapped when a lease was taken over by another process
// (its object is no longer the highest).
var errTakenOver = errors.New("taken over")

// heldLease is a lease this process holds, renewed in the background.
type heldLease struct {
	k      *Keychain
	prefix string // leasePrefix, or a shard's
	what   string // "rotation lease", for messages
	seq    uint64
	rec    Lease
	dur    time.Duration
	lost   chan struct{} // closed when the lease is lost

	mu      sync.Mutex
	stopped bool
	stop    chan struct{}
	done    chan struct{}
	lostErr error
}

// takeLease takes the rotation lease: it creates seq+1 after the highest
// lease object if that one is absent or expired. Otherwise it returns a
// *BusyError.
func (k *Keychain) takeLease(ctx context.Context, opts RotateOptions) (*heldLease, error) {
	return k.takeLeaseAt(ctx, leasePrefix, "rotation lease", opts)
}

// takeLeaseAt takes the lease below prefix (what names it in messages), as
// takeLease does the rotation lease.
func (k *Keychain) takeLeaseAt(ctx context.Context, prefix, what string, opts RotateOptions) (*heldLease, error) {
	seq, cur, err := latestLeaseAt(ctx, k.st, prefix)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if cur != nil && k.now().Before(cur.Expires) {
		return nil, &BusyError{Host: cur.Host, PID: cur.PID, Expires: cur.Expires}
	}
	return k.createLeaseAt(ctx, prefix, what, seq, opts)
}

// createLeaseAt takes the lease below prefix by creating seq+1, where seq
// is the highest lease object the caller found absent, expired or
// unparseable. Of two racing takers exactly one wins; the other gets a
// *BusyError.
func (k *Keychain) createLeaseAt(ctx context.Context, prefix, what string, seq uint64, opts RotateOptions) (*heldLease, error) {
	dur := opts.LeaseDuration
	now := k.now()
	holder, err := randomID(16)
	if err != nil {
		return nil, err
	}
	rec := Lease{Holder: hex.EncodeToString(holder), Host: opts.Host, PID: os.Getpid(), Expires: now.Add(dur).UTC()}
	err = k.st.Create(ctx, leaseNameAt(prefix, seq+1), rec.marshal())
	if err != nil {
		if got, gerr := k.st.Get(ctx, leaseNameAt(prefix, seq+1)); gerr == nil && bytes.Equal(got, rec.marshal()) {
			err = nil // the response was lost, the lease is ours
		}
	}
	if err != nil {
		if errors.Is(err, store.ErrExist) {
			if _, other, err2 := latestLeaseAt(ctx, k.st, prefix); err2 == nil && other != nil {
				return nil, &BusyError{Host: other.Host, PID: other.PID, Expires: other.Expires}
			}
			return nil, &BusyError{Host: "unknown", Expires: now.Add(dur)}
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	// Older lease objects are expired or superseded: remove them (best effort).
	for s := seq; s > 0; s-- {
		if err := k.st.Delete(ctx, leaseNameAt(prefix, s)); errors.Is(err, store.ErrNotExist) {
			break
		}
	}
	h := &heldLease{k: k, prefix: prefix, what: what, seq: seq + 1, rec: rec, dur: dur, lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go h.renewLoop()
	return h, nil
}

// renewLoop renews the lease every third of its duration until stopped. If
// a renewal fails or a newer lease object exists, the lease is lost.
func (h *heldLease) renewLoop() {
	defer close(h.done)
	t := time.NewTicker(max(h.dur/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		if err := h.renew(context.Background()); err != nil {
			h.mu.Lock()
			h.lostErr = err
			h.mu.Unlock()
			close(h.lost)
			return
		}
	}
}

func (h *heldLease) renew(ctx context.Context) error {
	seq, _, err := latestLeaseAt(ctx, h.k.st, h.prefix)
	if err != nil {
		return fmt.Errorf("renewing the %s: %w", h.what, err)
	}
	if seq != h.seq {
		return fmt.Errorf("the %s was %w (lease %d, ours %d)", h.what, errTakenOver, seq, h.seq)
	}
	rec := h.rec
	rec.Expires = h.k.now().Add(h.dur).UTC()
	if err := h.k.st.Put(ctx, leaseNameAt(h.prefix, h.seq), rec.marshal()); err != nil {
		return fmt.Errorf("renewing the %s: %w", h.what, err)
	}
	return nil
}

// err returns why the lease was lost, or nil.
func (h *heldLease) err() error {
	select {
	case <-h.lost:
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.lostErr
	default:
		return nil
	}
}

// abandon stops renewing without deleting the object, as a crash would: the
// lease lapses at its expiry.
func (h *heldLease) abandon() {
	h.mu.Lock()
	first := !h.stopped
	h.stopped = true
	h.mu.Unlock()
	if first {
		close(h.stop)
	}
	<-h.done
}

// release stops renewing and deletes the lease object.
func (h *heldLease) release(ctx context.Context) error {
	h.abandon()
	if h.err() != nil {
		return nil // not ours any more
	}
	err := h.k.st.Delete(ctx, leaseNameAt(h.prefix, h.seq))
	if err != nil && !errors.Is(err, store.ErrNotExist) {
		return fmt.Errorf("releasing the %s: %w", h.what, err)
	}
	return nil
}
