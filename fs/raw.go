package fs

import (
	"context"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// rawFS is what the kernel talks to: requests about snapshot content (the
// nodes of the node table, node.go) are served here on go-fuse's raw API;
// every other request goes to go-fuse's fs package (gofs.NewNodeFS), which
// serves the made-up directories and .ctl/ (virtual.go, control.go).
//
// The two share one space of node ids: go-fuse's fs package numbers its
// nodes by their inode numbers (Options.ExternalNodeID), as the node
// table does, and inode numbers are distinct hashes (attr.go). A snapshot
// root is both: go-fuse's node in snapshots/ (it counts the kernel's
// lookups of it, so FORGET goes there), and the node table's for every
// other request. Write requests about snapshot content answer EROFS, as
// readOnly does for go-fuse's nodes.
type rawFS struct {
	fuse.RawFileSystem // go-fuse's fs package
	m                  *mount
	handles            handleTable
}

// newRawFS serves the mount m with root as the root of go-fuse's tree of
// the made-up directories; opts are go-fuse's options.
func newRawFS(m *mount, root gofs.InodeEmbedder, opts *gofs.Options) *rawFS {
	opts.ExternalNodeID = true
	return &rawFS{RawFileSystem: gofs.NewNodeFS(root, opts), m: m, handles: handleTable{open: map[uint64]any{}}}
}

// node returns the node table's node with node id id, or nil if the node
// is go-fuse's.
func (r *rawFS) node(id uint64) *node {
	if id < inoFirstHash {
		return nil // the made-up directories
	}
	return r.m.nodes.get(id)
}

func (r *rawFS) Init(srv *fuse.Server) {
	r.m.srv.Store(srv)
	r.RawFileSystem.Init(srv)
}

func (r *rawFS) Lookup(cancel <-chan struct{}, in *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		if !n.isDir() {
			return fuse.Status(syscall.ENOTDIR)
		}
		return r.m.lookup(n, name, out)
	}
	st := r.RawFileSystem.Lookup(cancel, in, name, out)
	if out.AttrValid == 0 && out.AttrValidNsec == 1 {
		out.AttrValidNsec = 0 // see GetAttr
	}
	return st
}

func (r *rawFS) Forget(id, nlookup uint64) {
	if n := r.node(id); n != nil && n.flags.Load()&flagRoot == 0 {
		r.m.nodes.forget(n, nlookup)
		return
	}
	r.RawFileSystem.Forget(id, nlookup)
}

func (r *rawFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		if !n.isDir() {
			r.m.list.touch()
		}
		a := r.m.stat(n)
		a.fill(&out.Attr)
		out.Ino = n.ino
		out.SetTimeout(immutableTimeout)
		return fuse.OK
	}
	if sh := r.m.controlFiles()[in.NodeId]; sh != nil {
		// A control file: whether the GETATTR comes from inside a
		// read(2) decides what it shows (ctlReadMaxAge), and go-fuse
		// does not say.
		f := ctlFile{m: r.m, ctlShared: sh}
		f.getattr(fuse.NewContext(context.Background(), &in.Caller), in.Flags()&fuse.FUSE_GETATTR_FH != 0, out)
		out.Ino = in.NodeId
		out.AttrValidNsec = 0 // see below
		return fuse.OK
	}
	st := r.RawFileSystem.GetAttr(cancel, in, out)
	if out.AttrValid == 0 && out.AttrValidNsec == 1 {
		// 1 ns is how a node of go-fuse's says "do not cache" (go-fuse
		// takes 0 for its default; ctlTimeout); the kernel would round
		// it up to a jiffy, and a read in that jiffy would trust the size
		// it has.
		out.AttrValidNsec = 0
	}
	return st
}

func (r *rawFS) Readlink(cancel <-chan struct{}, in *fuse.InHeader) ([]byte, fuse.Status) {
	if n := r.node(in.NodeId); n != nil {
		r.m.list.touch()
		return readlink(n)
	}
	return r.RawFileSystem.Readlink(cancel, in)
}

func (r *rawFS) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		if in.Mask&unixW_OK != 0 {
			return fuse.EROFS
		}
		return fuse.OK
	}
	return r.RawFileSystem.Access(cancel, in)
}

func (r *rawFS) GetXAttr(cancel <-chan struct{}, in *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	if n := r.node(in.NodeId); n != nil {
		return 0, fuse.ENOATTR
	}
	return r.RawFileSystem.GetXAttr(cancel, in, attr, dest)
}

