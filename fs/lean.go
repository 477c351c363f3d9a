package fs

import (
	"sync"
	"sync/atomic"

	"github.com/snapcrypt/snapcrypt/repo"
)

// A READDIRPLUS answer has the kernel make an inode and a dentry for each
// entry, in the lister's own system time: on the bench's machine a cold
// `find` of 200,000 entries spent 0.60 s there (perf: d_alloc_parallel,
// inode_init_once, __d_lookup, find_inode), twice native find's whole
// time, and the mount makes a node for each. A walk that stats or reads
// what it lists (tar, rsync, du, ls -l) needs them all, and gets them
// without a LOOKUP each; a walk that wants only names and types (find,
// find -name, ls -R) never uses them.
//
// So once listings of directories that hold files have gone by with
// nobody asking about a file in between (no OPEN, READ, GETATTR, READLINK
// or LOOKUP of a non-directory since the listing before; quietFirst
// listings in a row, at first), the mount makes the next listings lean:
// their non-directories go with no node (node id 0: the kernel lists the
// name and type and makes nothing; a stat of the name sends a LOOKUP).
// Subdirectories always go with their nodes, so a walk that descends
// sends no LOOKUP for them.
//
// A LOOKUP of a non-directory in a directory listed lean is a miss: the
// walk wanted what was left out. Listings are whole again from then on,
// the kernel drops the lean listings it keeps (FOPEN_CACHE_DIR) so a walk
// that comes back lists them afresh, whole, and the next switch to lean
// waits for twice as many quiet listings (at most maxQuiet). A walk that
// stats everything (du after find) thus pays one directory's LOOKUPs per
// miss, and misses fewer and fewer times.
const (
	quietFirst = 2
	maxQuiet   = 256
	maxLean    = 1 << 16 // directories listed lean between two misses, at most (then whole)
)

// lister decides how listings answer READDIRPLUS.
type lister struct {
	touched atomic.Bool // a non-directory was asked about since the last listing began
	lean    atomic.Bool // listings leave out the nodes of non-directories

	mu      sync.Mutex
	pending bool     // the last listing that began listed non-directories whole
	quiet   int      // such listings in a row with no file asked about after them
	need    int      // quiet listings before listings go lean; 0: quietFirst
	dirs    []uint64 // directories listed lean since the last miss (maxLean)

	listedLean atomic.Uint64 // listings that were lean
	misses     atomic.Uint64
}

// touch is told that the kernel asked about a non-directory.
func (l *lister) touch() {
	if !l.touched.Load() {
		l.touched.Store(true)
	}
}

// begin is told that a listing of directory d (tree t) begins, and
// returns whether it is lean.
func (l *lister) begin(d *node, t *repo.Tree) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.touched.Swap(false):
		l.quiet = 0
	case l.pending:
		l.quiet++
	}
	l.pending = false
	if !hasNonDir(t) {
		return false // nothing to leave out, and nothing a walk would ask about
	}
	if !l.lean.Load() && l.quiet >= max(l.need, quietFirst) {
		l.lean.Store(true)
	}
	// Past maxLean directories, a miss could not have the kernel drop
	// one more listing: it is whole.
	if !l.lean.Load() || d.flags.Load()&flagLean == 0 && len(l.dirs) >= maxLean {
		l.pending = true
		return false
	}
	l.listedLean.Add(1)
	if d.flags.Or(flagLean)&flagLean == 0 {
		l.dirs = append(l.dirs, d.ino)
	}
	return true
}

// missed is told of a LOOKUP of a non-directory in directory d. If d was
// listed lean, listings are whole from now on, and it returns the
// directories listed lean (nodes holds them), whose listings the kernel
// should drop; they are no longer marked as listed lean.
//
// Every directory marked flagLean is in l.dirs (begin lists a directory
// whole rather than leave it out), so a miss reaches every lean listing
// the kernel may keep.
func (l *lister) missed(d *node, nodes *nodeTable) []uint64 {
	l.touch()
	if d.flags.Load()&flagLean == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if d.flags.Load()&flagLean == 0 {
		return nil // another LOOKUP's miss
	}
	if l.lean.Load() {
		l.lean.Store(false)
		l.need = min(2*max(l.need, quietFirst), maxQuiet)
	}
	l.misses.Add(1)
	l.quiet, l.pending = 0, false
	dirs := l.dirs
	l.dirs = nil
	for _, ino := range dirs {
		if n := nodes.get(ino); n != nil {
			n.flags.And(^uint32(flagLean))
		}
	}
	return dirs
}

// hasNonDir tells whether tree t has an entry that is not a directory.
func hasNonDir(t *repo.Tree) bool {
	for i := range t.Nodes {
		if t.Nodes[i].Type != repo.TypeDir {
			return true
		}
	}
	return false
}

// leanMiss is told of a LOOKUP of a non-directory in directory d: on a
// miss (lister.missed), the kernel drops the lean listings it keeps, from
// another goroutine (a handler must not wait for the kernel).
func (m *mount) leanMiss(d *node) {
	dirs := m.list.missed(d, m.nodes)
	srv := m.srv.Load()
	if len(dirs) == 0 || srv == nil {
		return
	}
	go func() {
		for _, ino := range dirs {
			srv.InodeNotify(ino, 0, 0) // ENOENT if the kernel forgot it, and its listing
		}
	}()
}
