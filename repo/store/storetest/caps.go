package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/store"
)

// The tests of the optional capabilities (store.RangeReader and the rest).
// Each runs the function of package store that uses a capability if the
// store has it and falls back otherwise (what callers use), and, where the
// store has the method (for real, or a decorator's fallback), the method
// itself: both must keep the capability's contract.

// capTests are the capability tests, run by Run after the others.
var capTests = []struct {
	name string
	fn   func(*testing.T, store.Store)
}{
	{"ReadRange", testReadRange},
	{"ReadRangeLarge", testReadRangeLarge},
	{"ReadSmall", testReadSmall},
	{"Prefetch", testPrefetch},
	{"ListNames", testListNames},
	{"ListNamesStops", testListNamesStops},
	{"DeletePrefix", testDeletePrefix},
	{"DeletePrefixInvalid", testDeletePrefixInvalid},
	{"PurgeTrash", testPurgeTrash},
	{"RemoveStale", testRemoveStale},
	{"CapabilitiesMissing", testCapabilitiesMissing},
	{"CapabilitiesInvalidNames", testCapabilitiesInvalidNames},
	{"CapabilitiesCanceledContext", testCapabilitiesCanceled},
	{"CapabilitiesConcurrent", testCapabilitiesConcurrent},
}

// way is one way of calling a capability: the function of package store,
// or the store's own method.
type way[F any] struct {
	what string
	fn   F
}

type readRangeFunc = func(ctx context.Context, name string, off, length int64, buf []byte, direct bool) ([]byte, error)

func rangeReaders(s store.Store) []way[readRangeFunc] {
	ws := []way[readRangeFunc]{{"store.ReadRange", func(ctx context.Context, name string, off, length int64, buf []byte, direct bool) ([]byte, error) {
		return store.ReadRange(ctx, s, name, off, length, buf, direct)
	}}}
	if rr, ok := s.(store.RangeReader); ok {
		ws = append(ws, way[readRangeFunc]{"ReadRange method", rr.ReadRange})
	}
	return ws
}

type readSmallFunc = func(ctx context.Context, name string, max int) ([]byte, error)

func smallReaders(s store.Store) []way[readSmallFunc] {
	ws := []way[readSmallFunc]{{"store.ReadSmall", func(ctx context.Context, name string, max int) ([]byte, error) {
		return store.ReadSmall(ctx, s, name, max)
	}}}
	if sr, ok := s.(store.SmallReader); ok {
		ws = append(ws, way[readSmallFunc]{"ReadSmall method", sr.ReadSmall})
	}
	return ws
}

type listNamesFunc = func(ctx context.Context, prefix string, fn func(string) error) error

func nameListers(s store.Store) []way[listNamesFunc] {
	ws := []way[listNamesFunc]{{"store.ListNames", func(ctx context.Context, prefix string, fn func(string) error) error {
		return store.ListNames(ctx, s, prefix, fn)
	}}}
	if nl, ok := s.(store.NameLister); ok {
		ws = append(ws, way[listNamesFunc]{"ListNames method", nl.ListNames})
	}
	return ws
}

type deletePrefixFunc = func(ctx context.Context, prefix string) error

func prefixDeleters(s store.Store) []way[deletePrefixFunc] {
	ws := []way[deletePrefixFunc]{{"store.DeletePrefix", func(ctx context.Context, prefix string) error {
		return store.DeletePrefix(ctx, s, prefix)
	}}}
	if pd, ok := s.(store.PrefixDeleter); ok {
		ws = append(ws, way[deletePrefixFunc]{"DeletePrefix method", pd.DeletePrefix})
	}
	return ws
}

type purgeTrashFunc = func(ctx context.Context, pace func(time.Duration)) error

func trashPurgers(s store.Store) []way[purgeTrashFunc] {
	ws := []way[purgeTrashFunc]{{"store.PurgeTrash", func(ctx context.Context, pace func(time.Duration)) error {
		return store.PurgeTrash(ctx, s, pace)
	}}}
	if tp, ok := s.(store.TrashPurger); ok {
		ws = append(ws, way[purgeTrashFunc]{"PurgeTrash method", tp.PurgeTrash})
	}
	return ws
}

type removeStaleFunc = func(ctx context.Context, age time.Duration) (int, error)

