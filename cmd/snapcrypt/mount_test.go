package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestLimitHeap: the mount's soft memory limit covers the live heap, the
// cache and the reads in flight; it follows the live heap up when that
// outgrows it (the nodes of a large tree walk) with headroom, and back
// down to where it started; a GOMEMLIMIT of the user's wins.
func TestLimitHeap(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	const cache = 32 << 20

	t.Setenv("GOMEMLIMIT", "")
	debug.SetMemoryLimit(math.MaxInt64)
	live := make([]byte, 64<<20) // a heap of 64 MiB at least, as an index
	stop := limitHeap(cache)
	defer stop()
	start := debug.SetMemoryLimit(-1)
	if min := int64(len(live)) + cache + inflightHeap; start < min || start > min+256<<20 {
		t.Errorf("limit %d MiB, want the live heap (64 MiB and more), the cache (32 MiB) and 32 MiB for reads in flight", start>>20)
	}

	// limitAfterGC collects until the limit satisfies ok.
	limitAfterGC := func(ok func(int64) bool) int64 {
		var got int64
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			runtime.GC()
			if got = debug.SetMemoryLimit(-1); ok(got) {
				break
			}
		}
		return got
	}
	// The live heap grows by 256 MiB, past the limit: it follows, with
	// at least a quarter of the live heap as headroom.
	more := make([]byte, 256<<20)
	want := (int64(len(live)+len(more)) * 5) / 4
	if got := limitAfterGC(func(l int64) bool { return l >= want }); got < want {
		t.Errorf("with %d MiB live, limit %d MiB, want at least %d MiB", (len(live)+len(more))>>20, got>>20, want>>20)
	}
	runtime.KeepAlive(more)
	more = nil
	// Freed again: back to where it started.
	if got := limitAfterGC(func(l int64) bool { return l == start }); got != start {
		t.Errorf("with the growth freed, limit %d MiB, want the starting %d MiB", got>>20, start>>20)
	}
	runtime.KeepAlive(live)
	stop()

	t.Setenv("GOMEMLIMIT", "1GiB")
	debug.SetMemoryLimit(1 << 30)
	limitHeap(cache)()
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Errorf("with GOMEMLIMIT set, limit %d, want it left at 1 GiB", got)
	}
}

// TestSparedProcs: one P more than go-fuse's readers can hold while they
// wait in read(2), for any GOMAXPROCS go-fuse's server was made with; never
// fewer than there were.
func TestSparedProcs(t *testing.T) {
	for _, c := range []struct{ procs, want int }{
		{1, 4},   // 2 readers + 1 may wait, one P spare
		{2, 4},   // the same: go-fuse keeps at least 2 readers
		{3, 5},   // 3 + 1, one spare
		{8, 10},  // 8 + 1, one spare
		{16, 18}, // go-fuse's cap of 16 readers + 1, one spare
		{17, 18},
		{18, 18}, // a P is idle already
		{64, 64},
	} {
		if got := sparedProcs(c.procs); got != c.want {
			t.Errorf("sparedProcs(%d) = %d, want %d", c.procs, got, c.want)
		}
	}
}

// TestSpareProc: GOMAXPROCS is raised to sparedProcs, and left alone when
// the environment sets it.
func TestSpareProc(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	t.Setenv("GOMAXPROCS", "")
	runtime.GOMAXPROCS(2)
	spareProc(2)
	if got := runtime.GOMAXPROCS(0); got != 4 {
		t.Errorf("after spareProc(2): GOMAXPROCS %d, want 4", got)
	}
	t.Setenv("GOMAXPROCS", "2")
	runtime.GOMAXPROCS(2)
	spareProc(2)
	if got := runtime.GOMAXPROCS(0); got != 2 {
		t.Errorf("after spareProc(2) with GOMAXPROCS=2 in the environment: %d, want 2", got)
	}
}
