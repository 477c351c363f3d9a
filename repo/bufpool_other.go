//go:build !linux

package repo

// hugeArena returns nil: buffers come from the Go heap.
func hugeArena(n int) []byte { return nil }
