package retry_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/faults"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
	"github.com/snapcrypt/snapcrypt/repo/store/retry"
	"github.com/snapcrypt/snapcrypt/repo/store/storetest"
)

// sleeps records the waits of a retrying store instead of waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.d)
}

func newStores(opts retry.Options) (*retry.Store, *faults.Store, *sleeps) {
	sl := &sleeps{}
	if opts.Sleep == nil {
		opts.Sleep = sl.sleep
	}
	f := faults.New(mem.New())
	return retry.New(f, opts), f, sl
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _, _ := newStores(retry.Options{})
		return s
	})
}

// TestConformanceUnderFaults runs the suite with a random quarter of the
// calls failing, a quarter of the Creates and Puts losing their response
// after writing, and some listings failing halfway. (Random, not every
// N-th call: fixed periods lock step with a retry loop's own calls.) Delete
// gets no faults: a retried Delete reports success for a missing object,
// which the suite checks against.
func TestConformanceUnderFaults(t *testing.T) {
	injected := 0
	storetest.Run(t, func(t *testing.T) store.Store {
		s, f, _ := newStores(retry.Options{Attempts: 30})
		f.Add(faults.Rule{Ops: []faults.Op{faults.Get, faults.GetRange, faults.Stat, faults.List}, Probability: 0.25})
		f.Add(faults.Rule{Ops: []faults.Op{faults.List}, Probability: 0.25, ListAfter: 1})
		f.Add(faults.Rule{Ops: []faults.Op{faults.Create, faults.Put}, Probability: 0.25})
		f.Add(faults.Rule{Ops: []faults.Op{faults.Create, faults.Put}, Probability: 0.25, Dropped: true})
		t.Cleanup(func() { injected += f.Injected() })
		return s
	})
	if injected < 100 {
		t.Errorf("only %d faults injected", injected)
	}
}

func TestRetriesTransient(t *testing.T) {
	ctx := context.Background()
	var retries []int
	s, f, sl := newStores(retry.Options{OnRetry: func(op, name string, attempt int, err error) {
		if op != "get" || name != "obj" || !errors.Is(err, faults.ErrInjected) {
			t.Errorf("OnRetry(%q, %q, %d, %v)", op, name, attempt, err)
		}
		retries = append(retries, attempt)
	}})
	f.Inner().Put(ctx, "obj", []byte("x"))
	f.Add(faults.Rule{Ops: []faults.Op{faults.Get}, Times: 3})
	got, err := s.Get(ctx, "obj")
	if err != nil || string(got) != "x" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if f.Calls(faults.Get) != 4 || sl.count() != 3 || !slices.Equal(retries, []int{1, 2, 3}) {
		t.Errorf("%d calls, %d waits, retries %v; want 4, 3, [1 2 3]", f.Calls(faults.Get), sl.count(), retries)
	}
}

func TestGivesUp(t *testing.T) {
	ctx := context.Background()
	s, f, sl := newStores(retry.Options{Attempts: 4})
	f.Add(faults.Rule{})
	err := s.Put(ctx, "obj", []byte("x"))
	if !errors.Is(err, faults.ErrInjected) {
		t.Fatalf("Put: %v, want the last error", err)
	}
	if f.Calls(faults.Put) != 4 || sl.count() != 3 {
		t.Errorf("%d calls, %d waits; want 4, 3", f.Calls(faults.Put), sl.count())
	}
}

func TestBackoff(t *testing.T) {
	ctx := context.Background()
	s, f, sl := newStores(retry.Options{Attempts: 10, Base: 10 * time.Millisecond, Max: 200 * time.Millisecond})
	f.Add(faults.Rule{})
	s.Stat(ctx, "obj")
	want := []time.Duration{10, 20, 40, 80, 160, 200, 200, 200, 200}
	if len(sl.d) != len(want) {
		t.Fatalf("%d waits, want %d", len(sl.d), len(want))
	}
	for i, d := range sl.d {
		max := want[i] * time.Millisecond
		if d < max/2 || d > max {
			t.Errorf("wait %d = %v, want between %v and %v", i+1, d, max/2, max)
		}
		if s.Backoff(i+1) != max {
			t.Errorf("Backoff(%d) = %v, want %v", i+1, s.Backoff(i+1), max)
		}
	}
	// Jitter: 10 waits drawn from ranges this wide are not all at the top.
	top := 0
	for i, d := range sl.d {
		if d == want[i]*time.Millisecond {
			top++
		}
	}
	if top == len(sl.d) {
		t.Error("no jitter: every wait is the maximum")
	}
}

func TestNotRetried(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"not exist", store.ErrNotExist},
		{"exist", store.ErrExist},
		{"invalid name", store.ErrInvalidName},
		{"unsupported", store.ErrUnsupported},
		{"canceled", context.Canceled},
		{"deadline", context.DeadlineExceeded},
		{"permanent", retry.Permanent(errors.New("access denied"))},
		{"own permanent", fmt.Errorf("wrapped: %w", markedErr{})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, f, sl := newStores(retry.Options{})
			f.Add(faults.Rule{Err: tc.err})
			_, err := s.Stat(ctx, "obj")
			if !errors.Is(err, tc.err) {
				t.Errorf("Stat: %v, want %v", err, tc.err)
			}
			if f.Calls(faults.Stat) != 1 || sl.count() != 0 {
				t.Errorf("%d calls, %d waits; want 1, 0", f.Calls(faults.Stat), sl.count())
			}
		})
	}
	if retry.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
}

type markedErr struct{}

func (markedErr) Error() string   { return "marked" }
func (markedErr) Permanent() bool { return true }

