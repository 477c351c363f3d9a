package retry_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/faults"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
	"github.com/snapcrypt/snapcrypt/repo/store/retry"
	"github.com/snapcrypt/snapcrypt/repo/store/storetest"
)

func newLocal(t *testing.T) *local.Store {
	t.Helper()
	s, err := local.Init(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// localStores is a retrying store over a counting faults.Store over a
// local store, which has every capability.
func localStores(t *testing.T, opts retry.Options) (*retry.Store, *faults.Store, *local.Store, *sleeps) {
	sl := &sleeps{}
	if opts.Sleep == nil {
		opts.Sleep = sl.sleep
	}
	l := newLocal(t)
	f := faults.New(l)
	return retry.New(f, opts), f, l, sl
}

// TestConformanceLocal runs the suite over a local store, whose
// capabilities the retrying store forwards.
func TestConformanceLocal(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return retry.New(newLocal(t), retry.Options{}) })
}

// TestConformanceUnderFaultsLocal: as TestConformanceUnderFaults, over a
// local store, with faults in every capability as well (listings by name
// failing halfway too, deletions of a prefix losing their response), each
// of which must be retried.
func TestConformanceUnderFaultsLocal(t *testing.T) {
	capOps := []faults.Op{faults.ReadRange, faults.ReadSmall, faults.ListNames, faults.DeletePrefix, faults.PurgeTrash, faults.RemoveStale}
	var mu sync.Mutex
	retried := map[faults.Op]int{}
	onRetry := func(_, _ string, _ int, err error) {
		for _, op := range capOps {
			msg := err.Error()
			if errors.Is(err, faults.ErrInjected) && (strings.HasPrefix(msg, string(op)+" ") || strings.HasPrefix(msg, string(op)+":")) {
				mu.Lock()
				retried[op]++
				mu.Unlock()
			}
		}
	}
	storetest.Run(t, func(t *testing.T) store.Store {
		s, f, _, _ := localStores(t, retry.Options{Attempts: 30, OnRetry: onRetry})
		f.Add(faults.Rule{Ops: []faults.Op{faults.PurgeTrash, faults.RemoveStale}, Every: 2}) // few calls: fail for sure
		f.Add(faults.Rule{Ops: []faults.Op{faults.Get, faults.GetRange, faults.Stat, faults.List}, Probability: 0.25})
		f.Add(faults.Rule{Ops: []faults.Op{faults.List, faults.ListNames}, Probability: 0.25, ListAfter: 1})
		f.Add(faults.Rule{Ops: []faults.Op{faults.Create, faults.Put, faults.DeletePrefix}, Probability: 0.25, Dropped: true})
		f.Add(faults.Rule{Ops: []faults.Op{faults.Create, faults.Put, faults.ReadRange, faults.ReadSmall, faults.ListNames, faults.DeletePrefix}, Probability: 0.25})
		return s
	})
	for _, op := range capOps {
		if retried[op] == 0 {
			t.Errorf("no %s was retried: the faults did not reach it", op)
		}
	}
}

