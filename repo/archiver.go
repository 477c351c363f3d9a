package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/restic/chunker"

	"github.com/snapcrypt/snapcrypt/repo/object"
)

// SnapshotOptions describe one snapshot run.
type SnapshotOptions struct {
	Name string
	Tags []string
	// Host is recorded in the manifest; empty means os.Hostname.
	Host string
	// Time is the snapshot time recorded (in UTC) in the manifest; the zero
	// time means the moment the snapshot is written. Imports and tests set
	// it; it also orders snapshots and drives retention policies.
	Time time.Time
	// Warn receives a message for each entry that is skipped (devices,
	// fifos and sockets by design; unreadable entries, which also count in
	// SnapshotResult.Warnings). Nil discards them.
	Warn func(msg string)
	// Note, when set, receives the messages about entries skipped by
	// design (devices, fifos, sockets) instead of Warn.
	Note func(msg string)
	// Progress, when set, is called now and then with the figures so far.
	Progress func(Progress)
	// Exclude chooses what to leave out; it is recorded in the manifest.
	Exclude Exclusions
	// Compression overrides the repository's default (Repository.
	// Compression) for this snapshot's new blobs; 0 keeps the default.
	// A version 1 repository takes only CompressionOff.
	Compression Compression
}

// Progress are the running figures of a snapshot.
type Progress struct {
	Files     uint64 // regular files seen
	Dirs      uint64
	Bytes     uint64 // bytes of regular files seen
	ReadBytes uint64 // bytes actually read (changed or new files)
	Reused    uint64 // files taken unchanged from the parent snapshot
	NewBlobs  uint64
	Stored    int64  // bytes written to the store
	Excluded  uint64 // entries left out by the exclusions
	Start     time.Time
	// Current is the path (on disk) being read when the figures were
	// taken; empty once done.
	Current string
}

// SnapshotResult tells what a snapshot run did.
type SnapshotResult struct {
	Snapshot *Snapshot
	Progress Progress
	Warnings int
}

type archiver struct {
	r        *Repository
	w        *writer
	opts     SnapshotOptions
	prog     Progress
	warnings int
	chunker  *chunker.Chunker
	buf      []byte
	links    map[[2]uint64][]Chunk // hard-linked files already read this run
	jobs     chan *hashJob
	lastProg time.Time
	depth    int // of the tree being made: 0 for the root
	sel      *selector
	synth    bool   // the root is synthetic: its entries are the paths given
	topDev   uint64 // device of the path given that is being read
	guard    *writeGuard
}

// TakeSnapshot snapshots paths. One directory makes its contents the root;
// several paths (or one file) become entries of the root named by their base
// names. Files unchanged since the latest snapshot of the same paths (same
// size, mtime, ctime and inode) are not read again.
func (r *Repository) TakeSnapshot(ctx context.Context, paths []string, opts SnapshotOptions) (*SnapshotResult, error) {
	if len(paths) == 0 {
		return nil, errors.New("nothing to snapshot: no paths given")
	}
	abs := make([]string, len(paths))
	for i, p := range paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return nil, err
		}
		if _, err := os.Lstat(a); err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		abs[i] = a
	}
	a, stop, err := r.newArchiver(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer stop()

	parent, parentTree := r.parentFor(ctx, abs)

	var root *Node
	if len(abs) == 1 {
		fi, lerr := os.Lstat(abs[0])
		if lerr != nil {
			return nil, lerr
		}
		if fi.IsDir() {
			root, err = a.dir(ctx, abs[0], "", []byte("/"), fi, parentTree)
		}
	}
	if root == nil && err == nil {
		a.synth = true
		root, err = a.synthetic(ctx, abs, parentTree)
	}
	if err != nil {
		return nil, err
	}
	return a.commit(ctx, root, abs, parent)
}

// newArchiver starts an archiver; stop ends its hasher.
func (r *Repository) newArchiver(ctx context.Context, opts SnapshotOptions) (a *archiver, stop func(), err error) {
	if opts.Host == "" {
		opts.Host, _ = os.Hostname()
	}
	comp := opts.Compression
	if comp == 0 {
		comp = r.comp
	}
	if comp != CompressionOff && r.cfg.Version < 2 {
		return nil, nil, fmt.Errorf("snapshot: compression %s: a format version 1 repository stores blobs uncompressed (snapcrypt migrate upgrades it)", comp)
	}
	sel, err := newSelector(opts.Exclude)
	if err != nil {
		return nil, nil, err
	}
	// The writer lease, the prune marks and the index (writerlease.go).
	// An index that cannot be read yet (during a rotation, by a process
	// holding only the new key) costs deduplication, not the snapshot.
	guard, err := r.beginWrite(ctx, opts.Host)
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot: %w", err)
	}
	a = &archiver{r: r, w: newWriter(r, comp), opts: opts, buf: make([]byte, chunker.MaxSize),
		links: map[[2]uint64][]Chunk{}, sel: sel, guard: guard}
	a.prog.Start = time.Now()
	a.chunker = chunker.New(nil, r.pol)
	a.jobs = make(chan *hashJob, 4)
	go a.hasher(ctx)
	return a, func() { close(a.jobs); guard.release(ctx) }, nil
}

