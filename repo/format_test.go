package repo

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo/object"
)

func sampleTree() *Tree {
	var id1, id2 BlobID
	for i := range id1 {
		id1[i] = byte(i)
		id2[i] = byte(255 - i)
	}
	return &Tree{Nodes: []Node{
		{Name: []byte("a.txt"), Type: TypeFile, Mode: 0o644, UID: 1000, GID: 1000, MTime: 1700000000123456789, CTime: 1700000000223456789,
			Inode: 42, Dev: 2049, Links: 1, Size: 300, Chunks: []Chunk{{ID: id1, Length: 100}, {ID: id2, Length: 200}}},
		{Name: []byte("dir"), Type: TypeDir, Mode: 0o755, MTime: -5, Links: 2, Subtree: id2},
		{Name: []byte("empty"), Type: TypeFile, Mode: 0o600, Links: 1},
		{Name: []byte("link"), Type: TypeSymlink, Mode: 0o777, Target: []byte("../x")},
		{Name: []byte("\xff\xfename"), Type: TypeFile, Mode: 0o4755, Links: 2, Inode: 7},
	}}
}

func TestTreeRoundTrip(t *testing.T) {
	tr := sampleTree()
	b := tr.Marshal()
	got, err := UnmarshalTree(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Marshal(), b) {
		t.Fatal("round trip changed the bytes")
	}
	if n := got.Find([]byte("dir")); n == nil || n.Type != TypeDir {
		t.Fatal("Find(dir) failed")
	}
	if got.Find([]byte("nope")) != nil {
		t.Fatal("Find found a missing name")
	}
}

