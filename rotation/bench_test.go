package rotation

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/internal/kmstest"
	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/faults"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// benchDEKs is how many wrapped DEKs BenchmarkRotate rotates.
const benchDEKs = 100_000

// fillDEKs writes n wrapped DEKs under the current generation, in parallel.
func fillDEKs(b *testing.B, k *proc, n int) {
	ctx := context.Background()
	kk, err := k.KEK(k.Keyring().Current)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	const workers = 32
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dek := make([]byte, keys.KeySize)
			for i := w; i < n; i += workers {
				var id [16]byte
				rand.Read(id[:])
				rand.Read(dek)
				w, err := kk.Wrap(id, dek)
				if err == nil {
					err = k.Store().Create(ctx, keys.DEKObject(kk.Generation(), id), w)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkRotate rotates a repository of 100,000 wrapped DEKs: switch,
// re-wrap (read, unwrap, wrap, create, read back, verify), retire, delete.
// One op is one whole rotation; DEKs/s counts re-wrapped DEKs per second of
// it. Run: go test -run XXX -bench BenchmarkRotate -benchtime 1x ./rotation/
func BenchmarkRotate(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B) store.Store
	}{
		{"mem", func(b *testing.B) store.Store { return mem.New() }},
		{"local", func(b *testing.B) store.Store {
			st, err := local.Init(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			return st
		}},
	}
	for _, s := range stores {
		for _, workers := range []int{16, 64} {
			b.Run(fmt.Sprintf("%s/workers=%d", s.name, workers), func(b *testing.B) {
				ctx := context.Background()
				st := s.open(b)
				k := mustInit(b, st, rawKey(b, 0))
				fillDEKs(b, k, benchDEKs-1)
				opts := Options{Workers: workers, LeaseDuration: time.Minute}
				var rewrapped int64
				var elapsed, rewrap, del time.Duration
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					start := time.Now()
					if err := k.start(ctx, rawKey(b, byte(i+1)), opts); err != nil {
						b.Fatal(err)
					}
					var last Progress
					var retireAt, deleteAt time.Time
					err := k.Run(ctx, func(p Progress) {
						switch {
						case p.Phase == "retire" && retireAt.IsZero():
							retireAt = time.Now()
						case p.Phase == "delete" && deleteAt.IsZero():
							deleteAt = time.Now()
						}
						last = p
					})
					if err != nil {
						b.Fatal(err)
					}
					elapsed += time.Since(start)
					rewrap += retireAt.Sub(start)
					del += time.Since(deleteAt)
					rewrapped += last.Done
					if last.Done != benchDEKs {
						b.Fatalf("re-wrapped %d, want %d", last.Done, benchDEKs)
					}
				}
				b.ReportMetric(float64(rewrapped)/elapsed.Seconds(), "DEKs/s")
				b.ReportMetric(float64(rewrapped)/rewrap.Seconds(), "rewrapped/s")
				b.ReportMetric(float64(rewrapped)/del.Seconds(), "deleted/s")
			})
		}
	}
}

// sharedDEKs is how many wrapped DEKs BenchmarkRotateShared rotates.
const sharedDEKs = 20_000

// BenchmarkRotateShared rotates 20,000 wrapped DEKs on an in-memory store
// behind a fixed latency on every call (repo/store/faults), the S3-like
// case where a rotation waits on round trips, not on the CPU: one keychain
// with 16 workers; two cooperating keychains with 16 workers each (the
// second calls Help right after the switch, as a daemon that sees
// the rotation record would); and, for comparison, one keychain with 32
// workers. The helper calls Help as a daemon would, again every
// ShardPoll (250 ms) until the rotation is finished, so it re-wraps shards
// and, after the retire commit, deletes. Reported: DEKs/s for the whole
// rotation (switch to deleted) and for the re-wrap phase (switch to the
// retire commit), the shards the helper re-wrapped and the share of the
// deletes it did. Run:
//
//	go test -run XXX -bench BenchmarkRotateShared -benchtime 1x ./rotation/
func BenchmarkRotateShared(b *testing.B) {
	for _, lat := range []time.Duration{time.Millisecond, 2 * time.Millisecond} {
		for _, cfg := range []struct {
			name             string
			helpers, workers int
		}{{"1x16", 0, 16}, {"2x16", 1, 16}, {"1x32", 0, 32}} {
			b.Run(fmt.Sprintf("latency=%s/%s", lat, cfg.name), func(b *testing.B) {
				ctx := context.Background()
				fst := faults.New(mem.New())
				k := mustInit(b, fst, rawKey(b, 0))
				fillDEKs(b, k, sharedDEKs-1)
				opts := Options{Workers: cfg.workers, LeaseDuration: time.Minute}
				k.SetOptions(opts)
				ms := []*keys.Material{rawKey(b, 0)}
				for i := 0; i < b.N; i++ {
					ms = append(ms, rawKey(b, byte(i+1)))
				}
				var helpers []*proc
				for range cfg.helpers {
					kc, err := keys.Open(ctx, fst, testRepoID, ms...)
					if err != nil {
						b.Fatal(err)
					}
					h := newProc(kc)
					h.SetOptions(opts)
					helpers = append(helpers, h)
				}
				fst.Add(faults.Rule{Latency: lat})
				var rewrapped, helperShards, helperDeleted int64
				var elapsed, rewrap time.Duration
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					start := time.Now()
					if err := k.start(ctx, ms[i+1], opts); err != nil {
						b.Fatal(err)
					}
					var wg sync.WaitGroup
					finished := make(chan struct{})
					for _, h := range helpers {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for {
								var last Progress
								if err := h.Help(ctx, func(p Progress) { last = p }); err != nil {
									b.Error(err)
									return
								}
								atomic.AddInt64(&helperShards, last.Shards)
								atomic.AddInt64(&helperDeleted, last.Deleted)
								select {
								case <-finished:
									return
								case <-time.After(DefaultShardPoll):
								}
							}
						}()
					}
					var last Progress
					var retireAt time.Time
					err := k.Run(ctx, func(p Progress) {
						if p.Phase == "retire" && retireAt.IsZero() {
							retireAt = time.Now()
						}
						last = p
					})
					if err != nil {
						b.Fatal(err)
					}
					elapsed += time.Since(start)
					rewrap += retireAt.Sub(start)
					close(finished)
					wg.Wait()
					if last.Done != sharedDEKs {
						b.Fatalf("re-wrapped %d, want %d", last.Done, sharedDEKs)
					}
					rewrapped += last.Done
				}
				b.ReportMetric(float64(rewrapped)/elapsed.Seconds(), "DEKs/s")
				b.ReportMetric(float64(rewrapped)/rewrap.Seconds(), "rewrapped/s")
				b.ReportMetric(float64(helperShards)/float64(b.N), "helper-shards")
				b.ReportMetric(float64(helperDeleted)/float64(rewrapped), "helper-delete-share")
			})
		}
	}
}

