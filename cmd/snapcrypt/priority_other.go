//go:build !linux

package main

// backgroundPriority does nothing where threads have no priority of their
// own that this program knows how to set.
func backgroundPriority() {}
