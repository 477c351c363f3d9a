package fs

import (
	"fmt"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/snapcrypt/snapcrypt/repo/object"
)

// open opens file n for reading. The content never changes, so the
// kernel keeps its page cache across opens. A handle is made only for a
// sequential reader that the mount reads ahead for (Options.ReadAhead, when
// the kernel does not): it tracks where the reader is. Otherwise open
// returns a nil handle, and reads need nothing but the node (rawFS gives
// the kernel handle number 0): a walk that opens every file of a large
// tree allocates nothing per open.
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
	var h *fileHandle
	if m.ahead.Load() > 0 {
		h = &fileHandle{n: n, m: m}
	}
	return h, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
}

// openless tells whether the kernel's OPEN of file n with flags is to be
// answered ENOSYS, and records it: the kernel then opens and closes every
// file of the mount without asking (no OPEN, no RELEASE, no FLUSH), as
// for a filesystem that has no open. A walk of a tree of small files
// then costs a READ for the first file of a run and none for the files
// stored ahead of it (mount.walked, ahead.go): about 2 of the 3 round
// trips each file cost (OPEN with its content stored, RELEASE, and the
// GETATTR an unstored READ brings).
//
// It is so only when the kernel reads ahead for the mount (as root; the
// mount's own read-ahead follows an open file), only without AllowOther,
// and only for an open for reading: a write open answers EROFS until the
// kernel stops asking. After that the kernel no longer asks before an
// open for writing: the open succeeds, and each write fails with EROFS
// (the kernel then drops the bytes it had copied into its cache, and so
// does the mount, for a shared writable mapping whose pages the kernel
// writes back: rawFS.Write). A process that writes into such a mapping
// sees its own bytes, and so does a reader of the file until writeback;
// the snapshot never changes. Without AllowOther only the mounting user,
// root, can do that; with it the kernel keeps sending OPEN, which refuses
// every open for writing. The control files work either way (control.go).
func (m *mount) openless(n *node, flags uint32) bool {
	if m.ahead.Load() != 0 || m.opts.AllowOther || n.a.typ != syscall.S_IFREG || openReadOnly(flags) != 0 {
		return false
	}
	m.noOpen.Store(true)
	return true
}

// storeMax is the size up to which a file's content goes to the kernel's
// page cache when the file is first opened (storeSmall).
const storeMax = 128 << 10

var storeBufs = sync.Pool{New: func() any { return new([storeMax]byte) }}

// storeSmall puts the content of a small file into the kernel's page cache
// (FUSE_NOTIFY_STORE): while the kernel sends OPEN, the first time the
// file is opened, before the open returns; without OPEN, when a walk
// comes near it (mount.walked). The reader then finds it there: a READ
// request less, and no GETATTR either, since only a READ makes the kernel
// mark the cached atime stale (the mount's superblock is not read-only),
// and tar, cp, rsync and grep stat each file after reading it. For a tree of small files that
// is two round trips to the daemon of the three each file costs. The
// content stays in the cache across opens (FOPEN_KEEP_CACHE) until the
// kernel evicts it, and then READ serves it as for any file. It is tried
// once per file: a file that does not read (a corrupt object) is left to
// READ, which reports the error; a kernel that refuses the store turns it
// off for the mount. It reads with the mount's context, as Read does (see
// mount.ctx), not the open's. It tells whether it stored the content.
func (m *mount) storeSmall(f *node) bool {
	size := f.a.size
	srv := m.srv.Load()
	if size == 0 || size > storeMax || srv == nil || m.noStore.Load() || f.flags.Or(flagStored)&flagStored != 0 {
		return false
	}
	b := storeBufs.Get().(*[storeMax]byte)
	defer storeBufs.Put(b)
	p := b[:size]
	if n, err := m.r.ReadChunksAt(m.ctx, f.chunks(), p, 0, 0); err != nil || n != len(p) {
		return false
	}
	if st := srv.InodeNotifyStoreCache(f.ino, 0, p); st != fuse.OK {
		errno := syscall.Errno(st)
		f.flags.And(^uint32(flagStored))
		if errno == syscall.ENOSYS || errno == syscall.EINVAL {
			m.noStore.Store(true)
		}
		return false
	}
	return true
}

// seqWindow is how far a read may land from where the previous one ended
// and still count as sequential: the kernel sends readahead requests in
// parallel, so they arrive a little out of order.
const seqWindow = 2 << 20

// fileHandle is one open file that a sequential reader may read: where
// the reader is. Reads on it may run in parallel.
type fileHandle struct {
	n *node
	m *mount

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

// read reads into dest from offset off of file n, reading ahead for h's
// sequential reader (h nil: no read-ahead).
func (m *mount) read(n *node, h *fileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	size := int64(n.a.size)
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), size)
	want := int(end - off)
	all := n.chunks()
	first, start := n.chunkAt(off)
	if first >= len(all) {
		return nil, m.fail(n, fmt.Errorf("its tree entry is %w: its chunks end before its size", object.ErrCorrupt))
	}
	last, _ := n.chunkAt(end - 1)
	chunks := all[first:min(last+1, len(all))]
	// A sequential reader gets the bytes after this read decrypted into
	// the cache: the rest of the last chunk now, the chunks after it in
	// the background (repo's ReadChunksAt).
	var ahead int64
	if h != nil {
		ahead = m.ahead.Load() // 0 when the kernel reads ahead
	}
	if ahead > 0 && h.sequential(off, end) {
		chunks = all[first:]
	} else {
		ahead = 0
	}
	if off == 0 && h == nil && m.noOpen.Load() {
		m.walked(n)
	}
	got, err := m.r.ReadChunksAt(m.ctx, chunks, dest[:want], off-start, ahead)
	if err != nil && ahead > 0 {
		// The bytes read ahead may be what failed: try just the ones
		// asked for.
		got, err = m.r.ReadChunksAt(m.ctx, chunks, dest[:want], off-start, 0)
	}
	if err == nil && got != want {
		err = fmt.Errorf("its tree entry is %w: its chunks end %d bytes before its size", object.ErrCorrupt, want-got)
	}
	if err != nil {
		return nil, m.fail(n, err)
	}
	return fuse.ReadResultData(dest[:got]), 0
}

// readAhead is Options.ReadAhead, but at most an eighth of the segment
// cache, so that prefetched bytes are not evicted before they are read.
func readAhead(r Repository, want int64) int64 {
	if st, ok := r.CacheStats()["segments"]; ok && st.Limit > 0 && want > st.Limit/8 {
		return max(st.Limit/8, 64<<10)
	}
	return want
}
