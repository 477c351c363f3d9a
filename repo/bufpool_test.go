package repo

import (
	"runtime"
	"testing"
	"unsafe"
)

// TestDirectBufPool: the first buffers come from the arena, end to end
// and apart; then the heap; every buffer returned is handed out again
// before a new one is made.
func TestDirectBufPool(t *testing.T) {
	const n, size = 3, 5000
	b := newDirectBufPool(n, size)
	if runtime.GOOS == "linux" {
		if len(b.arena) != n*size {
			t.Fatalf("arena of %d bytes, want %d", len(b.arena), n*size)
		}
		if a := uintptr(unsafe.Pointer(unsafe.SliceData(b.arena))); a%hugePage != 0 {
			t.Fatalf("arena at %#x, not aligned to a huge page", a)
		}
	}
	arena := b.arena
	inArena := func(p []byte) bool {
		if len(arena) == 0 {
			return false
		}
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(arena)))
		at := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
		return at >= lo && at+uintptr(cap(p)) <= lo+uintptr(len(arena))
	}
	var got [][]byte
	for i := 0; i < n+1; i++ {
		p := b.get()
		if len(p) != size || cap(p) != size {
			t.Fatalf("buffer %d: len %d cap %d, want %d", i, len(p), cap(p), size)
		}
		for j := range p {
			p[j] = byte(i) // overlapping buffers would show below
		}
		got = append(got, p)
	}
	for i, p := range got {
		for j := range p {
			if p[j] != byte(i) {
				t.Fatalf("buffer %d overlaps another at byte %d", i, j)
			}
		}
		if want := i < n && len(arena) > 0; inArena(p) != want {
			t.Errorf("buffer %d in the arena: %v, want %v", i, inArena(p), want)
		}
	}
	for _, p := range got {
		b.put(p[:10]) // any length of one of its buffers
	}
	b.put(make([]byte, size+1)) // not one of its buffers: dropped
	// The first n come back in turn (the arena's, where there is one);
	// the one from the heap beyond the arena is not kept.
	for i := 0; i < n; i++ {
		p := b.get()
		if len(p) != size {
			t.Fatalf("reused buffer of %d bytes", len(p))
		}
		if &p[0] != &got[i][0] {
			t.Errorf("get %d after put did not reuse buffer %d", i, i)
		}
	}
	if p := b.get(); &p[0] == &got[n][0] || inArena(p) {
		t.Error("the pool kept a buffer beyond its n, or handed out an arena buffer twice")
	}
}

// TestHugeArenaZero: a zero or negative size maps nothing.
func TestHugeArenaZero(t *testing.T) {
	if a := hugeArena(0); a != nil {
		t.Fatalf("hugeArena(0) = %d bytes", len(a))
	}
}