// commit flushes the packs and writes the manifest of the snapshot whose
// root is root.
func (a *archiver) commit(ctx context.Context, root *Node, paths []string, parent *Snapshot) (*SnapshotResult, error) {
	r, opts := a.r, a.opts
	if err := a.w.flush(ctx); err != nil {
		return nil, err
	}
	snapTime := opts.Time
	if snapTime.IsZero() {
		snapTime = time.Now()
	}
	snap := &Snapshot{
		Version: snapshotVersion, Time: snapTime.UTC(), Host: opts.Host, Paths: paths,
		Name: opts.Name, Tags: opts.Tags, Tree: root.Subtree,
		Root:  &RootMeta{Mode: root.Mode, UID: root.UID, GID: root.GID, MTime: root.MTime},
		Files: a.prog.Files, Dirs: a.prog.Dirs, Bytes: a.prog.Bytes,
	}
	if !opts.Exclude.empty() {
		ex := opts.Exclude
		snap.Exclude = &ex
	}
	if r.cfg.Version >= 2 {
		a.w.mu.Lock()
		snap.Added = &AddedBytes{Plain: a.w.added, Stored: a.w.addedStored}
		a.w.mu.Unlock()
	}
	if u := os.Getenv("USER"); u != "" {
		snap.Username = u
	}
	if parent != nil {
		snap.Parent = &parent.ID
	}
	plain, err := MarshalSnapshot(snap)
	if err != nil {
		return nil, err
	}
	if object.CiphertextSize(int64(len(plain))) > MaxSnapshotSize {
		return nil, fmt.Errorf("snapshot: the manifest would be %d bytes, more than the %d a manifest may hold (too many or too long paths and tags)", len(plain), MaxSnapshotSize)
	}
	if _, err := rand.Read(snap.ID[:]); err != nil {
		return nil, err
	}
	if h := r.hooks.beforeManifest; h != nil {
		h()
	}
	if err := a.guard.check(ctx, root.Subtree); err != nil {
		return nil, err
	}
	dekID, dek, err := a.w.key(ctx, len(plain))
	if err != nil {
		return nil, err
	}
	if _, _, err := r.sealObject(ctx, snapshotName(snap.ID), object.KindSnapshot, dekID, dek, plain); err != nil {
		return nil, err
	}
	r.snapMu.Lock()
	r.snaps[snap.ID] = snap
	r.snapMu.Unlock()
	a.prog.Stored = a.w.stored
	a.prog.Current = ""
	a.progress(true)
	return &SnapshotResult{Snapshot: snap, Progress: a.prog, Warnings: a.warnings}, nil
}

// parentFor finds the newest snapshot of exactly the same paths.
func (r *Repository) parentFor(ctx context.Context, paths []string) (*Snapshot, *Tree) {
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		return nil, nil
	}
	want := slices.Clone(paths)
	sort.Strings(want)
	for i := len(snaps) - 1; i >= 0; i-- {
		got := slices.Clone(snaps[i].Paths)
		sort.Strings(got)
		if slices.Equal(got, want) {
			t, err := r.LoadTree(ctx, snaps[i].Tree)
			if err != nil {
				return nil, nil
			}
			return snaps[i], t
		}
	}
	return nil, nil
}

func (a *archiver) warn(format string, args ...any) {
	a.warnings++
	if a.opts.Warn != nil {
		a.opts.Warn(fmt.Sprintf(format, args...))
	}
}

func (a *archiver) progress(force bool) {
	if a.opts.Progress == nil {
		return
	}
	if now := time.Now(); force || now.Sub(a.lastProg) > 200*time.Millisecond {
		a.lastProg = now
		a.prog.Stored = atomic.LoadInt64(&a.w.stored)
		a.opts.Progress(a.prog)
	}
}

