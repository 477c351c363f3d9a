// Package lease gives one process at a time the right to run a piece of
// repository maintenance (a key rotation, a shard of its re-wrap, later a
// prune), with a name for who holds it and an expiry that a crashed holder
// lets lapse.
//
// A lease lives below a prefix, such as "leases/rotation/", as a series of
// create-only objects <prefix><seq> (seq: 20 decimal digits). The object of
// the highest sequence number is the lease. To take it a process creates
// seq+1 when the highest is absent, expired, unparseable or invalid: of two
// racing takers exactly one wins the Create. The holder renews it by Put of
// its own object every third of its duration, after checking that no higher
// sequence exists, and releases it by deleting it. The object format is in
// docs/format.md ("Rotation lease").
//
// Leases give exclusivity and a name for "who is doing this", never safety:
// clocks drift and a paused holder may wake up after its lease lapsed, so
// the work a lease guards must itself be safe to repeat or race.
//
// Two rules keep a lease from blocking maintenance forever: an object that
// does not parse counts as expired, and so does a lease whose expiry lies
// further ahead than MaxDuration (it can only have been written by a wrong
// clock or a broken or malicious writer); whoever finds such a lease says
// so (Options.Logf) and takes it over. Break ends any lease at once.
package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/snapcrypt/snapcrypt/internal/hexid"
	"github.com/snapcrypt/snapcrypt/internal/strictjson"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// MaxDuration is the longest lease that can be taken. A lease whose expiry
// lies further ahead than MaxDuration (plus ClockSkew) is invalid: it
// blocks nobody.
const MaxDuration = time.Hour

// ClockSkew is how far another host's clock may run ahead of this one's
// before a lease it took for MaxDuration counts as invalid here.
const ClockSkew = time.Minute

// DefaultDuration is how long a lease lasts without renewal when
// Options.Duration is zero.
const DefaultDuration = 30 * time.Second

// MaxSize bounds what a lease object may hold (a lease is about 130
// bytes). A larger object is not read whole: it counts as unparseable.
const MaxSize = 4 << 10

var (
	// ErrBusy is wrapped (by a *BusyError) when another live process
	// holds the lease.
	ErrBusy = errors.New("held by another process")

	// ErrTakenOver is wrapped by Held.Err when another process took the
	// lease over (its object is no longer the highest).
	ErrTakenOver = errors.New("taken over")

	// ErrTooLong is returned when a lease longer than MaxDuration is asked
	// for.
	ErrTooLong = errors.New("lease longer than the longest allowed")
)

// Lease is the content of a lease object <prefix><seq>.
type Lease struct {
	Holder  string    `json:"holder"` // 32 hex characters, random per taking
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Expires time.Time `json:"expires"`
}

// String describes the holder, for messages: host, pid and expiry.
func (l Lease) String() string {
	return fmt.Sprintf("host %s pid %d until %s", l.Host, l.PID, l.Expires.UTC().Format(time.RFC3339))
}

// Live reports whether l blocks others at time now: it has not expired
// and is valid.
func (l Lease) Live(now time.Time) bool {
	return now.Before(l.Expires) && !l.Invalid(now)
}

// Invalid reports whether l's expiry lies further ahead of now than any
// lease may last (MaxDuration, plus ClockSkew).
func (l Lease) Invalid(now time.Time) bool {
	return l.Expires.After(now.Add(MaxDuration + ClockSkew))
}

// BusyError says who holds a lease. It wraps ErrBusy.
type BusyError struct {
	What    string // "rotation lease", for messages
	Host    string
	PID     int
	Expires time.Time
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("%s %v: host %s pid %d until %s", e.What, ErrBusy, e.Host, e.PID, e.Expires.UTC().Format(time.RFC3339))
}

// Unwrap returns ErrBusy.
func (e *BusyError) Unwrap() error { return ErrBusy }

// Name is the name of lease object seq below prefix.
func Name(prefix string, seq uint64) string { return fmt.Sprintf("%s%020d", prefix, seq) }

// ParseSeq returns the sequence number of the lease object name below
// prefix; ok is false for any other name (such as a re-wrap shard's done
// marker beside its leases).
func ParseSeq(prefix, name string) (seq uint64, ok bool) {
	s, found := strings.CutPrefix(name, prefix)
	if !found || len(s) != 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(s, 10, 64)
	return seq, err == nil
}

// Parse decodes a lease object strictly: unknown fields, trailing data, a
// holder that is not 32 hex characters, a negative pid or a missing expiry
// are errors wrapping object.ErrCorrupt.
func Parse(b []byte) (Lease, error) {
	var l Lease
	if err := strictjson.Decode(b, &l); err != nil {
		return Lease{}, fmt.Errorf("lease: %w: %v", object.ErrCorrupt, err)
	}
	if !hexid.Valid(l.Holder, 32) || l.Expires.IsZero() || l.PID < 0 {
		return Lease{}, fmt.Errorf("lease: %w: bad holder, pid or expiry", object.ErrCorrupt)
	}
	return l, nil
}

// Marshal encodes l as stored: indented JSON and a newline.
func (l Lease) Marshal() []byte {
	b, _ := json.MarshalIndent(l, "", "  ")
	return append(b, '\n')
}

// Latest returns the highest lease sequence number below prefix (0 if
// none) and its lease, nil if that object is gone or unparseable (which
// counts as expired: a damaged object must not block anyone forever).
// Names below prefix that are not lease objects are ignored.
func Latest(ctx context.Context, st store.Reader, prefix string) (uint64, *Lease, error) {
	var last uint64
	err := st.List(ctx, prefix, func(info store.Info) error {
		if seq, ok := ParseSeq(prefix, info.Name); ok {
			last = max(last, seq)
		}
		return nil
	})
	if err != nil || last == 0 {
		return 0, nil, err
	}
	l, err := Read(ctx, st, Name(prefix, last))
	return last, l, err
}

// Read reads one lease object, at most MaxSize bytes of it: nil if it is
// gone (released) or does not parse (counts as expired).
func Read(ctx context.Context, st store.Reader, name string) (*Lease, error) {
	b, err := store.GetBounded(ctx, st, name, MaxSize)
	if errors.Is(err, store.ErrNotExist) { // released meanwhile
		return nil, nil
	}
	if errors.Is(err, store.ErrTooLarge) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	l, err := Parse(b)
	if err != nil {
		return nil, nil
	}
	return &l, nil
}

// Current returns the live lease below prefix at time now, or nil: one
// listing of the prefix and one read, cheap enough to poll. An invalid
// lease is not live.
func Current(ctx context.Context, st store.Reader, prefix string, now time.Time) (*Lease, error) {
	_, l, err := Latest(ctx, st, prefix)
	if err != nil {
		return nil, err
	}
	if l != nil && l.Live(now) {
		return l, nil
	}
	return nil, nil
}
