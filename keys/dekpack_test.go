package keys

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/local"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// storedCopies returns every wrapped copy of DEK id under generation gen
// as the store holds them: the single object and the entries of every
// DEK pack that parses (read from the store, not from a Keychain's index).
func storedCopies(t testing.TB, st store.Store, gen [8]byte, id [16]byte) [][]byte {
	if t != nil {
		t.Helper()
	}
	ctx := context.Background()
	var out [][]byte
	if b, err := st.Get(ctx, dekName(gen, id)); err == nil {
		out = append(out, b)
	}
	g := hex.EncodeToString(gen[:])
	err := st.List(ctx, packPrefix(g), func(i store.Info) error {
		n, _, ok := parsePackName(i.Name)
		if !ok {
			return nil
		}
		b, err := st.Get(ctx, i.Name)
		if err != nil {
			return err
		}
		es, err := parsePack(b, n)
		if err != nil {
			return nil
		}
		for _, e := range es {
			if e.id == id {
				out = append(out, e.wrapped)
			}
		}
		return nil
	})
	if err != nil {
		fatal(t, err)
	}
	return out
}

// fatal fails t, or panics without one (checks called from goroutines
// return errors instead; these helpers fail only on store errors).
func fatal(t testing.TB, err error) {
	if t == nil {
		panic(err)
	}
	t.Helper()
	t.Fatal(err)
}

// storedIDs returns the DEK ids below deks/<gen>/: single objects and the
// entries of DEK packs.
func storedIDs(t testing.TB, st store.Store, gen string) map[[16]byte]bool {
	if t != nil {
		t.Helper()
	}
	ctx := context.Background()
	out := map[[16]byte]bool{}
	err := st.List(ctx, genPrefix(gen), func(i store.Info) error {
		if !isPackName(i.Name) {
			id, err := parseDEKID(i.Name[strings.LastIndexByte(i.Name, '/')+1:])
			if err != nil {
				return err
			}
			out[id] = true
			return nil
		}
		n, _, _ := parsePackName(i.Name)
		b, err := st.Get(ctx, i.Name)
		if err != nil {
			return err
		}
		es, err := parsePack(b, n)
		if err != nil {
			return err
		}
		for _, e := range es {
			out[e.id] = true
		}
		return nil
	})
	if err != nil {
		fatal(t, err)
	}
	return out
}

// editPacks rewrites every DEK pack of generation gen through edit (which
// may drop or change entries), each as a new pack under a new name.
func editPacks(t testing.TB, st store.Store, gen string, edit func([]packEntry) []packEntry) {
	t.Helper()
	ctx := context.Background()
	var names []string
	st.List(ctx, packPrefix(gen), func(i store.Info) error { names = append(names, i.Name); return nil })
	for _, name := range names {
		n, _, _ := parsePackName(name)
		b, err := st.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		es, err := parsePack(bytes.Clone(b), n)
		if err != nil {
			t.Fatal(err)
		}
		es = edit(es)
		if err := st.Delete(ctx, name); err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			continue
		}
		nn, _ := packName(gen, len(es))
		if err := st.Create(ctx, nn, marshalPack(es)); err != nil {
			t.Fatal(err)
		}
	}
}

// packVectorKEK is the KEK of the raw-success wrapped-DEK vector (also
// the fuzzer of wrapped DEKs uses it).
func packVectorKEK(t testing.TB) (*kek, [16]byte) {
	v := loadWrapVectors(t)["raw-success"]
	rid, _ := parseRepoID(v.RepoID)
	raw, _ := hex.DecodeString(v.RawKey)
	m, _ := NewRawKey(raw)
	kk := matchKEK(&Generation{ID: v.GenID, KDF: v.KDF, Check: v.Check}, m, rid)
	if kk == nil {
		t.Fatal("raw-success vector does not match")
	}
	return kk, rid
}

