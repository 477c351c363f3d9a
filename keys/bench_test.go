package keys

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/store"
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
