package lease

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/internal/vectortest"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

const testPrefix = "leases/rotation/"

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type leaseVector struct {
	Name   string `json:"name"`
	Expect string `json:"expect"` // "ok" or "corrupted"
	Lease  string `json:"lease"`
}

const leaseVectorFile = "testdata/lease-vectors.json"

func makeLeaseVectors() []leaseVector {
	l := Lease{Holder: strings.Repeat("ab", 16), Host: "backup1", PID: 4242, Expires: time.Date(2025, 6, 1, 12, 0, 30, 0, time.UTC)}
	ok := string(l.Marshal())
	return []leaseVector{
		{"ok", "ok", ok},
		{"unknown-field", "corrupted", strings.Replace(ok, `"host"`, `"colour": 1, "host"`, 1)},
		{"trailing", "corrupted", ok + "{}"},
		{"short-holder", "corrupted", strings.Replace(ok, strings.Repeat("ab", 16), "ab", 1)},
		{"no-expiry", "corrupted", `{"holder":"` + strings.Repeat("ab", 16) + `","host":"h","pid":1}`},
		{"negative-pid", "corrupted", strings.Replace(ok, "4242", "-1", 1)},
		{"not-json", "corrupted", "lease"},
	}
}

func TestLeaseVectors(t *testing.T) {
	vectortest.Run(t, leaseVectorFile, makeLeaseVectors(), func(v leaseVector) {
		vectortest.CheckParse(t, v.Name, v.Expect, v.Lease, Parse, Lease.Marshal)
	})
}

func FuzzParseLease(f *testing.F) {
	for _, v := range vectortest.Load[leaseVector](f, leaseVectorFile) {
		f.Add([]byte(v.Lease))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := Parse(b)
		if err != nil {
			return
		}
		l2, err := Parse(l.Marshal())
		if err != nil || !l2.Expires.Equal(l.Expires) || l2.Holder != l.Holder || l2.Host != l.Host || l2.PID != l.PID {
			t.Fatalf("parse/marshal/parse changed the lease: %v", err)
		}
	})
}