func staleRemovers(s store.Store) []way[removeStaleFunc] {
	ws := []way[removeStaleFunc]{{"store.RemoveStale", func(ctx context.Context, age time.Duration) (int, error) {
		return store.RemoveStale(ctx, s, age)
	}}}
	if sr, ok := s.(store.StaleRemover); ok {
		ws = append(ws, way[removeStaleFunc]{"RemoveStale method", sr.RemoveStale})
	}
	return ws
}

// contents returns every object's name and content, to show that a call
// changed nothing.
func contents(t *testing.T, s store.Store) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, info := range listAll(t, s, "") {
		b, err := s.Get(context.Background(), info.Name)
		if err != nil {
			t.Fatalf("Get(%q): %v", info.Name, err)
		}
		m[info.Name] = string(b)
	}
	return m
}

func testReadRange(t *testing.T, s store.Store) {
	ctx := context.Background()
	const size = 1000
	data := payload(3, size)
	mustCreate(t, s, "obj", data)
	mustCreate(t, s, "empty", nil)
	cases := []struct {
		name        string
		off, length int64
		want        []byte
	}{
		{"obj", 0, size, data},
		{"obj", 0, 1, data[:1]},
		{"obj", 10, 20, data[10:30]},
		{"obj", size - 10, 10, data[size-10:]},
		{"obj", size - 5, 10, data[size-5:]}, // runs past the end
		{"obj", size, 10, nil},               // starts at the end
		{"obj", size + 100, 5, nil},          // starts past the end
		{"obj", 10, 0, nil},
		{"empty", 0, 10, nil},
		{"empty", 0, 0, nil},
	}
	for _, w := range rangeReaders(s) {
		for _, direct := range []bool{false, true} {
			for _, c := range cases {
				for _, room := range []int64{c.length, c.length + store.DirectSlack} {
					buf := make([]byte, room)
					got, err := w.fn(ctx, c.name, c.off, c.length, buf, direct)
					what := fmt.Sprintf("%s(%s, %d, %d) into %d bytes, direct %v", w.what, c.name, c.off, c.length, room, direct)
					if err != nil {
						t.Errorf("%s: %v", what, err)
						continue
					}
					if !bytes.Equal(got, c.want) {
						t.Errorf("%s = %d bytes, want %d (%s)", what, len(got), len(c.want), diff(got, c.want))
					}
					if !Inside(got, buf) {
						t.Errorf("%s did not return a part of buf", what)
					}
				}
			}
			for _, r := range [][3]int64{{-1, 10, 10}, {0, -1, 10}, {0, 20, 19}, {0, 20, 0}} {
				got, err := w.fn(ctx, "obj", r[0], r[1], make([]byte, r[2]), direct)
				what := fmt.Sprintf("%s(obj, %d, %d) into %d bytes, direct %v", w.what, r[0], r[1], r[2], direct)
				if err == nil {
					t.Errorf("%s = %d bytes and no error, want an error", what, len(got))
				} else if errors.Is(err, store.ErrNotExist) {
					t.Errorf("%s: %v; must not wrap ErrNotExist", what, err)
				}
			}
		}
	}
}

// testReadRangeLarge reads ranges of a large object at offsets and lengths
// that are not aligned to any block, with room for direct reads.
func testReadRangeLarge(t *testing.T, s store.Store) {
	ctx := context.Background()
	const size = 3<<20 + 123
	data := payload(4, size)
	mustCreate(t, s, "data/ab/large", data)
	for _, w := range rangeReaders(s) {
		for _, direct := range []bool{false, true} {
			for _, r := range [][2]int64{{0, 1 << 20}, {4097, 1<<20 + 13}, {1<<20 - 1, 2}, {size - 5000, 1 << 20}, {8191, 4096}} {
				buf := make([]byte, r[1]+store.DirectSlack)
				got, err := w.fn(ctx, "data/ab/large", r[0], r[1], buf, direct)
				want := data[r[0]:min(r[0]+r[1], size)]
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("%s(%d, %d), direct %v = %d bytes, %v; want %d bytes (%s)", w.what, r[0], r[1], direct, len(got), err, len(want), diff(got, want))
				} else if !Inside(got, buf) {
					t.Errorf("%s(%d, %d), direct %v did not return a part of buf", w.what, r[0], r[1], direct)
				}
			}
		}
	}
}

