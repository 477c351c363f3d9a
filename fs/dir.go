package fs

import (
	"bytes"
	"context"
	"fmt"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/object"
)

// dirNode is a directory inside a snapshot (or a snapshot's root). It holds
// only its attributes and the id of its tree; the tree is loaded when
// needed, so a kernel that remembers many directories costs little memory.
type dirNode struct {
	gofs.Inode
	readOnly
	m       *mount
	snapIno uint64 // inode number of the snapshot's root
	tree    repo.BlobID
	a       meta
	up      *dirNode // the directory above, nil at a snapshot's root
	depth   int      // of tree below the snapshot's root tree (0)
}

// snapshotRoot is the directory of one snapshot, with the root's attributes
// from the manifest; manifests without them show the snapshot's time, mode
// 0755 and the mounting user.
func (m *mount) snapshotRoot(e *snapEntry) *dirNode {
	t := e.s.Time.UnixNano()
	a := meta{typ: syscall.S_IFDIR, perm: 0o755, uid: m.uid, gid: m.gid, links: 2, mtime: t, ctime: t}
	if rm := e.s.Root; rm != nil {
		a.perm, a.uid, a.gid, a.mtime = rm.Mode, rm.UID, rm.GID, rm.MTime
	}
	return &dirNode{m: m, snapIno: e.ino, tree: e.s.Tree, a: a}
}

func (d *dirNode) attr(out *fuse.Attr)    { a := d.stat(); a.fill(out) }
func (d *dirNode) timeout() time.Duration { return immutableTimeout }
func (d *dirNode) ino() uint64            { return d.StableAttr().Ino }

func (d *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	d.m.statfs(out)
	return 0
}

// stat returns the attributes. A snapshot root's link count is 2 + its
// subdirectories, which only its tree tells.
func (d *dirNode) stat() meta {
	a := d.a
	if d.ino() == d.snapIno {
		if t, errno := d.load(); errno == 0 {
			for i := range t.Nodes {
				if t.Nodes[i].Type == repo.TypeDir {
					a.links++
				}
			}
		}
	}
	return a
}

func (d *dirNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	a := d.stat()
	a.fill(&out.Attr)
	out.SetTimeout(immutableTimeout)
	return 0
}

// load returns the directory's tree, from the repository's cache of trees
// (which keeps the tree loaded last however large, for the lookups of a
// large directory).
func (d *dirNode) load() (*repo.Tree, syscall.Errno) {
	t, err := d.m.r.LoadTree(d.m.ctx, d.tree)
	if err != nil {
		return nil, d.m.fail(&d.Inode, err)
	}
	return t, 0
}

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	t, errno := d.load()
	if errno != 0 {
		return nil, errno
	}
	n := t.Find([]byte(name))
	if n == nil {
		return nil, syscall.ENOENT // cached by the kernel: the tree never changes
	}
	if err := d.subdirErr(n); err != nil {
		return nil, d.m.fail(&d.Inode, err)
	}
	return d.child(ctx, n, out), 0
}

// subdirErr is why entry n cannot be entered, if it is a directory whose
// tree is this directory's or one above it (a loop), or that nests deeper
// than repo.MaxTreeDepth; nil otherwise.
func (d *dirNode) subdirErr(n *repo.Node) error {
	if n.Type != repo.TypeDir {
		return nil
	}
	for a := d; a != nil; a = a.up {
		if a.tree == n.Subtree {
			return fmt.Errorf("%q: tree %s contains itself: %w: %w", n.Name, n.Subtree.Short(), repo.ErrTreeLoop, object.ErrCorrupt)
		}
	}
	if d.depth >= repo.MaxTreeDepth {
		return fmt.Errorf("%q: tree %s nests deeper than %d levels: %w: %w", n.Name, n.Subtree.Short(), repo.MaxTreeDepth, repo.ErrTreeLoop, object.ErrCorrupt)
	}
	return nil
}