// TestCapabilitiesForwarded: over a local store, the retrying store is
// capable of everything the local store is, and the functions of package
// store take the fast paths through it, not Get, GetRange, List or Delete.
func TestCapabilitiesForwarded(t *testing.T) {
	ctx := context.Background()
	s, f, l, _ := localStores(t, retry.Options{})
	for i := range 3 {
		if err := l.Create(ctx, fmt.Sprintf("deks/g/%d", i), []byte("wrapped")); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := store.ReadSmall(ctx, s, "deks/g/0", 77); err != nil || string(b) != "wrapped" {
		t.Fatalf("ReadSmall = %q, %v", b, err)
	}
	var names []string
	if err := store.ListNames(ctx, s, "deks/g/", func(n string) error { names = append(names, n); return nil }); err != nil || len(names) != 3 {
		t.Fatalf("ListNames = %v, %v", names, err)
	}
	buf := make([]byte, 4)
	if b, err := store.ReadRange(ctx, s, "deks/g/1", 1, 4, buf, false); err != nil || string(b) != "rapp" || !storetest.Inside(b, buf) {
		t.Fatalf("ReadRange = %q, %v", b, err)
	}
	store.Prefetch(ctx, s, []string{"deks/g/2"}, 77)
	if err := store.DeletePrefix(ctx, s, "deks/g/"); err != nil {
		t.Fatal(err)
	}
	if err := store.PurgeTrash(ctx, s, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := store.RemoveStale(ctx, s, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, op := range []faults.Op{faults.ReadSmall, faults.Prefetch, faults.ListNames, faults.ReadRange, faults.DeletePrefix, faults.PurgeTrash, faults.RemoveStale} {
		if n := f.Calls(op); n != 1 {
			t.Errorf("%d calls of %s, want 1", n, op)
		}
	}
	for _, op := range []faults.Op{faults.Get, faults.GetRange, faults.List, faults.Delete} {
		if n := f.Calls(op); n != 0 {
			t.Errorf("%d calls of %s, want none: a generic path ran", n, op)
		}
	}
	if got := listAll(t, l, "deks/"); len(got) != 0 {
		t.Errorf("left after DeletePrefix: %v", got)
	}
}

// TestCapabilitiesNotClaimed: over a store without capabilities the
// retrying store claims none, and its methods do the generic thing with
// retries.
func TestCapabilitiesNotClaimed(t *testing.T) {
	ctx := context.Background()
	s, f, _ := newStores(retry.Options{})
	if _, ok := store.Capable[store.NameLister](s); ok {
		t.Error("Capable NameLister over mem")
	}
	if _, ok := store.Capable[store.PrefixDeleter](s); ok {
		t.Error("Capable PrefixDeleter over mem")
	}
	if _, ok := store.Capable[store.SmallReader](s); ok {
		t.Error("Capable SmallReader over mem")
	}
	if _, ok := store.Capable[store.Prefetcher](s); ok {
		t.Error("Capable Prefetcher over mem")
	}
	store.Prefetch(ctx, s, []string{"deks/g/a"}, 77)
	if n := f.Calls(faults.Prefetch); n != 0 {
		t.Errorf("Prefetch over mem reached the inner store %d times", n)
	}
	for _, n := range []string{"deks/g/a", "deks/g/b", "deks/h/c"} {
		if err := f.Inner().Put(ctx, n, []byte(n)); err != nil {
			t.Fatal(err)
		}
	}
	f.Add(faults.Rule{Ops: []faults.Op{faults.List, faults.Delete, faults.GetRange}, Times: 3})
	if err := s.DeletePrefix(ctx, "deks/g/"); err != nil {
		t.Fatalf("DeletePrefix: %v", err)
	}
	if got := listAll(t, f.Inner(), ""); len(got) != 1 || got[0].Name != "deks/h/c" {
		t.Errorf("after DeletePrefix: %v", got)
	}
	if b, err := s.ReadSmall(ctx, "deks/h/c", 8); err != nil || string(b) != "deks/h/c" {
		t.Errorf("ReadSmall = %q, %v", b, err)
	}
	if _, err := s.ReadSmall(ctx, "deks/h/c", 7); !errors.Is(err, store.ErrTooLarge) {
		t.Errorf("ReadSmall of a larger object: %v", err)
	}
	if f.Injected() != 3 {
		t.Errorf("%d faults injected, want 3", f.Injected())
	}
	if n, err := s.RemoveStale(ctx, 0); n != 0 || err != nil {
		t.Errorf("RemoveStale = %d, %v; want 0, nil", n, err)
	}
	if err := s.PurgeTrash(ctx, nil); err != nil {
		t.Errorf("PurgeTrash: %v", err)
	}
}

func listAll(t *testing.T, s store.Reader, prefix string) []store.Info {
	t.Helper()
	var infos []store.Info
	if err := s.List(context.Background(), prefix, func(i store.Info) error { infos = append(infos, i); return nil }); err != nil {
		t.Fatal(err)
	}
	return infos
}

// TestCapabilitiesRetried: each capability's transient failures are
// retried, and a permanent one is not.
func TestCapabilitiesRetried(t *testing.T) {
	ctx := context.Background()
	s, f, l, sl := localStores(t, retry.Options{})
	for i := range 10 {
		if err := l.Create(ctx, fmt.Sprintf("deks/g/%02d", i), []byte("wrapped")); err != nil {
			t.Fatal(err)
		}
	}

	f.Add(faults.Rule{Ops: []faults.Op{faults.ReadSmall}, Times: 2})
	if b, err := s.ReadSmall(ctx, "deks/g/00", 77); err != nil || string(b) != "wrapped" {
		t.Errorf("ReadSmall = %q, %v", b, err)
	}
	if n, w := f.Calls(faults.ReadSmall), sl.count(); n != 3 || w != 2 {
		t.Errorf("ReadSmall: %d calls, %d waits; want 3, 2", n, w)
	}
	if _, err := s.ReadSmall(ctx, "deks/g/00", 6); !errors.Is(err, store.ErrTooLarge) || f.Calls(faults.ReadSmall) != 4 {
		t.Errorf("ReadSmall of a larger object: %v after %d calls; want ErrTooLarge after one more", err, f.Calls(faults.ReadSmall)-3)
	}

	// A listing that breaks off twice after 4 names: every name once.
	f.Add(faults.Rule{Ops: []faults.Op{faults.ListNames}, ListAfter: 4, Times: 2})
	var names []string
	if err := s.ListNames(ctx, "deks/g/", func(n string) error { names = append(names, n); return nil }); err != nil {
		t.Fatalf("ListNames: %v", err)
	}
	slices.Sort(names)
	if len(names) != 10 || len(slices.Compact(slices.Clone(names))) != 10 || f.Calls(faults.ListNames) != 3 {
		t.Errorf("ListNames delivered %v in %d calls; want each of 10 names once, in 3 calls", names, f.Calls(faults.ListNames))
	}
	// The callback's error ends the listing at once.
	stop := errors.New("stop")
	before := f.Calls(faults.ListNames)
	if err := s.ListNames(ctx, "deks/g/", func(string) error { return stop }); !errors.Is(err, stop) || f.Calls(faults.ListNames) != before+1 {
		t.Errorf("ListNames with a failing callback: %v after %d calls", err, f.Calls(faults.ListNames)-before)
	}

	// A deletion whose response is lost: the retry finds nothing left.
	f.Add(faults.Rule{Ops: []faults.Op{faults.DeletePrefix}, Dropped: true, Times: 1})
	if err := s.DeletePrefix(ctx, "deks/g/"); err != nil || f.Calls(faults.DeletePrefix) != 2 {
		t.Errorf("DeletePrefix: %v after %d calls; want success after 2", err, f.Calls(faults.DeletePrefix))
	}
	if got := listAll(t, l, ""); len(got) != 0 {
		t.Errorf("left after DeletePrefix: %v", got)
	}

	f.Add(faults.Rule{Ops: []faults.Op{faults.PurgeTrash}, Times: 1})
	if err := s.PurgeTrash(ctx, nil); err != nil || f.Calls(faults.PurgeTrash) != 2 {
		t.Errorf("PurgeTrash: %v after %d calls; want success after 2", err, f.Calls(faults.PurgeTrash))
	}
	es, _ := os.ReadDir(l.Location())
	for _, e := range es {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left in the store's directory after PurgeTrash: %s", e.Name())
		}
	}

	// Two leftovers of killed writers; the first attempt removes them and
	// loses its response: the count includes them.
	old := time.Now().Add(-2 * time.Hour)
	for _, n := range []string{".tmp-1", ".tmp-2"} {
		p := filepath.Join(l.Location(), n)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	f.Add(faults.Rule{Ops: []faults.Op{faults.RemoveStale}, Dropped: true, Times: 1})
	if n, err := s.RemoveStale(ctx, time.Hour); n != 2 || err != nil || f.Calls(faults.RemoveStale) != 2 {
		t.Errorf("RemoveStale = %d, %v after %d calls; want 2, nil after 2", n, err, f.Calls(faults.RemoveStale))
	}
}