func testReadSmall(t *testing.T, s store.Store) {
	ctx := context.Background()
	data := payload(5, 77)
	mustCreate(t, s, "deks/g/aa", data)
	mustCreate(t, s, "deks/g/empty", nil)
	for _, w := range smallReaders(s) {
		for _, max := range []int{77, 78, 4096} {
			got, err := w.fn(ctx, "deks/g/aa", max)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s(deks/g/aa, %d) = %d bytes, %v; want the 77 bytes", w.what, max, len(got), err)
				continue
			}
			got[0] ^= 0xff // the store must not hand out its own memory
		}
		mustGet(t, s, "deks/g/aa", data)
		for _, max := range []int{0, 76} {
			got, err := w.fn(ctx, "deks/g/aa", max)
			if !errors.Is(err, store.ErrTooLarge) {
				t.Errorf("%s(deks/g/aa, %d) = %d bytes, %v; want an error wrapping ErrTooLarge", w.what, max, len(got), err)
			} else if !strings.Contains(err.Error(), "deks/g/aa") {
				t.Errorf("%s: error %q does not name the object", w.what, err)
			}
		}
		if got, err := w.fn(ctx, "deks/g/empty", 0); err != nil || len(got) != 0 {
			t.Errorf("%s(deks/g/empty, 0) = %d bytes, %v; want none", w.what, len(got), err)
		}
		for _, name := range []string{"deks/g/none", "deks/g", "deks/none/x", "deks/g/aa/below"} {
			_, err := w.fn(ctx, name, 77)
			wantNotExist(t, fmt.Sprintf("%s(%s)", w.what, name), err)
		}
		if got, err := w.fn(ctx, "deks/g/aa", -1); err == nil || errors.Is(err, store.ErrNotExist) {
			t.Errorf("%s with a negative limit = %d bytes, %v; want an error, not ErrNotExist", w.what, len(got), err)
		}
	}
}

type prefetchFunc = func(ctx context.Context, names []string, max int)

func prefetchers(s store.Store) []way[prefetchFunc] {
	ws := []way[prefetchFunc]{{"store.Prefetch", func(ctx context.Context, names []string, max int) {
		store.Prefetch(ctx, s, names, max)
	}}}
	if p, ok := s.(store.Prefetcher); ok {
		ws = append(ws, way[prefetchFunc]{"Prefetch method", p.Prefetch})
	}
	return ws
}

// testPrefetch: a prefetch of names that exist, names that do not, names
// that are not valid and directories changes nothing any read returns,
// nor does one with a canceled context; it creates nothing.
func testPrefetch(t *testing.T, s store.Store) {
	ctx := context.Background()
	data := payload(6, 77)
	mustCreate(t, s, "deks/g/aa", data)
	mustCreate(t, s, "deks/g/bb", nil)
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	names := []string{"deks/g/aa", "deks/g/bb", "deks/g/none", "deks/g", "deks", "", "/abs", "../x", "deks/g/aa/below", ".tmp-1"}
	for _, w := range prefetchers(s) {
		w.fn(ctx, names, 77)
		w.fn(ctx, names, 1)
		w.fn(ctx, names, 0)
		w.fn(ctx, names, -1)
		w.fn(canceled, names, 77)
		w.fn(ctx, nil, 77)
		mustGet(t, s, "deks/g/aa", data)
		mustGet(t, s, "deks/g/bb", nil)
		for _, r := range smallReaders(s) {
			if got, err := r.fn(ctx, "deks/g/aa", 77); err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s after %s: %d bytes, %v; want the 77 bytes", r.what, w.what, len(got), err)
			}
			_, err := r.fn(ctx, "deks/g/none", 77)
			wantNotExist(t, fmt.Sprintf("%s(deks/g/none) after %s", r.what, w.what), err)
		}
	}
	if got := contents(t, s); len(got) != 2 {
		t.Errorf("after prefetches the store holds %v, want deks/g/aa and deks/g/bb", got)
	}
}

// listNamesAll returns the names a ListNames way delivers, sorted, and
// fails the test if one comes twice.
func listNamesAll(t *testing.T, w way[listNamesFunc], prefix string) []string {
	t.Helper()
	var names []string
	err := w.fn(context.Background(), prefix, func(name string) error {
		names = append(names, name)
		return nil
	})
	if err != nil {
		t.Fatalf("%s(%q): %v", w.what, prefix, err)
	}
	slices.Sort(names)
	if c := slices.Compact(slices.Clone(names)); len(c) != len(names) {
		t.Errorf("%s(%q) delivered names more than once: %v", w.what, prefix, names)
	}
	return names
}

