package keys

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// TestManyLargeEpochsBounded: epochs planted after the head, each near
// MaxKeyringSize, are checked against the one before as they are read, so
// neither Refresh nor Open reads (and holds) past the first that does not
// chain: what a process allocates does not grow with how many were planted
// (found in review: 48 such epochs made each allocate over 540 MiB).
func TestManyLargeEpochsBounded(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	freshState(t)
	a := rawKey(t, 1)
	k := mustInit(t, st, a)
	good := k.Keyring()
	rid, _ := parseRepoID(testRepoID)
	big := good.Clone()
	for i := 0; len(big.Generations) < 3200; i++ {
		g := good.Generations[0]
		g.ID = fmt.Sprintf("%016x", i+1)
		g.State = StateRetired
		g.Created = time.Unix(1, 0).UTC()
		big.Generations = append(big.Generations, g)
	}
	junk := &kek{ringKey: make([]byte, 32)}
	prev := make([]byte, 32)
	prev[0] = 1 // chained to nothing
	const n = 48
	for e := uint64(2); e < 2+n; e++ {
		r := big.Clone()
		r.Epoch = e
		junk.gen, _ = parseGenID(r.Current)
		obj, err := signEpoch(&r, rid, prev, []*kek{junk})
		if err != nil {
			t.Fatal(err)
		}
		if len(obj.raw) > MaxKeyringSize || len(obj.raw) < MaxKeyringSize/2 {
			t.Fatalf("planted epoch of %d bytes, want near the %d limit", len(obj.raw), MaxKeyringSize)
		}
		plant(t, st, e, obj.raw)
	}
	allocated := func(f func()) uint64 {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		f()
		runtime.ReadMemStats(&m1)
		return (m1.TotalAlloc - m0.TotalAlloc) >> 20
	}
	const limit = 64 // MiB: one planted epoch parsed, and the rest of the work
	if got := allocated(func() {
		if err := k.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}); got > limit {
		t.Errorf("Refresh over %d planted epochs allocated %d MiB, want at most %d", n, got, limit)
	}
	if !hasProblem(k, "epoch 2") {
		t.Errorf("problems %v, want epoch 2 named", k.Problems())
	}
	if got := allocated(func() {
		if _, err := Open(ctx, st, testRepoID, a); err != nil {
			t.Fatal(err)
		}
	}); got > limit {
		t.Errorf("Open over %d planted epochs allocated %d MiB, want at most %d", n, got, limit)
	}
}
