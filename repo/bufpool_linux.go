package repo

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePage is the size of a transparent huge page on amd64 and arm64.
const hugePage = 2 << 20

// hugeArena maps n bytes of anonymous memory aligned to a huge page and
// asks the kernel to back it with transparent huge pages (MADV_HUGEPAGE;
// honoured when /sys/kernel/mm/transparent_hugepage/enabled is "always" or
// "madvise"). The pages are touched, and so allocated, only when a buffer
// in them is first used. The memory is never unmapped: a Repository keeps
// its buffer pools for its lifetime. It returns nil if the mapping fails.
func hugeArena(n int) []byte {
	if n <= 0 {
		return nil
	}
	size := (n + hugePage - 1) &^ (hugePage - 1)
	m, err := unix.Mmap(-1, 0, size+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil
	}
	skip := int(-uintptr(unsafe.Pointer(unsafe.SliceData(m))) % hugePage)
	m = m[skip : skip+size]
	// Without huge pages the arena is still good memory: ignore a refusal.
	_ = unix.Madvise(m, unix.MADV_HUGEPAGE)
	return m[:n:n]
}