// child makes the node of entry n and fills out.
func (d *dirNode) child(ctx context.Context, n *repo.Node, out *fuse.EntryOut) *gofs.Inode {
	a := metaOf(n)
	var ops gofs.InodeEmbedder
	switch n.Type {
	case repo.TypeDir:
		ops = &dirNode{m: d.m, snapIno: d.snapIno, tree: n.Subtree, a: a, up: d, depth: d.depth + 1}
	case repo.TypeSymlink:
		ops = &symlinkNode{m: d.m, a: a, target: bytes.Clone(n.Target)}
	default:
		ops = newFileNode(a, n.Chunks)
	}
	ch := d.NewInode(ctx, ops, gofs.StableAttr{Mode: a.typ, Ino: childIno(d.snapIno, d.ino(), n)})
	if at, ok := ch.Operations().(attrer); ok {
		at.attr(&out.Attr) // a hard link may answer with its first path's node
	} else {
		a.fill(&out.Attr)
	}
	out.SetEntryTimeout(immutableTimeout)
	out.SetAttrTimeout(immutableTimeout)
	return ch
}

// OpendirHandle opens a listing that streams the tree's entries: nothing
// but the one tree is loaded, whatever the directory's size.
func (d *dirNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	t, errno := d.load()
	if errno != 0 {
		return nil, 0, errno
	}
	pino := d.ino()
	if _, p := d.Parent(); p != nil {
		pino = p.StableAttr().Ino
	}
	return &dirHandle{d: d, t: t, parentIno: pino}, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_CACHE_DIR, 0
}

// dirHandle is an open snapshot directory. Positions: 0 is ".", 1 is "..",
// 2+i is the tree's entry i. go-fuse serializes the calls on one handle.
type dirHandle struct {
	d         *dirNode
	t         *repo.Tree
	parentIno uint64
	pos       uint64
	de        fuse.DirEntry // what Readdirent returns
}

var (
	_ gofs.FileReaddirenter   = (*dirHandle)(nil)
	_ gofs.FileSeekdirer      = (*dirHandle)(nil)
	_ gofs.FileLookuper       = (*dirHandle)(nil)
	_ gofs.FileReleasedirer   = (*dirHandle)(nil)
	_ gofs.FileFsyncdirer     = (*dirHandle)(nil)
	_ gofs.NodeOpendirHandler = (*dirNode)(nil)
)

func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if h.t == nil {
		return nil, syscall.EBADF
	}
	p := h.pos
	// go-fuse copies the entry before the next call: one per handle does.
	de := &h.de
	*de = fuse.DirEntry{Off: p + 1}
	switch {
	case p == 0:
		de.Name, de.Mode, de.Ino = ".", syscall.S_IFDIR, h.d.ino()
	case p == 1:
		de.Name, de.Mode, de.Ino = "..", syscall.S_IFDIR, h.parentIno
	case p-2 < uint64(len(h.t.Nodes)):
		n := &h.t.Nodes[p-2]
		de.Name, de.Mode, de.Ino = string(n.Name), typeOf(n), childIno(h.d.snapIno, h.d.ino(), n)
	default:
		return nil, 0
	}
	h.pos++
	return de, 0
}

func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.pos = off
	return 0
}

// Lookup serves READDIRPLUS from the open tree: name is the entry
// Readdirent just produced.
func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if h.t == nil {
		return nil, syscall.EBADF
	}
	var n *repo.Node
	if i := h.pos - 3; h.pos >= 3 && i < uint64(len(h.t.Nodes)) && string(h.t.Nodes[i].Name) == name {
		n = &h.t.Nodes[i]
	} else if n = h.t.Find([]byte(name)); n == nil {
		return nil, syscall.ENOENT
	}
	if err := h.d.subdirErr(n); err != nil {
		return nil, h.d.m.fail(&h.d.Inode, err)
	}
	return h.d.child(ctx, n, out), 0
}

func (h *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno { return 0 }

func (h *dirHandle) Releasedir(ctx context.Context, flags uint32) { h.t = nil }

// symlinkNode is a symbolic link inside a snapshot.
type symlinkNode struct {
	gofs.Inode
	readOnly
	m      *mount
	a      meta
	target []byte
}

func (l *symlinkNode) attr(out *fuse.Attr)    { l.a.fill(out) }
func (l *symlinkNode) timeout() time.Duration { return immutableTimeout }
func (l *symlinkNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	l.m.statfs(out)
	return 0
}

func (l *symlinkNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	l.a.fill(&out.Attr)
	out.SetTimeout(immutableTimeout)
	return 0
}

func (l *symlinkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) { return l.target, 0 }