// packVectorEntries are three DEKs wrapped with fixed nonces under the
// raw-success vector's KEK, given out of order.
func packVectorEntries(t testing.TB) ([]packEntry, map[[16]byte][]byte) {
	kk, rid := packVectorKEK(t)
	deks := map[[16]byte][]byte{}
	var es []packEntry
	for _, i := range []byte{3, 1, 2} {
		var id [16]byte
		for j := range id {
			id[j] = i*0x11 + byte(j)
		}
		dek := bytes.Repeat([]byte{0xd0 + i}, KeySize)
		nonce := bytes.Repeat([]byte{0x40 + i}, 24)
		deks[id] = dek
		es = append(es, packEntry{id: id, wrapped: kk.wrapNonce(rid, id, dek, nonce)})
	}
	return es, deks
}

const packVectorFile = "testdata/dekpack/three-entries.hex"

// TestDEKPackVector: the pack encoding is frozen (docs/format.md, "DEK
// pack"); today's code must produce the stored bytes, parse them back, and
// every entry must open to its DEK.
func TestDEKPackVector(t *testing.T) {
	es, deks := packVectorEntries(t)
	b := marshalPack(es)
	if *update {
		os.MkdirAll(filepath.Dir(packVectorFile), 0o755)
		if err := os.WriteFile(packVectorFile, []byte(hex.EncodeToString(b)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stored, err := os.ReadFile(packVectorFile)
	if err != nil {
		t.Fatal(err)
	}
	want, err := hex.DecodeString(strings.TrimSpace(string(stored)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("marshalPack differs from the stored vector:\n got %x\nwant %x", b, want)
	}
	if len(want) != 9+3*93 || string(want[:5]) != "SCWP\x01" || !bytes.Equal(want[5:9], []byte{0, 0, 0, 3}) {
		t.Fatalf("vector header/length wrong: %d bytes, %x", len(want), want[:9])
	}
	got, err := parsePack(want, 3)
	if err != nil {
		t.Fatal(err)
	}
	kk, rid := packVectorKEK(t)
	for i, e := range got {
		if i > 0 && bytes.Compare(got[i-1].id[:], e.id[:]) >= 0 {
			t.Fatal("entries not sorted")
		}
		dek, err := kk.unwrap(rid, e.id, e.wrapped)
		if err != nil || !bytes.Equal(dek, deks[e.id]) {
			t.Fatalf("entry %x: %v", e.id, err)
		}
		// An entry moved to another id does not open.
		other := got[(i+1)%len(got)].id
		if _, err := kk.unwrap(rid, other, e.wrapped); !errors.Is(err, object.ErrCorrupt) {
			t.Fatalf("entry %x opened under id %x", e.id, other)
		}
	}
}

func TestParsePackErrors(t *testing.T) {
	es, _ := packVectorEntries(t)
	good := marshalPack(es)
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := []struct {
		name string
		b    []byte
		want int
		err  string
	}{
		{"good", good, 3, ""},
		{"good-unknown-count", good, 0, ""},
		{"empty", nil, 0, "bad magic"},
		{"magic", mut(func(b []byte) []byte { b[0] = 'X'; return b }), 0, "bad magic"},
		{"version", mut(func(b []byte) []byte { b[4] = 2; return b }), 0, "version 2"},
		{"count-vs-name", good, 2, "name says 2"},
		{"zero-entries", []byte("SCWP\x01\x00\x00\x00\x00"), 0, "0 entries"},
		{"too-many", []byte("SCWP\x01\x00\x00\x20\x01"), 0, "8193 entries"},
		{"truncated", good[:len(good)-1], 3, "bytes for 3 entries"},
		{"trailing", append(bytes.Clone(good), 0), 3, "bytes for 3 entries"},
		{"unsorted", mut(func(b []byte) []byte {
			e0 := bytes.Clone(b[9 : 9+93])
			copy(b[9:], b[9+93:9+186])
			copy(b[9+93:], e0)
			return b
		}), 3, "out of order"},
		{"duplicate", mut(func(b []byte) []byte { copy(b[9+93:9+93+16], b[9:9+16]); return b }), 3, "out of order"},
	}
	for _, c := range cases {
		_, err := parsePack(c.b, c.want)
		if c.err == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, errPackFormat) || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.err)
		}
	}
}

func TestPackNames(t *testing.T) {
	r := strings.Repeat("a1", 16)
	cases := []struct {
		name  string
		n     int
		shard int
		ok    bool
	}{
		{"deks/0011223344556677/packs/" + r + "-1", 1, 10, true},
		{"deks/0011223344556677/packs/" + r + "-8192", 8192, 10, true},
		{"deks/0011223344556677/packs/0" + r[1:] + "-77", 77, 0, true},
		{"deks/0011223344556677/packs/" + r + "-8193", 0, 0, false},
		{"deks/0011223344556677/packs/" + r + "-0", 0, 0, false},
		{"deks/0011223344556677/packs/" + r + "-07", 0, 0, false},
		{"deks/0011223344556677/packs/" + r + "-", 0, 0, false},
		{"deks/0011223344556677/packs/" + r, 0, 0, false},
		{"deks/0011223344556677/packs/" + strings.ToUpper(r) + "-3", 0, 0, false},
		{"deks/0011223344556677/packs/" + r[2:] + "-3", 0, 0, false},
		{"deks/0011223344556677/packs/" + r + "-+3", 0, 0, false},
	}
	for _, c := range cases {
		n, s, ok := parsePackName(c.name)
		if n != c.n || s != c.shard || ok != c.ok {
			t.Errorf("parsePackName(%q) = %d, %d, %v; want %d, %d, %v", c.name, n, s, ok, c.n, c.shard, c.ok)
		}
	}
	name, err := packName("0011223344556677", 42)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CheckName(name); err != nil {
		t.Fatal(err)
	}
	if n, _, ok := parsePackName(name); !ok || n != 42 || !isPackName(name) || objectEntries(name) != 42 {
		t.Fatalf("packName gave %q: %d %v", name, n, ok)
	}
	if isPackName("deks/0011223344556677/" + strings.Repeat("ab", 16)) {
		t.Fatal("a single wrapped DEK counted as a pack")
	}
	if entryShard("packs/"+r+"-3") != 10 || entryShard("f"+r[1:]) != 15 {
		t.Fatal("entryShard")
	}
}

// TestPackedLookup: a Keychain finds DEKs in packs written after it
// indexed the generation (a second lookup lists again), reads a damaged
// entry as corrupt naming the pack, and prefers any copy that opens.
func TestPackedLookup(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	k := mustInit(t, st, rawKey(t, 1))
	k.mu.RLock()
	kk := k.keks[k.ring.Current]
	k.mu.RUnlock()
	gen := hex.EncodeToString(kk.gen[:])
	// Index the (empty) generation first, then pack two DEKs behind its back.
	var absent [16]byte
	absent[0] = 0xee
	if _, err := k.DEK(ctx, absent); !errors.Is(err, ErrDEKUnavailable) {
		t.Fatalf("absent DEK: %v", err)
	}
	deks := map[[16]byte][]byte{}
	var es []packEntry
	for i := range 2 {
		var id [16]byte
		id[0], id[1] = 0x70, byte(i)
		dek := bytes.Repeat([]byte{byte(0x30 + i)}, KeySize)
		w, _ := kk.wrap(k.rid, id, dek)
		deks[id] = dek
		es = append(es, packEntry{id, w})
	}
	name, _ := packName(gen, len(es))
	if err := st.Create(ctx, name, marshalPack(es)); err != nil {
		t.Fatal(err)
	}
	for id, want := range deks {
		got, err := k.DEK(ctx, id)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("packed DEK %x: %v", id, err)
		}
	}
	// A damaged entry: the error names the pack.
	var id [16]byte
	id[0] = 0x71
	w, _ := kk.wrap(k.rid, id, bytes.Repeat([]byte{9}, KeySize))
	w[len(w)-1] ^= 1
	bad, _ := packName(gen, 1)
	st.Create(ctx, bad, marshalPack([]packEntry{{id, w}}))
	_, err := k.DEK(ctx, id)
	if !errors.Is(err, object.ErrCorrupt) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("damaged entry: %v", err)
	}
	// A good copy in a later pack wins over the damaged one.
	good, _ := kk.wrap(k.rid, id, bytes.Repeat([]byte{9}, KeySize))
	later, _ := packName(gen, 1)
	st.Create(ctx, later, marshalPack([]packEntry{{id, good}}))
	if got, err := k.DEK(ctx, id); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{9}, KeySize)) {
		t.Fatalf("good copy after a damaged one: %v", err)
	}
	// A pack that does not parse is reported when the DEK is nowhere else.
	var lost [16]byte
	lost[0] = 0x72
	junk, _ := packName(gen, 1)
	st.Create(ctx, junk, []byte("SCWP\x01junk"))
	if _, err := k.DEK(ctx, lost); !errors.Is(err, object.ErrCorrupt) || !strings.Contains(err.Error(), junk) {
		t.Fatalf("unparseable pack: %v", err)
	}
}

