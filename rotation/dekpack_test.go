package rotation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// storedCopies returns every wrapped copy of DEK id under generation gen
// as the store holds them: the single object and the entries of every
// DEK pack that parses (read from the store, not from a Keychain's index).
func storedCopies(t testing.TB, st store.Store, gen string, id [16]byte) [][]byte {
	if t != nil {
		t.Helper()
	}
	ctx := context.Background()
	var out [][]byte
	if b, err := st.Get(ctx, keys.DEKObject(gen, id)); err == nil {
		out = append(out, b)
	}
	err := st.List(ctx, keys.PackPrefix(gen), func(i store.Info) error {
		n, _, ok := keys.ParsePackName(i.Name)
		if !ok {
			return nil
		}
		b, err := st.Get(ctx, i.Name)
		if err != nil {
			return err
		}
		es, err := keys.ParsePack(b, n)
		if err != nil {
			return nil
		}
		for _, e := range es {
			if e.ID == id {
				out = append(out, e.Wrapped)
			}
		}
		return nil
	})
	if err != nil {
		fatal(t, err)
	}
	return out
}

// fatal fails t, or panics without one (checks called from goroutines
// return errors instead; these helpers fail only on store errors).
func fatal(t testing.TB, err error) {
	if t == nil {
		panic(err)
	}
	t.Helper()
	t.Fatal(err)
}

// storedIDs returns the DEK ids below deks/<gen>/: single objects and the
// entries of DEK packs.
func storedIDs(t testing.TB, st store.Store, gen string) map[[16]byte]bool {
	if t != nil {
		t.Helper()
	}
	ctx := context.Background()
	out := map[[16]byte]bool{}
	err := st.List(ctx, keys.GenPrefix(gen), func(i store.Info) error {
		if !keys.IsPackName(i.Name) {
			var id [16]byte
			if !parseHexID(i.Name[strings.LastIndexByte(i.Name, '/')+1:], id[:]) {
				return fmt.Errorf("unexpected object %s", i.Name)
			}
			out[id] = true
			return nil
		}
		n, _, _ := keys.ParsePackName(i.Name)
		b, err := st.Get(ctx, i.Name)
		if err != nil {
			return err
		}
		es, err := keys.ParsePack(b, n)
		if err != nil {
			return err
		}
		for _, e := range es {
			out[e.ID] = true
		}
		return nil
	})
	if err != nil {
		fatal(t, err)
	}
	return out
}

