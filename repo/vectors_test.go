package repo

import (
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/snapcrypt/snapcrypt/internal/vectortest"
)

// TestKnownAnswers checks the exact bytes of the tree, index and pack
// trailer encodings against testdata/vectors.txt (docs/format.md).
func TestKnownAnswers(t *testing.T) {
	got := map[string][]byte{
		"tree":         sampleTree().Marshal(),
		"empty-tree":   (&Tree{}).Marshal(),
		"index":        MarshalIndex(sampleIndex()),
		"pack-trailer": appendPackTrailer(nil, sampleIndex()[0].Blobs),
		// Format version 2: entries of compressed blobs.
		"index-v2":        MarshalIndex(sampleIndexV2()),
		"pack-trailer-v2": appendPackTrailer(nil, sampleIndexV2()[0].Blobs),
	}
	const path = "testdata/vectors.txt"
	if vectortest.Update() {
		var b strings.Builder
		for _, k := range []string{"tree", "empty-tree", "index", "pack-trailer", "index-v2", "pack-trailer-v2"} {
			b.WriteString(k + " " + hex.EncodeToString(got[k]) + "\n")
		}
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		name, hx, _ := strings.Cut(line, " ")
		want, err := hex.DecodeString(hx)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if hex.EncodeToString(got[name]) != hx {
			t.Errorf("%s encodes differently from the vector:\n got %x\nwant %x", name, got[name], want)
		}
		seen++
		// Every vector decodes and re-encodes to itself.
		switch name {
		case "tree", "empty-tree":
			tr, err := UnmarshalTree(want)
			if err != nil || hex.EncodeToString(tr.Marshal()) != hx {
				t.Errorf("%s: decode/encode: %v", name, err)
			}
		case "index", "index-v2":
			ps, err := UnmarshalIndex(want)
			if err != nil || hex.EncodeToString(MarshalIndex(ps)) != hx {
				t.Errorf("%s: decode/encode: %v", name, err)
			}
		}
	}
	if seen != len(got) {
		t.Fatalf("%d vectors in %s, want %d", seen, path, len(got))
	}
}
