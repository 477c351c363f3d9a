package rotation

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// prefetchStore is a store in memory that lists names in an order of its
// own (as the local store does, so a coordinator preloads) and records
// what it is asked to prefetch.
type prefetchStore struct {
	*mem.Store
	mu      sync.Mutex
	batches [][]string
	maxes   []int
}

func (s *prefetchStore) ListNames(ctx context.Context, prefix string, fn func(string) error) error {
	return s.List(ctx, prefix, func(i store.Info) error { return fn(i.Name) })
}

func (s *prefetchStore) Prefetch(ctx context.Context, names []string, max int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, append([]string(nil), names...))
	s.maxes = append(s.maxes, max)
}

// TestPreloadPrefetches: a coordinator over a store that prefetches
// prefetches every single wrapped DEK of the old generation once, in
// batches of at most store.MaxPrefetch, and the rotation ends as it
// would without.
func TestPreloadPrefetches(t *testing.T) {
	ctx := context.Background()
	st := &prefetchStore{Store: mem.New()}
	clock := newFakeClock()
	old := rawKey(t, 1)
	k := mustInit(t, st, old)
	setClock(k, clock.Now)
	deks := makeDEKs(t, k, 3*store.MaxPrefetch/2)
	from := k.Keyring().Current
	var singles []string
	if err := st.List(ctx, keys.GenPrefix(from), func(i store.Info) error {
		singles = append(singles, i.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := k.start(ctx, rawKey(t, 2), testOpts); err != nil {
		t.Fatal(err)
	}
	if err := k.Run(ctx, nil); err != nil {
		t.Fatal(err)
	}
	checkFinished(t, st, clock, deks, rawKey(t, 2))

	seen := map[string]int{}
	for i, b := range st.batches {
		if st.maxes[i] != keys.WrappedSize {
			t.Errorf("a prefetch of %d bytes per object, want %d", st.maxes[i], keys.WrappedSize)
		}
		if len(b) == 0 || len(b) > store.MaxPrefetch {
			t.Errorf("a prefetch of %d names, want 1 to %d", len(b), store.MaxPrefetch)
		}
		for _, name := range b {
			seen[name]++
		}
	}
	for _, name := range singles {
		if seen[name] != 1 {
			t.Errorf("%s prefetched %d times, want once", name, seen[name])
		}
	}
	for name := range seen {
		if !strings.HasPrefix(name, keys.GenPrefix(from)) {
			t.Errorf("prefetched %s, not a wrapped DEK of the old generation", name)
		}
	}
	if len(singles) < store.MaxPrefetch+1 {
		t.Fatalf("only %d single wrapped DEKs: the test wants more than one batch", len(singles))
	}
}
