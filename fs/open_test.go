package fs

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// TestOpenAllocs: when the kernel reads ahead (the mount's own read-ahead
// is 0, as for root), OPEN and RELEASE of a file in a snapshot allocate
// nothing and give the kernel handle number 0, and READ with it reads the
// file; when the mount reads ahead itself, OPEN makes a handle that READ
// uses and RELEASE frees.
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
	if fh := open(); fh != 0 {
		t.Errorf("open with the kernel reading ahead: handle %d, want 0", fh)
	}
	if n := testing.AllocsPerRun(100, func() { release(open()) }); n != 0 {
		t.Errorf("open and release with the kernel reading ahead: %.1f allocations, want none", n)
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
