package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
)

// TestLimitHeap: the mount's soft memory limit covers the live heap, the
// cache and the reads in flight, and a GOMEMLIMIT of the user's wins.
func TestLimitHeap(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	const cache = 32 << 20

	t.Setenv("GOMEMLIMIT", "")
	debug.SetMemoryLimit(math.MaxInt64)
	live := make([]byte, 64<<20) // a heap of 64 MiB at least, as an index
	limitHeap(cache)
	got := debug.SetMemoryLimit(-1)
	if min := int64(len(live)) + cache + inflightHeap; got < min || got > min+256<<20 {
		t.Errorf("limit %d MiB, want the live heap (64 MiB and more), the cache (32 MiB) and 32 MiB for reads in flight", got>>20)
	}
	runtime.KeepAlive(live)

	t.Setenv("GOMEMLIMIT", "1GiB")
	debug.SetMemoryLimit(1 << 30)
	limitHeap(cache)
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Errorf("with GOMEMLIMIT set, limit %d, want it left at 1 GiB", got)
	}
}