func count(t *testing.T, st *mem.Store, prefix string) int {
	t.Helper()
	n := 0
	if err := st.List(context.Background(), prefix, func(store.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestLeaseTakeover(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	clock := newFakeClock()
	opts := Options{Duration: time.Hour, Host: "one", What: "test lease", Now: clock.Now}
	h1, err := Take(ctx, st, testPrefix, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Abandon()
	if err := h1.Renew(ctx); err != nil {
		t.Fatalf("renew: %v", err)
	}
	var busy *BusyError
	if _, err := Take(ctx, st, testPrefix, opts); !errors.As(err, &busy) || !errors.Is(err, ErrBusy) || busy.Host != "one" {
		t.Fatalf("take a live lease: %v", err)
	}
	clock.advance(2 * time.Hour)
	h2, err := Take(ctx, st, testPrefix, opts)
	if err != nil {
		t.Fatalf("take an expired lease: %v", err)
	}
	defer h2.Abandon()
	if err := h1.Renew(ctx); !errors.Is(err, ErrTakenOver) {
		t.Fatalf("renewing a lease taken over: %v", err)
	}
	if err := h2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, st, testPrefix); n != 0 {
		t.Fatalf("%d lease objects after release", n)
	}
	// A damaged lease object does not block anyone forever.
	st.Create(ctx, Name(testPrefix, 7), []byte("garbage"))
	h3, err := Take(ctx, st, testPrefix, opts)
	if err != nil {
		t.Fatalf("take over a damaged lease: %v", err)
	}
	h3.Release(ctx)
	// Nor does one too large to be a lease, which is not read whole.
	big := append(Lease{Holder: strings.Repeat("cd", 16), Host: strings.Repeat("h", MaxSize), Expires: clock.Now().Add(time.Minute)}.Marshal(), '\n')
	st.Create(ctx, Name(testPrefix, 9), big)
	h4, err := Take(ctx, st, testPrefix, opts)
	if err != nil {
		t.Fatalf("take over an oversized lease object: %v", err)
	}
	h4.Release(ctx)
}

// TestLeaseRace: of several processes creating the same lease sequence
// number at once exactly one holds the lease; the others are told it is
// busy. (A failed Create once counted as taken.)
func TestLeaseRace(t *testing.T) {
	ctx := context.Background()
	for _, prefix := range []string{testPrefix, "leases/rewrap/" + strings.Repeat("cd", 16) + "/7/"} {
		st := mem.New()
		clock := newFakeClock()
		opts := Options{Duration: time.Hour, Host: "racer", Now: clock.Now}
		const n = 8
		held := make([]*Held, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				held[i], errs[i] = TakeAfter(ctx, st, prefix, 0, opts)
			}()
		}
		wg.Wait()
		won := 0
		for i := range n {
			switch {
			case errs[i] == nil:
				won++
				held[i].Abandon()
			case !errors.Is(errs[i], ErrBusy):
				t.Fatalf("%s: racer %d: %v", prefix, i, errs[i])
			}
		}
		if won != 1 {
			t.Fatalf("%s: %d racers hold the lease", prefix, won)
		}
	}
}

// TestInvalidLeaseBlocksNobody: a lease that expires further ahead than
// MaxDuration is not live, Take takes it over and says so naming it.
func TestInvalidLeaseBlocksNobody(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	clock := newFakeClock()
	planted := Lease{Holder: strings.Repeat("ef", 16), Host: "intruder", PID: 666, Expires: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)}
	if err := st.Create(ctx, Name(testPrefix, 3), planted.Marshal()); err != nil {
		t.Fatal(err)
	}
	if l, err := Current(ctx, st, testPrefix, clock.Now()); err != nil || l != nil {
		t.Fatalf("Current = %v, %v; an invalid lease is not live", l, err)
	}
	var logged []string
	opts := Options{Duration: time.Minute, Host: "me", What: "test lease", Now: clock.Now,
		Logf: func(f string, args ...any) { logged = append(logged, fmt.Sprintf(f, args...)) }}
	h, err := Take(ctx, st, testPrefix, opts)
	if err != nil {
		t.Fatalf("take over a lease expiring in 9999: %v", err)
	}
	defer h.Release(ctx)
	if h.Seq() != 4 {
		t.Fatalf("took sequence %d, want 4", h.Seq())
	}
	if len(logged) != 1 || !strings.Contains(logged[0], "invalid") || !strings.Contains(logged[0], Name(testPrefix, 3)) ||
		!strings.Contains(logged[0], "intruder") || !strings.Contains(logged[0], "9999") {
		t.Fatalf("logged %q, want one line naming the invalid lease", logged)
	}
	// A lease of MaxDuration just taken on a host whose clock is a little
	// ahead is valid.
	ok := Lease{Holder: planted.Holder, Host: "ahead", Expires: clock.Now().Add(MaxDuration + ClockSkew/2)}
	if !ok.Live(clock.Now()) {
		t.Fatal("a lease of MaxDuration from a clock slightly ahead is not live")
	}
}

func TestTooLongRefused(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	for _, take := range []func(Options) (*Held, error){
		func(o Options) (*Held, error) { return Take(ctx, st, testPrefix, o) },
		func(o Options) (*Held, error) { return TakeAfter(ctx, st, testPrefix, 0, o) },
	} {
		if _, err := take(Options{Duration: MaxDuration + time.Second}); !errors.Is(err, ErrTooLong) {
			t.Fatalf("taking a lease longer than MaxDuration: %v", err)
		}
		if n := count(t, st, testPrefix); n != 0 {
			t.Fatalf("%d lease objects after a refused take", n)
		}
	}
	h, err := Take(ctx, st, testPrefix, Options{Duration: MaxDuration})
	if err != nil {
		t.Fatalf("taking a lease of MaxDuration: %v", err)
	}
	h.Release(ctx)
}

// TestBreak: Break ends a live lease, names its holder, lets the next
// taker in at once, and makes the old holder lose the lease.
func TestBreak(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	if l, err := Break(ctx, st, testPrefix); err != nil || l != nil {
		t.Fatalf("Break with no lease = %v, %v", l, err)
	}
	h1, err := Take(ctx, st, testPrefix, Options{Duration: MaxDuration, Host: "stuck"})
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Abandon()
	if _, err := Take(ctx, st, testPrefix, Options{Host: "next"}); !errors.Is(err, ErrBusy) {
		t.Fatalf("take before Break: %v", err)
	}
	broke, err := Break(ctx, st, testPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if broke == nil || broke.Host != "stuck" || broke.Holder != h1.Lease().Holder {
		t.Fatalf("Break returned %+v, want the holder %+v", broke, h1.Lease())
	}
	if l, err := Current(ctx, st, testPrefix, time.Now()); err != nil || l != nil {
		t.Fatalf("after Break the lease is still live: %v, %v", l, err)
	}
	h2, err := Take(ctx, st, testPrefix, Options{Host: "next"})
	if err != nil {
		t.Fatalf("take after Break: %v", err)
	}
	defer h2.Release(ctx)
	if err := h1.Renew(ctx); !errors.Is(err, ErrTakenOver) {
		t.Fatalf("the broken holder renews: %v", err)
	}
	if l, _ := Break(ctx, st, testPrefix); l == nil || l.Host != "next" {
		t.Fatalf("Break of the next holder returned %+v", l)
	}
}

// TestLapsed: a lease renewed in time never lapsed; one whose renewal came
// after the expiry before it (a paused holder), or whose expiry passed
// without renewal, did, and stays lapsed after a renewal.
func TestLapsed(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	clock := newFakeClock()
	// A duration long against the renewal loop's ticks (a third of it),
	// so only the explicit Renew calls below run.
	h, err := Take(ctx, st, "leases/writer/x/", Options{Duration: time.Hour, Host: "w", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(ctx)
	if h.Lapsed() {
		t.Fatal("a fresh lease lapsed")
	}
	clock.advance(59 * time.Minute)
	if err := h.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if h.Lapsed() {
		t.Fatal("a lease renewed before its expiry lapsed")
	}
	clock.advance(61 * time.Minute)
	if !h.Lapsed() {
		t.Fatal("a lease past its expiry has not lapsed")
	}
	if err := h.Renew(ctx); err != nil {
		t.Fatal(err)
	}
	if !h.Lapsed() {
		t.Fatal("a renewal after the expiry hid the lapse")
	}
}
