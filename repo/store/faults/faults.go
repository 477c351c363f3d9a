// Package faults wraps a store.Store to inject failures, delays and lost
// responses, for tests of the code above the store (retries, rotation,
// snapshots). Nothing fails until rules are added:
//
//	fs := faults.New(mem.New())
//	fs.Add(faults.Rule{Ops: []faults.Op{faults.Create}, Prefix: "keyring/", Every: 2})
//	fs.Add(faults.Rule{Ops: []faults.Op{faults.Put}, Dropped: true, Times: 1})
//
// Store has every optional capability of package store (ReadRange,
// ReadSmall, ListNames, DeletePrefix, PurgeTrash, RemoveStale), each a
// fault point of its own (an Op), and is a store.Decorator. After its
// rules, a capability's call goes to the inner store's method if the inner
// store has it, and otherwise does the generic thing on the inner store
// (the function of the same name in package store), so faults for Get,
// List or Delete do not apply to it twice; store.Capable reports that
// such a capability is missing.
package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/store"
)

// ErrInjected is the error a rule injects unless it names another. It is a
// transient error: retrying may succeed.
var ErrInjected = errors.New("injected fault")

// Op names a method of store.Store or of one of the optional capabilities
// of package store.
type Op string

// The methods a Rule can match.
const (
	Get      Op = "get"
	GetRange Op = "get range"
	Stat     Op = "stat"
	List     Op = "list"
	Create   Op = "create"
	Put      Op = "put"
	Delete   Op = "delete"

	ReadRange    Op = "read range"    // store.RangeReader
	ReadSmall    Op = "read small"    // store.SmallReader
	ListNames    Op = "list names"    // store.NameLister
	DeletePrefix Op = "delete prefix" // store.PrefixDeleter
	PurgeTrash   Op = "purge trash"   // store.TrashPurger
	RemoveStale  Op = "remove stale"  // store.StaleRemover

	// Prefetch is counted (Calls) but matches no rule: a hint has no
	// result to fail, and the reads that follow are where faults show.
	Prefetch Op = "prefetch" // store.Prefetcher
)

// Rule says which calls fail and how. A call matches a rule when its method
// is in Ops (or Ops is empty) and its name starts with Prefix (for List,
// ListNames and DeletePrefix, the call's prefix starts with Prefix;
// PurgeTrash and RemoveStale have the name "", which only the Prefix ""
// matches).
type Rule struct {
	Ops    []Op
	Prefix string

	// Every makes every Every-th matching call of each method fail (the
	// Every-th, 2*Every-th, ...); 0 and 1 make every matching call fail.
	Every int

	// Probability, if above 0, makes a call that Every selects fail only
	// with this probability (drawn at random for each call).
	Probability float64

	// Times limits how many faults the rule injects; 0 means no limit.
	Times int

	// Err is the error to return, wrapped with the method and name;
	// nil means ErrInjected.
	Err error

	// Latency delays every matching call, failing or not, before it runs.
	// A canceled context ends the delay with the context's error. A rule
	// that sets Latency and none of Every, Times, Err, Dropped and ListAfter
	// only delays calls and injects no error (so do not set Probability).
	Latency time.Duration

	// Dropped makes a failing call happen first and then return the error,
	// as when a response is lost after the server acted on the request.
	Dropped bool

	// ListAfter makes a failing List or ListNames deliver this many
	// objects to its callback before it fails. It applies to those only.
	ListAfter int
}

type rule struct {
	Rule
	calls    map[Op]int
	injected int
}

func (r *rule) delayOnly() bool {
	return r.Latency > 0 && r.Every == 0 && r.Probability == 0 && r.Times == 0 && r.Err == nil && !r.Dropped && r.ListAfter == 0
}

// Store is a store.Store that passes calls to an inner store and injects
// faults by its rules. It is safe for concurrent use.
type Store struct {
	inner store.Store

	mu       sync.Mutex
	rules    []*rule
	calls    map[Op]int
	injected int
}

var (
	_ store.Store         = (*Store)(nil)
	_ store.Decorator     = (*Store)(nil)
	_ store.RangeReader   = (*Store)(nil)
	_ store.SmallReader   = (*Store)(nil)
	_ store.Prefetcher    = (*Store)(nil)
	_ store.NameLister    = (*Store)(nil)
	_ store.PrefixDeleter = (*Store)(nil)
	_ store.TrashPurger   = (*Store)(nil)
	_ store.StaleRemover  = (*Store)(nil)
)

