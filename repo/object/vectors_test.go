package object

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "regenerate testdata/vectors.json from the recipes in vectors_test.go")

const vectorsFile = "testdata/vectors.json"

// Expected outcomes of a vector, in the spirit of age's testkit.
const (
	expectSuccess = "success"
	expectHeader  = "header failure"  // ParseHeader (and so Open) fails
	expectPayload = "payload failure" // the header parses; Open fails
)

// vectorFile is the layout of testdata/vectors.json.
type vectorFile struct {
	Comment []string `json:"comment"`
	Vectors []vector `json:"vectors"`
}

// A vector seals a plaintext with a fixed DEK and header, optionally damages
// the object (mutation), and opens it with open_dek and open_name.
//
// The plaintext is pattern bytes: plaintext[i] = byte(i % 251).
//
// Mutations, applied to the sealed object:
//
//	flip:OFF:BIT          flip bit BIT of byte OFF (negative OFF counts from the end)
//	set:OFF:HEX           overwrite bytes at OFF
//	truncate:N            keep the first N bytes
//	append:HEX            append bytes
//	swap:I:J              swap full segments I and J
//	rotate3               segments 0,1,2 become 1,2,0 (all full)
//	append-segment:I      append a copy of full segment I
type vector struct {
	Name      string `json:"name"`
	Comment   string `json:"comment,omitempty"`
	Expect    string `json:"expect"`
	DEK       string `json:"dek"`
	DEKID     string `json:"dek_id"`
	Salt      string `json:"salt"`
	Kind      byte   `json:"kind"`
	Object    string `json:"object_name"`
	PlainSize int    `json:"plaintext_size"`
	PlainSHA  string `json:"plaintext_sha256"`

	// The untampered sealed object.
	Header    string `json:"header"`
	SealedLen int    `json:"sealed_size"`
	SealedSHA string `json:"sealed_sha256"`

	Mutation string `json:"mutation,omitempty"`
	OpenDEK  string `json:"open_dek,omitempty"`  // default: dek
	OpenName string `json:"open_name,omitempty"` // default: object_name

	// The object as opened (after the mutation).
	ObjectLen int    `json:"object_size"`
	ObjectSHA string `json:"object_sha256"`
	ObjectHex string `json:"object_hex,omitempty"` // when at most 512 bytes
}

func patternPlain(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func atoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("bad number %q", s)
	}
	return n
}

func segment(obj []byte, i int) []byte {
	lo := HeaderSize + i*SealedSegmentSize
	return obj[lo : lo+SealedSegmentSize]
}

func mutate(t testing.TB, obj []byte, m string) []byte {
	t.Helper()
	if m == "" {
		return obj
	}
	obj = bytes.Clone(obj)
	f := strings.Split(m, ":")
	switch f[0] {
	case "flip":
		off := atoi(t, f[1])
		if off < 0 {
			off += len(obj)
		}
		obj[off] ^= 1 << atoi(t, f[2])
	case "set":
		copy(obj[atoi(t, f[1]):], mustHex(t, f[2]))
	case "truncate":
		obj = obj[:atoi(t, f[1])]
	case "append":
		obj = append(obj, mustHex(t, f[1])...)
	case "swap":
		a, b := segment(obj, atoi(t, f[1])), segment(obj, atoi(t, f[2]))
		tmp := bytes.Clone(a)
		copy(a, b)
		copy(b, tmp)
	case "rotate3":
		s0 := bytes.Clone(segment(obj, 0))
		copy(segment(obj, 0), segment(obj, 1))
		copy(segment(obj, 1), segment(obj, 2))
		copy(segment(obj, 2), s0)
	case "append-segment":
		obj = append(obj, segment(obj, atoi(t, f[1]))...)
	default:
		t.Fatalf("unknown mutation %q", m)
	}
	return obj
}

