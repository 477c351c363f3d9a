package rotation

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// fakeClock is a settable clock shared by the Keychains of one test.
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

var testOpts = Options{Workers: 4, LeaseDuration: time.Minute, Host: "testhost", Argon2: testArgon2}

var errCrash = errors.New("simulated crash")

// crashAt makes k fail with errCrash when it reaches point, as if the
// process died there.
func crashAt(k *proc, point string) {
	setCrash(k, func(p string) error {
		if p == point {
			return errCrash
		}
		return nil
	})
}

// startAndRun starts a rotation of k to newKey and runs it, as the rotate
// command does; it returns the first error.
func startAndRun(ctx context.Context, k *proc, newKey *keys.Material, opts Options) error {
	if err := k.start(ctx, newKey, opts); err != nil {
		return err
	}
	return k.Run(ctx, nil)
}

func openWith(t testing.TB, st store.Store, clock *fakeClock, ms ...*keys.Material) *proc {
	t.Helper()
	kc, err := keys.Open(context.Background(), st, testRepoID, ms...)
	if err != nil {
		t.Fatal(err)
	}
	k := newProc(kc)
	setClock(k, clock.Now)
	k.SetOptions(testOpts)
	return k
}

// makeDEKs creates n DEKs and returns them by id.
func makeDEKs(t testing.TB, k *proc, n int) map[[16]byte][]byte {
	t.Helper()
	out := map[[16]byte][]byte{}
	for range n {
		id, dek, err := k.NewDEK(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out[id] = dek
	}
	return out
}

// checkReachable asserts the invariant "no DEK is ever unreachable": each
// DEK has a wrapped copy under a generation the latest keyring lists as
// current or retiring that unwraps (with one of ms) to the right key.
func checkReachable(t testing.TB, st store.Store, deks map[[16]byte][]byte, ms ...*keys.Material) {
	t.Helper()
	if err := reachable(st, deks, ms...); err != nil {
		t.Fatal(err)
	}
}

// reachable is checkReachable returning the first failure, for goroutines.
func reachable(st store.Store, deks map[[16]byte][]byte, ms ...*keys.Material) error {
	ctx := context.Background()
	// A Keychain opened now loads the latest keyring and holds the KEKs
	// of its live generations that one of ms matches.
	kc, err := keys.Open(ctx, st, testRepoID, ms...)
	if err != nil {
		return fmt.Errorf("no DEK is reachable: %w", err)
	}
	r := kc.Keyring()
	for id, dek := range deks {
		ok := false
		for _, g := range r.Generations {
			kk, err := kc.KEK(g.ID)
			if g.State == keys.StateRetired || err != nil {
				continue
			}
			for _, b := range storedCopies(nil, st, g.ID, id) {
				if got, err := kk.Unwrap(id, b); err == nil && bytes.Equal(got, dek) {
					ok = true
					break
				}
			}
			if ok {
				break
			}
		}
		if !ok {
			return fmt.Errorf("DEK %x is unreachable with the keys keyring epoch %d names", id, r.Epoch)
		}
	}
	return nil
}

// checkFinished asserts the end state of a rotation to newKey: only the new
// key is needed, the old generations are retired and their prefixes empty.
func checkFinished(t testing.TB, st store.Store, clock *fakeClock, deks map[[16]byte][]byte, newKey *keys.Material) {
	t.Helper()
	ctx := context.Background()
	k := openWith(t, st, clock, newKey)
	r := k.Keyring()
	if r.Rotation != nil {
		t.Fatalf("rotation record left: %+v", r.Rotation)
	}
	for _, g := range r.Generations {
		if g.ID == r.Current {
			continue
		}
		if g.State != keys.StateRetired {
			t.Fatalf("generation %s is %s, want retired", g.ID, g.State)
		}
		if n, _ := k.count(ctx, keys.GenPrefix(g.ID), 0); n != 0 {
			t.Fatalf("%d wrapped DEKs left under retired generation %s", n, g.ID)
		}
	}
	for id, dek := range deks {
		got, err := k.DEK(ctx, id)
		if err != nil || !bytes.Equal(got, dek) {
			t.Fatalf("DEK %x with the new key only: %v", id, err)
		}
	}
	if _, err := k.IDKey(ctx); err != nil {
		t.Fatal(err)
	}
	if u, err := k.Unfinished(ctx); err != nil || u {
		t.Fatalf("Unfinished = %v, %v", u, err)
	}
	if n, _ := k.count(ctx, rewrapPrefix, 0); n != 0 {
		t.Fatalf("%d shard leases or done markers left", n)
	}
}

func TestRotate(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		old, new *keys.Material
	}{
		{"raw-to-pass", rawKey(t, 1), passKey(t, "new passphrase")},
		{"pass-to-raw", passKey(t, "old passphrase"), rawKey(t, 2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := mem.New()
			clock := newFakeClock()
			k := mustInit(t, st, tc.old)
			setClock(k, clock.Now)
			idk, _ := k.IDKey(ctx)
			deks := makeDEKs(t, k, 50)
			if err := k.start(ctx, tc.new, testOpts); err != nil {
				t.Fatal(err)
			}
			r := k.Keyring()
			if r.Rotation == nil || len(r.Generations) != 2 || r.Generation(r.Rotation.From[0]).State != keys.StateRetiring {
				t.Fatalf("after switch: %+v", r)
			}
			if r.Rotation.RequestedBy.Host != "testhost" {
				t.Errorf("requested by %+v", r.Rotation.RequestedBy)
			}
			// New DEKs go under the new generation at once.
			id, dek, err := k.NewDEK(ctx)
			if err != nil {
				t.Fatal(err)
			}
			deks[id] = dek
			if _, err := st.Stat(ctx, keys.DEKObject(r.Current, id)); err != nil {
				t.Fatalf("new DEK not under the new generation: %v", err)
			}
			// A reader holding only the old key reads old DEKs during the rotation.
			old := openWith(t, st, clock, tc.old)
			for id, dek := range deks {
				got, err := old.DEK(ctx, id)
				if err == nil && !bytes.Equal(got, dek) {
					t.Fatal("wrong DEK")
				}
			}
			st2, _ := k.Status(ctx)
			if !st2.Unfinished || st2.Lease == nil || st2.Lease.Host != "testhost" {
				t.Fatalf("status during rotation: %+v", st2)
			}
			var last Progress
			if err := k.Run(ctx, func(p Progress) { last = p }); err != nil {
				t.Fatal(err)
			}
			if last.Phase != "done" || last.Done != 51 || last.Total != 51 || last.Deleted != 51 {
				t.Fatalf("final progress %+v, want 51 done (50 + content-id key) and deleted", last)
			}
			checkFinished(t, st, clock, deks, tc.new)
			idk2, _ := openWith(t, st, clock, tc.new).IDKey(ctx)
			if !bytes.Equal(idk, idk2) {
				t.Fatal("content-id key changed")
			}
			// The old key is refused now, saying why.
			_, err = keys.Open(ctx, st, testRepoID, tc.old)
			if !errors.Is(err, keys.ErrNoKeyMatches) || !strings.Contains(err.Error(), "retired") {
				t.Fatalf("old key after rotation: %v", err)
			}
			// No lease left behind.
			if n, _ := k.count(ctx, leasePrefix, 0); n != 0 {
				t.Fatalf("%d lease objects left", n)
			}
			// Rotating back to the old key makes a new generation.
			if err := k.start(ctx, tc.old, testOpts); err != nil {
				t.Fatal(err)
			}
			if err := k.Run(ctx, nil); err != nil {
				t.Fatal(err)
			}
			r = k.Keyring()
			if len(r.Generations) != 3 || r.Current == r.Generations[0].ID {
				t.Fatalf("rotating back reused a generation: %+v", r.Generations)
			}
			checkFinished(t, st, clock, deks, tc.old)
		})
	}
}

