package faults_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/faults"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
	"github.com/snapcrypt/snapcrypt/repo/store/storetest"
)

func TestConformanceWithoutRules(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return faults.New(mem.New()) })
}

func TestEvery(t *testing.T) {
	ctx := context.Background()
	s := faults.New(mem.New())
	s.Add(faults.Rule{Ops: []faults.Op{faults.Put, faults.Stat}, Every: 3})
	var failed []int
	for i := 1; i <= 9; i++ {
		if err := s.Put(ctx, "obj", []byte{byte(i)}); err != nil {
			if !errors.Is(err, faults.ErrInjected) {
				t.Fatalf("Put %d: %v", i, err)
			}
			failed = append(failed, i)
		}
	}
	if want := []int{3, 6, 9}; !slices.Equal(failed, want) {
		t.Errorf("failed Puts %v, want %v", failed, want)
	}
	// Each method counts on its own.
	if _, err := s.Stat(ctx, "obj"); err != nil {
		t.Errorf("first Stat failed: %v", err)
	}
	if _, err := s.Get(ctx, "obj"); err != nil {
		t.Errorf("Get is not in the rule but failed: %v", err)
	}
	if got := s.Calls(faults.Put); got != 9 {
		t.Errorf("Calls(Put) = %d, want 9", got)
	}
	if got := s.Injected(); got != 3 {
		t.Errorf("Injected = %d, want 3", got)
	}
}

func TestPrefixTimesAndRemove(t *testing.T) {
	ctx := context.Background()
	s := faults.New(mem.New())
	myErr := errors.New("disk on fire")
	remove := s.Add(faults.Rule{Prefix: "keyring/", Times: 2, Err: myErr})
	if err := s.Create(ctx, "deks/a", []byte("x")); err != nil {
		t.Fatalf("name outside the prefix failed: %v", err)
	}
	for i := range 2 {
		err := s.Create(ctx, "keyring/1", []byte("x"))
		if !errors.Is(err, myErr) {
			t.Fatalf("Create %d: %v, want the rule's error", i, err)
		}
	}
	if err := s.Create(ctx, "keyring/1", []byte("x")); err != nil {
		t.Fatalf("Create after Times faults: %v", err)
	}
	remove2 := s.Add(faults.Rule{Prefix: "keyring/"})
	remove2()
	remove()
	if _, err := s.Get(ctx, "keyring/1"); err != nil {
		t.Fatalf("Get after removing the rules: %v", err)
	}
	s.Add(faults.Rule{})
	s.Reset()
	if _, err := s.Get(ctx, "keyring/1"); err != nil {
		t.Fatalf("Get after Reset: %v", err)
	}
}

func TestFailedWriteDoesNothing(t *testing.T) {
	ctx := context.Background()
	s := faults.New(mem.New())
	s.Add(faults.Rule{Ops: []faults.Op{faults.Create, faults.Put, faults.Delete}})
	for _, err := range []error{s.Create(ctx, "a", []byte("x")), s.Put(ctx, "b", []byte("x"))} {
		if !errors.Is(err, faults.ErrInjected) {
			t.Fatalf("write: %v, want ErrInjected", err)
		}
	}
	if err := s.Inner().Put(ctx, "c", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "c"); !errors.Is(err, faults.ErrInjected) {
		t.Fatalf("Delete: %v, want ErrInjected", err)
	}
	var names []string
	s.Inner().List(ctx, "", func(info store.Info) error { names = append(names, info.Name); return nil })
	if !slices.Equal(names, []string{"c"}) {
		t.Errorf("inner store holds %v, want [c]", names)
	}
}

func TestDropped(t *testing.T) {
	ctx := context.Background()
	s := faults.New(mem.New())
	s.Add(faults.Rule{Ops: []faults.Op{faults.Create, faults.Put, faults.Delete}, Dropped: true})
	if err := s.Create(ctx, "a", []byte("1")); !errors.Is(err, faults.ErrInjected) {
		t.Fatalf("Create: %v, want ErrInjected", err)
	}
	if err := s.Put(ctx, "b", []byte("2")); !errors.Is(err, faults.ErrInjected) {
		t.Fatalf("Put: %v, want ErrInjected", err)
	}
	for name, want := range map[string]string{"a": "1", "b": "2"} {
		got, err := s.Get(ctx, name)
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; the dropped write must have happened", name, got, err)
		}
	}
	if err := s.Delete(ctx, "a"); !errors.Is(err, faults.ErrInjected) {
		t.Fatalf("Delete: %v, want ErrInjected", err)
	}
	if _, err := s.Get(ctx, "a"); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("Get after a dropped Delete: %v, want ErrNotExist", err)
	}
	// A call that fails on its own reports its own error.
	if err := s.Create(ctx, "b", []byte("x")); !errors.Is(err, store.ErrExist) {
		t.Errorf("dropped Create of an existing name: %v, want ErrExist", err)
	}
}

func TestListAfter(t *testing.T) {
	ctx := context.Background()
	s := faults.New(mem.New())
	for i := range 5 {
		s.Inner().Put(ctx, fmt.Sprintf("x/%d", i), nil)
	}
	s.Add(faults.Rule{Ops: []faults.Op{faults.List}, ListAfter: 2, Times: 1})
	var seen []string
	err := s.List(ctx, "x/", func(info store.Info) error { seen = append(seen, info.Name); return nil })
	if !errors.Is(err, faults.ErrInjected) {
		t.Fatalf("List: %v, want ErrInjected", err)
	}
	if !slices.Equal(seen, []string{"x/0", "x/1"}) {
		t.Errorf("List delivered %v before failing, want [x/0 x/1]", seen)
	}
	seen = nil
	if err := s.List(ctx, "x/", func(info store.Info) error { seen = append(seen, info.Name); return nil }); err != nil || len(seen) != 5 {
		t.Errorf("second List: %v, %d objects; want all 5", err, len(seen))
	}
}

func TestLatencyHonoursContext(t *testing.T) {
	s := faults.New(mem.New())
	s.Add(faults.Rule{Latency: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Get(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a canceled context during latency: %v", err)
	}
}

func TestLatencyDelays(t *testing.T) {
	s := faults.New(mem.New())
	s.Add(faults.Rule{Latency: time.Millisecond})
	// Not a timing assertion: the call must merely complete after the delay.
	if err := s.Put(context.Background(), "a", []byte("x")); err != nil {
		t.Fatal(err)
	}
}

func TestProbability(t *testing.T) {
	ctx := context.Background()
	s := faults.New(mem.New())
	s.Add(faults.Rule{Ops: []faults.Op{faults.Stat}, Probability: 0.5})
	failed := 0
	for range 1000 {
		if _, err := s.Stat(ctx, "a"); errors.Is(err, faults.ErrInjected) {
			failed++
		}
	}
	// Outside [350, 650] has a chance below 1e-20.
	if failed < 350 || failed > 650 {
		t.Errorf("%d of 1000 calls failed with probability 0.5", failed)
	}
}
