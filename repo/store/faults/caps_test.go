package faults_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/faults"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
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

// TestConformanceLocal runs the suite over a local store, whose
// capabilities the faults.Store forwards.
func TestConformanceLocal(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return faults.New(newLocal(t)) })
}

func count(t *testing.T, s store.Reader, prefix string) int {
	t.Helper()
	n := 0
	if err := s.List(context.Background(), prefix, func(store.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDeletePrefixFaults: the method DeletePrefix is a fault point of its
// own, over a store with the capability and over one without: a fault
// before the call deletes nothing, a lost response deletes all, and rules
// for Delete or List or another prefix do not touch it. store.DeletePrefix
// calls it over a store with the capability, and over one without goes
// object by object through the fault points of List and Delete.
func TestDeletePrefixFaults(t *testing.T) {
	ctx := context.Background()
	for _, inner := range []store.Store{newLocal(t), mem.New()} {
		s := faults.New(inner)
		_, capable := store.Capable[store.PrefixDeleter](s)
		what := fmt.Sprintf("over %T", inner)
		if _, want := inner.(*local.Store); capable != want {
			t.Errorf("%s: Capable PrefixDeleter = %v, want %v", what, capable, want)
		}
		for i := range 5 {
			if err := inner.Put(ctx, fmt.Sprintf("deks/g/%d", i), []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		s.Add(faults.Rule{Ops: []faults.Op{faults.Delete, faults.List, faults.ListNames}})
		s.Add(faults.Rule{Ops: []faults.Op{faults.DeletePrefix}, Prefix: "other/"})
		remove := s.Add(faults.Rule{Ops: []faults.Op{faults.DeletePrefix}, Prefix: "deks/", Times: 1})
		err := s.DeletePrefix(ctx, "deks/g/")
		if !errors.Is(err, faults.ErrInjected) || count(t, inner, "deks/") != 5 {
			t.Errorf("%s: DeletePrefix = %v, %d objects left; want ErrInjected, 5", what, err, count(t, inner, "deks/"))
		}
		remove()
		s.Add(faults.Rule{Ops: []faults.Op{faults.DeletePrefix}, Prefix: "deks/", Dropped: true, Times: 1})
		err = s.DeletePrefix(ctx, "deks/g/")
		if !errors.Is(err, faults.ErrInjected) || count(t, inner, "deks/") != 0 {
			t.Errorf("%s: DeletePrefix with a lost response = %v, %d objects left; want ErrInjected, 0", what, err, count(t, inner, "deks/"))
		}
		if err := s.DeletePrefix(ctx, "deks/g/"); err != nil {
			t.Errorf("%s: DeletePrefix after the rule's faults: %v", what, err)
		}
		if err := s.DeletePrefix(ctx, "other/g/"); !errors.Is(err, faults.ErrInjected) {
			t.Errorf("%s: DeletePrefix(other/g/) = %v, want ErrInjected", what, err)
		}
		if n := s.Calls(faults.DeletePrefix); n != 4 {
			t.Errorf("%s: %d calls of DeletePrefix, want 4", what, n)
		}
		if n := s.Calls(faults.Delete) + s.Calls(faults.List); n != 0 {
			t.Errorf("%s: %d calls of Delete and List through the faults, want none", what, n)
		}

		if err := inner.Put(ctx, "deks/h/0", []byte("x")); err != nil {
			t.Fatal(err)
		}
		err = store.DeletePrefix(ctx, s, "deks/h/")
		switch {
		case capable && (err != nil || s.Calls(faults.DeletePrefix) != 5 || count(t, inner, "deks/") != 0):
			t.Errorf("%s: store.DeletePrefix = %v, %d calls of DeletePrefix; want success in one more", what, err, s.Calls(faults.DeletePrefix))
		case !capable && (!errors.Is(err, faults.ErrInjected) || s.Calls(faults.List) != 1 || s.Calls(faults.DeletePrefix) != 4):
			t.Errorf("%s: store.DeletePrefix = %v after %d calls of List and %d of DeletePrefix; want the fault of List after 1 and 4", what, err, s.Calls(faults.List), s.Calls(faults.DeletePrefix))
		}
	}
}

// TestCapabilityFaults: every other capability is a fault point too.
func TestCapabilityFaults(t *testing.T) {
	ctx := context.Background()
	l := newLocal(t)
	s := faults.New(l)
	for i := range 5 {
		if err := l.Put(ctx, fmt.Sprintf("deks/g/%d", i), []byte("wrapped")); err != nil {
			t.Fatal(err)
		}
	}
	s.Add(faults.Rule{Ops: []faults.Op{faults.ReadRange, faults.ReadSmall, faults.PurgeTrash, faults.RemoveStale}, Times: 4})
	s.Add(faults.Rule{Ops: []faults.Op{faults.ListNames}, ListAfter: 2, Times: 1})
	if _, err := store.ReadRange(ctx, s, "deks/g/0", 0, 3, make([]byte, 3), false); !errors.Is(err, faults.ErrInjected) {
		t.Errorf("ReadRange: %v", err)
	}
	if _, err := store.ReadSmall(ctx, s, "deks/g/0", 77); !errors.Is(err, faults.ErrInjected) {
		t.Errorf("ReadSmall: %v", err)
	}
	if err := store.PurgeTrash(ctx, s, nil); !errors.Is(err, faults.ErrInjected) {
		t.Errorf("PurgeTrash: %v", err)
	}
	if _, err := store.RemoveStale(ctx, s, time.Hour); !errors.Is(err, faults.ErrInjected) {
		t.Errorf("RemoveStale: %v", err)
	}
	var names []string
	err := store.ListNames(ctx, s, "deks/", func(n string) error { names = append(names, n); return nil })
	if !errors.Is(err, faults.ErrInjected) || len(names) != 2 {
		t.Errorf("ListNames = %v, %v; want 2 names, then ErrInjected", names, err)
	}
	names = nil
	if err := store.ListNames(ctx, s, "deks/", func(n string) error { names = append(names, n); return nil }); err != nil || len(names) != 5 {
		t.Errorf("ListNames after the fault = %v, %v", names, err)
	}
	if b, err := store.ReadSmall(ctx, s, "deks/g/0", 77); err != nil || string(b) != "wrapped" {
		t.Errorf("ReadSmall after the faults = %q, %v", b, err)
	}
	for _, op := range []faults.Op{faults.ReadRange, faults.ReadSmall, faults.PurgeTrash, faults.RemoveStale, faults.ListNames} {
		if s.Calls(op) == 0 {
			t.Errorf("no calls of %s counted", op)
		}
	}
	if s.Injected() != 5 {
		t.Errorf("%d faults injected, want 5", s.Injected())
	}
	if n := s.Calls(faults.Get) + s.Calls(faults.GetRange) + s.Calls(faults.List); n != 0 {
		t.Errorf("%d calls of Get, GetRange and List, want none: a generic path ran", n)
	}
}