func testListNames(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i, name := range listNames {
		mustCreate(t, s, name, payload(uint64(i), i*7))
	}
	prefixes := []string{
		"", "data/", "data", "data/0", "data/00/", "data/00/x", "data/00/x1",
		"keyring/", "keyring/0000000000000000000", "ord/", "ord/a", "ord/a/",
		"deep/", "deep/1/2/3/4/5/", "deep/1/2/3/4/5/obj", "nomatch", "nomatch/",
		"data/zz/", "z", "config/", "index/i1/", "ord/a/b-c/d/",
	}
	for _, w := range nameListers(s) {
		for _, prefix := range prefixes {
			var want []string
			for _, name := range listNames {
				if strings.HasPrefix(name, prefix) {
					want = append(want, name)
				}
			}
			slices.Sort(want)
			if got := listNamesAll(t, w, prefix); !slices.Equal(got, want) {
				t.Errorf("%s(%q) =\n  %v\nwant\n  %v", w.what, prefix, got, want)
			}
		}
		// The callback may use the store, as a rotation does: read each
		// object, write its twin under another prefix and delete it.
		n := 0
		err := w.fn(ctx, "data/", func(name string) error {
			n++
			b, err := s.Get(ctx, name)
			if err != nil {
				return err
			}
			if err := s.Put(ctx, "moved/"+name, b); err != nil {
				return err
			}
			return s.Delete(ctx, name)
		})
		if err != nil || n != 4 {
			t.Errorf("%s(data/) moving each object: %d calls, %v; want 4", w.what, n, err)
		}
		if got := listAll(t, s, "data/"); len(got) != 0 {
			t.Errorf("%s: objects left under data/: %v", w.what, got)
		}
		for i, name := range listNames {
			if !strings.HasPrefix(name, "data/") {
				continue
			}
			mustGet(t, s, "moved/"+name, payload(uint64(i), i*7))
			if err := s.Delete(ctx, "moved/"+name); err != nil {
				t.Fatal(err)
			}
			mustCreate(t, s, name, payload(uint64(i), i*7))
		}
	}
}