// synthetic makes a root directory holding the given paths by base name.
func (a *archiver) synthetic(ctx context.Context, paths []string, parent *Tree) (*Node, error) {
	var nodes []Node
	seen := map[string]bool{}
	for _, p := range paths {
		base := filepath.Base(p)
		if seen[base] {
			return nil, fmt.Errorf("snapshot: two paths share the base name %q", base)
		}
		seen[base] = true
		a.depth++
		n, err := a.entry(ctx, p, base, []byte(base), parent)
		a.depth--
		if err != nil {
			return nil, err
		}
		if n != nil {
			nodes = append(nodes, *n)
		}
	}
	sortNodes(nodes)
	id, err := a.storeTree(ctx, &Tree{Nodes: nodes})
	if err != nil {
		return nil, err
	}
	now := time.Now().UnixNano()
	a.prog.Dirs++
	return &Node{Name: []byte("/"), Type: TypeDir, Mode: 0o755, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
		MTime: now, CTime: now, Links: 2, Subtree: id}, nil
}

func sortNodes(nodes []Node) {
	sort.Slice(nodes, func(i, j int) bool { return bytes.Compare(nodes[i].Name, nodes[j].Name) < 0 })
}

func (a *archiver) storeTree(ctx context.Context, t *Tree) (BlobID, error) {
	b := t.Marshal()
	if len(b) > MaxTreeSize {
		return BlobID{}, fmt.Errorf("a directory of %d entries makes a tree of %d bytes, more than the %d a tree may hold", len(t.Nodes), len(b), MaxTreeSize)
	}
	id := a.r.hash.id(BlobTree, b)
	_, err := a.w.add(ctx, BlobTree, id, b)
	return id, err
}

// entry snapshots one path of any type; it returns nil for skipped and
// excluded entries. rel is its path inside the snapshot.
func (a *archiver) entry(ctx context.Context, path, rel string, name []byte, parent *Tree) (*Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		a.warn("skipped %s: %v", path, err)
		return nil, nil
	}
	top := rel == "" || a.synth && !strings.Contains(rel, "/")
	if a.sel.excluded(rel, fi) || !top && !fi.IsDir() && a.otherDevice(fi) {
		a.prog.Excluded++
		return nil, nil
	}
	var old *Node
	if parent != nil {
		old = parent.Find(name)
	}
	switch fi.Mode().Type() {
	case 0:
		return a.file(ctx, path, name, fi, old)
	case os.ModeDir:
		if a.depth > MaxTreeDepth {
			a.warn("skipped %s: nested deeper than %d directories, the most a snapshot holds", path, MaxTreeDepth)
			return nil, nil
		}
		var sub *Tree
		if old != nil && old.Type == TypeDir {
			sub, _ = a.r.LoadTree(ctx, old.Subtree)
		}
		return a.dir(ctx, path, rel, name, fi, sub)
	case os.ModeSymlink:
		target, err := os.Readlink(path)
		if err != nil {
			a.warn("skipped %s: %v", path, err)
			return nil, nil
		}
		n := statNode(name, fi)
		n.Type = TypeSymlink
		n.Target = []byte(target)
		return &n, nil
	default:
		// Not an error: these are skipped by design, with a word.
		msg := fmt.Sprintf("skipped %s: %s files are not kept", path, typeWord(fi.Mode()))
		if a.opts.Note != nil {
			a.opts.Note(msg)
		} else if a.opts.Warn != nil {
			a.opts.Warn(msg)
		}
		return nil, nil
	}
}

func typeWord(m os.FileMode) string {
	switch {
	case m&os.ModeDevice != 0:
		return "device"
	case m&os.ModeNamedPipe != 0:
		return "fifo"
	case m&os.ModeSocket != 0:
		return "socket"
	}
	return "special"
}

func statNode(name []byte, fi os.FileInfo) Node {
	n := Node{Name: name}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok {
		n.Mode = st.Mode & 0o7777
		n.UID, n.GID = st.Uid, st.Gid
		n.MTime = st.Mtim.Nano()
		n.CTime = st.Ctim.Nano()
		n.Inode = st.Ino
		n.Dev = st.Dev
		n.Links = uint32(st.Nlink)
	} else {
		n.Mode = uint32(fi.Mode().Perm())
		n.MTime = fi.ModTime().UnixNano()
		n.Links = 1
	}
	return n
}

// dir snapshots a directory; fi is its Lstat. rel is its path inside the
// snapshot ("" for the root).
func (a *archiver) dir(ctx context.Context, path, rel string, name []byte, fi os.FileInfo, parent *Tree) (*Node, error) {
	n := statNode(name, fi)
	n.Type = TypeDir
	if rel == "" || a.synth && !strings.Contains(rel, "/") {
		a.topDev = n.Dev // where --one-file-system stays
	}
	var names []string
	if !a.otherDevice(fi) {
		var left uint64
		var err error
		names, left, err = a.sel.children(path)
		if err != nil {
			a.warn("skipped %s: %v", path, err)
			return nil, nil
		}
		a.prog.Excluded += left
	}
	nodes := make([]Node, 0, len(names))
	for _, nm := range names {
		crel := nm
		if rel != "" {
			crel = rel + "/" + nm
		}
		a.depth++
		c, err := a.entry(ctx, filepath.Join(path, nm), crel, []byte(nm), parent)
		a.depth--
		if err != nil {
			return nil, err
		}
		if c != nil {
			nodes = append(nodes, *c)
		}
	}
	id, err := a.storeTree(ctx, &Tree{Nodes: nodes})
	if err != nil {
		return nil, err
	}
	n.Subtree = id
	a.prog.Dirs++
	a.progress(false)
	return &n, nil
}

