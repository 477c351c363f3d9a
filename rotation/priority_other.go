//go:build !linux

package rotation

import "time"

// lowerPriority does nothing where threads have no priority of their own
// that this program knows how to set.
func lowerPriority() {}

// threadCPU is the wall clock where this program knows no per-thread CPU
// clock: the daemon's workers are paced by the time their work takes.
func threadCPU() time.Duration { return time.Since(processStart) }

var processStart = time.Now()
