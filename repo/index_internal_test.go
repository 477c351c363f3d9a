package repo

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/snapcrypt/snapcrypt/keys"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// heldGets holds the first read of one object until released.
type heldGets struct {
	store.Store
	mu      sync.Mutex
	name    string
	started chan struct{}
	gate    chan struct{}
}

func (s *heldGets) hold(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.name, s.started, s.gate = name, make(chan struct{}), make(chan struct{})
}

func (s *heldGets) wait(name string) {
	s.mu.Lock()
	held := name == s.name
	if held {
		s.name = "" // the first read of it waits, as a load reads it once
	}
	started, gate := s.started, s.gate
	s.mu.Unlock()
	if held {
		close(started)
		<-gate
	}
}

func (s *heldGets) Get(ctx context.Context, name string) ([]byte, error) {
	s.wait(name)
	return s.Store.Get(ctx, name)
}

// GetRange is held too: whole objects are read with a bounded ranged read
// (store.GetBounded).
func (s *heldGets) GetRange(ctx context.Context, name string, off, length int64) ([]byte, error) {
	s.wait(name)
	return s.Store.GetRange(ctx, name, off, length)
}

// TestLoadDuringReplace: an index object read while the index is replaced
// is not merged into the new index (it may list packs the replacement
// dropped), nor reported as a failure; the next load merges it.
func TestLoadDuringReplace(t *testing.T) {
	ctx := context.Background()
	k := make([]byte, 32)
	rand.Read(k)
	m, err := keys.NewRawKey(k)
	if err != nil {
		t.Fatal(err)
	}
	st := mem.New()
	w, err := Init(ctx, st, m)
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	for _, name := range []string{"a", "b"} { // a snapshot, and an index object, each
		data := make([]byte, 100<<10)
		rand.Read(data)
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := w.TakeSnapshot(ctx, []string{src}, SnapshotOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var objs []ObjectID
	st.List(ctx, "index/", func(fi store.Info) error {
		id, err := ParseObjectID(strings.TrimPrefix(fi.Name, "index/"))
		if err == nil {
			objs = append(objs, id)
		}
		return nil
	})
	if len(objs) != 2 {
		t.Fatalf("%d index objects, want 2", len(objs))
	}
	hs := &heldGets{Store: st}
	r, err := Open(ctx, hs, Options{}, m)
	if err != nil {
		t.Fatal(err)
	}
	kept, err := r.readIndex(ctx, objs[0])
	if err != nil {
		t.Fatal(err)
	}
	other, err := r.readIndex(ctx, objs[1])
	if err != nil {
		t.Fatal(err)
	}
	inOther := func() int { // packs of the other object in the index
		n := 0
		for _, p := range other {
			if r.index.Has(p.Blobs[0].Type, p.Blobs[0].ID) {
				n++
			}
		}
		return n
	}
	r.index.Replace(kept, objs[:1])
	if inOther() != 0 {
		t.Fatal("the packs of a replaced index object are still in the index")
	}

	hs.hold(indexName(objs[1]))
	done := make(chan error, 1)
	var failed map[ObjectID]error
	go func() {
		var err error
		failed, err = r.LoadIndexPartial(ctx)
		done <- err
	}()
	<-hs.started
	r.index.Replace(kept, objs[:1]) // while the load reads objs[1]
	close(hs.gate)
	if err := <-done; err != nil || len(failed) != 0 {
		t.Fatalf("load: %v, failed %v", err, failed)
	}
	if n := inOther(); n != 0 {
		t.Errorf("%d packs of an index object read during a replace were merged", n)
	}
	hs.hold("") // nothing held
	if failed, err := r.LoadIndexPartial(ctx); err != nil || len(failed) != 0 {
		t.Fatalf("load: %v, failed %v", err, failed)
	}
	if n := inOther(); n != len(other) {
		t.Errorf("the next load merged %d of %d packs", n, len(other))
	}
}