// otherDevice tells whether --one-file-system keeps out (the contents of)
// the entry whose Lstat is fi.
func (a *archiver) otherDevice(fi os.FileInfo) bool {
	if !a.opts.Exclude.OneFileSystem {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Dev != a.topDev
}

func (a *archiver) file(ctx context.Context, path string, name []byte, fi os.FileInfo, old *Node) (*Node, error) {
	n := statNode(name, fi)
	n.Type = TypeFile
	n.Size = uint64(fi.Size())
	a.prog.Files++
	a.prog.Bytes += n.Size
	a.prog.Current = path
	defer a.progress(false)
	if old != nil && old.Type == TypeFile && old.Size == n.Size && old.MTime == n.MTime &&
		old.CTime == n.CTime && old.Inode == n.Inode && a.haveAll(old.Chunks) {
		n.Chunks = old.Chunks
		a.prog.Reused++
		return &n, nil
	}
	link := [2]uint64{n.Dev, n.Inode}
	if n.Links > 1 {
		if cs, ok := a.links[link]; ok {
			n.Chunks = cs
			return &n, nil
		}
	}
	f, err := os.Open(path)
	if err != nil {
		a.warn("skipped %s: %v", path, err)
		a.prog.Files--
		a.prog.Bytes -= n.Size
		return nil, nil
	}
	defer f.Close()
	size, readErr, err := a.read(f, &n)
	if err != nil {
		return nil, err
	}
	if readErr != nil {
		a.warn("skipped %s: %v", path, readErr)
		a.prog.Files--
		a.prog.Bytes -= n.Size
		return nil, nil
	}
	// The file may have changed while it was read: record what was read.
	a.prog.Bytes += size - n.Size
	n.Size = size
	if n.Links > 1 {
		a.links[link] = n.Chunks
	}
	return &n, nil
}

// read chunks rd into n.Chunks and returns the bytes read. readErr is an
// error reading rd; err one storing the chunks.
func (a *archiver) read(rd io.Reader, n *Node) (size uint64, readErr, err error) {
	a.chunker.Reset(rd, a.r.pol)
	// Chunking runs here; hashing and packing run on the hasher goroutine,
	// so the two cores share the work. Chunk order is kept by pending.
	var pending []*hashJob
	collect := func(j *hashJob) error {
		<-j.done
		if j.err != nil {
			return j.err
		}
		if j.added {
			a.prog.NewBlobs++
		}
		n.Chunks = append(n.Chunks, Chunk{ID: j.id, Length: j.length})
		return nil
	}
	for {
		c, err := a.chunker.Next(a.buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			readErr = err
			break
		}
		j := &hashJob{data: bytes.Clone(c.Data), length: uint32(c.Length), done: make(chan struct{})}
		a.jobs <- j
		pending = append(pending, j)
		for len(pending) > 0 && (len(pending) >= 8 || isDone(pending[0])) {
			if err := collect(pending[0]); err != nil {
				a.drain(pending[1:])
				return 0, nil, err
			}
			pending = pending[1:]
		}
		size += uint64(c.Length)
		a.prog.ReadBytes += uint64(c.Length)
		a.progress(false)
	}
	for i, j := range pending {
		if err := collect(j); err != nil {
			a.drain(pending[i+1:])
			return 0, nil, err
		}
	}
	return size, readErr, nil
}

// hashJob is one chunk on its way to the hasher goroutine.
type hashJob struct {
	data   []byte
	length uint32
	id     BlobID
	added  bool
	err    error
	done   chan struct{}
}

func isDone(j *hashJob) bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

func (a *archiver) drain(js []*hashJob) {
	for _, j := range js {
		<-j.done
	}
}

// hasher computes blob ids and queues new blobs in packs until jobs closes.
func (a *archiver) hasher(ctx context.Context) {
	for j := range a.jobs {
		j.id = a.r.hash.id(BlobData, j.data)
		j.added, j.err = a.w.add(ctx, BlobData, j.id, j.data)
		j.data = nil
		close(j.done)
	}
}

func (a *archiver) haveAll(cs []Chunk) bool {
	for _, c := range cs {
		if !a.w.has(BlobData, c.ID) {
			return false
		}
	}
	return true
}
