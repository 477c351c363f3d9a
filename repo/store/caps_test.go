package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// counter is a store with every capability that counts the calls of each
// capability method and serves them from the embedded mem.Store.
type counter struct {
	*mem.Store
	calls map[string]int
}

func newCounter() *counter { return &counter{Store: mem.New(), calls: map[string]int{}} }

func (c *counter) ReadRange(ctx context.Context, name string, off, length int64, buf []byte, direct bool) ([]byte, error) {
	c.calls["ReadRange"]++
	b, err := c.GetRange(ctx, name, off, length)
	return buf[:copy(buf, b)], err
}

func (c *counter) ReadSmall(ctx context.Context, name string, max int) ([]byte, error) {
	c.calls["ReadSmall"]++
	return store.GetBounded(ctx, c.Store, name, int64(max))
}

func (c *counter) Prefetch(ctx context.Context, names []string, max int) {
	c.calls["Prefetch"]++
}

func (c *counter) ListNames(ctx context.Context, prefix string, fn func(string) error) error {
	c.calls["ListNames"]++
	return c.List(ctx, prefix, func(i store.Info) error { return fn(i.Name) })
}

func (c *counter) DeletePrefix(ctx context.Context, prefix string) error {
	c.calls["DeletePrefix"]++
	return nil
}

func (c *counter) PurgeTrash(ctx context.Context, pace func(time.Duration)) error {
	c.calls["PurgeTrash"]++
	return nil
}

func (c *counter) RemoveStale(ctx context.Context, age time.Duration) (int, error) {
	c.calls["RemoveStale"]++
	return 7, nil
}

// decorator has every capability method, whatever its inner store has
// (the methods here only count), and is a store.Decorator.
type decorator struct {
	*counter
	inner store.Store
}

func (d decorator) Inner() store.Store { return d.inner }

// has reports which capabilities Capable finds in st.
func has(st store.Store) map[string]bool {
	m := map[string]bool{}
	_, m["ReadRange"] = store.Capable[store.RangeReader](st)
	_, m["ReadSmall"] = store.Capable[store.SmallReader](st)
	_, m["Prefetch"] = store.Capable[store.Prefetcher](st)
	_, m["ListNames"] = store.Capable[store.NameLister](st)
	_, m["DeletePrefix"] = store.Capable[store.PrefixDeleter](st)
	_, m["PurgeTrash"] = store.Capable[store.TrashPurger](st)
	_, m["RemoveStale"] = store.Capable[store.StaleRemover](st)
	return m
}

// TestCapable: a store has a capability if it has the methods, and a
// decorator only if every store beneath it has them too.
func TestCapable(t *testing.T) {
	capable := newCounter()
	cases := []struct {
		what string
		st   store.Store
		want bool
	}{
		{"mem", mem.New(), false},
		{"a store with the methods", capable, true},
		{"a decorator over mem", decorator{newCounter(), mem.New()}, false},
		{"a decorator over a capable store", decorator{newCounter(), capable}, true},
		{"two decorators over a capable store", decorator{newCounter(), decorator{newCounter(), capable}}, true},
		{"two decorators over mem", decorator{newCounter(), decorator{newCounter(), mem.New()}}, false},
		{"three decorators over mem", decorator{newCounter(), decorator{newCounter(), decorator{newCounter(), mem.New()}}}, false},
	}
	for _, c := range cases {
		for capability, got := range has(c.st) {
			if got != c.want {
				t.Errorf("%s: Capable %s = %v, want %v", c.what, capability, got, c.want)
			}
		}
	}
}

// TestHelpersUseCapability: the functions of package store call the
// capability where the store has it for real, and the generic way where
// not, also under a decorator that has the methods but no capable store
// beneath.
func TestHelpersUseCapability(t *testing.T) {
	ctx := context.Background()
	call := func(st store.Store) {
		t.Helper()
		if err := st.Put(ctx, "deks/g/a", []byte("abc")); err != nil {
			t.Fatal(err)
		}
		if b, err := store.ReadRange(ctx, st, "deks/g/a", 1, 2, make([]byte, 2), false); err != nil || string(b) != "bc" {
			t.Errorf("ReadRange = %q, %v", b, err)
		}
		if b, err := store.ReadSmall(ctx, st, "deks/g/a", 3); err != nil || string(b) != "abc" {
			t.Errorf("ReadSmall = %q, %v", b, err)
		}
		store.Prefetch(ctx, st, []string{"deks/g/a"}, 3)
		n := 0
		if err := store.ListNames(ctx, st, "deks/", func(string) error { n++; return nil }); err != nil || n != 1 {
			t.Errorf("ListNames: %d names, %v", n, err)
		}
		if err := store.PurgeTrash(ctx, st, nil); err != nil {
			t.Errorf("PurgeTrash: %v", err)
		}
		if _, err := store.RemoveStale(ctx, st, time.Hour); err != nil {
			t.Errorf("RemoveStale: %v", err)
		}
		if err := store.DeletePrefix(ctx, st, "deks/"); err != nil {
			t.Errorf("DeletePrefix: %v", err)
		}
	}
	capable := newCounter()
	call(capable)
	for _, m := range []string{"ReadRange", "ReadSmall", "Prefetch", "ListNames", "DeletePrefix", "PurgeTrash", "RemoveStale"} {
		if capable.calls[m] != 1 {
			t.Errorf("over a capable store: %d calls of %s, want 1", capable.calls[m], m)
		}
	}
	if n, _ := store.RemoveStale(ctx, capable, time.Hour); n != 7 {
		t.Errorf("RemoveStale = %d, want the store's 7", n)
	}
	// The counter's DeletePrefix deletes nothing: the object is still
	// there, so the generic list and delete did not run.
	if _, err := capable.Stat(ctx, "deks/g/a"); err != nil {
		t.Errorf("DeletePrefix over a capable store deleted object by object: %v", err)
	}

	d := decorator{newCounter(), mem.New()}
	call(d)
	if len(d.calls) != 0 {
		t.Errorf("over a decorator of mem: capability methods called %v, want none", d.calls)
	}
	if _, err := d.Stat(ctx, "deks/g/a"); err == nil {
		t.Error("DeletePrefix over a decorator of mem left the object")
	}
}
