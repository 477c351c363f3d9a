package storetest

import "unsafe"

// Inside reports whether p lies within buf: a ReadRange that fills the
// caller's buffer returns such a slice, not a copy elsewhere.
func Inside(p, buf []byte) bool {
	if len(p) == 0 {
		return true
	}
	a := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	b := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	return a >= b && a+uintptr(len(p)) <= b+uintptr(len(buf))
}
