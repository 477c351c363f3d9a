package repo

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

func storeNames(t *testing.T, st store.Store) []string {
	t.Helper()
	var names []string
	if err := st.List(context.Background(), "", func(fi store.Info) error { names = append(names, fi.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	return names
}

// TestForgetSnapshot forgets one of three snapshots: only its manifest goes,
// the others list, restore and check clean, and forgetting it again is not
// an error.
func TestForgetSnapshot(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r, m := newTestRepo(t, st)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("shared content"), 0o644); err != nil {
		t.Fatal(err)
	}
	var ids []ObjectID
	for i, host := range []string{"h1", "h2", "h3"} {
		when := time.Date(2024, 1, 1+i, 12, 0, 0, 0, time.FixedZone("x", 3600))
		res, err := r.TakeSnapshot(ctx, []string{src}, SnapshotOptions{Host: host, Time: when})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Snapshot.Time.Equal(when) || res.Snapshot.Time.Location() != time.UTC || res.Snapshot.Host != host {
			t.Fatalf("snapshot recorded time %v host %q, want %v (in UTC) and %q", res.Snapshot.Time, res.Snapshot.Host, when, host)
		}
		ids = append(ids, res.Snapshot.ID)
	}
	before := storeNames(t, st)
	if err := r.ForgetSnapshot(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	after := storeNames(t, st)
	gone := snapshotName(ids[1])
	want := slices.DeleteFunc(slices.Clone(before), func(n string) bool { return n == gone })
	if !slices.Equal(after, want) {
		t.Fatalf("forget changed more than %s:\nbefore %v\nafter  %v", gone, before, after)
	}
	// A fresh reader (another process) and this one both list the other two.
	for _, rr := range []*Repository{r, reopen(t, st, m)} {
		snaps, err := rr.Snapshots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(snaps) != 2 || snaps[0].ID != ids[0] || snaps[1].ID != ids[2] {
			t.Fatalf("after forget: %d snapshots listed", len(snaps))
		}
		if _, err := rr.LoadSnapshot(ctx, ids[1]); err == nil {
			t.Fatal("the forgotten snapshot still loads")
		}
	}
	res, err := r.Check(ctx, CheckOptions{ReadData: true})
	if err != nil || len(res.Problems) != 0 {
		t.Fatalf("check after forget: %v %v", err, res)
	}
	if err := r.ForgetSnapshot(ctx, ids[1]); err != nil {
		t.Fatalf("forgetting a forgotten snapshot: %v", err)
	}
}

// TestSnapshotsDropsForgottenFromCache: a reader that cached a manifest
// drops it when a listing no longer shows it (forgotten by another
// process), so its cache does not grow with every forget.
func TestSnapshotsDropsForgottenFromCache(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	r, m := newTestRepo(t, st)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var ids []ObjectID
	for i := 0; i < 3; i++ {
		res, err := r.TakeSnapshot(ctx, []string{src}, SnapshotOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Snapshot.ID)
	}
	other := reopen(t, st, m)
	for _, id := range ids[:2] {
		if err := other.ForgetSnapshot(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Snapshots(ctx); err != nil {
		t.Fatal(err)
	}
	r.snapMu.Lock()
	n := len(r.snaps)
	_, kept := r.snaps[ids[2]]
	r.snapMu.Unlock()
	if n != 1 || !kept {
		t.Fatalf("cache holds %d manifests after two were forgotten elsewhere, want only the remaining one", n)
	}
}

// reopen opens the repository in st anew, as another process would.
func reopen(t *testing.T, st store.Store, m *keys.Material) *Repository {
	t.Helper()
	r, err := Open(context.Background(), st, Options{}, m)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// forgetAfterList is a store in which one manifest is forgotten right after
// each listing of snapshots/ has named it.
type forgetAfterList struct {
	store.Store
	victim string
}

func (s *forgetAfterList) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	err := s.Store.List(ctx, prefix, fn)
	if prefix == "snapshots/" && s.victim != "" {
		s.Store.Delete(ctx, s.victim)
	}
	return err
}

// TestSnapshotsForgottenWhileListing: a manifest forgotten between the
// listing and its read is gone, not unreadable, and Snapshots succeeds.
func TestSnapshotsForgottenWhileListing(t *testing.T) {
	ctx := context.Background()
	st := &forgetAfterList{Store: mem.New()}
	w, m := newTestRepo(t, st)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var ids []ObjectID
	for i := 0; i < 2; i++ {
		res, err := w.TakeSnapshot(ctx, []string{src}, SnapshotOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.Snapshot.ID)
	}
	r := reopen(t, st, m) // nothing cached
	st.victim = snapshotName(ids[0])
	snaps, failed, err := r.SnapshotsPartial(ctx)
	if err != nil || len(failed) != 0 || len(snaps) != 1 || snaps[0].ID != ids[1] {
		t.Fatalf("SnapshotsPartial: %d snapshots, failed %v, %v", len(snaps), failed, err)
	}
}
