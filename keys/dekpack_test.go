package keys

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/snapcrypt/snapcrypt/internal/vectortest"
	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/mem"
)

// packVectorKEK is the KEK of the raw-success wrapped-DEK vector (also
// the fuzzer of wrapped DEKs uses it).
func packVectorKEK(t testing.TB) (*kek, [16]byte) {
	v := loadWrapVectors(t)["raw-success"]
	rid, _ := parseRepoID(v.RepoID)
	raw, _ := hex.DecodeString(v.RawKey)
	m, _ := NewRawKey(raw)
	kk := matchKEK(context.Background(), &Generation{ID: v.GenID, KDF: v.KDF, Check: v.Check}, m, rid)
	if kk == nil {
		t.Fatal("raw-success vector does not match")
	}
	return kk, rid
}

// packVectorEntries are three DEKs wrapped with fixed nonces under the
// raw-success vector's KEK, given out of order.
func packVectorEntries(t testing.TB) ([]PackEntry, map[[16]byte][]byte) {
	kk, rid := packVectorKEK(t)
	deks := map[[16]byte][]byte{}
	var es []PackEntry
	for _, i := range []byte{3, 1, 2} {
		var id [16]byte
		for j := range id {
			id[j] = i*0x11 + byte(j)
		}
		dek := bytes.Repeat([]byte{0xd0 + i}, KeySize)
		nonce := bytes.Repeat([]byte{0x40 + i}, 24)
		deks[id] = dek
		es = append(es, PackEntry{ID: id, Wrapped: kk.wrapNonce(rid, id, dek, nonce)})
	}
	return es, deks
}

const packVectorFile = "testdata/dekpack/three-entries.hex"

// TestDEKPackVector: the pack encoding is frozen (docs/format.md, "DEK
// pack"); today's code must produce the stored bytes, parse them back, and
// every entry must open to its DEK.
func TestDEKPackVector(t *testing.T) {
	es, deks := packVectorEntries(t)
	b := MarshalPack(es)
	if vectortest.Update() {
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
		t.Fatalf("MarshalPack differs from the stored vector:\n got %x\nwant %x", b, want)
	}
	if len(want) != 9+3*93 || string(want[:5]) != "SCWP\x01" || !bytes.Equal(want[5:9], []byte{0, 0, 0, 3}) {
		t.Fatalf("vector header/length wrong: %d bytes, %x", len(want), want[:9])
	}
	got, err := ParsePack(want, 3)
	if err != nil {
		t.Fatal(err)
	}
	kk, rid := packVectorKEK(t)
	for i, e := range got {
		if i > 0 && bytes.Compare(got[i-1].ID[:], e.ID[:]) >= 0 {
			t.Fatal("entries not sorted")
		}
		dek, err := kk.unwrap(rid, e.ID, e.Wrapped)
		if err != nil || !bytes.Equal(dek, deks[e.ID]) {
			t.Fatalf("entry %x: %v", e.ID, err)
		}
		// An entry moved to another id does not open.
		other := got[(i+1)%len(got)].ID
		if _, err := kk.unwrap(rid, other, e.Wrapped); !errors.Is(err, object.ErrCorrupt) {
			t.Fatalf("entry %x opened under id %x", e.ID, other)
		}
	}
}

func TestParsePackErrors(t *testing.T) {
	es, _ := packVectorEntries(t)
	good := MarshalPack(es)
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
		_, err := ParsePack(c.b, c.want)
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
		n, s, ok := ParsePackName(c.name)
		if n != c.n || s != c.shard || ok != c.ok {
			t.Errorf("ParsePackName(%q) = %d, %d, %v; want %d, %d, %v", c.name, n, s, ok, c.n, c.shard, c.ok)
		}
	}
	name, err := NewPackName("0011223344556677", 42)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CheckName(name); err != nil {
		t.Fatal(err)
	}
	if n, _, ok := ParsePackName(name); !ok || n != 42 || !IsPackName(name) || ObjectEntries(name) != 42 {
		t.Fatalf("packName gave %q: %d %v", name, n, ok)
	}
	if IsPackName("deks/0011223344556677/" + strings.Repeat("ab", 16)) {
		t.Fatal("a single wrapped DEK counted as a pack")
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
	var es []PackEntry
	for i := range 2 {
		var id [16]byte
		id[0], id[1] = 0x70, byte(i)
		dek := bytes.Repeat([]byte{byte(0x30 + i)}, KeySize)
		w, _ := kk.wrap(k.rid, id, dek)
		deks[id] = dek
		es = append(es, PackEntry{id, w})
	}
	name, _ := NewPackName(gen, len(es))
	if err := st.Create(ctx, name, MarshalPack(es)); err != nil {
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
	bad, _ := NewPackName(gen, 1)
	st.Create(ctx, bad, MarshalPack([]PackEntry{{id, w}}))
	_, err := k.DEK(ctx, id)
	if !errors.Is(err, object.ErrCorrupt) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("damaged entry: %v", err)
	}
	// A good copy in a later pack wins over the damaged one.
	good, _ := kk.wrap(k.rid, id, bytes.Repeat([]byte{9}, KeySize))
	later, _ := NewPackName(gen, 1)
	st.Create(ctx, later, MarshalPack([]PackEntry{{id, good}}))
	if got, err := k.DEK(ctx, id); err != nil || !bytes.Equal(got, bytes.Repeat([]byte{9}, KeySize)) {
		t.Fatalf("good copy after a damaged one: %v", err)
	}
	// A pack that does not parse is reported when the DEK is nowhere else.
	var lost [16]byte
	lost[0] = 0x72
	junk, _ := NewPackName(gen, 1)
	st.Create(ctx, junk, []byte("SCWP\x01junk"))
	if _, err := k.DEK(ctx, lost); !errors.Is(err, object.ErrCorrupt) || !strings.Contains(err.Error(), junk) {
		t.Fatalf("unparseable pack: %v", err)
	}
}

func FuzzParsePack(f *testing.F) {
	es, _ := packVectorEntries(f)
	f.Add(MarshalPack(es), 3)
	f.Add(MarshalPack(es[:1]), 1)
	f.Add([]byte("SCWP\x01\x00\x00\x00\x01"), 0)
	f.Fuzz(func(t *testing.T, b []byte, want int) {
		got, err := ParsePack(b, want)
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
		if again := MarshalPack(got); !bytes.Equal(again, b) {
			t.Fatal("parse/marshal differs")
		}
	})
}
