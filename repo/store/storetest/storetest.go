// Package storetest is the conformance suite that every store.Store must
// pass, with the optional capabilities of package store (caps.go): each is
// tested through the function of package store that uses it or falls back,
// and through the store's own method where it has one. A backend's test
// calls Run with a function that returns a new, empty store for each
// subtest:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return mem.New() })
//	}
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo/store"
)

// Run runs every conformance test as a subtest of t. newStore must return a
// new, empty store each time it is called; it may register cleanups on the t
// it is given.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"Missing", testMissing},
		{"CreateGet", testCreateGet},
		{"EmptyObject", testEmptyObject},
		{"GetRange", testGetRange},
		{"CreateExisting", testCreateExisting},
		{"CreateConcurrent", testCreateConcurrent},
		{"Put", testPut},
		{"Delete", testDelete},
		{"InvalidNames", testInvalidNames},
		{"List", testList},
		{"ListStops", testListStops},
		{"ListWhileWriting", testListWhileWriting},
		{"NestedNames", testNestedNames},
		{"Large", testLarge},
		{"ConcurrentReadWrite", testConcurrentReadWrite},
		{"CanceledContext", testCanceledContext},
		{"Location", testLocation},
	}
	for _, tc := range append(tests, capTests...) {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

// payload returns n pseudo-random bytes determined by seed.
func payload(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustCreate(t *testing.T, s store.Store, name string, data []byte) {
	t.Helper()
	if err := s.Create(context.Background(), name, data); err != nil {
		t.Fatalf("Create(%q): %v", name, err)
	}
}

func mustGet(t *testing.T, s store.Store, name string, want []byte) {
	t.Helper()
	got, err := s.Get(context.Background(), name)
	if err != nil {
		t.Fatalf("Get(%q): %v", name, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %d bytes, want %d bytes (%s)", name, len(got), len(want), diff(got, want))
	}
}

func diff(got, want []byte) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at byte %d", i)
		}
	}
	if len(got) != len(want) {
		return "one is a prefix of the other"
	}
	return "equal"
}

func wantNotExist(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotExist) {
		t.Errorf("%s: error %v, want one wrapping store.ErrNotExist", what, err)
	}
}