// New returns a Store that passes every call to inner until rules are added.
func New(inner store.Store) *Store {
	return &Store{inner: inner, calls: make(map[Op]int)}
}

// Add adds a rule and returns a function that removes it again.
func (s *Store) Add(r Rule) (remove func()) {
	rr := &rule{Rule: r, calls: make(map[Op]int)}
	s.mu.Lock()
	s.rules = append(s.rules, rr)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.rules = slices.DeleteFunc(s.rules, func(x *rule) bool { return x == rr })
		s.mu.Unlock()
	}
}

// Reset removes every rule. The counts stay.
func (s *Store) Reset() {
	s.mu.Lock()
	s.rules = nil
	s.mu.Unlock()
}

// Calls returns how many calls of op the Store has had, failed ones included.
func (s *Store) Calls(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// Injected returns how many faults the Store has injected.
func (s *Store) Injected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.injected
}

// Inner returns the wrapped store, to inspect it without faults. It
// implements store.Decorator.
func (s *Store) Inner() store.Store { return s.inner }

// fault is what the rules decided for one call.
type fault struct {
	latency   time.Duration
	err       error // nil: no fault
	dropped   bool
	listAfter int
}

// decide counts the call and applies the rules in the order they were
// added; the first rule that injects a fault wins, latencies add up.
func (s *Store) decide(op Op, name string) fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	var f fault
	for _, r := range s.rules {
		if len(r.Ops) > 0 && !slices.Contains(r.Ops, op) || !strings.HasPrefix(name, r.Prefix) {
			continue
		}
		f.latency += r.Latency
		r.calls[op]++
		if f.err != nil || r.delayOnly() || r.Times > 0 && r.injected >= r.Times || r.Every > 1 && r.calls[op]%r.Every != 0 {
			continue
		}
		if r.Probability > 0 && rand.Float64() >= r.Probability {
			continue
		}
		r.injected++
		s.injected++
		f.err = r.Err
		if f.err == nil {
			f.err = ErrInjected
		}
		f.dropped = r.Dropped
		f.listAfter = r.ListAfter
	}
	return f
}

// before delays the call and returns the error to fail it with before it
// runs, if any.
func (s *Store) before(ctx context.Context, op Op, name string) (fault, error) {
	f := s.decide(op, name)
	if f.latency > 0 {
		t := time.NewTimer(f.latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return f, fmt.Errorf("%s: %w", call(op, name), ctx.Err())
		}
	}
	if f.err != nil && !f.dropped && !((op == List || op == ListNames) && f.listAfter > 0) {
		return f, f.wrap(op, name)
	}
	return f, nil
}

func (f fault) wrap(op Op, name string) error {
	return fmt.Errorf("%s: %w", call(op, name), f.err)
}

// call names a call for an error: the method and the name, if any.
func call(op Op, name string) string {
	if name == "" {
		return string(op)
	}
	return string(op) + " " + name
}

// after returns the call's own error, or the dropped response's error.
func (f fault) after(op Op, name string, err error) error {
	if err == nil && f.err != nil && f.dropped {
		return f.wrap(op, name)
	}
	return err
}

// Get implements store.Reader.
func (s *Store) Get(ctx context.Context, name string) ([]byte, error) {
	f, err := s.before(ctx, Get, name)
	if err != nil {
		return nil, err
	}
	data, err := s.inner.Get(ctx, name)
	if err = f.after(Get, name, err); err != nil {
		return nil, err
	}
	return data, nil
}

// GetRange implements store.Reader.
func (s *Store) GetRange(ctx context.Context, name string, off, length int64) ([]byte, error) {
	f, err := s.before(ctx, GetRange, name)
	if err != nil {
		return nil, err
	}
	data, err := s.inner.GetRange(ctx, name, off, length)
	if err = f.after(GetRange, name, err); err != nil {
		return nil, err
	}
	return data, nil
}

// Stat implements store.Reader.
func (s *Store) Stat(ctx context.Context, name string) (store.Info, error) {
	f, err := s.before(ctx, Stat, name)
	if err != nil {
		return store.Info{}, err
	}
	info, err := s.inner.Stat(ctx, name)
	if err = f.after(Stat, name, err); err != nil {
		return store.Info{}, err
	}
	return info, nil
}

