package repo

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/snapcrypt/snapcrypt/internal/vectortest"
	"github.com/snapcrypt/snapcrypt/repo/object"
)

type markVector struct {
	Name   string `json:"name"`
	Expect string `json:"expect"` // "ok" or "corrupted"
	Hex    string `json:"hex"`    // the mark's plaintext
}

const markVectorFile = "testdata/mark-vectors.json"

func exampleMark() *Mark {
	id := func(b byte) ObjectID { var o ObjectID; o[0], o[31] = b, b; return o }
	return &Mark{
		Time: time.Date(2025, 6, 1, 12, 0, 30, 5, time.UTC), Host: "backup1", PID: 4242,
		Snapshots: []ObjectID{id(1), id(2)}, OldIndex: []ObjectID{id(3)}, NewIndex: []ObjectID{id(4), id(5)},
		Packs:    []MarkPack{{id(6), 16 << 20, ReasonUnused}, {id(7), 1000, ReasonRepacked}, {id(8), 77, ReasonUnindexed}},
		DEKs:     [][16]byte{{9}, {10}},
		DEKPacks: []string{"deks/5a0e6f9b21c3d870/packs/0123456789abcdef0123456789abcdef-3"},
	}
}

func makeMarkVectors() []markVector {
	ok := MarshalMark(exampleMark())
	empty := MarshalMark(&Mark{Time: time.Unix(0, 0).UTC()})
	set := func(b []byte, i int, v byte) []byte { b = bytes.Clone(b); b[i] = v; return b }
	// Offsets in ok: version 1, time varint 9 bytes (ns since 1970 in
	// 2025 zig-zagged), host length at 10, host, pid (2 bytes), then
	// the snapshot count.
	host := 1 + 9
	snapCount := host + 1 + len("backup1") + 2
	dekPack := exampleMark().DEKPacks[0]
	// The tail: DEK count, two DEK ids, DEK pack count, name length, name.
	reason := len(ok) - (1 + 2*16 + 1 + 1 + len(dekPack)) - 1 // the last pack's reason
	hugeCount := append(bytes.Clone(ok[:snapCount]), 0xff, 0xff, 0xff, 0xff, 0x0f)
	return []markVector{
		{"ok", "ok", hex.EncodeToString(ok)},
		{"empty", "ok", hex.EncodeToString(empty)},
		{"version-2", "corrupted", hex.EncodeToString(set(ok, 0, 2))},
		{"trailing", "corrupted", hex.EncodeToString(append(bytes.Clone(ok), 0))},
		{"truncated", "corrupted", hex.EncodeToString(ok[:len(ok)-1])},
		{"huge-count", "corrupted", hex.EncodeToString(hugeCount)},
		{"bad-reason", "corrupted", hex.EncodeToString(set(ok, reason, 4))},
		{"not-a-dek-pack", "corrupted", hex.EncodeToString(set(ok, len(ok)-len(dekPack)+len("deks/5a0e6f9b21c3d870/"), 'x'))},
		{"nothing", "corrupted", ""},
	}
}

func parseMarkCorrupt(b []byte) (*Mark, error) {
	m, err := UnmarshalMark(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", object.ErrCorrupt, err)
	}
	return m, nil
}

func TestMarkVectors(t *testing.T) {
	vectortest.Run(t, markVectorFile, makeMarkVectors(), func(v markVector) {
		b, err := hex.DecodeString(v.Hex)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		vectortest.CheckParse(t, v.Name, v.Expect, string(b), parseMarkCorrupt, MarshalMark)
	})
	// The example decodes to what was encoded.
	m, err := UnmarshalMark(MarshalMark(exampleMark()))
	if err != nil {
		t.Fatal(err)
	}
	if want := exampleMark(); !reflect.DeepEqual(m, want) {
		t.Errorf("round trip: got %+v, want %+v", m, want)
	}
}

// FuzzUnmarshalMark: whatever decodes marshals back to the same bytes, and
// the decoder never allocates more entries than the input's bytes allow.
func FuzzUnmarshalMark(f *testing.F) {
	for _, v := range vectortest.Load[markVector](f, markVectorFile) {
		b, err := hex.DecodeString(v.Hex)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := UnmarshalMark(b)
		if err != nil {
			return
		}
		n := len(m.Snapshots) + len(m.OldIndex) + len(m.NewIndex) + len(m.Packs) + len(m.DEKs) + len(m.DEKPacks)
		if n > len(b) {
			t.Fatalf("%d entries from %d bytes", n, len(b))
		}
		if got := MarshalMark(m); !bytes.Equal(got, b) {
			t.Fatalf("marshal gives %x, decoded from %x", got, b)
		}
	})
}