func FuzzParsePack(f *testing.F) {
	es, _ := packVectorEntries(f)
	f.Add(marshalPack(es), 3)
	f.Add(marshalPack(es[:1]), 1)
	f.Add([]byte("SCWP\x01\x00\x00\x00\x01"), 0)
	f.Fuzz(func(t *testing.T, b []byte, want int) {
		got, err := parsePack(b, want)
		if err != nil {
			if !errors.Is(err, errPackFormat) {
				t.Fatalf("error %v does not wrap errPackFormat", err)
			}
			return
		}
		if want > 0 && len(got) != want {
			t.Fatalf("%d entries, name says %d", len(got), want)
		}
		// What parses re-encodes to the same bytes.
		if again := marshalPack(got); !bytes.Equal(again, b) {
			t.Fatal("parse/marshal differs")
		}
	})
}

// TestRotateLocalStore: on the local store a rotation packs the twins,
// deletes the old prefix at once (DeletePrefix), and Purge frees it;
// a second rotation re-wraps from packs. Every DEK opens with the new key
// alone after each, and the status counts packed DEKs.
func TestRotateLocalStore(t *testing.T) {
	ctx := context.Background()
	st := localStore(t)
	clock, k, deks := rotationFixture(t, st, 300)
	for i, key := range []*Material{rawKey(t, 2), rawKey(t, 3)} {
		if err := k.StartRotation(ctx, key, testOpts); err != nil {
			t.Fatal(err)
		}
		var phases []string
		err := k.RunRotation(ctx, func(p Progress) {
			if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
				phases = append(phases, p.Phase)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"rewrap", "retire", "delete", "done"}; !slices.Equal(phases, want) {
			t.Fatalf("rotation %d: phases %v, want %v", i+1, phases, want)
		}
		hidden := func() (n int) {
			es, _ := os.ReadDir(st.Location())
			for _, e := range es {
				if strings.HasPrefix(e.Name(), ".") {
					n++
				}
			}
			return n
		}
		if n := hidden(); n != 1 {
			t.Fatalf("rotation %d: %d hidden directories before Purge, want the old prefix's", i+1, n)
		}
		var paced int
		if err := k.Purge(ctx, func(time.Duration) { paced++ }); err != nil {
			t.Fatal(err)
		}
		if paced == 0 {
			t.Fatalf("rotation %d: Purge never paced", i+1)
		}
		checkFinished(t, st, clock, deks, key)
		cur := k.Keyring().Current
		var packs, singles int
		st.List(ctx, genPrefix(cur), func(i store.Info) error {
			if isPackName(i.Name) {
				packs++
			} else {
				singles++
			}
			return nil
		})
		// The content-id key's twin is a single (made at the switch).
		if packs == 0 || singles != 1 {
			t.Fatalf("rotation %d: %d packs and %d single objects under the new generation", i+1, packs, singles)
		}
		s, err := k.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range s.Generations {
			if want := map[bool]int{true: 301, false: 0}[g.ID == cur]; g.DEKs != want {
				t.Fatalf("rotation %d: status says generation %s (%s) has %d DEKs, want %d", i+1, g.ID, g.State, g.DEKs, want)
			}
		}
		if n := hidden(); n != 0 {
			t.Fatalf("rotation %d: %d hidden directories left after Purge", i+1, n)
		}
	}
}

// TestRunRotationWaitsForHelperRun: a daemon's keyring poll may start
// HelpRotation for the rotation this process just switched to; RunRotation
// then waits for that run instead of failing with ErrBusy.
func TestRunRotationWaitsForHelperRun(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	clock, k, deks := rotationFixture(t, st, 50)
	if err := k.StartRotation(ctx, rawKey(t, 2), testOpts); err != nil {
		t.Fatal(err)
	}
	// Stand in for a helper run that is still going.
	if err := k.beginRun(k.Keyring().Rotation, true); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- k.RunRotation(ctx, nil) }()
	select {
	case err := <-done:
		t.Fatalf("RunRotation returned while a helper run was active: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	k.endRun()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkFinished(t, st, clock, deks, rawKey(t, 2))
}

// TestRotateOptionsHooks: every worker goroutine of a run calls
// StartWorker first, and Pace follows every unit of work with its time.
func TestRotateOptionsHooks(t *testing.T) {
	ctx := context.Background()
	st := mem.New()
	clock, k, deks := rotationFixture(t, st, 100)
	var started, paced, negative atomic.Int64
	opts := testOpts
	opts.StartWorker = func() { started.Add(1) }
	opts.Pace = func(d time.Duration) {
		paced.Add(1)
		if d < 0 {
			negative.Add(1)
		}
	}
	k.SetRotateOptions(opts)
	if err := k.StartRotation(ctx, rawKey(t, 2), opts); err != nil {
		t.Fatal(err)
	}
	if err := k.RunRotation(ctx, nil); err != nil {
		t.Fatal(err)
	}
	checkFinished(t, st, clock, deks, rawKey(t, 2))
	// 101 re-wraps and 101 deletes at least, each paced.
	if paced.Load() < 2*101 || negative.Load() != 0 {
		t.Fatalf("Pace called %d times (%d with a negative time), want at least %d", paced.Load(), negative.Load(), 2*101)
	}
	if started.Load() == 0 {
		t.Fatal("StartWorker never called")
	}
}

// TestRotateLocalStoreCrashAfterDelete: a process killed right after the
// old prefix was renamed away leaves a finished rotation and a hidden
// directory that the next process's Purge frees.
func TestRotateLocalStoreCrashAfterDelete(t *testing.T) {
	ctx := context.Background()
	st := localStore(t)
	clock, k, deks := rotationFixture(t, st, 200)
	if err := k.StartRotation(ctx, rawKey(t, 2), testOpts); err != nil {
		t.Fatal(err)
	}
	setCrash(k, func(p string) error {
		if p == PointDelete {
			return errCrash
		}
		return nil
	})
	if err := k.RunRotation(ctx, nil); !errors.Is(err, errCrash) {
		t.Fatalf("RunRotation: %v, want the crash", err)
	}
	hidden := func() (n int) {
		es, _ := os.ReadDir(st.Location())
		for _, e := range es {
			if strings.HasPrefix(e.Name(), ".trash-") {
				n++
			}
		}
		return n
	}
	if hidden() != 1 {
		t.Fatalf("%d trash directories after the crash, want 1", hidden())
	}
	// The next process: the rotation is finished (the lease lapses), and
	// Purge frees the renamed prefix.
	clock.advance(time.Hour)
	k2 := openWith(t, st, clock, rawKey(t, 2))
	if err := k2.Resume(ctx, nil); err != nil {
		t.Fatal(err)
	}
	checkFinished(t, st, clock, deks, rawKey(t, 2))
	if err := k2.Purge(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if hidden() != 0 {
		t.Fatalf("%d trash directories after Purge", hidden())
	}
}

// rotationFixture is a keychain on st under key 1, with a fake clock, the
// test rotation options and n DEKs.
func rotationFixture(t *testing.T, st store.Store, n int) (*fakeClock, *Keychain, map[[16]byte][]byte) {
	t.Helper()
	clock := newFakeClock()
	k := mustInit(t, st, rawKey(t, 1))
	setClock(k, clock.Now)
	k.SetRotateOptions(testOpts)
	return clock, k, makeDEKs(t, k, n)
}

// localStore is a new local store in a temporary directory.
func localStore(t *testing.T) *local.Store {
	t.Helper()
	st, err := local.Init(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}