// errListFault stops the inner listing when a ListAfter fault hits.
var errListFault = errors.New("list fault")

// List implements store.Reader.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	return list(ctx, s, List, prefix, fn, s.inner.List)
}

// list runs the listing call of op with the faults the rules decide.
func list[T any](ctx context.Context, s *Store, op Op, prefix string, fn func(T) error, call func(context.Context, string, func(T) error) error) error {
	f, err := s.before(ctx, op, prefix)
	if err != nil {
		return err
	}
	if f.err == nil || f.dropped || f.listAfter == 0 {
		return f.after(op, prefix, call(ctx, prefix, fn))
	}
	n := 0
	err = call(ctx, prefix, func(x T) error {
		if n == f.listAfter {
			return errListFault
		}
		n++
		return fn(x)
	})
	if err == nil || errors.Is(err, errListFault) {
		return f.wrap(op, prefix)
	}
	return err
}

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, name string, data []byte) error {
	f, err := s.before(ctx, Create, name)
	if err != nil {
		return err
	}
	return f.after(Create, name, s.inner.Create(ctx, name, data))
}

// Put implements store.Store.
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	f, err := s.before(ctx, Put, name)
	if err != nil {
		return err
	}
	return f.after(Put, name, s.inner.Put(ctx, name, data))
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	f, err := s.before(ctx, Delete, name)
	if err != nil {
		return err
	}
	return f.after(Delete, name, s.inner.Delete(ctx, name))
}

// Location implements store.Store.
func (s *Store) Location() string { return "faults:" + s.inner.Location() }

// ReadRange implements store.RangeReader.
func (s *Store) ReadRange(ctx context.Context, name string, off, length int64, buf []byte, direct bool) ([]byte, error) {
	f, err := s.before(ctx, ReadRange, name)
	if err != nil {
		return nil, err
	}
	data, err := store.ReadRange(ctx, s.inner, name, off, length, buf, direct)
	if err = f.after(ReadRange, name, err); err != nil {
		return nil, err
	}
	return data, nil
}

// ReadSmall implements store.SmallReader.
func (s *Store) ReadSmall(ctx context.Context, name string, max int) ([]byte, error) {
	f, err := s.before(ctx, ReadSmall, name)
	if err != nil {
		return nil, err
	}
	data, err := store.ReadSmall(ctx, s.inner, name, max)
	if err = f.after(ReadSmall, name, err); err != nil {
		return nil, err
	}
	return data, nil
}

// Prefetch implements store.Prefetcher: a hint, counted and passed to the
// inner store if it takes them; no rule applies to it (see Prefetch, the
// Op).
func (s *Store) Prefetch(ctx context.Context, names []string, max int) {
	s.mu.Lock()
	s.calls[Prefetch]++
	s.mu.Unlock()
	store.Prefetch(ctx, s.inner, names, max)
}

// ListNames implements store.NameLister.
func (s *Store) ListNames(ctx context.Context, prefix string, fn func(name string) error) error {
	return list(ctx, s, ListNames, prefix, fn, func(ctx context.Context, prefix string, fn func(string) error) error {
		return store.ListNames(ctx, s.inner, prefix, fn)
	})
}

// DeletePrefix implements store.PrefixDeleter.
func (s *Store) DeletePrefix(ctx context.Context, prefix string) error {
	f, err := s.before(ctx, DeletePrefix, prefix)
	if err != nil {
		return err
	}
	return f.after(DeletePrefix, prefix, store.DeletePrefix(ctx, s.inner, prefix))
}

// PurgeTrash implements store.TrashPurger.
func (s *Store) PurgeTrash(ctx context.Context, pace func(worked time.Duration)) error {
	f, err := s.before(ctx, PurgeTrash, "")
	if err != nil {
		return err
	}
	return f.after(PurgeTrash, "", store.PurgeTrash(ctx, s.inner, pace))
}

// RemoveStale implements store.StaleRemover.
func (s *Store) RemoveStale(ctx context.Context, age time.Duration) (int, error) {
	f, err := s.before(ctx, RemoveStale, "")
	if err != nil {
		return 0, err
	}
	n, err := store.RemoveStale(ctx, s.inner, age)
	return n, f.after(RemoveStale, "", err)
}
