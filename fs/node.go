package fs

import (
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/snapcrypt/snapcrypt/repo"
)

// node is an entry inside a snapshot that the kernel knows: a snapshot's
// root, a directory, a file or a symlink. The kernel may hold one for
// every entry of a large tree, so it is one compact record (144 bytes; with
// its name and its place in the table about 200, TestEntryMemory) in a
// table of the mount's own (nodeTable), served through go-fuse's raw API
// (raw.go) rather than as a node of go-fuse's fs package, which alone
// costs about 420 bytes per entry (docs/bench.md, scale).
//
// Its node id is its inode number (attr.go), so the kernel's id finds it
// in the table and a hard link found by two paths is one node. Everything
// but the counts is fixed when it is made.
type node struct {
	ino     uint64
	lookups uint64 // the kernel's lookup count; nodeTable.mu
	parent  *node  // the directory it was found in; nil at a snapshot's root
	name    string // in parent; a snapshot root's: its name under snapshots/
	ext     *nodeExt
	a       meta
	// one holds a directory's tree in one[0].ID, or a file's only
	// chunk (flagOne).
	one   [1]repo.Chunk
	kids  uint32 // nodes whose parent this is; nodeTable.mu
	depth uint32 // of the directory's tree below the snapshot's root tree (0)
	flags atomic.Uint32
}

// nodeExt is what few nodes have.
type nodeExt struct {
	chunks []repo.Chunk // a file's, unless flagOne
	ends   []int64      // ends[i]: the offset just past chunks[i]
	target []byte       // a symlink's
}

const (
	flagOne    = 1 << iota // the file has one chunk, in one
	flagStored             // its content went to the kernel's cache (storeSmall)
	flagRoot               // a snapshot's root: never freed, its FORGET is go-fuse's
	flagLean               // a directory listed lean (lister): its files may have no node in the kernel
)

func (n *node) isDir() bool { return n.a.typ == syscall.S_IFDIR }

// tree is a directory's tree.
func (n *node) tree() repo.BlobID { return n.one[0].ID }

// chunks returns a file's chunks, in order.
func (n *node) chunks() []repo.Chunk {
	if n.flags.Load()&flagOne != 0 {
		return n.one[:]
	}
	if n.ext == nil {
		return nil
	}
	return n.ext.chunks
}

// chunkAt returns the index of file n's chunk that holds offset off
// (len(chunks) if none does), and the offset where that chunk starts.
func (n *node) chunkAt(off int64) (int, int64) {
	if n.flags.Load()&flagOne != 0 || n.ext == nil {
		if n.flags.Load()&flagOne != 0 && off < int64(n.one[0].Length) {
			return 0, 0
		}
		return len(n.chunks()), 0
	}
	ends := n.ext.ends
	i := sort.Search(len(ends), func(i int) bool { return ends[i] > off })
	if i == 0 {
		return 0, 0
	}
	return i, ends[i-1]
}

// snapIno is the inode number of the snapshot root n is below.
func (n *node) snapIno() uint64 {
	for n.parent != nil {
		n = n.parent
	}
	return n.ino
}

// path is n's path below the mountpoint, quoted when it is not UTF-8.
func (n *node) path() string {
	var parts []string
	for p := n; p != nil; p = p.parent {
		parts = append(parts, p.name)
	}
	parts = append(parts, "snapshots")
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return quotePath(strings.Join(parts, "/"))
}

// newNode makes the node of entry e of directory d, numbered ino.
func newNode(d *node, e *repo.Node, ino uint64) *node {
	n := &node{ino: ino, parent: d, name: string(e.Name), a: metaOf(e)}
	switch e.Type {
	case repo.TypeDir:
		n.one[0].ID = e.Subtree
		n.depth = d.depth + 1
	case repo.TypeSymlink:
		n.ext = &nodeExt{target: append([]byte(nil), e.Target...)}
	default:
		if len(e.Chunks) == 1 {
			n.one[0] = e.Chunks[0]
			n.flags.Store(flagOne)
		} else if len(e.Chunks) > 1 {
			// The decoded tree allocated each chunk list apart
			// from the rest, so holding it does not keep the tree.
			ends := make([]int64, len(e.Chunks))
			var pos int64
			for i, c := range e.Chunks {
				pos += int64(c.Length)
				ends[i] = pos
			}
			n.ext = &nodeExt{chunks: e.Chunks, ends: ends}
		}
	}
	return n
}

// nodeTable holds the nodes the kernel knows, by node id. A node leaves
// when the kernel has forgotten it (FORGET) and every node below it;
// snapshot roots stay for the life of the mount (one per snapshot).
type nodeTable struct {
	mu    sync.Mutex
	byIno map[uint64]*node
}

func newNodeTable() *nodeTable { return &nodeTable{byIno: map[uint64]*node{}} }

// get returns the node with id ino, or nil.
func (t *nodeTable) get(ino uint64) *node {
	t.mu.Lock()
	n := t.byIno[ino]
	t.mu.Unlock()
	return n
}

// root returns the node of the root of snapshot e, made if new; a
// manifest without the root's attributes shows the snapshot's time, mode
// 0755 and uid and gid.
func (t *nodeTable) root(e *snapEntry, uid, gid uint32) *node {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := t.byIno[e.ino]; n != nil {
		return n
	}
	tm := e.s.Time.UnixNano()
	a := meta{typ: syscall.S_IFDIR, perm: 0o755, uid: uid, gid: gid, links: 2, mtime: tm, ctime: tm}
	if rm := e.s.Root; rm != nil {
		a.perm, a.uid, a.gid, a.mtime = rm.Mode, rm.UID, rm.GID, rm.MTime
	}
	n := &node{ino: e.ino, name: e.name, a: a}
	n.one[0].ID = e.s.Tree
	n.flags.Store(flagRoot)
	t.byIno[e.ino] = n
	return n
}

// child returns the node of entry e of directory d, numbered ino, made if
// new, and counts one more lookup of it by the kernel.
func (t *nodeTable) child(d *node, e *repo.Node, ino uint64) *node {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.byIno[ino]
	if n == nil {
		n = newNode(d, e, ino)
		d.kids++
		t.byIno[ino] = n
	}
	n.lookups++
	return n
}

// ref counts one more lookup of n by the kernel.
func (t *nodeTable) ref(n *node) {
	t.mu.Lock()
	n.lookups++
	t.mu.Unlock()
}

// forget takes count lookups of n back (the kernel's FORGET) and frees n,
// and the directories above it that nothing holds any more, once nothing
// holds it.
func (t *nodeTable) forget(n *node, count uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n.lookups -= min(count, n.lookups)
	for n != nil && n.lookups == 0 && n.kids == 0 && n.flags.Load()&flagRoot == 0 {
		if t.byIno[n.ino] == n {
			delete(t.byIno, n.ino)
		}
		n = n.parent
		n.kids--
	}
}

// len is the number of nodes held.
func (t *nodeTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byIno)
}
