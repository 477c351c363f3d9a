package repo

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/snapcrypt/snapcrypt/repo/object"
	"github.com/snapcrypt/snapcrypt/repo/store"
)

// readSealed is the one way the engine reads ciphertext: length bytes of
// the named object from off. A store that reads into the caller's buffer
// (store.RangeReader) does so when buf has room for the range and ctSlack, around
// the page cache if direct; otherwise the store's GetRange allocates. It
// returns what the store read, which is shorter than length where the
// object ends sooner; callers decide whether that is an error (see
// shortObject).
func (e *engine) readSealed(ctx context.Context, name string, off, length int64, buf []byte, direct bool) ([]byte, error) {
	var ct []byte
	var err error
	if st, ok := store.Capable[store.RangeReader](e.st); ok && buf != nil && length+ctSlack <= int64(len(buf)) {
		ct, err = st.ReadRange(ctx, name, off, length, buf, direct)
	} else {
		ct, err = e.st.GetRange(ctx, name, off, length)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return ct, nil
}

// readCiphertext returns length bytes of the named object from off, and
// the buffer of e.ctBufs they are in (nil if none), which the caller
// returns with e.ctBufs.put when done with the bytes. A range that fits
// is read into one of e.ctBufs, around the page cache when it is of at
// least directMin bytes. An object that ends before the range does is
// corrupt (the index says how long it is).
func (e *engine) readCiphertext(ctx context.Context, name string, off, length int64) (ct, buf []byte, err error) {
	if _, ok := store.Capable[store.RangeReader](e.st); ok && length+ctSlack <= ctBufSize {
		buf = e.ctBufs.get()
	}
	ct, err = e.readSealed(ctx, name, off, length, buf, length >= directMin)
	if err == nil && int64(len(ct)) != length {
		err = shortObject(name, length-int64(len(ct)))
	}
	if err != nil {
		e.ctBufs.put(buf)
		return nil, nil, err
	}
	return ct, buf, nil
}

// shortObject is the error of an object n bytes shorter than its index
// says.
func shortObject(name string, n int64) error {
	return fmt.Errorf("object %s is %w: %d bytes short", name, object.ErrCorrupt, n)
}

const (
	// ctBufSize is the size of a pooled ciphertext buffer: the sealed
	// segments of a read of 1 MiB (the largest FUSE read) that starts
	// inside a segment, and ctSlack.
	ctBufSize = (1<<20/object.SegmentSize+1)*object.SealedSegmentSize + ctSlack
	// ctSlack is the room a direct read needs beyond the range (see
	// local.Store.ReadRange).
	ctSlack = 12 << 10
	// directMin is the smallest range read around the page cache: a
	// large read of a sequential reader. Smaller reads (small files,
	// random access) go through the page cache, whose readahead serves
	// their neighbours.
	directMin = 512 << 10
	// ctBufs is how many ciphertext buffers the process keeps: one per
	// read in flight. A sequential reader through the mount has up to 32
	// requests of 1 MiB in flight (with fs's MaxBackground of 64).
	ctBufs = 32
)

// ciphertextBufs returns the process's pool of ciphertext buffers, which
// all its repositories share: its arena is mapped once and never freed.
var ciphertextBufs = sync.OnceValue(func() *bufPool { return newDirectBufPool(ctBufs, ctBufSize) })

// sealedSource returns the sealed bytes of segments first..last of the
// pack, segment by segment (nil for a segment past the end of a window
// that a truncated object cut short), read with one ranged read or, with read
// windows and a large read (a sequential reader's, such as the kernel's
// readahead sends), from the windows that hold them; release frees what
// it holds. Small reads (a small file, a tree, random access) never fetch
// a window: that would read 4 MiB for a few KiB.
func (e *engine) sealedSource(ctx context.Context, pk *IndexPack, first, last int64, large bool) (sealed func(s int64) []byte, release func(), err error) {
	const seg = object.SegmentSize
	name := packName(pk.ID)
	size := int64(pk.PlainSize)
	at := func(ct []byte, from, s int64) []byte { // segment s of ct, which starts at segment from
		pos := (s - from) * object.SealedSegmentSize
		end := pos + min(seg, size-s*seg) + object.TagSize
		if end > int64(len(ct)) {
			return nil // a window cut short
		}
		return ct[pos:end]
	}
	plain := func() (func(s int64) []byte, func(), error) {
		lo := first * seg
		ctOff, ctLen, _ := object.CipherRange(lo, min((last+1)*seg, size)-lo, size)
		ct, buf, err := e.readCiphertext(ctx, name, ctOff, ctLen)
		if err != nil {
			return nil, nil, err
		}
		return func(s int64) []byte { return at(ct, first, s) }, func() { e.ctBufs.put(buf) }, nil
	}
	if e.wins == nil || !large || first == last {
		return plain()
	}
	n := e.wins.window
	var held []*winEntry
	release = func() {
		for _, w := range held {
			e.wins.release(w)
		}
	}
	for w := first / n; w <= last/n; w++ {
		lo := w * n * seg
		win, err := e.wins.get(ctx, pk, w, func(buf []byte) ([]byte, error) {
			ctOff, ctLen, _ := object.CipherRange(lo, min(lo+n*seg, size)-lo, size)
			// A window cut short (a truncated object) is kept as it
			// is: the segments it holds whole still read, and only
			// the reads of the others fail (sealed gives nil).
			return e.readSealed(ctx, name, ctOff, ctLen, buf, false)
		})
		if err != nil {
			release()
			if errors.Is(err, errWindowsFull) {
				return plain()
			}
			return nil, nil, err
		}
		held = append(held, win)
	}
	w0 := first / n
	return func(s int64) []byte { return at(held[s/n-w0].ct, s/n*n, s) }, release, nil
}
