package keys

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
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

// TestDamagedRecordFailsClosed: a host record that does not parse (or has
// data after its object) is not a missing record: after a rollback that
// restored old epochs and wrapped keys, a process on this host refuses to
// write until the record is deleted, and names the record (found in
// review: the damaged record switched the rollback check off).
func TestDamagedRecordFailsClosed(t *testing.T) {
	ctx := context.Background()
	for _, damaged := range []string{`{"epoch":3,`, "", `{"epoch":3,"hash":"` + strings.Repeat("ab", 32) + `"} junk`} {
		st := localStore(t)
		a, b := rawKey(t, 1), rawKey(t, 2)
		k := mustInit(t, st, a)
		makeDEKs(t, k, 2)
		saved := snapshotPrefix(t, st, "deks/")
		rotateTo(t, k, b) // epochs 2 and 3; the record at 3
		dir, err := StateDir()
		if err != nil {
			t.Fatal(err)
		}
		path := recordPath(dir, testRepoID)
		if err := os.WriteFile(path, []byte(damaged), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, e := range []uint64{3, 2} { // the rollback
			if err := st.Delete(ctx, keyringName(e)); err != nil {
				t.Fatal(err)
			}
		}
		for name, data := range saved {
			if err := st.Put(ctx, name, data); err != nil {
				t.Fatal(err)
			}
		}
		kab, err := Open(ctx, st, testRepoID, a, b)
		if err != nil {
			t.Fatal(err)
		}
		if err := kab.Writable(ctx); !errors.Is(err, object.ErrCorrupt) || !strings.Contains(err.Error(), "record") {
			t.Errorf("record %q: Writable = %v, want a refusal naming the damaged record", damaged, err)
		}
		if _, _, err := kab.NewDEK(ctx); err == nil {
			t.Errorf("record %q: a new data key was wrapped after a rollback", damaged)
		}
		if !hasProblem(kab, "record") {
			t.Errorf("record %q: problems %v, want the damaged record", damaged, kab.Problems())
		}
	}
}

// TestForgedGenesis: a forged authenticated epoch 1 (MACed by the old key
// A, after every real epoch was deleted) that lists the new generation B
// as retiring beside A current is refused on a host with no record: an
// authenticated history starts with one current generation, so B can only
// enter it through a switch that B MACs. (A bare version 1 epoch needs no
// key at all and cannot be told from a real old repository: docs/security.md
// says what a host with no record can and cannot tell.)
func TestForgedGenesis(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	freshState(t)
	a, b := rawKey(t, 1), rawKey(t, 2)
	k, _ := rotated(t, st, a, b)
	good := k.Keyring()
	genA, genB := good.Generations[0].ID, good.Current
	kA := kekOf(t, good, genA, a)
	var names []string
	if err := st.List(ctx, keyringPrefix, func(i store.Info) error { names = append(names, i.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := st.Delete(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	f := good.Clone()
	f.Epoch = 1
	f.Current = genA
	f.Generations[0].State = StateCurrent
	f.Generations[1].State = StateRetiring
	f.Rotation = &Rotation{ID: strings.Repeat("ab", 16), From: []string{genB}, To: genA, Started: time.Now().UTC().Truncate(time.Second)}
	rid, _ := parseRepoID(testRepoID)
	e, err := signEpoch(&f, rid, nil, []*kek{kA})
	if err != nil {
		t.Fatal(err)
	}
	plant(t, st, 1, e.raw)
	freshState(t) // a host with no record
	if kab, err := Open(ctx, st, testRepoID, a, b); err == nil {
		if _, _, err := kab.NewDEK(ctx); err == nil {
			t.Errorf("a host with no record opened a forged epoch 1 and wrapped a new data key (current %s)", kab.Keyring().Current)
		}
	} else if !errors.Is(err, object.ErrCorrupt) || !strings.Contains(err.Error(), "epoch 1") {
		t.Errorf("Open: %v, want a refusal naming epoch 1", err)
	}
}
