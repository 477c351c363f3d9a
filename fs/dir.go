package fs

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/object"
)

// snapRoot is the directory of one snapshot as go-fuse's node tree of the
// made-up directories holds it: it gives snapshots/ the entry's
// attributes. Every request for it but FORGET is the node table's (its
// node id is its root node's: raw.go).
type snapRoot struct {
	gofs.Inode
	readOnly
	m *mount
	n *node
}

// snapshotRoot is the directory of snapshot e.
func (m *mount) snapshotRoot(e *snapEntry) *snapRoot {
	return &snapRoot{m: m, n: m.nodes.root(e, m.uid, m.gid)}
}

func (d *snapRoot) attr(out *fuse.Attr)    { a := d.m.stat(d.n); a.fill(out) }
func (d *snapRoot) timeout() time.Duration { return immutableTimeout }

// stat returns a node's attributes. A snapshot root's link count is 2 +
// its subdirectories, which only its tree tells.
func (m *mount) stat(n *node) meta {
	a := n.a
	if n.flags.Load()&flagRoot != 0 {
		if t, errno := m.load(n); errno == 0 {
			for i := range t.Nodes {
				if t.Nodes[i].Type == repo.TypeDir {
					a.links++
				}
			}
		}
	}
	return a
}

// load returns the tree of directory d, from the repository's cache of
// trees (which keeps the tree loaded last however large, for the lookups
// of a large directory).
func (m *mount) load(d *node) (*repo.Tree, syscall.Errno) {
	t, err := m.r.LoadTree(m.ctx, d.tree())
	if err != nil {
		return nil, m.fail(d, err)
	}
	return t, 0
}

// lookup answers LOOKUP of name in directory d.
func (m *mount) lookup(d *node, name string, out *fuse.EntryOut) fuse.Status {
	switch name {
	case ".":
		m.nodes.ref(d)
		m.entryOut(d, out)
		return fuse.OK
	case "..":
		if d.parent == nil {
			return fuse.ENOENT // snapshots/ is go-fuse's
		}
		m.nodes.ref(d.parent)
		m.entryOut(d.parent, out)
		return fuse.OK
	}
	t, errno := m.load(d)
	if errno != 0 {
		return fuse.Status(errno)
	}
	e := t.Find([]byte(name))
	if e != nil && e.Type != repo.TypeDir {
		m.leanMiss(d)
	}
	if e == nil {
		// Cached by the kernel: the tree never changes.
		out.NodeId = 0
		out.SetEntryTimeout(immutableTimeout)
		return fuse.OK
	}
	return m.childEntry(d, childIno(d.snapIno(), d.ino, e), e, out)
}

// childEntry makes (or finds) the node of entry e of directory d, numbered
// ino (childIno), counts the kernel's lookup and fills out; or answers why
// e cannot be entered.
func (m *mount) childEntry(d *node, ino uint64, e *repo.Node, out *fuse.EntryOut) fuse.Status {
	if err := subdirErr(d, e); err != nil {
		return fuse.Status(m.fail(d, err))
	}
	n := m.nodes.child(d, e, ino)
	m.entryOut(n, out) // a hard link answers with its first path's node
	return fuse.OK
}

// entryOut fills the kernel's entry of node n.
func (m *mount) entryOut(n *node, out *fuse.EntryOut) {
	out.NodeId = n.ino
	out.Generation = 0
	a := m.stat(n)
	a.fill(&out.Attr)
	out.Ino = n.ino
	out.SetEntryTimeout(immutableTimeout)
	out.SetAttrTimeout(immutableTimeout)
}

