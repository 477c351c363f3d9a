package rotation

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/lease"
	"github.com/snapcrypt/snapcrypt/repo/store/faults"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// TestRotateWithStoreFaults rotates through a store that fails and loses
// responses at random, retrying (StartRotation, then Resume) until the
// rotation is finished. After every failed attempt no DEK is unreachable.
func TestRotateWithStoreFaults(t *testing.T) {
	ctx := context.Background()
	for seed := range 5 {
		inner := mem.New()
		fs := faults.New(inner)
		clock := newFakeClock()
		oldKey, newKey := rawKey(t, 1), rawKey(t, 2)
		k := mustInit(t, fs, oldKey)
		setClock(k, clock.Now)
		k.SetOptions(testOpts)
		deks := makeDEKs(t, k, 60)
		fs.Add(faults.Rule{Probability: 0.03 + 0.01*float64(seed)})
		fs.Add(faults.Rule{Ops: []faults.Op{faults.Create, faults.Put, faults.Delete}, Probability: 0.03, Dropped: true})
		finished := false
		for attempt := 0; attempt < 500 && !finished; attempt++ {
			clock.advance(2 * testOpts.LeaseDuration) // abandoned leases lapse
			var err error
			r := k.Keyring()
			if r.Generation(r.Current) != nil && !k.Matches(r.Generation(r.Current), newKey) && r.Rotation == nil {
				if err = k.start(ctx, newKey, testOpts); err == nil {
					err = k.Run(ctx, nil)
				}
			} else {
				if err = k.AddKey(ctx, newKey); err == nil {
					err = k.Resume(ctx, nil)
				}
			}
			if err == nil {
				var u bool
				u, err = k.Unfinished(ctx)
				finished = err == nil && !u
			}
			if err != nil && !errors.Is(err, faults.ErrInjected) && !errors.Is(err, ErrRotationUnfinished) && !errors.Is(err, ErrAlreadyCurrent) {
				t.Fatalf("seed %d attempt %d: %v", seed, attempt, err)
			}
			if attempt > 490 {
				t.Logf("attempt %d: %v", attempt, err)
			}
			checkReachable(t, inner, deks, oldKey, newKey)
			// A DEK made now, through the faulty store, is reachable too.
			if id, dek, err := k.NewDEK(ctx); err == nil {
				deks[id] = dek
			}
		}
		if !finished {
			t.Fatalf("seed %d: rotation did not finish (%d faults injected)", seed, fs.Injected())
		}
		fs.Reset()
		checkFinished(t, inner, clock, deks, newKey)
	}
}

// TestRotateUnderLoad reads and makes DEKs from other processes (Keychains)
// while the rotation runs: nothing is locked, nothing is lost. A reader
// holding only the old key reads everything until the retirement; one
// holding both keys reads everything throughout; writers hold both keys (a
// daemon handed the new key) and make DEKs all along.
func TestRotateUnderLoad(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	clock := newFakeClock()
	oldKey, newKey := rawKey(t, 1), passKey(t, "new")
	k := mustInit(t, st, oldKey)
	setClock(k, clock.Now)
	deks := makeDEKs(t, k, 300)
	ids := make([][16]byte, 0, len(deks))
	for id := range deks {
		ids = append(ids, id)
	}
	var mu sync.Mutex
	stopOld, stopAll := make(chan struct{}), make(chan struct{})
	var oldWG, wg sync.WaitGroup
	reader := func(rk *proc, stop chan struct{}, wg *sync.WaitGroup) {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := ids[i%len(ids)]
			got, err := rk.DEK(ctx, id)
			mu.Lock()
			want := deks[id]
			mu.Unlock()
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("reader during rotation: %v", err)
				return
			}
		}
	}
	writer := func(rk *proc) {
		defer wg.Done()
		for {
			select {
			case <-stopAll:
				return
			default:
			}
			id, dek, err := rk.NewDEK(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			deks[id] = dek
			mu.Unlock()
		}
	}
	oldWG.Add(2)
	go reader(openWith(t, st, clock, oldKey), stopOld, &oldWG)
	go reader(openWith(t, st, clock, oldKey), stopOld, &oldWG)
	wg.Add(3)
	go reader(openWith(t, st, clock, oldKey, newKey), stopAll, &wg)
	go writer(openWith(t, st, clock, oldKey, newKey))
	go writer(openWith(t, st, clock, oldKey, newKey))
	setCrash(k, func(p string) error {
		if p == PointBeforeRetire {
			close(stopOld)
			oldWG.Wait()
		}
		return nil
	})
	if err := k.start(ctx, newKey, testOpts); err != nil {
		t.Fatal(err)
	}
	if err := k.Run(ctx, nil); err != nil {
		t.Fatal(err)
	}
	close(stopAll)
	wg.Wait()
	if t.Failed() {
		return
	}
	checkFinished(t, st, clock, deks, newKey)
}

