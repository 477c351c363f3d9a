package main

import (
	"math"
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
	limitHeap(cache)
	got := debug.SetMemoryLimit(-1)
	if got < cache+inflightHeap || got > cache+inflightHeap+256<<20 {
		t.Errorf("limit %d MiB, want the cache (32 MiB), 32 MiB for reads in flight and the live heap", got>>20)
	}

	t.Setenv("GOMEMLIMIT", "1GiB")
	debug.SetMemoryLimit(1 << 30)
	limitHeap(cache)
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Errorf("with GOMEMLIMIT set, limit %d, want it left at 1 GiB", got)
	}
}