// BenchmarkRotateKMS compares the rotation of 100,000 wrapped DEKs (on the
// in-memory store, 16 workers) to a KMS-held key with the rotation of the
// same DEKs to a raw key, alternating the two in one run so that the load
// of a shared machine falls on both alike: each op is a rotation to a raw
// key, then one to a KMS key of local-kms (internal/kmstest). Reported:
// DEKs/s of each and their ratio (goal: kms/file >= 0.9). The KMS key costs
// one Encrypt at the switch; the re-wrap, which dominates, is the same AEAD
// work under either KEK. Run:
//
//	go test -run XXX -bench BenchmarkRotateKMS -benchtime 3x ./rotation/
func BenchmarkRotateKMS(b *testing.B) {
	s := kmstest.Start(b)
	s.SetEnv(b)
	ctx := context.Background()
	k := mustInit(b, mem.New(), rawKey(b, 0))
	fillDEKs(b, k, benchDEKs-1)
	opts := Options{Workers: 16, LeaseDuration: time.Minute}
	var took [2]time.Duration
	var done [2]int64
	var last [2]time.Duration // of the latest rotation to each
	rotate := func(which int, m *keys.Material) {
		start := time.Now()
		if err := k.start(ctx, m, opts); err != nil {
			b.Fatal(err)
		}
		var p Progress
		if err := k.Run(ctx, func(q Progress) { p = q }); err != nil {
			b.Fatal(err)
		}
		last[which] = time.Since(start)
		took[which] += last[which]
		done[which] += p.Done
		if p.Done != benchDEKs {
			b.Fatalf("re-wrapped %d, want %d", p.Done, benchDEKs)
		}
	}
	kmsKey := func(i int) *keys.Material {
		key := s.AliasA // in turns A and B: the current key is refused
		if i%2 == 1 {
			key = s.AliasB
		}
		sp, err := keys.ParseSpec("awskms:" + key)
		if err != nil {
			b.Fatal(err)
		}
		m, err := sp.Load()
		if err != nil {
			b.Fatal(err)
		}
		return m
	}
	// The first rotation reads the DEKs from single objects, every later
	// one from the DEK packs the one before wrote: one untimed first.
	rotate(0, rawKey(b, 255))
	took, done = [2]time.Duration{}, [2]int64{}
	var ratios []float64 // file time / KMS time of each pair
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			rotate(0, rawKey(b, byte(i+1)))
			rotate(1, kmsKey(i))
		} else {
			rotate(1, kmsKey(i))
			rotate(0, rawKey(b, byte(i+1)))
		}
		ratios = append(ratios, last[0].Seconds()/last[1].Seconds())
	}
	file, kms := float64(done[0])/took[0].Seconds(), float64(done[1])/took[1].Seconds()
	b.ReportMetric(file, "file-DEKs/s")
	b.ReportMetric(kms, "kms-DEKs/s")
	b.ReportMetric(kms/file, "kms/file")
	slices.Sort(ratios)
	b.ReportMetric(ratios[len(ratios)/2], "median-pair-kms/file")
	b.ReportMetric(float64(s.Calls("Decrypt"))/float64(b.N), "decrypts/op")
	if n := s.Calls("Encrypt"); n != b.N {
		b.Fatalf("%d KMS Encrypt calls for %d rotations to a KMS key, want one each", n, b.N)
	}
}