func testListNamesStops(t *testing.T, s store.Store) {
	for i := range 5 {
		mustCreate(t, s, fmt.Sprintf("deks/g/%02d", i), []byte{byte(i)})
	}
	stop := errors.New("stop here")
	for _, w := range nameListers(s) {
		var seen []string
		err := w.fn(context.Background(), "deks/g/", func(name string) error {
			seen = append(seen, name)
			if len(seen) == 2 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) {
			t.Errorf("%s returned %v, want the callback's error", w.what, err)
		}
		if len(seen) != 2 || seen[0] == seen[1] {
			t.Errorf("%s called back for %v, want two names and then no more", w.what, seen)
		}
	}
}

func testDeletePrefix(t *testing.T, s store.Store) {
	ctx := context.Background()
	doomed := []string{"deks/g1/a", "deks/g1/b", "deks/g1/sub/c", "deks/g1/sub/deeper/d"}
	kept := []string{"deks/g10/x", "deks/g1x", "deks/g2/y", "deks-z", "other/g1/a"}
	for _, w := range prefixDeleters(s) {
		for i, name := range append(slices.Clone(doomed), kept...) {
			if err := s.Put(ctx, name, payload(uint64(i), 10+i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.fn(ctx, "deks/g1/"); err != nil {
			t.Fatalf("%s(deks/g1/): %v", w.what, err)
		}
		for _, name := range doomed {
			_, err := s.Get(ctx, name)
			wantNotExist(t, fmt.Sprintf("Get(%s) after %s", name, w.what), err)
			_, err = s.Stat(ctx, name)
			wantNotExist(t, fmt.Sprintf("Stat(%s) after %s", name, w.what), err)
		}
		for i, name := range kept {
			mustGet(t, s, name, payload(uint64(len(doomed)+i), 10+len(doomed)+i))
		}
		var names []string
		for _, info := range listAll(t, s, "") {
			names = append(names, info.Name)
		}
		if want := slices.Sorted(slices.Values(kept)); !slices.Equal(names, want) {
			t.Errorf("List after %s(deks/g1/) = %v, want %v", w.what, names, want)
		}
		for _, lw := range nameListers(s) {
			if got := listNamesAll(t, lw, "deks/g1"); !slices.Equal(got, []string{"deks/g10/x", "deks/g1x"}) {
				t.Errorf("%s(deks/g1) after %s = %v", lw.what, w.what, got)
			}
		}
		// Again, a prefix with nothing below it, and one that names an
		// object (which is not below it): no error, nothing deleted.
		for _, prefix := range []string{"deks/g1/", "nothing/", "deks/g1x/", "deks/g10/x/"} {
			if err := w.fn(ctx, prefix); err != nil {
				t.Errorf("%s(%s): %v", w.what, prefix, err)
			}
		}
		for i, name := range kept {
			mustGet(t, s, name, payload(uint64(len(doomed)+i), 10+len(doomed)+i))
		}
		// The names are free again.
		mustCreate(t, s, "deks/g1/a", []byte("again"))
		mustCreate(t, s, "deks/g1/sub/c", []byte("again c"))
		mustGet(t, s, "deks/g1/a", []byte("again"))
		mustGet(t, s, "deks/g1/sub/c", []byte("again c"))
		// A top-level prefix takes everything below it.
		if err := w.fn(ctx, "deks/"); err != nil {
			t.Fatalf("%s(deks/): %v", w.what, err)
		}
		if got := listAll(t, s, "deks/"); len(got) != 0 {
			t.Errorf("%s(deks/) left %v", w.what, got)
		}
		mustGet(t, s, "deks-z", payload(uint64(len(doomed)+3), 10+len(doomed)+3))
		mustGet(t, s, "other/g1/a", payload(uint64(len(doomed)+4), 10+len(doomed)+4))
		for _, name := range []string{"deks-z", "deks/g1x", "other/g1/a"} {
			if err := s.Delete(ctx, name); err != nil && !errors.Is(err, store.ErrNotExist) {
				t.Fatal(err)
			}
		}
	}
}

func testDeletePrefixInvalid(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, "deks/g/a", []byte("a"))
	mustCreate(t, s, "deksg", []byte("b"))
	before := contents(t, s)
	for _, w := range prefixDeleters(s) {
		for _, prefix := range []string{"", "/", "deks", "deks/g", "deks//", "/deks/", "../deks/", "deks/../", "./deks/", "deks/.trash/", `deks\g/`} {
			if err := w.fn(ctx, prefix); !errors.Is(err, store.ErrInvalidName) {
				t.Errorf("%s(%q): %v, want an error wrapping ErrInvalidName", w.what, prefix, err)
			}
		}
	}
	if after := contents(t, s); !maps(after, before) {
		t.Errorf("invalid prefixes changed the store: %v, was %v", after, before)
	}
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func testPurgeTrash(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i := range 20 {
		mustCreate(t, s, fmt.Sprintf("deks/old/%02d", i), payload(uint64(i), 77))
		mustCreate(t, s, fmt.Sprintf("deks/new/%02d", i), payload(uint64(100+i), 77))
	}
	if err := store.DeletePrefix(ctx, s, "deks/old/"); err != nil {
		t.Fatalf("DeletePrefix: %v", err)
	}
	before := contents(t, s)
	for _, w := range trashPurgers(s) {
		var paced time.Duration
		if err := w.fn(ctx, func(d time.Duration) { paced += d }); err != nil {
			t.Errorf("%s: %v", w.what, err)
		}
		if paced < 0 {
			t.Errorf("%s paced with a negative time %v", w.what, paced)
		}
		if err := w.fn(ctx, nil); err != nil {
			t.Errorf("%s a second time, without pace: %v", w.what, err)
		}
		if after := contents(t, s); !maps(after, before) {
			t.Errorf("%s changed objects: %d objects, was %d", w.what, len(after), len(before))
		}
	}
	if got := listAll(t, s, "deks/old/"); len(got) != 0 {
		t.Errorf("objects under deks/old/ after purging: %v", got)
	}
	mustCreate(t, s, "deks/old/00", []byte("again"))
	mustGet(t, s, "deks/old/00", []byte("again"))
}

func testRemoveStale(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i, name := range listNames {
		mustCreate(t, s, name, payload(uint64(i), i*7))
	}
	before := contents(t, s)
	for _, w := range staleRemovers(s) {
		// Age 0 takes every leftover there is: with no writer at work,
		// RemoveStale must still leave every object alone.
		for _, age := range []time.Duration{time.Hour, 0} {
			n, err := w.fn(ctx, age)
			if err != nil || n < 0 {
				t.Errorf("%s(%v) = %d, %v", w.what, age, n, err)
			}
		}
		if after := contents(t, s); !maps(after, before) {
			t.Errorf("%s changed objects: %d objects, was %d", w.what, len(after), len(before))
		}
	}
}

// testCapabilitiesMissing: reading a missing object is ErrNotExist by
// every way.
func testCapabilitiesMissing(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, "dir/obj", []byte("x"))
	for _, name := range []string{"missing", "missing/deeper/name", "dir", "dir/obj/below"} {
		for _, w := range rangeReaders(s) {
			for _, length := range []int64{0, 10} {
				_, err := w.fn(ctx, name, 0, length, make([]byte, length+store.DirectSlack), true)
				wantNotExist(t, fmt.Sprintf("%s(%s, 0, %d)", w.what, name, length), err)
			}
		}
		for _, w := range smallReaders(s) {
			_, err := w.fn(ctx, name, 100)
			wantNotExist(t, fmt.Sprintf("%s(%s)", w.what, name), err)
		}
	}
}

func testCapabilitiesInvalidNames(t *testing.T, s store.Store) {
	ctx := context.Background()
	for _, name := range []string{"", "/abs", "a/", "a//b", "..", "../x", ".tmp-1", "dir/.hidden", `a\b`} {
		check := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, store.ErrInvalidName) {
				t.Errorf("%s(%q): %v, want an error wrapping ErrInvalidName", what, name, err)
			}
		}
		for _, w := range rangeReaders(s) {
			_, err := w.fn(ctx, name, 0, 1, make([]byte, 1), false)
			check(w.what, err)
		}
		for _, w := range smallReaders(s) {
			_, err := w.fn(ctx, name, 10)
			check(w.what, err)
		}
	}
}

func testCapabilitiesCanceled(t *testing.T, s store.Store) {
	mustCreate(t, s, "deks/g/a", []byte("a"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v, want an error wrapping context.Canceled", what, err)
		}
	}
	for _, w := range rangeReaders(s) {
		_, err := w.fn(ctx, "deks/g/a", 0, 1, make([]byte, 1), false)
		check(w.what, err)
	}
	for _, w := range smallReaders(s) {
		_, err := w.fn(ctx, "deks/g/a", 10)
		check(w.what, err)
	}
	for _, w := range nameListers(s) {
		called := false
		check(w.what, w.fn(ctx, "deks/", func(string) error { called = true; return nil }))
		if called {
			t.Errorf("%s with a canceled context called back", w.what)
		}
	}
	for _, w := range prefixDeleters(s) {
		check(w.what, w.fn(ctx, "deks/"))
	}
	mustGet(t, s, "deks/g/a", []byte("a"))
}

// testCapabilitiesConcurrent reads with ReadRange and ReadSmall while
// writers replace the object: every read sees one version whole.
func testCapabilitiesConcurrent(t *testing.T, s store.Store) {
	const (
		writers    = 3
		readers    = 3
		iterations = 20
	)
	ctx := context.Background()
	if err := s.Put(ctx, "shared", versioned(0)); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, writers+readers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range iterations {
				if err := s.Put(ctx, "shared", versioned(1+(w*iterations+i)%200)); err != nil {
					errc <- fmt.Errorf("writer %d: Put: %w", w, err)
					return
				}
			}
		}()
	}
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 600+store.DirectSlack)
			for i := range iterations {
				rw := rangeReaders(s)[i%len(rangeReaders(s))]
				part, err := rw.fn(ctx, "shared", 500, 600, buf, i%2 == 0)
				if err == nil && (len(part) == 0 || !bytes.Equal(part, bytes.Repeat(part[:1], len(part)))) {
					err = fmt.Errorf("torn range read of %d bytes", len(part))
				}
				if err != nil {
					errc <- fmt.Errorf("reader %d: %s: %w", r, rw.what, err)
					return
				}
				sw := smallReaders(s)[i%len(smallReaders(s))]
				got, err := sw.fn(ctx, "shared", 1000+200*37)
				if err == nil {
					err = checkVersioned(got)
				}
				if err != nil {
					errc <- fmt.Errorf("reader %d: %s: %w", r, sw.what, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}