func (r *rawFS) ListXAttr(cancel <-chan struct{}, in *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	if n := r.node(in.NodeId); n != nil {
		return 0, fuse.OK
	}
	return r.RawFileSystem.ListXAttr(cancel, in, dest)
}

func (r *rawFS) StatFs(cancel <-chan struct{}, in *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		r.m.statfs(out)
		return fuse.OK
	}
	return r.RawFileSystem.StatFs(cancel, in, out)
}

func (r *rawFS) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.ENOSYS // the kernel asks GETATTR instead
	}
	return r.RawFileSystem.Statx(cancel, in, out)
}

// Files.

func (r *rawFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		r.m.kstats.opens.Add(1)
		r.m.list.touch()
		if r.m.openless(n, in.Flags) {
			// From now on the kernel opens and closes files of this
			// mount without asking (mount.openless).
			return fuse.ENOSYS
		}
		h, flags, errno := r.m.open(n, in.Flags)
		if errno != 0 {
			return fuse.Status(errno)
		}
		out.Fh, out.OpenFlags = 0, flags // 0: no handle (see mount.open)
		if h != nil {
			out.Fh = r.handles.add(h)
		}
		return fuse.OK
	}
	return r.RawFileSystem.Open(cancel, in, out)
}

func (r *rawFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	if n := r.node(in.NodeId); n != nil {
		var h *fileHandle
		if in.Fh != 0 {
			var ok bool
			if h, ok = r.handles.get(in.Fh).(*fileHandle); !ok {
				return nil, fuse.Status(syscall.EBADF)
			}
		}
		r.m.kstats.reads.Add(1)
		r.m.list.touch()
		res, errno := r.m.read(n, h, buf[:min(len(buf), int(in.Size))], int64(in.Offset))
		if s := r.m.opts.Served; s != nil && res != nil {
			s.Add(uint64(res.Size()))
		}
		return res, fuse.Status(errno)
	}
	return r.RawFileSystem.Read(cancel, in, buf)
}

func (r *rawFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	if n := r.node(in.NodeId); n != nil {
		if in.Fh != 0 {
			r.handles.remove(in.Fh)
		}
		return
	}
	r.RawFileSystem.Release(cancel, in)
}

// Flush answers ENOSYS for snapshot content: the kernel then sends no
// FLUSH on any close of this mount (a FLUSH was only ever sent for a file
// opened without OPEN: see mount.openless). No control file needs one:
// their writes take effect when written.
func (r *rawFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.ENOSYS
	}
	return r.RawFileSystem.Flush(cancel, in)
}

func (r *rawFS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.ENOTSUP
	}
	return r.RawFileSystem.Fsync(cancel, in)
}

func (r *rawFS) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.ENOTSUP
	}
	return r.RawFileSystem.Lseek(cancel, in, out)
}

func (r *rawFS) GetLk(cancel <-chan struct{}, in *fuse.LkIn, out *fuse.LkOut) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.ENOTSUP
	}
	return r.RawFileSystem.GetLk(cancel, in, out)
}

func (r *rawFS) SetLk(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.ENOTSUP
	}
	return r.RawFileSystem.SetLk(cancel, in)
}

func (r *rawFS) SetLkw(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.ENOTSUP
	}
	return r.RawFileSystem.SetLkw(cancel, in)
}

func (r *rawFS) Ioctl(cancel <-chan struct{}, in *fuse.IoctlIn, inbuf []byte, out *fuse.IoctlOut, outbuf []byte) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.Status(syscall.ENOTTY)
	}
	return r.RawFileSystem.Ioctl(cancel, in, inbuf, out, outbuf)
}

func (r *rawFS) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	if r.node(in.NodeId) != nil || r.node(in.NodeIdOut) != nil {
		return 0, fuse.ENOTSUP
	}
	return r.RawFileSystem.CopyFileRange(cancel, in)
}

// Directories.

func (r *rawFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		h, flags, errno := r.m.opendir(n, inoSnapshots)
		if errno != 0 {
			return fuse.Status(errno)
		}
		out.Fh, out.OpenFlags = r.handles.add(h), flags
		return fuse.OK
	}
	return r.RawFileSystem.OpenDir(cancel, in, out)
}