// editPacks rewrites every DEK pack of generation gen through edit (which
// may drop or change entries), each as a new pack under a new name.
func editPacks(t testing.TB, st store.Store, gen string, edit func([]keys.PackEntry) []keys.PackEntry) {
	t.Helper()
	ctx := context.Background()
	var names []string
	st.List(ctx, keys.PackPrefix(gen), func(i store.Info) error { names = append(names, i.Name); return nil })
	for _, name := range names {
		n, _, _ := keys.ParsePackName(name)
		b, err := st.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		es, err := keys.ParsePack(bytes.Clone(b), n)
		if err != nil {
			t.Fatal(err)
		}
		es = edit(es)
		if err := st.Delete(ctx, name); err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			continue
		}
		nn, _ := keys.NewPackName(gen, len(es))
		if err := st.Create(ctx, nn, keys.MarshalPack(es)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRotateLocalStore: on the local store a rotation packs the twins,
// deletes the old prefix at once (DeletePrefix), and Purge frees it;
// a second rotation re-wraps from packs. Every DEK opens with the new key
// alone after each, and the status counts packed DEKs.
func TestRotateLocalStore(t *testing.T) {
	ctx := context.Background()
	st := localStore(t)
	clock, k, deks := rotationFixture(t, st, 300)
	for i, key := range []*keys.Material{rawKey(t, 2), rawKey(t, 3)} {
		if err := k.start(ctx, key, testOpts); err != nil {
			t.Fatal(err)
		}
		var phases []string
		err := k.Run(ctx, func(p Progress) {
			if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
				phases = append(phases, p.Phase)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"rewrap", "retire", "delete", "done"}; !slices.Equal(phases, want) {
			t.Fatalf("rotation %d: phases %v, want %v", i+1, phases, want)
		}
		hidden := func() (n int) {
			es, _ := os.ReadDir(st.Location())
			for _, e := range es {
				if strings.HasPrefix(e.Name(), ".") {
					n++
				}
			}
			return n
		}
		if n := hidden(); n != 1 {
			t.Fatalf("rotation %d: %d hidden directories before Purge, want the old prefix's", i+1, n)
		}
		var paced int
		if err := k.Purge(ctx, func(time.Duration) { paced++ }); err != nil {
			t.Fatal(err)
		}
		if paced == 0 {
			t.Fatalf("rotation %d: Purge never paced", i+1)
		}
		checkFinished(t, st, clock, deks, key)
		cur := k.Keyring().Current
		var packs, singles int
		st.List(ctx, keys.GenPrefix(cur), func(i store.Info) error {
			if keys.IsPackName(i.Name) {
				packs++
			} else {
				singles++
			}
			return nil
		})
		// The content-id key's twin is a single (made at the switch).
		if packs == 0 || singles != 1 {
			t.Fatalf("rotation %d: %d packs and %d single objects under the new generation", i+1, packs, singles)
		}
		s, err := k.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range s.Generations {
			if want := map[bool]int{true: 301, false: 0}[g.ID == cur]; g.DEKs != want {
				t.Fatalf("rotation %d: status says generation %s (%s) has %d DEKs, want %d", i+1, g.ID, g.State, g.DEKs, want)
			}
		}
		if n := hidden(); n != 0 {
			t.Fatalf("rotation %d: %d hidden directories left after Purge", i+1, n)
		}
	}
}

// TestRunRotationWaitsForHelperRun: a daemon's keyring poll may start
// Help for the rotation this process just switched to; Run
// then waits for that run instead of failing with lease.ErrBusy.
func TestRunRotationWaitsForHelperRun(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	clock, k, deks := rotationFixture(t, st, 50)
	if err := k.start(ctx, rawKey(t, 2), testOpts); err != nil {
		t.Fatal(err)
	}
	// Stand in for a helper run that is still going.
	if err := k.beginRun(k.Keyring().Rotation, true); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx, nil) }()
	select {
	case err := <-done:
		t.Fatalf("Run returned while a helper run was active: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	k.endRun()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkFinished(t, st, clock, deks, rawKey(t, 2))
}

// TestRotateOptionsHooks: every worker goroutine of a run calls
// StartWorker first, and Pace gets what the units of work cost (in sums of
// at least paceQuantum, and the rest after each worker's last unit).
func TestRotateOptionsHooks(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	clock, k, deks := rotationFixture(t, st, 100)
	var started, paced, negative, total atomic.Int64
	opts := testOpts
	opts.StartWorker = func() { started.Add(1) }
	opts.Pace = func(d time.Duration) {
		paced.Add(1)
		total.Add(int64(d))
		if d < 0 {
			negative.Add(1)
		}
	}
	k.SetOptions(opts)
	if err := k.start(ctx, rawKey(t, 2), opts); err != nil {
		t.Fatal(err)
	}
	if err := k.Run(ctx, nil); err != nil {
		t.Fatal(err)
	}
	checkFinished(t, st, clock, deks, rawKey(t, 2))
	// A worker that did any unit pays after its last (TestWorkClock
	// checks the sums).
	if paced.Load() == 0 || negative.Load() != 0 || total.Load() <= 0 {
		t.Fatalf("Pace called %d times (%d with a negative time; %v in all)", paced.Load(), negative.Load(), time.Duration(total.Load()))
	}
	if started.Load() == 0 {
		t.Fatal("StartWorker never called")
	}
}

// TestRotateLocalStoreCrashAfterDelete: a process killed right after the
// old prefix was renamed away leaves a finished rotation and a hidden
// directory that the next process's Purge frees.
func TestRotateLocalStoreCrashAfterDelete(t *testing.T) {
	ctx := context.Background()
	st := localStore(t)
	clock, k, deks := rotationFixture(t, st, 200)
	if err := k.start(ctx, rawKey(t, 2), testOpts); err != nil {
		t.Fatal(err)
	}
	crashAt(k, PointDelete)
	if err := k.Run(ctx, nil); !errors.Is(err, errCrash) {
		t.Fatalf("RunRotation: %v, want the crash", err)
	}
	hidden := func() (n int) {
		es, _ := os.ReadDir(st.Location())
		for _, e := range es {
			if strings.HasPrefix(e.Name(), ".trash-") {
				n++
			}
		}
		return n
	}
	if hidden() != 1 {
		t.Fatalf("%d trash directories after the crash, want 1", hidden())
	}
	// The next process: the rotation is finished (the lease lapses), and
	// Purge frees the renamed prefix.
	clock.advance(time.Hour)
	k2 := openWith(t, st, clock, rawKey(t, 2))
	if err := k2.Resume(ctx, nil); err != nil {
		t.Fatal(err)
	}
	checkFinished(t, st, clock, deks, rawKey(t, 2))
	if err := k2.Purge(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if hidden() != 0 {
		t.Fatalf("%d trash directories after Purge", hidden())
	}
}

// rotationFixture is a keychain on st under key 1, with a fake clock, the
// test rotation options and n DEKs.
func rotationFixture(t *testing.T, st store.Store, n int) (*fakeClock, *proc, map[[16]byte][]byte) {
	t.Helper()
	clock := newFakeClock()
	k := mustInit(t, st, rawKey(t, 1))
	setClock(k, clock.Now)
	k.SetOptions(testOpts)
	return clock, k, makeDEKs(t, k, n)
}

// localStore is a new local store in a temporary directory.
func localStore(t *testing.T) *local.Store {
	t.Helper()
	st, err := local.Init(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestRotateDuplicatePackEntries: the same DEK in two packs of one shard
// of the old generation (a prune that wrote a pack's replacement and was
// killed before it deleted the pack) is re-wrapped once into the new
// pack: a pack with an id twice does not parse, so writing one failed the
// rotation at every try.
func TestRotateDuplicatePackEntries(t *testing.T) {
	ctx := context.Background()
	st := localStore(t)
	clock, k, deks := rotationFixture(t, st, 300)
	key2 := rawKey(t, 2)
	if err := k.start(ctx, key2, testOpts); err != nil {
		t.Fatal(err)
	}
	if err := k.Run(ctx, nil); err != nil {
		t.Fatal(err)
	}
	gen := k.Keyring().Current
	var names []string
	st.List(ctx, keys.PackPrefix(gen), func(i store.Info) error { names = append(names, i.Name); return nil })
	if len(names) == 0 {
		t.Fatal("no DEK pack after the first rotation")
	}
	// A copy in the same shard: the same first hex digit of the name's
	// random part, another last one.
	name := names[0]
	b, err := st.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	r, count, _ := strings.Cut(name[strings.LastIndexByte(name, '/')+1:], "-")
	last := "0"
	if r[len(r)-1] == '0' {
		last = "1"
	}
	twin := name[:strings.LastIndexByte(name, '/')+1] + r[:len(r)-1] + last + "-" + count
	if err := st.Create(ctx, twin, b); err != nil {
		t.Fatal(err)
	}
	_, s1, _ := keys.ParsePackName(name)
	_, s2, _ := keys.ParsePackName(twin)
	if s1 != s2 {
		t.Fatalf("packs %s and %s are in shards %d and %d", name, twin, s1, s2)
	}
	key3 := rawKey(t, 3)
	if err := k.start(ctx, key3, testOpts); err != nil {
		t.Fatal(err)
	}
	if err := k.Run(ctx, nil); err != nil {
		t.Fatal(err)
	}
	checkFinished(t, st, clock, deks, key3)
}
