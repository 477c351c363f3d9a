package rotation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// TestPlantedLeaseDoesNotBlock: a rotation lease object that expires in
// the year 9999 (a broken clock, or planted) does not block a rotation,
// and the rotator says which lease it took over.
func TestPlantedLeaseDoesNotBlock(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	clock := newFakeClock()
	oldKey, newKey := rawKey(t, 1), rawKey(t, 2)
	k := mustInit(t, st, oldKey)
	setClock(k, clock.Now)
	deks := makeDEKs(t, k, 20)
	planted := lease.Lease{Holder: strings.Repeat("ef", 16), Host: "planted", PID: 666, Expires: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}
	if err := st.Create(ctx, lease.Name(leasePrefix, 5), planted.Marshal()); err != nil {
		t.Fatal(err)
	}
	if l, err := k.Lease(ctx); err != nil || l != nil {
		t.Fatalf("Lease = %v, %v: an invalid lease is not live", l, err)
	}
	var mu sync.Mutex
	var logged []string
	opts := testOpts
	opts.Logf = func(f string, args ...any) {
		mu.Lock()
		logged = append(logged, fmt.Sprintf(f, args...))
		mu.Unlock()
	}
	if err := k.start(ctx, newKey, opts); err != nil {
		t.Fatalf("rotation with a lease expiring in 9999 planted: %v", err)
	}
	if err := k.Run(ctx, nil); err != nil {
		t.Fatal(err)
	}
	checkFinished(t, st, clock, deks, newKey)
	if len(logged) != 1 || !strings.Contains(logged[0], "invalid") || !strings.Contains(logged[0], "planted") ||
		!strings.Contains(logged[0], lease.Name(leasePrefix, 5)) {
		t.Fatalf("logged %q, want one warning naming the planted lease", logged)
	}
}

// TestLeaseTooLong: a rotation lease longer than lease.MaxDuration is
// refused before anything is written.
func TestLeaseTooLong(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	k := mustInit(t, st, rawKey(t, 1))
	makeDEKs(t, k, 3)
	before := snapshotPrefix(t, st, "")
	opts := testOpts
	opts.LeaseDuration = lease.MaxDuration + time.Minute
	if err := k.start(ctx, rawKey(t, 2), opts); !errors.Is(err, lease.ErrTooLong) {
		t.Fatalf("rotation with a lease of %v: %v", opts.LeaseDuration, err)
	}
	if !equalObjects(before, snapshotPrefix(t, st, "")) {
		t.Fatal("a refused rotation changed the repository")
	}
	opts.LeaseDuration = lease.MaxDuration
	if err := k.start(ctx, rawKey(t, 2), opts); err != nil {
		t.Fatalf("rotation with a lease of MaxDuration: %v", err)
	}
	k.Close(ctx)
}

// TestBreakLease: the rotation lease of a live holder (here one that
// switched and then hung) blocks another rotator until BreakLease, which
// names the holder; then the other rotator finishes the rotation. Both use
// the real clock, as BreakLease does.
func TestBreakLease(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	oldKey, newKey := rawKey(t, 1), rawKey(t, 2)
	hung := mustInit(t, st, oldKey)
	deks := makeDEKs(t, hung, 20)
	opts := testOpts
	opts.Host = "hung-host"
	if err := hung.start(ctx, newKey, opts); err != nil {
		t.Fatal(err)
	}
	defer hung.Close(ctx)
	kc, err := keys.Open(ctx, st, testRepoID, oldKey, newKey)
	if err != nil {
		t.Fatal(err)
	}
	other := newProc(kc)
	var busy *lease.BusyError
	if err := other.Resume(ctx, nil); !errors.As(err, &busy) || busy.Host != "hung-host" {
		t.Fatalf("resume while the lease is held: %v", err)
	}
	broke, err := BreakLease(ctx, other.Keychain)
	if err != nil {
		t.Fatal(err)
	}
	if broke == nil || broke.Host != "hung-host" {
		t.Fatalf("BreakLease returned %+v, want the hung holder", broke)
	}
	if l, err := other.Lease(ctx); err != nil || l != nil {
		t.Fatalf("lease after BreakLease: %+v, %v", l, err)
	}
	if err := other.Resume(ctx, nil); err != nil {
		t.Fatalf("resume after BreakLease: %v", err)
	}
	checkFinished(t, st, newFakeClock(), deks, newKey)
	if broke, err := BreakLease(ctx, other.Keychain); err != nil || broke != nil {
		t.Fatalf("BreakLease with no lease held: %+v, %v", broke, err)
	}
}