func listAll(t *testing.T, s store.Store, prefix string) []store.Info {
	t.Helper()
	var infos []store.Info
	err := s.List(context.Background(), prefix, func(info store.Info) error {
		infos = append(infos, info)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return infos
}

func testMissing(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, err := s.Get(ctx, "missing")
	wantNotExist(t, "Get", err)
	_, err = s.GetRange(ctx, "missing", 0, 10)
	wantNotExist(t, "GetRange", err)
	_, err = s.GetRange(ctx, "missing/deeper/name", 0, 0)
	wantNotExist(t, "GetRange of zero length", err)
	_, err = s.Stat(ctx, "missing")
	wantNotExist(t, "Stat", err)
	wantNotExist(t, "Delete", s.Delete(ctx, "missing"))
	_, err = s.Get(ctx, "missing/deeper/name")
	wantNotExist(t, "Get of nested name", err)

	// A "directory" holding objects is no object itself.
	mustCreate(t, s, "dir/obj", []byte("x"))
	_, err = s.Get(ctx, "dir")
	wantNotExist(t, "Get of a name that is only a prefix", err)
	_, err = s.Stat(ctx, "dir")
	wantNotExist(t, "Stat of a name that is only a prefix", err)
	wantNotExist(t, "Delete of a name that is only a prefix", s.Delete(ctx, "dir"))
	mustGet(t, s, "dir/obj", []byte("x"))
	// An object is no directory.
	_, err = s.Get(ctx, "dir/obj/below")
	wantNotExist(t, "Get below an object", err)

	if err := s.Create(ctx, "missing", nil); err != nil {
		t.Fatalf("Create after failed reads: %v", err)
	}
}

func testCreateGet(t *testing.T, s store.Store) {
	ctx := context.Background()
	data := payload(1, 1000)
	buf := slices.Clone(data)
	mustCreate(t, s, "config", buf)
	// The store must not keep the caller's buffer.
	buf[0] ^= 0xff
	mustGet(t, s, "config", data)

	got, _ := s.Get(ctx, "config")
	got[1] ^= 0xff // nor hand out its own
	mustGet(t, s, "config", data)

	info, err := s.Stat(ctx, "config")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info != (store.Info{Name: "config", Size: 1000}) {
		t.Errorf("Stat = %+v, want {config 1000}", info)
	}
}

func testEmptyObject(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, "empty", nil)
	mustGet(t, s, "empty", nil)
	info, err := s.Stat(ctx, "empty")
	if err != nil || info.Size != 0 {
		t.Errorf("Stat = %+v, %v; want size 0", info, err)
	}
	for _, r := range [][2]int64{{0, 0}, {0, 10}, {5, 10}} {
		got, err := s.GetRange(ctx, "empty", r[0], r[1])
		if err != nil || len(got) != 0 {
			t.Errorf("GetRange(empty, %d, %d) = %d bytes, %v; want none", r[0], r[1], len(got), err)
		}
	}
	if err := s.Put(ctx, "empty2", []byte{}); err != nil {
		t.Fatalf("Put empty: %v", err)
	}
	mustGet(t, s, "empty2", nil)
}

func testGetRange(t *testing.T, s store.Store) {
	ctx := context.Background()
	const size = 1000
	data := payload(2, size)
	mustCreate(t, s, "obj", data)
	cases := []struct {
		off, length int64
		want        []byte
	}{
		{0, size, data},
		{0, 1, data[:1]},
		{10, 20, data[10:30]},
		{size - 10, 10, data[size-10:]}, // at the end
		{size - 5, 10, data[size-5:]},   // runs past the end
		{size - 1, 1, data[size-1:]},
		{size, 10, nil},      // starts at the end
		{size + 100, 5, nil}, // starts past the end
		{10, 0, nil},         // zero length
		{size, 0, nil},
		{0, math.MaxInt64, data}, // huge length
		{500, math.MaxInt64, data[500:]},
	}
	for _, c := range cases {
		got, err := s.GetRange(ctx, "obj", c.off, c.length)
		if err != nil {
			t.Errorf("GetRange(%d, %d): %v", c.off, c.length, err)
			continue
		}
		if !bytes.Equal(got, c.want) {
			t.Errorf("GetRange(%d, %d) = %d bytes, want %d (%s)", c.off, c.length, len(got), len(c.want), diff(got, c.want))
		}
	}
	for _, r := range [][2]int64{{-1, 10}, {0, -1}, {-5, -5}, {math.MinInt64, 1}} {
		got, err := s.GetRange(ctx, "obj", r[0], r[1])
		if err == nil {
			t.Errorf("GetRange(%d, %d) = %d bytes and no error, want an error", r[0], r[1], len(got))
		} else if errors.Is(err, store.ErrNotExist) {
			t.Errorf("GetRange(%d, %d): %v; must not wrap ErrNotExist", r[0], r[1], err)
		}
	}
}

func testCreateExisting(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, "keyring/00000000000000000001", []byte("first"))
	err := s.Create(ctx, "keyring/00000000000000000001", []byte("second"))
	if !errors.Is(err, store.ErrExist) {
		t.Fatalf("second Create: %v, want an error wrapping store.ErrExist", err)
	}
	if !strings.Contains(err.Error(), "keyring/00000000000000000001") {
		t.Errorf("error %q does not name the object", err)
	}
	mustGet(t, s, "keyring/00000000000000000001", []byte("first"))
	// Put-made objects count as existing too.
	if err := s.Put(ctx, "put", []byte("p")); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, "put", []byte("c")); !errors.Is(err, store.ErrExist) {
		t.Errorf("Create over a Put object: %v, want ErrExist", err)
	}
	mustGet(t, s, "put", []byte("p"))
}

func testPut(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i, size := range []int{10, 1000, 5, 0, 70000} {
		data := payload(uint64(i), size)
		if err := s.Put(ctx, "index/abc", data); err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
		mustGet(t, s, "index/abc", data)
		info, err := s.Stat(ctx, "index/abc")
		if err != nil || info.Size != int64(size) {
			t.Fatalf("Stat after Put %d = %+v, %v; want size %d", i, info, err, size)
		}
	}
	mustCreate(t, s, "created", []byte("old"))
	if err := s.Put(ctx, "created", []byte("new")); err != nil {
		t.Fatalf("Put over a created object: %v", err)
	}
	mustGet(t, s, "created", []byte("new"))
	if got := listAll(t, s, ""); len(got) != 2 {
		t.Errorf("List after overwrites = %v, want 2 objects", got)
	}
}