func TestTreeRejects(t *testing.T) {
	good := sampleTree().Marshal()
	cases := map[string]func() []byte{
		"empty":     func() []byte { return nil },
		"version":   func() []byte { b := bytes.Clone(good); b[0] = 2; return b },
		"truncated": func() []byte { return good[:len(good)-1] },
		"trailing":  func() []byte { return append(bytes.Clone(good), 0) },
		"unsorted": func() []byte {
			t := sampleTree()
			t.Nodes[0], t.Nodes[1] = t.Nodes[1], t.Nodes[0]
			return t.Marshal()
		},
		"duplicate": func() []byte {
			t := sampleTree()
			t.Nodes[1].Name = t.Nodes[0].Name
			return t.Marshal()
		},
		"slash": func() []byte {
			t := sampleTree()
			t.Nodes[4].Name = []byte("z/y")
			return t.Marshal()
		},
		"dotdot": func() []byte {
			t := &Tree{Nodes: []Node{{Name: []byte(".."), Type: TypeDir}}}
			return t.Marshal()
		},
		"size mismatch": func() []byte {
			t := sampleTree()
			t.Nodes[0].Size = 301
			return t.Marshal()
		},
		"bad type": func() []byte {
			t := &Tree{Nodes: []Node{{Name: []byte("x"), Type: 9}}}
			return t.Marshal()
		},
		"huge count": func() []byte { return []byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f} },
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := UnmarshalTree(mk()); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func sampleIndex() []IndexPack {
	var p IndexPack
	for i := range p.ID {
		p.ID[i] = byte(i * 3)
	}
	p.Header = bytes.Repeat([]byte{0xab}, 57)
	p.Blobs = []PackBlob{{Type: BlobData, Offset: 0, Length: 10}, {Type: BlobTree, Offset: 10, Length: 5}}
	p.Blobs[1].ID[0] = 1
	p.PlainSize = 15 + 2*packBlobSize + 12
	return []IndexPack{p}
}

// sampleIndexV2 is an index of one pack holding compressed blobs
// (version 2 entries): a compressed data blob, a data blob stored as it
// is, and a compressed tree.
func sampleIndexV2() []IndexPack {
	var p IndexPack
	for i := range p.ID {
		p.ID[i] = byte(i * 5)
	}
	p.Header = bytes.Repeat([]byte{0xcd}, 57)
	p.Blobs = []PackBlob{
		{Type: BlobData, Offset: 0, Length: 8, Zstd: true, Plain: 100},
		{Type: BlobData, Offset: 8, Length: 10},
		{Type: BlobTree, Offset: 18, Length: 6, Zstd: true, Plain: 40},
	}
	p.Blobs[1].ID[0] = 1
	p.Blobs[2].ID[0] = 2
	p.PlainSize = 24 + 3*packBlobSizeV2 + 12
	return []IndexPack{p}
}

// TestVersion2Entries: compressed blobs make version 2 encodings that
// decode to the same blobs; a list without one is written in version 1;
// version 2 bytes without a compressed blob, a stored blob whose lengths
// differ, an unknown compression and a plaintext length past the blob
// limit are refused.
func TestVersion2Entries(t *testing.T) {
	ix := sampleIndexV2()
	b := MarshalIndex(ix)
	if b[0] != 2 {
		t.Fatalf("index version %d, want 2", b[0])
	}
	got, err := UnmarshalIndex(b)
	if err != nil || len(got) != 1 || len(got[0].Blobs) != 3 {
		t.Fatalf("%v, %+v", err, got)
	}
	for i, pb := range got[0].Blobs {
		if pb != ix[0].Blobs[i] {
			t.Errorf("blob %d: %+v, want %+v", i, pb, ix[0].Blobs[i])
		}
	}
	if got[0].Blobs[0].PlainLength() != 100 || got[0].Blobs[1].PlainLength() != 10 {
		t.Errorf("plain lengths %d, %d", got[0].Blobs[0].PlainLength(), got[0].Blobs[1].PlainLength())
	}
	tr := appendPackTrailer(make([]byte, 24), ix[0].Blobs)
	if string(tr[len(tr)-8:]) != "SCPACK02" || len(tr) != int(ix[0].PlainSize) {
		t.Fatalf("trailer %x", tr)
	}
	if blobs, err := ParsePackTrailer(tr); err != nil || len(blobs) != 3 || blobs[2] != ix[0].Blobs[2] {
		t.Fatalf("trailer: %v %+v", err, blobs)
	}
	if v1 := MarshalIndex(sampleIndex()); v1[0] != 1 {
		t.Errorf("an index without compressed blobs is version %d", v1[0])
	}
	// Entry bytes: the first blob's are at 1 (version) + 1 (count) + 32
	// + uvarint size + 1 + 57 + 1 (blob count).
	first := 1 + 1 + 32 + len(binary.AppendUvarint(nil, ix[0].PlainSize)) + 1 + 57 + 1
	mutate := map[string]func(b []byte){
		"no compressed blob": func(b []byte) {
			b[first+45] = 0
			b[first+49] = 8
			b[first+48] = 0
			b[first+2*50+45] = 0
			b[first+2*50+49] = 6
		},
		"stored, lengths differ": func(b []byte) { b[first+50+49] = 11 },
		"unknown compression":    func(b []byte) { b[first+45] = 2 },
		"zero plaintext":         func(b []byte) { b[first+49] = 0 },
		"data past 8 MiB":        func(b []byte) { b[first+46] = 0x01 },
	}
	for name, m := range mutate {
		bad := bytes.Clone(b)
		m(bad)
		if _, err := UnmarshalIndex(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestIndexRoundTrip(t *testing.T) {
	b := MarshalIndex(sampleIndex())
	got, err := UnmarshalIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(MarshalIndex(got), b) {
		t.Fatal("round trip changed the bytes")
	}
	bad := sampleIndex()
	bad[0].PlainSize = 14
	if _, err := UnmarshalIndex(MarshalIndex(bad)); err == nil {
		t.Fatal("accepted a blob beyond its pack")
	}
	if _, err := UnmarshalIndex(append(b, 1)); err == nil {
		t.Fatal("accepted trailing bytes")
	}
}

func TestPackTrailer(t *testing.T) {
	blobs := []PackBlob{{Type: BlobData, Offset: 0, Length: 3}, {Type: BlobTree, Offset: 3, Length: 2}}
	plain := appendPackTrailer([]byte("abcde"), blobs)
	got, err := ParsePackTrailer(plain)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1] != blobs[1] {
		t.Fatalf("got %+v", got)
	}
	// A gap or overlap between blobs is rejected.
	blobs[1].Offset = 4
	if _, err := ParsePackTrailer(appendPackTrailer([]byte("abcde"), blobs)); err == nil {
		t.Fatal("accepted a gap")
	}
	if _, err := ParsePackTrailer(plain[1:]); err == nil {
		t.Fatal("accepted a trailer that does not tile the data")
	}
}

func TestSnapshotDecode(t *testing.T) {
	good := `{"version":1,"time":"2026-11-27T03:00:00Z","host":"h","paths":["/x"],"tree":"` + strings.Repeat("ab", 32) + `","files":1,"dirs":1,"bytes":3}`
	if _, err := UnmarshalSnapshot([]byte(good)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		``, `{}`, `[]`, `null`, good + `{}`, good + `}`, good + `]`, good + ` 1`,
		strings.Replace(good, `"version":1`, `"version":2`, 1),
		strings.Replace(good, `"host"`, `"hostx"`, 1),
		strings.Replace(good, strings.Repeat("ab", 32), "abc", 1),
	} {
		if _, err := UnmarshalSnapshot([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestConfigDecode(t *testing.T) {
	good := `{"version":1,"id":"` + strings.Repeat("0f", 16) + `"}`
	for _, v := range []string{good, strings.Replace(good, "1", "2", 1)} {
		if _, err := ParseConfig([]byte(v + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	// A newer version says so (not "corrupted").
	if _, err := ParseConfig([]byte(strings.Replace(good, "1", "3", 1))); !errors.Is(err, ErrNewerFormat) || errors.Is(err, object.ErrCorrupt) {
		t.Errorf("version 3: %v, want ErrNewerFormat", err)
	}
	for _, bad := range []string{
		``, `null`, `{"version":3,"id":"` + strings.Repeat("0f", 16) + `"}`, `{"version":0,"id":"` + strings.Repeat("0f", 16) + `"}`, `{"version":1,"id":"zz"}`,
		`{"version":1,"id":"` + strings.Repeat("0f", 16) + `","x":1}`,
		good + `{}`, good + `}`, good + `]`, good + ` 1`,
	} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// vector returns a known-answer vector from testdata/vectors.txt.
func vector(f *testing.F, name string) []byte {
	data, err := os.ReadFile("testdata/vectors.txt")
	if err != nil {
		f.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if n, hx, ok := strings.Cut(line, " "); ok && n == name {
			b, err := hex.DecodeString(hx)
			if err != nil {
				f.Fatal(err)
			}
			return b
		}
	}
	f.Fatalf("no vector %q", name)
	return nil
}

func FuzzUnmarshalTree(f *testing.F) {
	f.Add(vector(f, "tree"))
	f.Add(vector(f, "empty-tree"))
	f.Add((&Tree{}).Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := UnmarshalTree(b)
		if err != nil {
			return
		}
		if !bytes.Equal(tr.Marshal(), b) {
			t.Fatalf("accepted bytes that do not re-encode identically")
		}
	})
}

func FuzzUnmarshalIndex(f *testing.F) {
	f.Add(vector(f, "index"))
	f.Add(vector(f, "index-v2"))
	f.Add(MarshalIndex(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := UnmarshalIndex(b)
		if err != nil {
			return
		}
		if !bytes.Equal(MarshalIndex(ps), b) {
			t.Fatalf("accepted bytes that do not re-encode identically")
		}
	})
}

func FuzzParsePackTrailer(f *testing.F) {
	f.Add(appendPackTrailer([]byte("abcde"), []PackBlob{{Type: BlobData, Length: 5}}))
	f.Add(appendPackTrailer(make([]byte, 24), sampleIndexV2()[0].Blobs))
	f.Fuzz(func(t *testing.T, b []byte) {
		blobs, err := ParsePackTrailer(b)
		if err != nil {
			return
		}
		var end uint64
		for _, pb := range blobs {
			end = pb.Offset + uint64(pb.Length)
		}
		if int(end)+len(blobs)*entrySize(entryVersion(blobs))+12 != len(b) {
			t.Fatalf("accepted a trailer that does not tile the pack")
		}
	})
}

func FuzzUnmarshalSnapshot(f *testing.F) {
	f.Add([]byte(`{"version":1,"time":"2026-11-27T03:00:00Z","host":"h","paths":["/x"],"tree":"` + strings.Repeat("ab", 32) + `","files":1,"dirs":1,"bytes":3}`))
	f.Add([]byte(`{"version":1,"time":"2026-11-27T03:00:00Z","host":"h","paths":["/x"],"tree":"` + strings.Repeat("ab", 32) + `","files":1,"dirs":1,"bytes":3,"exclude":{"patterns":[{"pattern":"*.o"},{"pattern":"!K*","ignore_case":true}],"caches":true,"if_present":[".nobackup"],"larger_than":1024,"one_file_system":true}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := UnmarshalSnapshot(b)
		if err != nil {
			return
		}
		if _, err := MarshalSnapshot(s); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzParseConfig: a config ParseConfig accepts marshals (as Init writes
// it) to bytes that parse to the same value and marshal to the same bytes
// again; the example repository's config re-encodes to its own bytes. The
// seeds are the frozen example repositories' configs (versions 1 and 2), a
// fresh one and two refused ones; outside fuzzing, the test fails unless every seed
// ran and both good ones parsed.
func FuzzParseConfig(f *testing.F) {
	example, err := os.ReadFile("testdata/example-repo/config")
	if err != nil || len(example) == 0 {
		f.Fatalf("example repository config: %d bytes, %v", len(example), err)
	}
	fresh, err := json.Marshal(Config{Version: FormatVersion, ID: strings.Repeat("0f", 16)})
	if err != nil {
		f.Fatal(err)
	}
	exampleV2, err := os.ReadFile("testdata/example-repo-v2/config")
	if err != nil || len(exampleV2) == 0 {
		f.Fatalf("version 2 example repository config: %d bytes, %v", len(exampleV2), err)
	}
	seeds := [][]byte{example, exampleV2, []byte(string(fresh) + "\n"), []byte(`{"version":1,"id":"zz"}`), []byte(string(fresh) + "}")}
	for _, s := range seeds {
		f.Add(s)
	}
	var ran, parsed atomic.Int64
	f.Cleanup(func() {
		if fuzzing() {
			return
		}
		if ran.Load() != int64(len(seeds)) || parsed.Load() != 3 {
			f.Errorf("%d of %d seeds ran and %d of 3 good ones parsed", ran.Load(), len(seeds), parsed.Load())
		}
	})
	f.Fuzz(func(t *testing.T, b []byte) {
		ran.Add(1)
		cfg, err := ParseConfig(b)
		if err != nil {
			return
		}
		parsed.Add(1)
		m, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cfg2, err := ParseConfig(append(m, '\n'))
		if err != nil {
			t.Fatalf("accepted %q but not its own encoding %q: %v", b, m, err)
		}
		if cfg2 != cfg {
			t.Fatalf("%q parsed to %+v, its encoding to %+v", b, cfg, cfg2)
		}
		if m2, _ := json.Marshal(cfg2); !bytes.Equal(m2, m) {
			t.Fatalf("encoding changed from %q to %q", m, m2)
		}
		if bytes.Equal(b, example) && string(m)+"\n" != string(example) {
			t.Fatalf("the example repository's config %q re-encodes as %q", example, m)
		}
	})
}

// fuzzing reports whether the test binary runs a fuzzer (-fuzz), in which
// case seeds run in worker processes as well.
func fuzzing() bool {
	fl := flag.Lookup("test.fuzz")
	return fl != nil && fl.Value.String() != ""
}

// FuzzParseSettings: settings ParseSettings accepts marshal (as init
// writes them) to bytes that parse to the same value; the frozen version
// 2 example's settings are among the seeds, and outside fuzzing the test
// fails unless every seed ran and the three good ones parsed.
func FuzzParseSettings(f *testing.F) {
	example, err := os.ReadFile("testdata/example-repo-v2/settings")
	if err != nil || len(example) == 0 {
		f.Fatalf("example repository settings: %d bytes, %v", len(example), err)
	}
	seeds := [][]byte{example, marshalSettings(Settings{Compression: "off"}), marshalSettings(Settings{Compression: "max"}),
		[]byte(`{"compression":"fast"}`), []byte(`{"compression":"auto","x":1}`), []byte(`null`)}
	for _, s := range seeds {
		f.Add(s)
	}
	var ran, parsed atomic.Int64
	f.Cleanup(func() {
		if !fuzzing() && (ran.Load() != int64(len(seeds)) || parsed.Load() != 3) {
			f.Errorf("%d of %d seeds ran and %d of 3 good ones parsed", ran.Load(), len(seeds), parsed.Load())
		}
	})
	f.Fuzz(func(t *testing.T, b []byte) {
		ran.Add(1)
		s, err := ParseSettings(b)
		if err != nil {
			return
		}
		parsed.Add(1)
		again, err := ParseSettings(marshalSettings(s))
		if err != nil || again != s {
			t.Fatalf("%q: re-encoded settings parse to %+v, %v", b, again, err)
		}
	})
}