// build seals v's plaintext and returns the sealed object and the object to
// open (after the mutation).
func (v *vector) build(t testing.TB) (sealed, obj []byte) {
	t.Helper()
	h := Header{Kind: Kind(v.Kind)}
	copy(h.DEKID[:], mustHex(t, v.DEKID))
	copy(h.Salt[:], mustHex(t, v.Salt))
	sealed, err := Seal(mustHex(t, v.DEK), h, v.Object, patternPlain(v.PlainSize))
	if err != nil {
		t.Fatal(err)
	}
	return sealed, mutate(t, sealed, v.Mutation)
}

func (v *vector) openDEK(t testing.TB) []byte {
	if v.OpenDEK != "" {
		return mustHex(t, v.OpenDEK)
	}
	return mustHex(t, v.DEK)
}

func (v *vector) openName() string {
	if v.OpenName != "" {
		return v.OpenName
	}
	return v.Object
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	b, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f vectorFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Vectors) == 0 {
		t.Fatal("no vectors loaded")
	}
	return f.Vectors
}

func TestVectors(t *testing.T) {
	if *update {
		writeVectors(t)
	}
	seen := map[string]int{}
	for _, v := range loadVectors(t) {
		seen[v.Expect]++
		t.Run(v.Name, func(t *testing.T) {
			sealed, obj := v.build(t)
			if got := hex.EncodeToString(sealed[:HeaderSize]); got != v.Header {
				t.Errorf("header = %s, want %s", got, v.Header)
			}
			if len(sealed) != v.SealedLen || sha(sealed) != v.SealedSHA {
				t.Errorf("sealed object: %d bytes sha256 %s, want %d bytes %s", len(sealed), sha(sealed), v.SealedLen, v.SealedSHA)
			}
			if len(obj) != v.ObjectLen || sha(obj) != v.ObjectSHA {
				t.Errorf("object: %d bytes sha256 %s, want %d bytes %s", len(obj), sha(obj), v.ObjectLen, v.ObjectSHA)
			}
			if v.ObjectHex != "" && hex.EncodeToString(obj) != v.ObjectHex {
				t.Errorf("object bytes = %x, want %s", obj, v.ObjectHex)
			}
			checkVector(t, &v, obj)
		})
	}
	for _, e := range []string{expectSuccess, expectHeader, expectPayload} {
		if seen[e] == 0 {
			t.Errorf("no vector expects %q", e)
		}
	}
}

// checkVector runs obj through every decoding path and checks the outcome
// v.Expect.
func checkVector(t *testing.T, v *vector, obj []byte) {
	dek, name := v.openDEK(t), v.openName()
	plain := patternPlain(v.PlainSize)

	h, err := ParseHeader(obj)
	if v.Expect == expectHeader {
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("ParseHeader: %v, want ErrCorrupt", err)
		}
	} else if err != nil {
		t.Errorf("ParseHeader: %v", err)
	}

	_, got, err := Open(dek, name, obj)
	if v.Expect == expectSuccess {
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if sha(got) != v.PlainSHA || !bytes.Equal(got, plain) {
			t.Fatal("Open: wrong plaintext")
		}
	} else if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v, want ErrCorrupt", err)
	}
	if v.Expect == expectHeader {
		return
	}

	// Ranged reads, with the size an index would record for obj.
	c, err := NewCipher(dek, h, name)
	if err != nil {
		t.Fatal(err)
	}
	size, err := PlaintextSize(int64(len(obj)))
	if err != nil {
		if v.Expect == expectSuccess || !errors.Is(err, ErrCorrupt) {
			t.Fatalf("PlaintextSize: %v", err)
		}
		return
	}
	read := func(off, n int64) ([]byte, error) {
		ctOff, ctLen, _ := CipherRange(off, n, size)
		if ctOff+ctLen > int64(len(obj)) {
			return nil, fmt.Errorf("range past end: %w", ErrCorrupt)
		}
		return c.OpenRange(nil, obj[ctOff:ctOff+ctLen], off, n, size)
	}
	got, err = read(0, size)
	if v.Expect == expectSuccess {
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("OpenRange(all): %v", err)
		}
	} else if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("OpenRange(all): %v, want ErrCorrupt", err)
	}
	// Segment by segment, plus one read past the end: all succeed for a
	// good object, at least one fails for a bad one.
	failed := false
	for off := int64(0); off <= size; off += SegmentSize {
		got, err := read(off, SegmentSize)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("OpenRange(%d): %v", off, err)
			}
			failed = true
			continue
		}
		if want := plain[min(off, size):min(off+SegmentSize, size)]; v.Expect == expectSuccess && !bytes.Equal(got, want) {
			t.Fatalf("OpenRange(%d): wrong plaintext", off)
		}
	}
	if failed != (v.Expect != expectSuccess) {
		t.Fatalf("segment-wise reads: failed=%v, expect %s", failed, v.Expect)
	}
}