// TestCooperativeRotateWithStoreFaults: a coordinator and a helper rotate
// through a store that fails and loses responses at random, retrying until
// the rotation is finished. Meanwhile the clock runs fast, so shard leases
// (never renewed in time) expire in the middle of shards and are taken
// over. After every attempt no DEK is unreachable.
func TestCooperativeRotateWithStoreFaults(t *testing.T) {
	ctx := context.Background()
	for seed := range 3 {
		inner := mem.New()
		fs := faults.New(inner)
		clock := newFakeClock()
		oldKey, newKey := rawKey(t, 1), rawKey(t, 2)
		k := mustInit(t, fs, oldKey)
		setClock(k, clock.Now)
		k.SetOptions(shardOpts)
		deks := makeDEKs(t, k, 100)
		h := openWith(t, fs, clock, oldKey, newKey)
		h.SetOptions(shardOpts)
		fs.Add(faults.Rule{Probability: 0.02 + 0.01*float64(seed)})
		fs.Add(faults.Rule{Ops: []faults.Op{faults.Create, faults.Put, faults.Delete}, Probability: 0.02, Dropped: true})
		stop := make(chan struct{})
		ticked := make(chan struct{})
		go func() {
			defer close(ticked)
			for {
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
					clock.advance(shardOpts.LeaseDuration / 4)
				}
			}
		}()
		finished := false
		helped := 0
		for attempt := 0; attempt < 300 && !finished; attempt++ {
			helpErr := make(chan error, 1)
			go func() { helpErr <- h.Help(ctx, nil) }()
			var err error
			r := k.Keyring()
			if !k.Matches(r.Generation(r.Current), newKey) && r.Rotation == nil {
				if err = k.start(ctx, newKey, shardOpts); err == nil {
					err = k.Run(ctx, nil)
				}
			} else if err = k.AddKey(ctx, newKey); err == nil {
				err = k.Resume(ctx, nil)
			}
			if err == nil {
				var u bool
				u, err = k.Unfinished(ctx)
				finished = err == nil && !u
			}
			if err != nil && !errors.Is(err, faults.ErrInjected) && !errors.Is(err, ErrRotationUnfinished) && !errors.Is(err, ErrAlreadyCurrent) && !errors.Is(err, lease.ErrBusy) {
				t.Fatalf("seed %d attempt %d: %v", seed, attempt, err)
			}
			herr := <-helpErr
			if herr != nil && !errors.Is(herr, faults.ErrInjected) {
				t.Fatalf("seed %d attempt %d: helper: %v", seed, attempt, herr)
			}
			if p, ok := lastHelp(h); ok && p.Shards > 0 {
				helped++
			}
			checkReachable(t, inner, deks, oldKey, newKey)
		}
		close(stop)
		<-ticked
		if !finished {
			t.Fatalf("seed %d: rotation did not finish (%d faults injected)", seed, fs.Injected())
		}
		fs.Reset()
		checkFinished(t, inner, clock, deks, newKey)
		t.Logf("seed %d: %d faults injected; the helper worked shards in %d attempts", seed, fs.Injected(), helped)
	}
}

// lastHelp returns the progress of k's last run.
func lastHelp(k *proc) (Progress, bool) {
	k.Rotator.mu.Lock()
	defer k.Rotator.mu.Unlock()
	return k.progressLocked(), k.prog.Helper
}