func TestContextEndsWait(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := faults.New(mem.New())
	// The default Sleep, waiting an hour, must end when ctx is canceled.
	s := retry.New(f, retry.Options{Base: time.Hour, OnRetry: func(string, string, int, error) { cancel() }})
	f.Add(faults.Rule{})
	_, err := s.Get(ctx, "obj")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Get: %v, want context.Canceled", err)
	}
	if f.Calls(faults.Get) != 1 {
		t.Errorf("%d calls, want 1", f.Calls(faults.Get))
	}
}

func TestCreateDroppedResponse(t *testing.T) {
	ctx := context.Background()
	s, f, _ := newStores(retry.Options{})
	f.Add(faults.Rule{Ops: []faults.Op{faults.Create}, Dropped: true, Times: 1})
	if err := s.Create(ctx, "keyring/1", []byte("mine")); err != nil {
		t.Fatalf("Create with a lost response: %v, want success", err)
	}
	if f.Calls(faults.Create) != 2 {
		t.Errorf("%d Create calls, want 2", f.Calls(faults.Create))
	}
	// Without a failed attempt, ErrExist is ErrExist even for equal content.
	if err := s.Create(ctx, "keyring/1", []byte("mine")); !errors.Is(err, store.ErrExist) {
		t.Errorf("second Create: %v, want ErrExist", err)
	}
}

func TestCreateLostRace(t *testing.T) {
	ctx := context.Background()
	s, f, _ := newStores(retry.Options{})
	// The first attempt fails without writing; meanwhile someone else wins.
	f.Add(faults.Rule{Ops: []faults.Op{faults.Create}, Times: 1})
	f.Inner().Create(ctx, "keyring/1", []byte("theirs"))
	if err := s.Create(ctx, "keyring/1", []byte("mine")); !errors.Is(err, store.ErrExist) {
		t.Errorf("Create: %v, want ErrExist", err)
	}
}

func TestCreateReadBackFails(t *testing.T) {
	ctx := context.Background()
	s, f, _ := newStores(retry.Options{})
	f.Add(faults.Rule{Ops: []faults.Op{faults.Create}, Dropped: true, Times: 1})
	f.Add(faults.Rule{Ops: []faults.Op{faults.Get}, Times: 2})
	if err := s.Create(ctx, "keyring/1", []byte("mine")); err != nil {
		t.Fatalf("Create: %v, want success", err)
	}
	if f.Calls(faults.Get) != 3 {
		t.Errorf("%d read-backs, want 3", f.Calls(faults.Get))
	}
}

func TestDeleteDroppedResponse(t *testing.T) {
	ctx := context.Background()
	s, f, _ := newStores(retry.Options{})
	f.Inner().Put(ctx, "lease", []byte("x"))
	f.Add(faults.Rule{Ops: []faults.Op{faults.Delete}, Dropped: true, Times: 1})
	if err := s.Delete(ctx, "lease"); err != nil {
		t.Fatalf("Delete with a lost response: %v, want success", err)
	}
	if err := s.Delete(ctx, "lease"); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("Delete of a missing object: %v, want ErrNotExist", err)
	}
}

func TestPutDroppedResponse(t *testing.T) {
	ctx := context.Background()
	s, f, _ := newStores(retry.Options{})
	f.Add(faults.Rule{Ops: []faults.Op{faults.Put}, Dropped: true, Times: 2})
	if err := s.Put(ctx, "config", []byte("x")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if got, _ := f.Inner().Get(ctx, "config"); string(got) != "x" || f.Calls(faults.Put) != 3 {
		t.Errorf("config = %q after %d Puts", got, f.Calls(faults.Put))
	}
}

func TestListResumes(t *testing.T) {
	ctx := context.Background()
	s, f, _ := newStores(retry.Options{})
	var want []string
	for i := range 10 {
		name := fmt.Sprintf("deks/g/%02d", i)
		want = append(want, name)
		f.Inner().Put(ctx, name, nil)
	}
	f.Add(faults.Rule{Ops: []faults.Op{faults.List}, ListAfter: 3, Times: 2})
	var got []string
	err := s.List(ctx, "deks/", func(info store.Info) error {
		got = append(got, info.Name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("List delivered %v, want each of %v once", got, want)
	}
	if f.Calls(faults.List) != 3 {
		t.Errorf("%d List calls, want 3", f.Calls(faults.List))
	}
}

func TestListCallbackErrorNotRetried(t *testing.T) {
	ctx := context.Background()
	s, f, sl := newStores(retry.Options{})
	f.Inner().Put(ctx, "a", nil)
	f.Inner().Put(ctx, "b", nil)
	stop := errors.New("transient-looking callback error")
	n := 0
	err := s.List(ctx, "", func(store.Info) error { n++; return stop })
	if err != stop || n != 1 || f.Calls(faults.List) != 1 || sl.count() != 0 {
		t.Errorf("List = %v after %d callbacks, %d calls, %d waits; want the callback's error, 1, 1, 0", err, n, f.Calls(faults.List), sl.count())
	}
}

func TestNegativeRangeNotRetried(t *testing.T) {
	s, f, sl := newStores(retry.Options{})
	f.Inner().Put(context.Background(), "a", []byte("x"))
	if _, err := s.GetRange(context.Background(), "a", -1, 1); err == nil {
		t.Error("GetRange(-1, 1) succeeded")
	}
	if f.Calls(faults.GetRange) != 1 || sl.count() != 0 {
		t.Errorf("%d calls, %d waits", f.Calls(faults.GetRange), sl.count())
	}
}