// crashCase crashes at the nth call of a point.
type crashCase struct {
	point string
	nth   int
}

func TestCrashAnywhere(t *testing.T) {
	const n = 40 // DEKs besides the content-id key
	cases := []crashCase{
		{PointLease, 1}, {PointSwitch, 1},
		{PointShard, 1}, {PointShard, RewrapShards / 2},
		{PointRewrap, 1}, {PointRewrap, n / 2}, {PointRewrap, n + 1},
		{PointShardDone, 1}, {PointShardDone, RewrapShards},
		{PointBeforeRetire, 1}, {PointRetired, 1},
		// n+1 entries; up to Workers-1 deletes in flight may land after the crash
		{PointDelete, 1}, {PointDelete, n / 2}, {PointDelete, n + 1 - testOpts.Workers},
		{PointDeleted, 1},
	}
	for _, cc := range cases {
		t.Run(fmt.Sprintf("%s-%d", cc.point, cc.nth), func(t *testing.T) {
			ctx := context.Background()
			st := mem.New()
			clock := newFakeClock()
			oldKey, newKey := rawKey(t, 1), passKey(t, "new passphrase")
			k := mustInit(t, st, oldKey)
			setClock(k, clock.Now)
			deks := makeDEKs(t, k, n)
			idk, _ := k.IDKey(ctx)
			var mu sync.Mutex
			calls := map[string]int{}
			crashed := false
			setCrash(k, func(p string) error {
				mu.Lock()
				defer mu.Unlock()
				calls[p]++
				if crashed || (p == cc.point && calls[p] == cc.nth) {
					crashed = true // a dead process takes no further step
					return errCrash
				}
				return nil
			})
			keyringBefore := snapshotPrefix(t, st, keyringPrefix)
			err := startAndRun(ctx, k, newKey, testOpts)
			if !errors.Is(err, errCrash) {
				t.Fatalf("rotation: %v, want the simulated crash", err)
			}
			// Every DEK is reachable with the keys the keyring names, and
			// a process with either key still reads everything.
			checkReachable(t, st, deks, oldKey, newKey)
			// The crashed holder's lease blocks others until it expires.
			k2 := openWith(t, st, clock, oldKey, newKey)
			err = k2.Resume(ctx, nil)
			if !errors.Is(err, lease.ErrBusy) {
				t.Fatalf("resume under a live lease: %v", err)
			}
			var be *lease.BusyError
			if !errors.As(err, &be) || be.Host != "testhost" {
				t.Fatalf("busy error does not name the holder: %v", err)
			}
			clock.advance(2 * testOpts.LeaseDuration)
			if cc.point == PointLease {
				// Crashed before the switch: nothing changed; a new rotation runs.
				if !equalObjects(keyringBefore, snapshotPrefix(t, st, keyringPrefix)) {
					t.Fatal("keyring changed by a rotation that crashed before the switch")
				}
				if err := k2.start(ctx, newKey, testOpts); err != nil {
					t.Fatal(err)
				}
			} else if u, err := k2.Unfinished(ctx); err != nil || (!u && cc.point != PointDeleted) {
				t.Fatalf("Unfinished = %v, %v; calls %v; objects %d", u, err, calls, len(snapshotPrefix(t, st, "deks/")))
			}
			if err := k2.Resume(ctx, nil); err != nil {
				t.Fatalf("resume: %v", err)
			}
			checkFinished(t, st, clock, deks, newKey)
			idk2, _ := openWith(t, st, clock, newKey).IDKey(ctx)
			if !bytes.Equal(idk, idk2) {
				t.Fatal("content-id key changed")
			}
		})
	}
}

