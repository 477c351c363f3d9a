package fs

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/snapcrypt/snapcrypt/repo"
)

// A tree walk (tar, cp -r, rsync, grep -r) reads the files of a directory
// one after the other. Once the kernel opens files without asking
// (openless), a file costs the walk a READ, and the GETATTR that a READ
// brings for its next stat (the kernel marks the cached atime stale); a
// file whose content the mount has put in the kernel's cache beforehand
// (FUSE_NOTIFY_STORE, storeSmall) costs it no round trip at all. So when
// READs at offset 0 arrive for consecutive files of one directory, the
// small files after them are stored ahead, in a window that doubles each
// time the walk reaches the end of the last one (aheadFirst, then up to
// aheadFiles files or aheadBytes); the walk finds them cached and sends
// its next READ where the window ended. A reader of single files gets
// nothing stored: it never reads two neighbours in a row. A window whose
// files are READ all the same (the kernel dropped them first) was
// wasted, and the next waits for a longer run of neighbours
// (walker.wasted).
//
// The window is stored before the READ that asked for it returns, on the
// READ's goroutine: a walk finds every file of it cached however fast it
// goes, and nothing waits for the scheduler to start a worker (with a
// goroutine per window, a fast walk overtook it: side by side on the
// bench's 200,000 files, the same time and 5-20 % more CPU).
const (
	aheadFirst = 4
	aheadFiles = 256
	aheadBytes = 4 << 20
	aheadScan  = 4 * aheadFiles // entries a window looks at, at most
)

// walker is where the walk the mount stores ahead of is.
type walker struct {
	mu     sync.Mutex
	dir    *node // the directory of the last READ at offset 0
	from   int   // the index in dir's tree where the last window began
	next   int   // where the walk is expected next: past the window
	window int   // files stored last time; 0 while none is stored
	run    int   // READs of neighbours in a row since the last window
	// wasted counts windows in a row whose files were READ all the same:
	// the kernel dropped them before the reader came (memory pressure, a
	// reader that drops a file's pages before reading it). After w of
	// them, a window waits for a run of 2^w neighbours (at most
	// 2^maxWasted).
	wasted int

	storing sync.Mutex // held while a window is stored: one at a time
}

const maxWasted = 8

// kernelStats count what the kernel asked about snapshot files.
type kernelStats struct {
	opens, reads, storedAhead atomic.Uint64
}

// walked is told of a READ at offset 0 of file n, with no handle (the
// kernel opens without asking): it follows the walk and stores the next
// window ahead of it.
func (m *mount) walked(n *node) {
	stored := n.flags.Or(flagStored)&flagStored != 0 // the READ puts it in the cache
	d := n.parent
	if d == nil || n.a.links > 1 || m.noStore.Load() || m.srv.Load() == nil {
		return // a hard link's node is its first path's: not where the walk is
	}
	t, err := m.r.LoadTree(m.ctx, d.tree())
	if err != nil {
		return // the READ of a file in it reports problems
	}
	i := sort.Search(len(t.Nodes), func(i int) bool { return string(t.Nodes[i].Name) >= n.name })
	if i == len(t.Nodes) || string(t.Nodes[i].Name) != n.name {
		return
	}
	w := &m.walk
	w.mu.Lock()
	switch {
	case w.dir == d && i == w.from:
		w.mu.Unlock()
		return // the file that started the window, again
	case w.dir == d && i > w.from && i < w.next:
		if w.window > 0 && stored {
			// A file the window stored, READ after all: stored for
			// nothing.
			w.wasted = min(w.wasted+1, maxWasted)
			w.from, w.next, w.window, w.run = i, i+1, 0, 0
		}
		w.mu.Unlock()
		return // else a larger file in the window
	case w.dir == d && i == w.next:
		if w.window > 0 {
			w.wasted = 0 // the walk used the last window
		} else if w.run++; w.run < 1<<w.wasted {
			w.from, w.next = i, i+1
			w.mu.Unlock()
			return
		}
		w.window = min(max(2*w.window, aheadFirst), aheadFiles)
	case w.dir != d && w.window > 0 && firstFile(t, i):
		// The walk went on to the next directory.
		w.window = max(w.window/2, aheadFirst)
	default:
		w.dir, w.from, w.next, w.window, w.run = d, i, i+1, 0, 0
		w.mu.Unlock()
		return
	}
	w.run = 0
	if !w.storing.TryLock() {
		// Another READ stores a window (another walk): this one goes
		// on without, rather than hold a second of the kernel's
		// requests in flight.
		w.dir, w.from, w.next, w.window = d, i, i+1, 0
		w.mu.Unlock()
		return
	}
	defer w.storing.Unlock()
	files, end := m.window(d, t, i+1, w.window)
	w.dir, w.from, w.next = d, i, end
	if len(files) == 0 {
		w.next, w.window = i+1, 0 // nothing to store: no window
	}
	w.mu.Unlock()
	for _, f := range files {
		if m.storeSmall(f) {
			m.kstats.storedAhead.Add(1)
		}
	}
}

// firstFile tells whether t's entry i is its first file.
func firstFile(t *repo.Tree, i int) bool {
	for j := range i {
		if t.Nodes[j].Type == repo.TypeFile {
			return false
		}
	}
	return true
}

// window returns the nodes of up to count files of directory d (tree t)
// from entry from on that storeSmall would store and the kernel knows,
// at most aheadBytes of them, and the index past the last one.
func (m *mount) window(d *node, t *repo.Tree, from, count int) ([]*node, int) {
	var files []*node
	snap := d.snapIno()
	bytes := 0
	j := from
	for ; j < len(t.Nodes) && j < from+aheadScan && len(files) < count && bytes < aheadBytes; j++ {
		e := &t.Nodes[j]
		if e.Type != repo.TypeFile || e.Size == 0 || e.Size > storeMax {
			continue
		}
		c := m.nodes.get(childIno(snap, d.ino, e))
		if c == nil || c.flags.Load()&flagStored != 0 {
			continue // the kernel does not know it, or has it cached
		}
		files = append(files, c)
		bytes += int(e.Size)
	}
	return files, j
}

// dropCache has the kernel drop its cache of file n, once the request
// being served has been answered (the kernel may hold n's pages until
// then); a file stored ahead is stored again when a walk comes by.
func (m *mount) dropCache(n *node) {
	if !m.noOpen.Load() {
		return
	}
	n.flags.And(^uint32(flagStored))
	m.dropPages(n.ino)
}

// dropPages has the kernel drop its cached pages (and attributes) of
// node ino, from another goroutine: a handler must not wait for that,
// as the kernel may hold those pages until the request is answered.
func (m *mount) dropPages(ino uint64) {
	go func() {
		if srv := m.srv.Load(); srv != nil {
			srv.InodeNotify(ino, 0, 0)
		}
	}()
}