func testDelete(t *testing.T, s store.Store) {
	ctx := context.Background()
	mustCreate(t, s, "deks/gen/a", []byte("a"))
	mustCreate(t, s, "deks/gen/b", []byte("b"))
	if err := s.Delete(ctx, "deks/gen/a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err := s.Get(ctx, "deks/gen/a")
	wantNotExist(t, "Get after Delete", err)
	_, err = s.Stat(ctx, "deks/gen/a")
	wantNotExist(t, "Stat after Delete", err)
	err = s.Delete(ctx, "deks/gen/a")
	wantNotExist(t, "second Delete", err)
	if err != nil && !strings.Contains(err.Error(), "deks/gen/a") {
		t.Errorf("error %q does not name the object", err)
	}
	mustGet(t, s, "deks/gen/b", []byte("b"))
	if got := listAll(t, s, "deks/"); len(got) != 1 || got[0].Name != "deks/gen/b" {
		t.Errorf("List after Delete = %v, want only deks/gen/b", got)
	}
	// The name is free again.
	mustCreate(t, s, "deks/gen/a", []byte("again"))
	mustGet(t, s, "deks/gen/a", []byte("again"))
	// Deleting the last object under a prefix leaves the others usable.
	for _, n := range []string{"deks/gen/a", "deks/gen/b"} {
		if err := s.Delete(ctx, n); err != nil {
			t.Fatalf("Delete(%q): %v", n, err)
		}
	}
	if got := listAll(t, s, ""); len(got) != 0 {
		t.Errorf("List after deleting all = %v, want none", got)
	}
	mustCreate(t, s, "deks/gen/c", []byte("c"))
	mustGet(t, s, "deks/gen/c", []byte("c"))
}

func testInvalidNames(t *testing.T, s store.Store) {
	ctx := context.Background()
	bad := []string{"", "/abs", "/", "a/", "a//b", "..", "../x", "a/../b", ".", "a/./b", ".tmp-1", "dir/.hidden", `a\b`}
	for _, name := range bad {
		check := func(op string, err error) {
			if !errors.Is(err, store.ErrInvalidName) {
				t.Errorf("%s(%q): %v, want an error wrapping store.ErrInvalidName", op, name, err)
			}
		}
		_, err := s.Get(ctx, name)
		check("Get", err)
		_, err = s.GetRange(ctx, name, 0, 1)
		check("GetRange", err)
		_, err = s.Stat(ctx, name)
		check("Stat", err)
		check("Create", s.Create(ctx, name, []byte("x")))
		check("Put", s.Put(ctx, name, []byte("x")))
		check("Delete", s.Delete(ctx, name))
	}
	if got := listAll(t, s, ""); len(got) != 0 {
		t.Errorf("invalid names left objects: %v", got)
	}
}

// listNames are the objects for the List tests. They include names whose
// lexical order differs from a depth-first walk of directories: '-' and '.'
// sort before '/', '0' after it.
var listNames = []string{
	"config",
	"data/00/x1",
	"data/00/x2",
	"data/0a/y",
	"data/ff/z",
	"data-x",
	"deep/1/2/3/4/5/obj",
	"index/i1",
	"keyring/00000000000000000001",
	"keyring/00000000000000000002",
	"keyring/00000000000000000010",
	"ord/a-b",
	"ord/a.b",
	"ord/a/b",
	"ord/a/b-c/d",
	"ord/a0",
	"snapshots/s1",
}

func testList(t *testing.T, s store.Store) {
	sizes := map[string]int64{}
	for i, name := range listNames {
		sizes[name] = int64(i * 7)
		mustCreate(t, s, name, payload(uint64(i), i*7))
	}
	prefixes := []string{
		"", "data/", "data", "data/0", "data/00/", "data/00/x", "data/00/x1",
		"keyring/", "keyring/0000000000000000000", "keyring/00000000000000000002",
		"ord/", "ord/a", "ord/a/", "deep/", "deep/1/2/3/4/5/", "deep/1/2/3/4/5/obj",
		"nomatch", "nomatch/", "data/zz/", "z", "config/", "index/i1/",
	}
	for _, prefix := range prefixes {
		var want []store.Info
		for _, name := range listNames {
			if strings.HasPrefix(name, prefix) {
				want = append(want, store.Info{Name: name, Size: sizes[name]})
			}
		}
		slices.SortFunc(want, func(a, b store.Info) int { return strings.Compare(a.Name, b.Name) })
		got := listAll(t, s, prefix)
		if !slices.Equal(got, want) {
			t.Errorf("List(%q) =\n  %v\nwant\n  %v", prefix, got, want)
		}
	}
}

func testListStops(t *testing.T, s store.Store) {
	for i := range 5 {
		mustCreate(t, s, fmt.Sprintf("snapshots/%02d", i), []byte{byte(i)})
	}
	stop := errors.New("stop here")
	var seen []string
	err := s.List(context.Background(), "snapshots/", func(info store.Info) error {
		seen = append(seen, info.Name)
		if len(seen) == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Errorf("List returned %v, want the callback's error", err)
	}
	if want := []string{"snapshots/00", "snapshots/01"}; !slices.Equal(seen, want) {
		t.Errorf("List called back for %v, want %v", seen, want)
	}
}

func testNestedNames(t *testing.T, s store.Store) {
	ctx := context.Background()
	names := []string{"a", "b/c", "d/e/f", "g/h/i/j/k/l/m/n", "data/3f/3f0a1b2c3d4e5f60718293a4b5c6d7e8f90112233445566778899aabbccddeeff"}
	for i, name := range names {
		mustCreate(t, s, name, payload(uint64(i), 100+i))
	}
	for i, name := range names {
		mustGet(t, s, name, payload(uint64(i), 100+i))
		if err := s.Put(ctx, name, []byte(name)); err != nil {
			t.Fatalf("Put(%q): %v", name, err)
		}
		mustGet(t, s, name, []byte(name))
	}
	got := listAll(t, s, "")
	if len(got) != len(names) {
		t.Fatalf("List = %v, want %d objects", got, len(names))
	}
	for _, name := range names {
		if err := s.Delete(ctx, name); err != nil {
			t.Fatalf("Delete(%q): %v", name, err)
		}
	}
	if got := listAll(t, s, ""); len(got) != 0 {
		t.Errorf("List after deleting all = %v", got)
	}
}

func testLarge(t *testing.T, s store.Store) {
	ctx := context.Background()
	const size = 17 << 20
	data := payload(17, size)
	mustCreate(t, s, "data/17/large", data)
	mustGet(t, s, "data/17/large", data)
	info, err := s.Stat(ctx, "data/17/large")
	if err != nil || info.Size != size {
		t.Fatalf("Stat = %+v, %v; want size %d", info, err, size)
	}
	for _, r := range [][2]int64{{0, 65536}, {16<<20 - 5, 10}, {size - 65536, 65536}, {size - 3, 100}, {5 << 20, 4 << 20}} {
		got, err := s.GetRange(ctx, "data/17/large", r[0], r[1])
		want := data[r[0]:min(r[0]+r[1], size)]
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("GetRange(%d, %d) = %d bytes, %v; want %d bytes", r[0], r[1], len(got), err, len(want))
		}
	}
	data2 := payload(18, size+1)
	if err := s.Put(ctx, "data/17/large", data2); err != nil {
		t.Fatalf("Put large: %v", err)
	}
	mustGet(t, s, "data/17/large", data2)
}

func testCanceledContext(t *testing.T, s store.Store) {
	mustCreate(t, s, "obj", []byte("x"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v, want an error wrapping context.Canceled", op, err)
		}
	}
	_, err := s.Get(ctx, "obj")
	check("Get", err)
	_, err = s.GetRange(ctx, "obj", 0, 1)
	check("GetRange", err)
	_, err = s.Stat(ctx, "obj")
	check("Stat", err)
	check("List", s.List(ctx, "", func(store.Info) error { return nil }))
	check("Create", s.Create(ctx, "new", []byte("x")))
	check("Put", s.Put(ctx, "obj", []byte("y")))
	check("Delete", s.Delete(ctx, "obj"))
	mustGet(t, s, "obj", []byte("x"))
	if _, err := s.Stat(context.Background(), "new"); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("canceled Create left an object: Stat = %v", err)
	}
}

func testLocation(t *testing.T, s store.Store) {
	if s.Location() == "" {
		t.Error("Location is empty")
	}
}
