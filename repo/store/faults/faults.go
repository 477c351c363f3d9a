// Package faults wraps a store.Store to inject failures, delays and lost
// responses, for tests of the code above the store (retries, rotation,
// snapshots). Nothing fails until rules are added:
//
//	fs := faults.New(mem.New())
//	fs.Add(faults.Rule{Ops: []faults.Op{faults.Create}, Prefix: "keyring/", Every: 2})
//	fs.Add(faults.Rule{Ops: []faults.Op{faults.Put}, Dropped: true, Times: 1})
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

// Op names a method of store.Store.
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
)

// Rule says which calls fail and how. A call matches a rule when its method
// is in Ops (or Ops is empty) and its name starts with Prefix (for List, the
// listing's prefix starts with Prefix).
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

	// ListAfter makes a failing List deliver this many objects to its
	// callback before it fails. It applies to List only.
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

var _ store.Store = (*Store)(nil)

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

// Inner returns the wrapped store, to inspect it without faults.
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
			return f, fmt.Errorf("%s %s: %w", op, name, ctx.Err())
		}
	}
	if f.err != nil && !f.dropped && !(op == List && f.listAfter > 0) {
		return f, f.wrap(op, name)
	}
	return f, nil
}

func (f fault) wrap(op Op, name string) error {
	return fmt.Errorf("%s %s: %w", op, name, f.err)
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
	f, err := s.before(ctx, List, prefix)
	if err != nil {
		return err
	}
	if f.err == nil || f.dropped || f.listAfter == 0 {
		return f.after(List, prefix, s.inner.List(ctx, prefix, fn))
	}
	n := 0
	err = s.inner.List(ctx, prefix, func(info store.Info) error {
		if n == f.listAfter {
			return errListFault
		}
		n++
		return fn(info)
	})
	if err == nil || errors.Is(err, errListFault) {
		return f.wrap(List, prefix)
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
