package fs

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/object"
)

// fileNode is a regular file inside a snapshot: its attributes and its
// chunks. The kernel may hold one for every file of a large tree, so it is
// kept small (240 bytes, go-fuse's Inode included; TestEntryMemory): a
// file of one chunk, as every small file is, keeps it in the node itself
// rather than in an allocation of its own; longer chunk lists are the
// decoded tree's (which allocated each apart from the rest, so holding
// one does not keep the tree). The mount is reached through the root.
type fileNode struct {
	gofs.Inode
	readOnly
	a     meta
	one   [1]repo.Chunk // the only chunk, if flagOne
	flags atomic.Uint32
	more  []repo.Chunk // the chunks, unless flagOne
}

const (
	flagOne    = 1 << iota // the file has one chunk, in one
	flagStored             // its content went to the kernel's cache (storeSmall)
)

// newFileNode makes the node of a regular file with attributes a and
// chunks c.
func newFileNode(a meta, c []repo.Chunk) *fileNode {
	f := &fileNode{a: a}
	if len(c) == 1 {
		f.one[0] = c[0]
		f.flags.Store(flagOne)
	} else {
		f.more = c
	}
	return f
}

// chunks returns the file's chunks, in order.
func (f *fileNode) chunks() []repo.Chunk {
	if f.flags.Load()&flagOne != 0 {
		return f.one[:]
	}
	return f.more
}

// mnt returns the mount the node belongs to.
func (f *fileNode) mnt() *mount { return f.Root().Operations().(*vdir).m }

var (
	_ gofs.NodeOpener    = (*fileNode)(nil)
	_ gofs.NodeGetattrer = (*fileNode)(nil)
	_ gofs.FileReader    = (*fileHandle)(nil)
)

func (f *fileNode) attr(out *fuse.Attr)    { f.a.fill(out) }
func (f *fileNode) timeout() time.Duration { return immutableTimeout }

func (f *fileNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	f.mnt().statfs(out)
	return 0
}

func (f *fileNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.a.fill(&out.Attr)
	out.SetTimeout(immutableTimeout)
	return 0
}

// Open returns a handle that knows where each chunk starts. The content
// never changes, so the kernel keeps its page cache across opens.
func (f *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if errno := openReadOnly(flags); errno != 0 {
		return nil, 0, errno
	}
	m := f.mnt()
	f.storeSmall(m)
	chunks := f.chunks()
	ends := make([]int64, len(chunks))
	var pos int64
	for i, c := range chunks {
		pos += int64(c.Length)
		ends[i] = pos
	}
	return &fileHandle{f: f, m: m, chunks: chunks, ends: ends}, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
}

// storeMax is the size up to which a file's content goes to the kernel's
// page cache when the file is first opened (storeSmall).
const storeMax = 128 << 10

var storeBufs = sync.Pool{New: func() any { return new([storeMax]byte) }}

// storeSmall puts the content of a small file into the kernel's page cache
// (FUSE_NOTIFY_STORE) the first time the file is opened, before the open
// returns. The reader then finds it there: a READ request less, and no
// GETATTR either, since only a READ makes the kernel mark the cached
// atime stale (the mount's superblock is not read-only), and tar, cp, rsync
// and grep stat each file after reading it. For a tree of small files that
// is two round trips to the daemon of the three each file costs. The
// content stays in the cache across opens (FOPEN_KEEP_CACHE) until the
// kernel evicts it, and then READ serves it as for any file. It is tried
// once per file: a file that does not read (a corrupt object) is left to
// READ, which reports the error; a kernel that refuses the store turns it
// off for the mount. It reads with the mount's context, as Read does (see
// mount.ctx), not the open's.
func (f *fileNode) storeSmall(m *mount) {
	size := f.a.size
	if size == 0 || size > storeMax || m.noStore.Load() || f.flags.Or(flagStored)&flagStored != 0 {
		return
	}
	b := storeBufs.Get().(*[storeMax]byte)
	defer storeBufs.Put(b)
	p := b[:size]
	if n, err := m.r.ReadChunksAt(m.ctx, f.chunks(), p, 0, 0); err != nil || n != len(p) {
		return
	}
	if errno := f.WriteCache(0, p); errno != 0 {
		f.flags.And(^uint32(flagStored))
		if errno == syscall.ENOSYS || errno == syscall.EINVAL {
			m.noStore.Store(true)
		}
	}
}

// seqWindow is how far a read may land from where the previous one ended
// and still count as sequential: the kernel sends readahead requests in
// parallel, so they arrive a little out of order.
const seqWindow = 2 << 20

// fileHandle is one open file. Reads on it may run in parallel.
type fileHandle struct {
	f      *fileNode
	m      *mount
	chunks []repo.Chunk
	ends   []int64 // ends[i]: offset just past chunk i

	mu    sync.Mutex
	reads int
	next  int64 // where a sequential reader reads next
}

// sequential tells whether a read of [off, end) goes on from the previous
// ones, and records it.
func (h *fileHandle) sequential(off, end int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	var seq bool
	if h.reads == 0 {
		seq = off == 0
	} else {
		seq = off <= h.next+seqWindow && off+seqWindow >= h.next
	}
	h.reads++
	if !seq || end > h.next {
		h.next = end
	}
	return seq
}

// chunkAt returns the index of the chunk holding offset off.
func (h *fileHandle) chunkAt(off int64) int {
	return sort.Search(len(h.ends), func(i int) bool { return h.ends[i] > off })
}

func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	size := int64(h.f.a.size)
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), size)
	m := h.m
	first, last := h.chunkAt(off), h.chunkAt(end-1)
	chunks := h.chunks[first : last+1]
	// A sequential reader gets the bytes after this read decrypted into
	// the cache: the rest of the last chunk now, the chunks after it in
	// the background (repo's ReadChunksAt).
	ahead := m.ahead.Load() // 0 when the kernel reads ahead
	if ahead > 0 && h.sequential(off, end) {
		chunks = h.chunks[first:]
	} else {
		ahead = 0
	}
	start := h.ends[first] - int64(h.chunks[first].Length)
	want := int(end - off)
	n, err := m.r.ReadChunksAt(m.ctx, chunks, dest[:want], off-start, ahead)
	if err != nil && ahead > 0 {
		// The bytes read ahead may be what failed: try just the ones
		// asked for.
		n, err = m.r.ReadChunksAt(m.ctx, chunks, dest[:want], off-start, 0)
	}
	if err == nil && n != want {
		err = fmt.Errorf("its tree entry is %w: its chunks end %d bytes before its size", object.ErrCorrupt, want-n)
	}
	if err != nil {
		return nil, m.fail(&h.f.Inode, err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// readAhead is Options.ReadAhead, but at most an eighth of the segment
// cache, so that prefetched bytes are not evicted before they are read.
func readAhead(r Repository, want int64) int64 {
	if st, ok := r.CacheStats()["segments"]; ok && st.Limit > 0 && want > st.Limit/8 {
		return max(st.Limit/8, 64<<10)
	}
	return want
}
