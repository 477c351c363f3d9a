package keys

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/faults"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// benchDEKs is how many wrapped DEKs BenchmarkRotate rotates.
const benchDEKs = 100_000

// fillDEKs writes n wrapped DEKs under the current generation, in parallel.
func fillDEKs(b *testing.B, k *Keychain, n int) {
	ctx := context.Background()
	kk, err := k.currentKEK(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	const workers = 32
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dek := make([]byte, KeySize)
			for i := w; i < n; i += workers {
				var id [16]byte
				rand.Read(id[:])
				rand.Read(dek)
				if err := k.writeWrapped(ctx, kk, id, dek); err != nil {
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
// it. Run: go test -run XXX -bench BenchmarkRotate -benchtime 1x ./keys/
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
				freshState(b)
				k, err := Init(ctx, st, testRepoID, rawKey(b, 0))
				if err != nil {
					b.Fatal(err)
				}
				fillDEKs(b, k, benchDEKs-1)
				opts := RotateOptions{Workers: workers, LeaseDuration: time.Minute}
				var rewrapped int64
				var elapsed, rewrap, del time.Duration
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					start := time.Now()
					if err := k.StartRotation(ctx, rawKey(b, byte(i+1)), opts); err != nil {
						b.Fatal(err)
					}
					var last Progress
					var retireAt, deleteAt time.Time
					err := k.RunRotation(ctx, func(p Progress) {
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
// second calls HelpRotation right after the switch, as a daemon that sees
// the rotation record would); and, for comparison, one keychain with 32
// workers. The helper calls HelpRotation as a daemon would, again every
// ShardPoll (250 ms) until the rotation is finished, so it re-wraps shards
// and, after the retire commit, deletes. Reported: DEKs/s for the whole
// rotation (switch to deleted) and for the re-wrap phase (switch to the
// retire commit), the shards the helper re-wrapped and the share of the
// deletes it did. Run:
//
//	go test -run XXX -bench BenchmarkRotateShared -benchtime 1x ./keys/
func BenchmarkRotateShared(b *testing.B) {
	for _, lat := range []time.Duration{time.Millisecond, 2 * time.Millisecond} {
		for _, cfg := range []struct {
			name             string
			helpers, workers int
		}{{"1x16", 0, 16}, {"2x16", 1, 16}, {"1x32", 0, 32}} {
			b.Run(fmt.Sprintf("latency=%s/%s", lat, cfg.name), func(b *testing.B) {
				ctx := context.Background()
				fst := faults.New(mem.New())
				freshState(b)
				k, err := Init(ctx, fst, testRepoID, rawKey(b, 0))
				if err != nil {
					b.Fatal(err)
				}
				fillDEKs(b, k, sharedDEKs-1)
				opts := RotateOptions{Workers: cfg.workers, LeaseDuration: time.Minute}
				k.SetRotateOptions(opts)
				keys := []*Material{rawKey(b, 0)}
				for i := 0; i < b.N; i++ {
					keys = append(keys, rawKey(b, byte(i+1)))
				}
				var helpers []*Keychain
				for range cfg.helpers {
					h, err := Open(ctx, fst, testRepoID, keys...)
					if err != nil {
						b.Fatal(err)
					}
					h.SetRotateOptions(opts)
					helpers = append(helpers, h)
				}
				fst.Add(faults.Rule{Latency: lat})
				var rewrapped, helperShards, helperDeleted int64
				var elapsed, rewrap time.Duration
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					start := time.Now()
					if err := k.StartRotation(ctx, keys[i+1], opts); err != nil {
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
								if err := h.HelpRotation(ctx, func(p Progress) { last = p }); err != nil {
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
					err := k.RunRotation(ctx, func(p Progress) {
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