func (r *rawFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return r.readdir(cancel, in, out, false)
}

func (r *rawFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return r.readdir(cancel, in, out, true)
}

func (r *rawFS) readdir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList, plus bool) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		h, ok := r.handles.get(in.Fh).(*dirHandle)
		if !ok {
			return fuse.Status(syscall.EBADF)
		}
		return r.m.readdir(h, in.Offset, out, plus)
	}
	if plus {
		return r.RawFileSystem.ReadDirPlus(cancel, in, out)
	}
	return r.RawFileSystem.ReadDir(cancel, in, out)
}

func (r *rawFS) ReleaseDir(in *fuse.ReleaseIn) {
	if n := r.node(in.NodeId); n != nil {
		r.handles.remove(in.Fh)
		return
	}
	r.RawFileSystem.ReleaseDir(in)
}

func (r *rawFS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.OK
	}
	return r.RawFileSystem.FsyncDir(cancel, in)
}

// Requests that would change the tree.

func (r *rawFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.EROFS
	}
	return r.RawFileSystem.SetAttr(cancel, in, out)
}

func (r *rawFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.EROFS
	}
	return r.RawFileSystem.Mknod(cancel, in, name, out)
}

func (r *rawFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.EROFS
	}
	return r.RawFileSystem.Mkdir(cancel, in, name, out)
}

func (r *rawFS) Unlink(cancel <-chan struct{}, in *fuse.InHeader, name string) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.EROFS
	}
	return r.RawFileSystem.Unlink(cancel, in, name)
}

func (r *rawFS) Rmdir(cancel <-chan struct{}, in *fuse.InHeader, name string) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.EROFS
	}
	return r.RawFileSystem.Rmdir(cancel, in, name)
}

func (r *rawFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if r.node(in.NodeId) != nil || r.node(in.Newdir) != nil {
		return fuse.EROFS
	}
	return r.RawFileSystem.Rename(cancel, in, oldName, newName)
}

func (r *rawFS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	if r.node(in.NodeId) != nil || r.node(in.Oldnodeid) != nil {
		return fuse.EROFS
	}
	return r.RawFileSystem.Link(cancel, in, name, out)
}

func (r *rawFS) Symlink(cancel <-chan struct{}, in *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.EROFS
	}
	return r.RawFileSystem.Symlink(cancel, in, target, name, out)
}

func (r *rawFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.EROFS
	}
	return r.RawFileSystem.Create(cancel, in, name, out)
}

func (r *rawFS) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.EROFS
	}
	return r.RawFileSystem.Tmpfile(cancel, in, out)
}

// Write answers EROFS for snapshot content. Once the kernel opens files
// without OPEN (mount.openless), a WRITE may come from the writeback of a
// shared writable mapping, whose bytes are in the kernel's cache of the
// file: the mount drops that cache (after the reply, as the kernel holds
// the pages until then).
func (r *rawFS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	if n := r.node(in.NodeId); n != nil {
		r.m.dropCache(n)
		return 0, fuse.EROFS
	}
	return r.RawFileSystem.Write(cancel, in, data)
}

func (r *rawFS) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	if n := r.node(in.NodeId); n != nil {
		r.m.dropCache(n)
		return 0, fuse.EROFS
	}
	return r.RawFileSystem.Writev(cancel, in, data)
}

func (r *rawFS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.EROFS
	}
	return r.RawFileSystem.Fallocate(cancel, in)
}

func (r *rawFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.EROFS
	}
	return r.RawFileSystem.SetXAttr(cancel, in, attr, data)
}

func (r *rawFS) RemoveXAttr(cancel <-chan struct{}, in *fuse.InHeader, attr string) fuse.Status {
	if n := r.node(in.NodeId); n != nil {
		return fuse.EROFS
	}
	return r.RawFileSystem.RemoveXAttr(cancel, in, attr)
}

// handleTable holds the open files and directories of the node table by
// the handle number the kernel was given.
type handleTable struct {
	mu   sync.Mutex
	next uint64
	open map[uint64]any // *fileHandle or *dirHandle
}

func (t *handleTable) add(h any) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next++
	t.open[t.next] = h
	return t.next
}

func (t *handleTable) get(fh uint64) any {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.open[fh]
}

func (t *handleTable) remove(fh uint64) {
	t.mu.Lock()
	delete(t.open, fh)
	t.mu.Unlock()
}
