package fs

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"path/filepath"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/snapcrypt/snapcrypt/repo"
)

// TestOpenAllocs: when the kernel reads ahead (the mount's own read-ahead
// is 0, as for root), OPEN of a file in a snapshot answers ENOSYS, so that
// the kernel opens without asking from then on, and allocates nothing; a
// READ with handle 0 reads the file. When the mount reads ahead itself,
// OPEN makes a handle that READ uses and RELEASE frees.
func TestOpenAllocs(t *testing.T) {
	r := snapshotTree(t, 1, 4)
	dir := filepath.Join("snapshots", "s", "big", "d000")
	r.dir("snapshots", "s", "big", "d000")
	id := r.lookup(dir, fileName(3))
	raw := r.fs.(*rawFS)
	// The requests, made once: as go-fuse's, they are not the handler's
	// allocations.
	in, out := &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: id}}, &fuse.OpenOut{}
	rel := &fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: id}}
	open := func() uint64 {
		t.Helper()
		if st := r.fs.Open(nil, in, out); st != fuse.OK {
			t.Fatalf("open: %v", st)
		}
		return out.Fh
	}
	release := func(fh uint64) { rel.Fh = fh; r.fs.Release(nil, rel) }
	read := func(fh uint64) {
		t.Helper()
		buf := make([]byte, 4096)
		res, st := r.fs.Read(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: id}, Fh: fh, Size: uint32(len(buf))}, buf)
		if st != fuse.OK {
			t.Fatalf("read with handle %d: %v", fh, st)
		}
		if got, _ := res.Bytes(buf); !bytes.Equal(got, []byte{3}) {
			t.Errorf("read with handle %d: %q, want the file's one byte", fh, got)
		}
	}

	r.m.ahead.Store(0)
	if st := r.fs.Open(nil, in, out); st != fuse.ENOSYS || !r.m.noOpen.Load() {
		t.Errorf("open with the kernel reading ahead: %v, no-open %v; want ENOSYS, true", st, r.m.noOpen.Load())
	}
	if n := testing.AllocsPerRun(100, func() { r.fs.Open(nil, in, out) }); n != 0 {
		t.Errorf("open with the kernel reading ahead: %.1f allocations, want none", n)
	}
	read(0)

	r.m.ahead.Store(defaultReadAhead)
	fh := open()
	if fh == 0 || raw.handles.get(fh) == nil {
		t.Fatalf("open with the mount reading ahead: handle %d, not in the table", fh)
	}
	read(fh)
	release(fh)
	if h := raw.handles.get(fh); h != nil {
		t.Errorf("handle %d still held after release", fh)
	}
}

// TestHashIno: an inode number is the first 8 bytes (little-endian) of
// the SHA-256 of its parts, each preceded by its 4-byte length, with the
// reserved values folded away, for names of any length (a listing's
// names, up to 255 bytes, and longer ones).
func TestHashIno(t *testing.T) {
	want := func(parts ...[]byte) uint64 {
		h := sha256.New()
		for _, p := range parts {
			h.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(p))))
			h.Write(p)
		}
		v := binary.LittleEndian.Uint64(h.Sum(nil))
		if v < inoFirstHash || v == ^uint64(0) {
			v += inoFirstHash * 2
		}
		return v
	}
	for _, n := range []int{0, 1, 9, 200, 255, 300, 4096} {
		name := bytes.Repeat([]byte{'a' + byte(n%26)}, n)
		e := &repo.Node{Name: name, Type: repo.TypeFile}
		if got, w := childIno(12345, 67890, e), want([]byte("entry"), u64(67890), name); got != w {
			t.Errorf("entry named %d bytes: %#x, want %#x", n, got, w)
		}
	}
	link := &repo.Node{Name: []byte("x"), Type: repo.TypeFile, Links: 2, Dev: 7, Inode: 99}
	if got, w := childIno(12345, 67890, link), want([]byte("link"), u64(12345), u64(7), u64(99)); got != w {
		t.Errorf("hard link: %#x, want %#x", got, w)
	}
	if got, w := controlIno("status"), want([]byte("control"), []byte("status")); got != w {
		t.Errorf("control file: %#x, want %#x", got, w)
	}
}
