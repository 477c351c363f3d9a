package rotation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/internal/vectortest"
	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/faults"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// shardOpts are testOpts with a short poll: coordinators that wait for a
// helper's shard look again every millisecond.
var shardOpts = Options{Workers: 4, LeaseDuration: time.Minute, Host: "testhost", ShardPoll: time.Millisecond}

// syncDEKs is a DEK map that goroutines share.
type syncDEKs struct {
	mu sync.Mutex
	m  map[[16]byte][]byte
}

func (d *syncDEKs) add(id [16]byte, dek []byte) {
	d.mu.Lock()
	d.m[id] = dek
	d.mu.Unlock()
}

func (d *syncDEKs) snapshot() map[[16]byte][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[[16]byte][]byte, len(d.m))
	for id, dek := range d.m {
		out[id] = dek
	}
	return out
}

// firstErr keeps the first error reported from any goroutine.
type firstErr struct {
	mu  sync.Mutex
	err error
}

func (f *firstErr) set(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *firstErr) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// rewrapObjects returns the names below leases/rewrap/<rotID>/.
func rewrapObjects(t testing.TB, st store.Store, rotID string) []string {
	t.Helper()
	var names []string
	if err := st.List(context.Background(), rewrapRotPrefix(rotID), func(i store.Info) error {
		names = append(names, strings.TrimPrefix(i.Name, rewrapRotPrefix(rotID)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return names
}

// twinsVerified checks that every entry below deks/<from>/ has a twin under
// k's current generation that opens, to the right DEK where deks knows it.
func twinsVerified(k *proc, st store.Store, from string, deks map[[16]byte][]byte) error {
	r := k.Keyring()
	kTo, err := k.KEK(r.Current)
	if err != nil {
		return err
	}
	ids := storedIDs(nil, st, from)
	if len(ids) == 0 {
		return fmt.Errorf("no entries below %s", keys.GenPrefix(from))
	}
	for id := range ids {
		opened := false
		var last error = store.ErrNotExist
		for _, b := range storedCopies(nil, st, r.Current, id) {
			got, err := kTo.Unwrap(id, b)
			if err != nil {
				last = err
				continue
			}
			if want, ok := deks[id]; ok && !bytes.Equal(got, want) {
				return fmt.Errorf("twin of %s%x holds another DEK", keys.GenPrefix(from), id)
			}
			opened = true
		}
		if !opened {
			return fmt.Errorf("%s%x has no twin that opens: %w", keys.GenPrefix(from), id, last)
		}
	}
	return nil
}

// TestCooperativeRotation: a coordinator and a helper rotate one store
// together while a third process makes DEKs and a fourth reads. Both work
// shards (the coordinator waits for the helper's first claim), the
// coordinator checks every entry the helper re-wrapped, every DEK is
// reachable at every step of both, and the end state is as after a lone
// rotation.
func TestCooperativeRotation(t *testing.T) {
	ctx := context.Background()
	inner := mem.New()
	st := faults.New(inner)
	st.Add(faults.Rule{Latency: 20 * time.Microsecond}) // interleave the processes
	clock := newFakeClock()
	oldKey, newKey := rawKey(t, 1), passKey(t, "new")
	a := mustInit(t, st, oldKey)
	setClock(a, clock.Now)
	a.SetOptions(shardOpts)
	deks := &syncDEKs{m: makeDEKs(t, a, 400)}
	b := openWith(t, st, clock, oldKey, newKey)
	bOpts := shardOpts
	bOpts.Host = "helperhost"
	b.SetOptions(bOpts)

	var fail firstErr
	check := func(who, point string) {
		if err := reachable(inner, deks.snapshot(), oldKey, newKey); err != nil {
			fail.set(fmt.Errorf("%s at %s: %w", who, point, err))
		}
	}
	helperClaimed, helperDeleted := make(chan struct{}), make(chan struct{})
	var helperOnce, helperDelOnce, coordOnce, coordDelOnce sync.Once
	var aSteps, bSteps atomic.Int64
	setCrash(b, func(p string) error {
		switch p {
		case PointShard:
			helperOnce.Do(func() { close(helperClaimed) })
		case PointDelete:
			helperDelOnce.Do(func() { close(helperDeleted) })
		}
		if p != PointRewrap || bSteps.Add(1)%16 == 0 {
			check("helper", p)
		}
		return nil
	})
	var during Status
	var markers []ShardDone
	setCrash(a, func(p string) error {
		switch p {
		case PointShard:
			coordOnce.Do(func() { <-helperClaimed }) // both work shards
		case PointDelete:
			coordDelOnce.Do(func() { <-helperDeleted }) // both delete
		}
		if p == PointBeforeRetire {
			var err error
			if during, err = a.Status(ctx); err != nil {
				fail.set(err)
			}
			for s := range RewrapShards {
				b, err := inner.Get(ctx, shardDoneObject(a.Keyring().Rotation.ID, s))
				if err != nil {
					fail.set(err)
					continue
				}
				m, err := ParseShardDone(b)
				if err != nil {
					fail.set(err)
				}
				markers = append(markers, m)
			}
		}
		if p != PointRewrap && p != PointDelete || aSteps.Add(1)%16 == 0 {
			check("coordinator", p)
		}
		return nil
	})

	if err := a.start(ctx, newKey, shardOpts); err != nil {
		t.Fatal(err)
	}
	rot := a.Keyring().Rotation
	// A writer (holding both keys, refreshed past the switch) and a reader.
	w := openWith(t, st, clock, oldKey, newKey)
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range 200 {
			select {
			case <-stop:
				return
			default:
			}
			id, dek, err := w.NewDEK(ctx)
			if err != nil {
				fail.set(err)
				return
			}
			deks.add(id, dek)
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			// A fresh process each round: nothing cached, reads with fallback.
			rd, err := keys.Open(ctx, st, testRepoID, oldKey, newKey)
			if err != nil {
				fail.set(fmt.Errorf("reader: %w", err))
				return
			}
			n := 0
			for id, dek := range deks.snapshot() {
				got, err := rd.DEK(ctx, id)
				if err != nil || !bytes.Equal(got, dek) {
					fail.set(fmt.Errorf("reader: DEK %x: %v", id, err))
					return
				}
				if n++; n == 20 {
					break
				}
			}
		}
	}()

	// The helper calls Help as a daemon would, again and again
	// while the rotation is unfinished: first it re-wraps, after the
	// retire commit it deletes. pb is its re-wrap run, pbDeleted what it
	// deleted in all.
	var pb Progress
	var pbDeleted int64
	helped := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		for {
			var last Progress
			if err := b.Help(ctx, func(p Progress) { last = p }); err != nil {
				helped <- err
				return
			}
			if last.Shards > 0 {
				pb = last
			}
			pbDeleted += last.Deleted
			select {
			case <-finished:
				helped <- nil
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	var pa Progress
	err := a.Run(ctx, func(p Progress) { pa = p })
	close(finished)
	if herr := <-helped; herr != nil {
		t.Fatalf("helper: %v", herr)
	}
	if err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if err := fail.get(); err != nil {
		t.Fatal(err)
	}
	t.Logf("coordinator: %d shards, %d done, %d checked, %d deleted; helper: %d shards, %d done, %d deleted", pa.Shards, pa.Done, pa.Checked, pa.Deleted, pb.Shards, pb.Done, pbDeleted)
	if pa.Deleted == 0 || pbDeleted == 0 || pa.Deleted+pbDeleted != 401 {
		t.Fatalf("deleted: coordinator %d, helper %d, want both > 0 and 401 in all", pa.Deleted, pbDeleted)
	}
	if pa.Shards == 0 || pb.Shards == 0 || pa.Shards+pb.Shards != RewrapShards {
		t.Fatalf("shards: coordinator %d, helper %d, want both > 0 and %d in all", pa.Shards, pb.Shards, RewrapShards)
	}
	if !pb.Helper || pa.Helper || pb.Phase != "done" || pa.Phase != "done" {
		t.Fatalf("progress: coordinator %+v, helper %+v", pa, pb)
	}
	// The coordinator checked every entry the helper re-wrapped, and
	// counted every entry once.
	if pa.Checked != pb.Done || pa.Done != 401 || pa.Total != 401 || pb.Done == 0 {
		t.Fatalf("coordinator done %d/%d, checked %d; helper re-wrapped %d (want 401/401, checked = helper's)", pa.Done, pa.Total, pa.Checked, pb.Done)
	}
	if len(during.Shards) != RewrapShards {
		t.Fatalf("status shards: %+v", during.Shards)
	}
	for _, s := range during.Shards {
		if !s.Done || s.Lease != nil {
			t.Fatalf("status before retiring: shard %+v", s)
		}
	}
	// The markers name who did each shard and how many entries it had.
	byHelper, entries := 0, int64(0)
	for _, m := range markers {
		if m.Host == "helperhost" {
			byHelper++
		}
		entries += m.Entries
	}
	if byHelper != int(pb.Shards) || entries != 401 {
		t.Fatalf("markers: %d by the helper (want %d), %d entries (want 401)", byHelper, pb.Shards, entries)
	}
	checkFinished(t, inner, clock, deks.snapshot(), newKey)
	if err := b.Help(ctx, nil); err != nil {
		t.Fatalf("helping when there is nothing to do: %v", err)
	}
	if n := len(rewrapObjects(t, inner, rot.ID)); n != 0 {
		t.Fatalf("%d shard objects after the rotation", n)
	}
}

// TestHelperKilled: a helper dies in the middle of a shard, its shard lease
// abandoned. The coordinator does every other shard, waits for the dead
// helper's shard until its lease expires, takes it over (lease seq 2) and
// finishes; nothing is lost at any point.
func TestHelperKilled(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	clock := newFakeClock()
	oldKey, newKey := rawKey(t, 1), rawKey(t, 2)
	a := mustInit(t, st, oldKey)
	setClock(a, clock.Now)
	a.SetOptions(shardOpts)
	deks := makeDEKs(t, a, 400)
	b := openWith(t, st, clock, oldKey, newKey)
	b.SetOptions(shardOpts)
	if err := a.start(ctx, newKey, shardOpts); err != nil {
		t.Fatal(err)
	}
	rot := a.Keyring().Rotation

	// The helper finishes two shards and dies at the fifth re-wrap of its third.
	var mu sync.Mutex
	shards, rewraps := 0, 0
	dead := false
	setCrash(b, func(p string) error {
		mu.Lock()
		defer mu.Unlock()
		switch p {
		case PointShard:
			shards++
			rewraps = 0
		case PointRewrap:
			rewraps++
		}
		if dead || shards == 3 && rewraps == 5 {
			dead = true
			return errCrash
		}
		return nil
	})
	if err := b.Help(ctx, nil); !errors.Is(err, errCrash) {
		t.Fatalf("helper: %v, want the simulated crash", err)
	}
	checkReachable(t, st, deks, oldKey, newKey)
	// Two done markers and one abandoned lease.
	crashed := -1
	var done int
	for _, n := range rewrapObjects(t, st, rot.ID) {
		shard, rest, _ := strings.Cut(n, "/")
		if rest == shardDoneName {
			done++
		} else if rest == fmt.Sprintf("%020d", 1) {
			fmt.Sscanf(shard, "%x", &crashed)
		}
	}
	if done != 2 || crashed < 0 {
		t.Fatalf("after the helper died: %v", rewrapObjects(t, st, rot.ID))
	}

	// The coordinator: when it has done the 13 shards nobody held, the
	// clock passes the dead helper's lease expiry.
	var aDone atomic.Int64
	var takenOver atomic.Bool
	expired := make(chan struct{})
	setCrash(a, func(p string) error {
		switch p {
		case PointShardDone:
			if aDone.Add(1) == RewrapShards-3 {
				clock.advance(2 * shardOpts.LeaseDuration)
				close(expired)
			}
		case PointShard:
			if _, err := st.Stat(ctx, lease.Name(shardPrefix(rot.ID, crashed), 2)); err == nil {
				takenOver.Store(true)
			}
		}
		return nil
	})
	var pa Progress
	if err := a.Run(ctx, func(p Progress) { pa = p }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-expired:
	default:
		t.Fatal("the coordinator finished before the dead helper's lease expired")
	}
	if !takenOver.Load() {
		t.Fatalf("shard %x was not taken over with lease 2", crashed)
	}
	if pa.Shards != RewrapShards-2 || pa.Done != 401 || pa.Checked == 0 {
		t.Fatalf("coordinator progress %+v: want %d shards, 401 done, some checked", pa, RewrapShards-2)
	}
	checkFinished(t, st, clock, deks, newKey)
}

// TestLyingDoneMarker: done markers are hints. Markers for shards nobody
// worked, and markers of a helper whose twins went missing or were
// damaged, do not let the coordinator retire an old generation with an
// entry that lacks a verified twin: with the old key it re-wraps those
// entries itself; with only the new key it refuses and retires nothing.
func TestLyingDoneMarker(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) (*mem.Store, *fakeClock, *proc, map[[16]byte][]byte, *keys.Rotation) {
		st := mem.New()
		clock := newFakeClock()
		a := mustInit(t, st, rawKey(t, 1))
		setClock(a, clock.Now)
		a.SetOptions(shardOpts)
		deks := makeDEKs(t, a, 200)
		if err := a.start(ctx, rawKey(t, 2), shardOpts); err != nil {
			t.Fatal(err)
		}
		return st, clock, a, deks, a.Keyring().Rotation
	}
	// beforeRetire makes k check, just before its retire commit, that every
	// old entry has a verified twin.
	beforeRetire := func(k *proc, st store.Store, from string, deks map[[16]byte][]byte, fail *firstErr) {
		setCrash(k, func(p string) error {
			if p == PointBeforeRetire {
				fail.set(twinsVerified(k, st, from, deks))
			}
			return nil
		})
	}

	t.Run("markers-nobody-earned", func(t *testing.T) {
		st, clock, a, deks, rot := setup(t)
		for s := range RewrapShards {
			m := ShardDone{Rotation: rot.ID, Shard: shardHex(s), Entries: 99, Holder: strings.Repeat("ab", 16), Host: "liar", PID: 1, Finished: clock.Now()}
			if err := st.Create(ctx, shardDoneObject(rot.ID, s), m.marshal()); err != nil {
				t.Fatal(err)
			}
		}
		var fail firstErr
		beforeRetire(a, st, rot.From[0], deks, &fail)
		var pa Progress
		if err := a.Run(ctx, func(p Progress) { pa = p }); err != nil {
			t.Fatal(err)
		}
		if err := fail.get(); err != nil {
			t.Fatalf("at the retire commit: %v", err)
		}
		// Only the content-id key had a twin (made at the switch).
		if pa.Checked != 1 || pa.Done != 201 {
			t.Fatalf("progress %+v: want one checked (the content-id key's twin), 201 done", pa)
		}
		checkFinished(t, st, clock, deks, rawKey(t, 2))
	})

	// A helper re-wraps everything and marks every shard done; then three
	// twins vanish and one is damaged.
	helpThenBreak := func(t *testing.T, st *mem.Store, clock *fakeClock, deks map[[16]byte][]byte, rot *keys.Rotation) (broken [][16]byte) {
		h := openWith(t, st, clock, rawKey(t, 1), rawKey(t, 2))
		h.SetOptions(shardOpts)
		if err := h.Help(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if n := len(rewrapObjects(t, st, rot.ID)); n != RewrapShards {
			t.Fatalf("%d shard objects after helping, want %d markers", n, RewrapShards)
		}
		for id := range deks {
			if len(broken) == 4 {
				break
			}
			broken = append(broken, id)
		}
		// The twins are in DEK packs: drop three entries, damage one.
		editPacks(t, st, rot.To, func(es []keys.PackEntry) []keys.PackEntry {
			var out []keys.PackEntry
			for _, e := range es {
				switch e.ID {
				case broken[0], broken[1], broken[2]:
					continue
				case broken[3]:
					bad := make([]byte, keys.WrappedSize) // a wrapped DEK's header, zeros after
					copy(bad, "SCWK\x01")
					e.Wrapped = bad
				}
				out = append(out, e)
			}
			return out
		})
		kTo, err := h.KEK(rot.To)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range broken {
			for _, b := range storedCopies(t, st, rot.To, id) {
				if _, err := kTo.Unwrap(id, b); err == nil {
					t.Fatalf("twin of %x still opens after breaking it", id)
				}
			}
		}
		return broken
	}

	t.Run("twins-missing-coordinator-has-old-key", func(t *testing.T) {
		st, clock, a, deks, rot := setup(t)
		helpThenBreak(t, st, clock, deks, rot)
		var fail firstErr
		beforeRetire(a, st, rot.From[0], deks, &fail)
		var pa Progress
		if err := a.Run(ctx, func(p Progress) { pa = p }); err != nil {
			t.Fatal(err)
		}
		if err := fail.get(); err != nil {
			t.Fatalf("at the retire commit: %v", err)
		}
		if pa.Shards != 0 || pa.Checked != 201-4 || pa.Done != 201 {
			t.Fatalf("progress %+v: want no shards, 197 checked, 201 done", pa)
		}
		checkFinished(t, st, clock, deks, rawKey(t, 2))
	})

	t.Run("twin-missing-coordinator-has-new-key-only", func(t *testing.T) {
		st, clock, a, deks, rot := setup(t)
		a.Close(ctx)
		helpThenBreak(t, st, clock, deks, rot)
		before := snapshotPrefix(t, st, keyringPrefix)
		c := openWith(t, st, clock, rawKey(t, 2))
		c.SetOptions(shardOpts)
		var retired atomic.Bool
		setCrash(c, func(p string) error {
			if p == PointBeforeRetire {
				retired.Store(true)
			}
			return nil
		})
		// The first failing entry decides the error: a missing twin
		// (needs the old key) or the damaged one.
		err := c.Resume(ctx, nil)
		if !errors.Is(err, keys.ErrDEKUnavailable) && !errors.Is(err, object.ErrCorrupt) || retired.Load() {
			t.Fatalf("resume with the new key only and twins missing: %v (reached the retire commit: %v)", err, retired.Load())
		}
		if !equalObjects(before, snapshotPrefix(t, st, keyringPrefix)) {
			t.Fatal("the keyring changed")
		}
		checkReachable(t, st, deks, rawKey(t, 1), rawKey(t, 2))
		// A process with both keys repairs and finishes.
		d := openWith(t, st, clock, rawKey(t, 2), rawKey(t, 1))
		d.SetOptions(shardOpts)
		if err := d.Resume(ctx, nil); err != nil {
			t.Fatal(err)
		}
		checkFinished(t, st, clock, deks, rawKey(t, 2))
	})

	t.Run("helpers-did-everything-coordinator-has-new-key-only", func(t *testing.T) {
		// The counterpart: with every twin in place a process holding only
		// the new key checks and finishes.
		st, clock, a, deks, _ := setup(t)
		a.Close(ctx)
		h := openWith(t, st, clock, rawKey(t, 1), rawKey(t, 2))
		h.SetOptions(shardOpts)
		if err := h.Help(ctx, nil); err != nil {
			t.Fatal(err)
		}
		c := openWith(t, st, clock, rawKey(t, 2))
		c.SetOptions(shardOpts)
		var pc Progress
		if err := c.Resume(ctx, func(p Progress) { pc = p }); err != nil {
			t.Fatal(err)
		}
		if pc.Checked != 201 || pc.Shards != 0 {
			t.Fatalf("progress %+v: want 201 checked, no shards", pc)
		}
		checkFinished(t, st, clock, deks, rawKey(t, 2))
	})
}

// TestHelpRotationRefuses: nothing to help, a missing key, or a run already
// going in the process: an error (or nil) and nothing written.
func TestHelpRotationRefuses(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	clock := newFakeClock()
	oldKey, newKey := rawKey(t, 1), rawKey(t, 2)
	a := mustInit(t, st, oldKey)
	setClock(a, clock.Now)
	makeDEKs(t, a, 20)
	if err := a.Help(ctx, nil); err != nil {
		t.Fatalf("no rotation: %v", err)
	}
	if err := a.start(ctx, newKey, shardOpts); err != nil {
		t.Fatal(err)
	}
	before := snapshotPrefix(t, st, "")
	for name, k := range map[string]*proc{
		"old key only": openWith(t, st, clock, oldKey),
		"new key only": openWith(t, st, clock, newKey),
	} {
		if err := k.Help(ctx, nil); !errors.Is(err, keys.ErrDEKUnavailable) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if !equalObjects(before, snapshotPrefix(t, st, "")) {
		t.Fatal("a refused helper changed the repository")
	}
	var inRun error
	setCrash(a, func(p string) error {
		if p == PointBeforeRetire {
			inRun = a.Help(ctx, nil)
		}
		return nil
	})
	if err := a.Run(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(inRun, lease.ErrBusy) {
		t.Fatalf("helping while this process rotates: %v", inRun)
	}
}

// TestShardCrashAnywhere crashes a helper at each of its points and then
// has a coordinator (another process) finish after the helper's shard
// lease lapses.
func TestShardCrashAnywhere(t *testing.T) {
	for _, cc := range []crashCase{{PointShard, 1}, {PointShard, 9}, {PointRewrap, 1}, {PointRewrap, 100}, {PointShardDone, 1}, {PointShardDone, RewrapShards}} {
		t.Run(fmt.Sprintf("%s-%d", cc.point, cc.nth), func(t *testing.T) {
			ctx := context.Background()
			st := mem.New()
			clock := newFakeClock()
			oldKey, newKey := rawKey(t, 1), rawKey(t, 2)
			a := mustInit(t, st, oldKey)
			setClock(a, clock.Now)
			a.SetOptions(shardOpts)
			deks := makeDEKs(t, a, 150)
			if err := a.start(ctx, newKey, shardOpts); err != nil {
				t.Fatal(err)
			}
			h := openWith(t, st, clock, oldKey, newKey)
			h.SetOptions(shardOpts)
			var mu sync.Mutex
			calls := map[string]int{}
			dead := false
			setCrash(h, func(p string) error {
				mu.Lock()
				defer mu.Unlock()
				calls[p]++
				if dead || p == cc.point && calls[p] == cc.nth {
					dead = true
					return errCrash
				}
				return nil
			})
			if err := h.Help(ctx, nil); !errors.Is(err, errCrash) {
				t.Fatalf("helper: %v, want the simulated crash", err)
			}
			checkReachable(t, st, deks, oldKey, newKey)
			clock.advance(2 * shardOpts.LeaseDuration)
			if err := a.Run(ctx, nil); err != nil {
				t.Fatal(err)
			}
			checkFinished(t, st, clock, deks, newKey)
		})
	}
}

type shardDoneVector struct {
	Name   string `json:"name"`
	Expect string `json:"expect"` // "ok" or "corrupted"
	Marker string `json:"marker"`
}

const shardDoneVectorFile = "testdata/shard-done-vectors.json"

func makeShardDoneVectors() []shardDoneVector {
	m := ShardDone{Rotation: strings.Repeat("cd", 16), Shard: "a", Entries: 6250, Holder: strings.Repeat("ab", 16),
		Host: "backup2", PID: 777, Finished: time.Date(2025, 6, 1, 12, 3, 0, 0, time.UTC)}
	ok := string(m.marshal())
	return []shardDoneVector{
		{"ok", "ok", ok},
		{"unknown-field", "corrupted", strings.Replace(ok, `"host"`, `"colour": 1, "host"`, 1)},
		{"trailing", "corrupted", ok + "{}"},
		{"two-digit-shard", "corrupted", strings.Replace(ok, `"shard": "a"`, `"shard": "0a"`, 1)},
		{"upper-case-shard", "corrupted", strings.Replace(ok, `"shard": "a"`, `"shard": "A"`, 1)},
		{"short-rotation", "corrupted", strings.Replace(ok, strings.Repeat("cd", 16), "cd", 1)},
		{"negative-entries", "corrupted", strings.Replace(ok, "6250", "-1", 1)},
		{"no-time", "corrupted", `{"rotation":"` + strings.Repeat("cd", 16) + `","shard":"a","entries":1,"holder":"` + strings.Repeat("ab", 16) + `","host":"h","pid":1}`},
		{"not-json", "corrupted", "done"},
	}
}

func TestShardDoneVectors(t *testing.T) {
	marshal := func(m ShardDone) []byte { return m.marshal() }
	vectortest.Run(t, shardDoneVectorFile, makeShardDoneVectors(), func(v shardDoneVector) {
		vectortest.CheckParse(t, v.Name, v.Expect, v.Marker, ParseShardDone, marshal)
	})
}

func FuzzParseShardDone(f *testing.F) {
	for _, v := range vectortest.Load[shardDoneVector](f, shardDoneVectorFile) {
		f.Add([]byte(v.Marker))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseShardDone(b)
		if err != nil {
			return
		}
		m2, err := ParseShardDone(m.marshal())
		if err != nil || !m2.Finished.Equal(m.Finished) || m2.Rotation != m.Rotation || m2.Shard != m.Shard ||
			m2.Entries != m.Entries || m2.Holder != m.Holder || m2.Host != m.Host || m2.PID != m.PID {
			t.Fatalf("parse/marshal/parse changed the marker: %v", err)
		}
	})
}

// TestHelperDeletesAfterRetire: the coordinator dies right after the
// retire commit; a helper (here holding only the new key) deletes the
// retired generation's wrapped DEKs, and nothing is left to resume.
func TestHelperDeletesAfterRetire(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	clock := newFakeClock()
	oldKey, newKey := rawKey(t, 1), rawKey(t, 2)
	a := mustInit(t, st, oldKey)
	setClock(a, clock.Now)
	a.SetOptions(shardOpts)
	deks := makeDEKs(t, a, 100)
	crashAt(a, PointRetired)
	err := startAndRun(ctx, a, newKey, shardOpts)
	if !errors.Is(err, errCrash) {
		t.Fatalf("rotation: %v, want the simulated crash", err)
	}
	h := openWith(t, st, clock, newKey)
	if u, err := h.Unfinished(ctx); err != nil || !u {
		t.Fatalf("Unfinished = %v, %v", u, err)
	}
	var last Progress
	if err := h.Help(ctx, func(p Progress) { last = p }); err != nil {
		t.Fatal(err)
	}
	if last.Deleted != 101 || last.Phase != "done" || !last.Helper {
		t.Fatalf("helper progress %+v: want 101 deleted", last)
	}
	// The coordinator's crash left its shard markers: the next rotation's
	// cleanup (or a Resume) removes them; apart from that, finished.
	if u, err := h.Unfinished(ctx); err != nil || u {
		t.Fatalf("Unfinished = %v, %v", u, err)
	}
	clock.advance(2 * shardOpts.LeaseDuration)
	if err := h.Resume(ctx, nil); err != nil {
		t.Fatal(err)
	}
	checkFinished(t, st, clock, deks, newKey)
}
