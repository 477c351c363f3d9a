//go:build !linux

package rotation

// lowerPriority does nothing where threads have no priority of their own
// that this program knows how to set.
func lowerPriority() {}