// subdirErr is why entry e of directory d cannot be entered, if it is a
// directory whose tree is d's or one above it (a loop), or that nests
// deeper than repo.MaxTreeDepth; nil otherwise.
func subdirErr(d *node, e *repo.Node) error {
	if e.Type != repo.TypeDir {
		return nil
	}
	for a := d; a != nil; a = a.parent {
		if a.tree() == e.Subtree {
			return fmt.Errorf("%q: tree %s contains itself: %w: %w", e.Name, e.Subtree.Short(), repo.ErrTreeLoop, object.ErrCorrupt)
		}
	}
	if d.depth >= repo.MaxTreeDepth {
		return fmt.Errorf("%q: tree %s nests deeper than %d levels: %w: %w", e.Name, e.Subtree.Short(), repo.MaxTreeDepth, repo.ErrTreeLoop, object.ErrCorrupt)
	}
	return nil
}

// dirHandle is an open snapshot directory: the tree it lists, loaded
// once, whatever the directory's size. Positions: 0 is ".", 1 is "..",
// 2+i is the tree's entry i; a listing goes on from the offset the kernel
// sends, so a handle has no position of its own.
type dirHandle struct {
	d         *node
	t         *repo.Tree
	parentIno uint64
	snapIno   uint64
	// listing is 0 until the kernel asks for the first entries, then
	// listWhole or listLean (lister.begin).
	listing atomic.Uint32
}

const (
	listWhole = 1 + iota
	listLean
)

// opendir opens directory d for listing. The kernel keeps the listing
// (FOPEN_CACHE_DIR).
func (m *mount) opendir(d *node, parentIno uint64) (*dirHandle, uint32, syscall.Errno) {
	if !d.isDir() {
		return nil, 0, syscall.ENOTDIR
	}
	t, errno := m.load(d)
	if errno != 0 {
		return nil, 0, errno
	}
	if d.parent != nil {
		parentIno = d.parent.ino
	}
	return &dirHandle{d: d, t: t, parentIno: parentIno, snapIno: d.snapIno()},
		fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_CACHE_DIR, 0
}

// readdir fills out with the entries from offset off on, as many as fit;
// with plus (READDIRPLUS), each entry is looked up as LOOKUP would, from
// the open tree. An entry that cannot be entered (a loop) is listed with
// no node, as a miss.
func (m *mount) readdir(h *dirHandle, off uint64, out *fuse.DirEntryList, plus bool) fuse.Status {
	nodes := h.t.Nodes
	lean := false
	if plus {
		l := h.listing.Load()
		if l == 0 {
			l = listWhole
			if m.list.begin(h.d, h.t) {
				l = listLean
			}
			h.listing.Store(l)
		}
		lean = l == listLean
	}
	for p := off; p < uint64(len(nodes))+2; p++ {
		de := fuse.DirEntry{Off: p + 1, Mode: syscall.S_IFDIR}
		var e *repo.Node
		switch p {
		case 0:
			de.Name, de.Ino = ".", h.d.ino
		case 1:
			de.Name, de.Ino = "..", h.parentIno
		default:
			e = &nodes[p-2]
			// The list copies the name: no string of its own.
			de.Name = unsafe.String(unsafe.SliceData(e.Name), len(e.Name))
			de.Mode, de.Ino = typeOf(e), childIno(h.snapIno, h.d.ino, e)
		}
		if !plus {
			if !out.AddDirEntry(de) {
				return fuse.OK
			}
			continue
		}
		eo := out.AddDirLookupEntry(de)
		if eo == nil {
			return fuse.OK
		}
		if e == nil || lean && e.Type != repo.TypeDir {
			// "." and "..": the kernel ignores their entries; in a lean
			// listing a non-directory has no node (fs/lean.go)
			continue
		}
		if st := m.childEntry(h.d, de.Ino, e, eo); st != fuse.OK {
			*eo = fuse.EntryOut{}
			eo.SetEntryTimeout(immutableTimeout)
		} else if eo.Attr.Mode&syscall.S_IFMT != de.Mode {
			out.FixMode(eo.Attr.Mode & syscall.S_IFMT) // a hard link's first node
		}
	}
	return fuse.OK
}

// readlink is a symlink's target.
func readlink(n *node) ([]byte, fuse.Status) {
	if n.a.typ != syscall.S_IFLNK || n.ext == nil {
		return nil, fuse.EINVAL
	}
	return n.ext.target, fuse.OK
}
