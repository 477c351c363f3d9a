package fs

import (
	"fmt"
	"sort"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/snapcrypt/snapcrypt/repo"
	"github.com/snapcrypt/snapcrypt/repo/object"
)

// open opens file n for reading: a handle that knows where each chunk
// starts. The content never changes, so the kernel keeps its page cache
// across opens.
func (m *mount) open(n *node, flags uint32) (*fileHandle, uint32, syscall.Errno) {
	if n.a.typ != syscall.S_IFREG {
		if n.isDir() {
			return nil, 0, syscall.EISDIR
		}
		return nil, 0, syscall.EINVAL
	}
	if errno := openReadOnly(flags); errno != 0 {
		return nil, 0, errno
	}
	m.storeSmall(n)
	chunks := n.chunks()
	ends := make([]int64, len(chunks))
	var pos int64
	for i, c := range chunks {
		pos += int64(c.Length)
		ends[i] = pos
	}
	return &fileHandle{n: n, m: m, chunks: chunks, ends: ends}, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
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
func (m *mount) storeSmall(f *node) {
	size := f.a.size
	srv := m.srv.Load()
	if size == 0 || size > storeMax || srv == nil || m.noStore.Load() || f.flags.Or(flagStored)&flagStored != 0 {
		return
	}
	b := storeBufs.Get().(*[storeMax]byte)
	defer storeBufs.Put(b)
	p := b[:size]
	if n, err := m.r.ReadChunksAt(m.ctx, f.chunks(), p, 0, 0); err != nil || n != len(p) {
		return
	}
	if st := srv.InodeNotifyStoreCache(f.ino, 0, p); st != fuse.OK {
		errno := syscall.Errno(st)
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
	n      *node
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

// read reads into dest from offset off.
func (h *fileHandle) read(dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	size := int64(h.n.a.size)
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
		return nil, m.fail(h.n, err)
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