// TestResumeWithNewKeyOnly: a process that holds only the new key finishes
// a rotation whose re-wrapping is complete; with re-wrapping incomplete it
// refuses, naming the old generation, and changes nothing.
func TestResumeWithNewKeyOnly(t *testing.T) {
	ctx := context.Background()
	for _, point := range []string{PointBeforeRetire, PointSwitch} {
		st := mem.New()
		clock := newFakeClock()
		oldKey, newKey := rawKey(t, 1), rawKey(t, 2)
		k := mustInit(t, st, oldKey)
		setClock(k, clock.Now)
		deks := makeDEKs(t, k, 10)
		crashAt(k, point)
		err := startAndRun(ctx, k, newKey, testOpts)
		if !errors.Is(err, errCrash) {
			t.Fatal(err)
		}
		clock.advance(time.Hour)
		k2 := openWith(t, st, clock, newKey)
		err = k2.Resume(ctx, nil)
		if point == PointSwitch {
			if !errors.Is(err, keys.ErrDEKUnavailable) {
				t.Fatalf("resume without the old key: %v", err)
			}
			checkReachable(t, st, deks, oldKey, newKey)
			if err := openWith(t, st, clock, oldKey).AddKey(ctx, newKey); err != nil {
				t.Fatal(err)
			}
			k3 := openWith(t, st, clock, newKey, oldKey)
			if err := k3.Resume(ctx, nil); err != nil {
				t.Fatal(err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
		checkFinished(t, st, clock, deks, newKey)
	}
}

func TestLateWriter(t *testing.T) {
	ctx := context.Background()
	t.Run("holds-new-key", func(t *testing.T) {
		// The writer is the rotating process: the switch lands between its
		// wrapped-DEK write and its keyring re-read.
		st := &afterDEKWriteStore{Store: mem.New()}
		clock := newFakeClock()
		oldKey, newKey := rawKey(t, 1), rawKey(t, 2)
		k := mustInit(t, st, oldKey)
		setClock(k, clock.Now)
		deks := makeDEKs(t, k, 5)
		oldGen := k.Keyring().Current
		var fired atomic.Bool
		st.setAfter(func() {
			if fired.CompareAndSwap(false, true) {
				if err := k.start(ctx, newKey, testOpts); err != nil {
					t.Error(err)
				}
			}
		})
		id, dek, err := k.NewDEK(ctx)
		if err != nil {
			t.Fatal(err)
		}
		deks[id] = dek
		newGen := k.Keyring().Current
		if newGen == oldGen {
			t.Fatal("the switch did not land between the write and the re-read")
		}
		for _, g := range []string{oldGen, newGen} {
			if _, err := st.Stat(ctx, keys.DEKObject(g, id)); err != nil {
				t.Fatalf("late DEK not under %s: %v", g, err)
			}
		}
		if err := k.Run(ctx, nil); err != nil {
			t.Fatal(err)
		}
		checkFinished(t, st, clock, deks, newKey)
	})
	t.Run("lacks-new-key", func(t *testing.T) {
		// Another process rotates; the writer does not hold the new key and
		// must not hand out a DEK that only the old key wraps.
		st := mem.New()
		clock := newFakeClock()
		oldKey, newKey := rawKey(t, 1), rawKey(t, 2)
		rot := mustInit(t, st, oldKey)
		setClock(rot, clock.Now)
		deks := makeDEKs(t, rot, 5)
		hooked := &afterDEKWriteStore{Store: st}
		w := openWith(t, hooked, clock, oldKey)
		var fired atomic.Bool
		hooked.setAfter(func() {
			if fired.CompareAndSwap(false, true) {
				if err := rot.start(ctx, newKey, testOpts); err != nil {
					t.Error(err)
				}
			}
		})
		if _, _, err := w.NewDEK(ctx); !errors.Is(err, keys.ErrDEKUnavailable) {
			t.Fatalf("late writer without the new key: %v", err)
		}
		if err := rot.Run(ctx, nil); err != nil {
			t.Fatal(err)
		}
		checkFinished(t, st, clock, deks, newKey)
		// Handed the new key, the writer works again.
		if err := w.AddKey(ctx, newKey); err != nil {
			t.Fatal(err)
		}
		id, dek, err := w.NewDEK(ctx)
		if err != nil {
			t.Fatal(err)
		}
		deks[id] = dek
		checkFinished(t, st, clock, deks, newKey)
	})
	t.Run("relist", func(t *testing.T) {
		// A wrapped DEK that appears under the old prefix after the
		// rotator's first listing gets its twin before the old generation
		// is retired.
		st := mem.New()
		clock := newFakeClock()
		oldKey, newKey := rawKey(t, 1), rawKey(t, 2)
		k := mustInit(t, st, oldKey)
		setClock(k, clock.Now)
		deks := makeDEKs(t, k, 5)
		oldKEK, err := k.KEK(k.Keyring().Current)
		if err != nil {
			t.Fatal(err)
		}
		var late [16]byte
		late[0] = 0xee
		lateDEK := bytes.Repeat([]byte{0x42}, keys.KeySize)
		once := sync.Once{}
		setCrash(k, func(p string) error {
			if p == PointRewrap {
				once.Do(func() {
					w, _ := oldKEK.Wrap(late, lateDEK)
					if err := st.Create(ctx, keys.DEKObject(oldKEK.Generation(), late), w); err != nil {
						t.Error(err)
					}
				})
			}
			return nil
		})
		if err := k.start(ctx, newKey, testOpts); err != nil {
			t.Fatal(err)
		}
		var last Progress
		if err := k.Run(ctx, func(p Progress) { last = p }); err != nil {
			t.Fatal(err)
		}
		if last.Total != 7 {
			t.Fatalf("total %d, want 7 (5 + content-id key + the late one)", last.Total)
		}
		deks[late] = lateDEK
		checkFinished(t, st, clock, deks, newKey)
	})
}

func TestTwoRotators(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	clock := newFakeClock()
	oldKey := rawKey(t, 1)
	a := mustInit(t, st, oldKey)
	setClock(a, clock.Now)
	b := openWith(t, st, clock, oldKey)
	if err := a.start(ctx, rawKey(t, 2), testOpts); err != nil {
		t.Fatal(err)
	}
	before := snapshotPrefix(t, st, keyringPrefix)
	err := b.start(ctx, rawKey(t, 3), Options{Host: "otherhost", LeaseDuration: time.Minute})
	var be *lease.BusyError
	if !errors.As(err, &be) || !errors.Is(err, lease.ErrBusy) || be.Host != "testhost" || be.PID == 0 || !strings.Contains(err.Error(), "testhost") {
		t.Fatalf("second rotator: %v", err)
	}
	if !equalObjects(before, snapshotPrefix(t, st, keyringPrefix)) {
		t.Fatal("the losing rotator changed the keyring")
	}
	if err := b.Resume(ctx, nil); !errors.Is(err, lease.ErrBusy) {
		t.Fatalf("resume while the rotation runs: %v", err)
	}
	if err := a.Run(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// Both racing for the lease at once: exactly one wins.
	st2 := mem.New()
	x := mustInit(t, st2, oldKey)
	y := openWith(t, st2, clock, oldKey)
	setClock(x, clock.Now)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, k := range []*proc{x, y} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = k.start(ctx, rawKey(t, byte(10+i)), testOpts)
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, lease.ErrBusy), errors.Is(err, ErrRotationUnfinished):
		default:
			t.Fatalf("racing rotator: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d rotators won: %v", won, errs)
	}
	x.Close(ctx)
	y.Close(ctx)
}

func TestBadInputChangesNothing(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	clock := newFakeClock()
	oldKey := passKey(t, "old pass")
	k := mustInit(t, st, oldKey)
	setClock(k, clock.Now)
	makeDEKs(t, k, 3)
	before := snapshotPrefix(t, st, "")
	same := func(what string) {
		t.Helper()
		if !equalObjects(before, snapshotPrefix(t, st, "")) {
			t.Fatalf("%s changed the repository", what)
		}
	}
	if err := k.start(ctx, passKey(t, "old pass"), testOpts); !errors.Is(err, ErrAlreadyCurrent) {
		t.Fatalf("already current: %v", err)
	}
	same("rotating to the current key")
	if err := k.start(ctx, nil, testOpts); !errors.Is(err, keys.ErrBadKey) {
		t.Fatalf("nil key: %v", err)
	}
	same("rotating to no key")
	if _, err := keys.ParseSpec("env:"); err == nil {
		t.Fatal("garbled spec parsed")
	}
	if _, err := keys.Open(ctx, st, testRepoID, rawKey(t, 7)); !errors.Is(err, keys.ErrNoKeyMatches) {
		t.Fatalf("wrong key: %v", err)
	}
	if err := k.AddKey(ctx, rawKey(t, 7)); !errors.Is(err, keys.ErrNoKeyMatches) {
		t.Fatalf("AddKey wrong key: %v", err)
	}
	same("a wrong key")
	// Mid-rotation: another rotation is refused with the keyring untouched.
	if err := k.start(ctx, rawKey(t, 8), testOpts); err != nil {
		t.Fatal(err)
	}
	k.Close(ctx)
	mid := snapshotPrefix(t, st, keyringPrefix)
	if err := k.start(ctx, rawKey(t, 9), testOpts); !errors.Is(err, ErrRotationUnfinished) {
		t.Fatalf("rotation while unfinished: %v", err)
	}
	// Rotating to the new key again resumes the unfinished rotation
	// (TestRerunResumes) and does not touch the keyring either.
	if resumed, err := k.Start(ctx, rawKey(t, 8)); err != nil || !resumed {
		t.Fatalf("rotation to the new key again: resumed %v, %v", resumed, err)
	}
	k.Close(ctx)
	if !equalObjects(mid, snapshotPrefix(t, st, keyringPrefix)) {
		t.Fatal("refused rotation changed the keyring")
	}
	if err := k.Resume(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := k.start(ctx, rawKey(t, 8), testOpts); !errors.Is(err, ErrAlreadyCurrent) {
		t.Fatalf("rotation to the current key after the rotation: %v", err)
	}
	// A process without the current key cannot rotate: it held the key of
	// generation 8 when it started, and another process rotated on to 10
	// since.
	stale := openWith(t, st, clock, rawKey(t, 8))
	if err := k.start(ctx, rawKey(t, 10), testOpts); err != nil {
		t.Fatal(err)
	}
	if err := k.Run(ctx, nil); err != nil {
		t.Fatal(err)
	}
	done := snapshotPrefix(t, st, keyringPrefix)
	if err := stale.start(ctx, rawKey(t, 9), testOpts); !errors.Is(err, keys.ErrDEKUnavailable) {
		t.Fatalf("rotation without the current key: %v", err)
	}
	if !equalObjects(done, snapshotPrefix(t, st, keyringPrefix)) {
		t.Fatal("refused rotation changed the keyring")
	}
}

// TestSecretsStaySecret scans every stored byte and every error string for
// key material: raw keys (raw, hex, base64), passphrases, DEKs.
func TestSecretsStaySecret(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	clock := newFakeClock()
	rawBytes := bytes.Repeat([]byte{0xa5, 0x3c, 0x96, 0x0f}, 8)
	raw, _ := keys.NewRawKey(rawBytes)
	const pass = "very secret passphrase"
	pm := passKey(t, pass)
	k := mustInit(t, st, raw)
	setClock(k, clock.Now)
	deks := makeDEKs(t, k, 20)
	idk, _ := k.IDKey(ctx)
	var errs []string
	if err := k.start(ctx, pm, testOpts); err != nil {
		t.Fatal(err)
	}
	if err := k.start(ctx, pm, testOpts); err != nil {
		errs = append(errs, err.Error())
	}
	if err := k.Run(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := k.start(ctx, pm, testOpts); err != nil {
		errs = append(errs, err.Error())
	}
	if _, err := keys.Open(ctx, st, testRepoID, raw); err != nil {
		errs = append(errs, err.Error())
	}
	if err := k.AddKey(ctx, raw); err != nil {
		errs = append(errs, err.Error())
	}
	errs = append(errs, fmt.Sprintf("%v %+v %#v %s", raw, pm, k.Keyring(), raw))
	status, _ := k.Status(ctx)
	errs = append(errs, fmt.Sprintf("%+v", status))
	if len(errs) < 5 {
		t.Fatalf("only %d errors collected", len(errs))
	}
	secrets := map[string][]byte{
		"raw key": rawBytes, "raw key hex": []byte(hex.EncodeToString(rawBytes)),
		"raw key base64": []byte(base64.StdEncoding.EncodeToString(rawBytes)[:40]),
		"passphrase":     []byte(pass), "content-id key": idk,
	}
	for id, dek := range deks {
		secrets[fmt.Sprintf("DEK %x", id[:4])] = dek
	}
	for name, data := range snapshotPrefix(t, st, "") {
		for what, s := range secrets {
			if bytes.Contains(data, s) {
				t.Errorf("object %s contains the %s", name, what)
			}
		}
	}
	for _, e := range errs {
		for what, s := range secrets {
			if strings.Contains(e, string(s)) {
				t.Errorf("message %q contains the %s", e, what)
			}
		}
	}
}

// TestNewKeyAloneAfterSwitch: right after the switch, a process that holds
// only the new key opens the repository and reads the content-id key.
func TestNewKeyAloneAfterSwitch(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	k := mustInit(t, st, rawKey(t, 0))
	want, err := k.IDKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.start(ctx, rawKey(t, 1), Options{}); err != nil {
		t.Fatal(err)
	}
	k2, err := keys.Open(ctx, st, testRepoID, rawKey(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	got, err := k2.IDKey(ctx)
	if err != nil {
		t.Fatalf("content-id key with only the new key after the switch: %v", err)
	}
	if string(got) != string(want) {
		t.Fatal("content-id key differs")
	}
	if _, _, err := k2.NewDEK(ctx); err != nil {
		t.Fatal(err)
	}
	k.Close(ctx)
}