// writeVectors regenerates testdata/vectors.json. It runs only with
// -update; the output is committed and must not change afterwards.
func writeVectors(t *testing.T) {
	hexSum := func(s string) string { return sha(([]byte)(s)) }
	dek := hexSum("snapcrypt test DEK")
	dekID := hexSum("snapcrypt test DEK id")[:32]
	salt := hexSum("snapcrypt test salt")
	const name = "data/5a/5a0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
	const S, T, H = SealedSegmentSize, TagSize, HeaderSize
	lenOf := func(p int) int { return int(CiphertextSize(int64(p))) }

	type recipe struct {
		name, comment, expect string
		kind                  Kind
		size                  int
		mutation              string
		openDEK, openName     string
		objName               string
	}
	rs := []recipe{
		{name: "empty", expect: expectSuccess, kind: KindSnapshot, size: 0, comment: "one empty final segment"},
		{name: "one byte", expect: expectSuccess, kind: KindIndex, size: 1},
		{name: "segment minus one", expect: expectSuccess, kind: KindPack, size: SegmentSize - 1},
		{name: "one full segment", expect: expectSuccess, kind: KindPack, size: SegmentSize, comment: "the final segment is full"},
		{name: "segment plus one", expect: expectSuccess, kind: KindPack, size: SegmentSize + 1},
		{name: "three full segments", expect: expectSuccess, kind: KindPack, size: 3 * SegmentSize},
		{name: "three segments and a bit", expect: expectSuccess, kind: KindPack, size: 3*SegmentSize + 100},
		{name: "index name", expect: expectSuccess, kind: KindIndex, size: 300, objName: "index/00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"},

		{name: "bad magic", expect: expectHeader, kind: KindPack, size: 10, mutation: "flip:0:0"},
		{name: "bad version", expect: expectHeader, kind: KindPack, size: 10, mutation: "set:7:02"},
		{name: "kind 0", expect: expectHeader, kind: KindPack, size: 10, mutation: "set:8:00"},
		{name: "kind 5", expect: expectHeader, kind: KindPack, size: 10, mutation: "set:8:05"},
		{name: "short header", expect: expectHeader, kind: KindPack, size: 10, mutation: fmt.Sprintf("truncate:%d", H-1)},
		{name: "empty object", expect: expectHeader, kind: KindPack, size: 10, mutation: "truncate:0"},

		{name: "other valid kind", expect: expectPayload, kind: KindPack, size: 10, mutation: "set:8:02", comment: "kind is authenticated"},
		{name: "flipped DEK id", expect: expectPayload, kind: KindPack, size: 10, mutation: "flip:9:0"},
		{name: "flipped salt", expect: expectPayload, kind: KindPack, size: 10, mutation: fmt.Sprintf("flip:%d:7", H-1)},
		{name: "header only", expect: expectPayload, kind: KindPack, size: 0, mutation: fmt.Sprintf("truncate:%d", H), comment: "impossible length"},
		{name: "flipped ciphertext", expect: expectPayload, kind: KindPack, size: 10, mutation: fmt.Sprintf("flip:%d:3", H)},
		{name: "flipped tag", expect: expectPayload, kind: KindPack, size: 10, mutation: "flip:-1:0"},
		{name: "flipped empty tag", expect: expectPayload, kind: KindPack, size: 0, mutation: "flip:-16:4"},
		{name: "flipped middle segment", expect: expectPayload, kind: KindPack, size: 3*SegmentSize + 100, mutation: fmt.Sprintf("flip:%d:1", H+S+500)},
		{name: "flipped middle tag", expect: expectPayload, kind: KindPack, size: 3*SegmentSize + 100, mutation: fmt.Sprintf("flip:%d:1", H+2*S-1)},
		{name: "truncated mid-tag", expect: expectPayload, kind: KindPack, size: 10, mutation: fmt.Sprintf("truncate:%d", lenOf(10)-1)},
		{name: "truncated mid-segment", expect: expectPayload, kind: KindPack, size: 3 * SegmentSize, mutation: fmt.Sprintf("truncate:%d", H+S+1000)},
		{name: "truncated at segment boundary", expect: expectPayload, kind: KindPack, size: 3 * SegmentSize, mutation: fmt.Sprintf("truncate:%d", H+2*S), comment: "segment 1 lacks the final flag"},
		{name: "dropped last segment", expect: expectPayload, kind: KindPack, size: 3*SegmentSize + 100, mutation: fmt.Sprintf("truncate:%d", H+3*S)},
		{name: "appended empty segment", expect: expectPayload, kind: KindPack, size: SegmentSize, mutation: "append:" + strings.Repeat("00", T), comment: "impossible length"},
		{name: "appended segment", expect: expectPayload, kind: KindPack, size: 3 * SegmentSize, mutation: "append-segment:0"},
		{name: "appended segment to partial", expect: expectPayload, kind: KindPack, size: 3*SegmentSize + 100, mutation: "append-segment:1"},
		{name: "swapped segments", expect: expectPayload, kind: KindPack, size: 3*SegmentSize + 100, mutation: "swap:0:1"},
		{name: "reordered segments", expect: expectPayload, kind: KindPack, size: 3 * SegmentSize, mutation: "rotate3"},
		{name: "wrong name", expect: expectPayload, kind: KindPack, size: 100, openName: "data/5a/5a0123456789abcdef0123456789abcdef0123456789abcdef0123456788"},
		{name: "name prefix", expect: expectPayload, kind: KindPack, size: 100, openName: name[:len(name)-1]},
		{name: "object of another name", expect: expectPayload, kind: KindSnapshot, size: 100, objName: "snapshots/00", openName: "snapshots/01"},
		{name: "wrong DEK", expect: expectPayload, kind: KindPack, size: 100, openDEK: hexSum("another DEK")},
	}
	f := vectorFile{Comment: []string{
		"Known-answer vectors of the sealed-object format (docs/format.md, sealed objects).",
		"Generated once by `go test ./repo/object -run TestVectors -update`; do not regenerate.",
		"plaintext[i] = byte(i % 251); see vectors_test.go for the mutations.",
	}}
	for _, r := range rs {
		v := vector{
			Name: r.name, Comment: r.comment, Expect: r.expect,
			DEK: dek, DEKID: dekID, Salt: salt, Kind: byte(r.kind),
			Object: name, PlainSize: r.size, PlainSHA: sha(patternPlain(r.size)),
			Mutation: r.mutation, OpenDEK: r.openDEK, OpenName: r.openName,
		}
		if r.objName != "" {
			v.Object = r.objName
		}
		sealed, obj := v.build(t)
		v.Header = hex.EncodeToString(sealed[:HeaderSize])
		v.SealedLen, v.SealedSHA = len(sealed), sha(sealed)
		v.ObjectLen, v.ObjectSHA = len(obj), sha(obj)
		if len(obj) <= 512 {
			v.ObjectHex = hex.EncodeToString(obj)
		}
		f.Vectors = append(f.Vectors, v)
	}
	b, err := json.MarshalIndent(f, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vectorsFile, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
