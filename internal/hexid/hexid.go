// Package hexid checks the ids the repository's JSON objects write as hex:
// generation, DEK, rotation and holder ids, hashes. They are always lower
// case and of a fixed length, and decoders refuse anything else.
package hexid

// Valid reports whether s is exactly n lower-case hex digits.
func Valid(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
